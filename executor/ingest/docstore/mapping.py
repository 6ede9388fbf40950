"""The ``ragflow_<tenant>`` index as RAGFlow v0.21.1 creates it: settings and dynamic templates.

RAGFlow creates its indices from ``conf/mapping.json`` (Elasticsearch) and
``conf/os_mapping.json`` (OpenSearch) and writes no explicit properties: every field gets its
type from the suffix of its name through dynamic templates. We create the same index, so a
field RAGFlow adds later (``important_kwd``, ``question_tks``, ``pagerank_fea``, ...) to an
index ragfleet created gets RAGFlow's type, and an index RAGFlow created is used as it is.

The tables below restate those two files (read as facts, not copied as files); the tests hold
them against upstream's files where the upstream mirror is present.
"""

from __future__ import annotations

import copy
from typing import Any, Literal

Flavor = Literal["elasticsearch", "opensearch"]

DATE_FORMAT = "yyyy-MM-dd HH:mm:ss||yyyy-MM-dd||yyyy-MM-dd_HH:mm:ss"
# The scripted similarity of *_tks fields: IDF-weighted term presence (a term counts once)
SCRIPTED_SIM_SOURCE = (
    "double idf = Math.log(1+(field.docCount-term.docFreq+0.5)/(term.docFreq + 0.5))"
    "/Math.log(1+((field.docCount-0.5)/1.5)); return query.boost * idf * Math.min(doc.freq, 1);"
)
SIMILARITY = {"scripted_sim": {"type": "scripted", "script": {"source": SCRIPTED_SIM_SOURCE}}}
INDEX_SETTINGS = {"number_of_shards": 2, "number_of_replicas": 0, "refresh_interval": "1000ms"}
# The vector dimensions each flavor has a q_<dim>_vec template for
VECTOR_DIMS: dict[Flavor, tuple[int, ...]] = {
    "elasticsearch": (512, 768, 1024, 1536),
    "opensearch": (512, 768, 1024, 1536, 2048, 4096, 6144, 8192, 10240),
}

# (template name, match, mapping); a match starting with ^ is a regex (match_pattern)
_TEMPLATES: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("int", "*_int", {"type": "integer", "store": "true"}),
    ("ulong", "*_ulong", {"type": "unsigned_long", "store": "true"}),
    ("long", "*_long", {"type": "long", "store": "true"}),
    ("short", "*_short", {"type": "short", "store": "true"}),
    ("numeric", "*_flt", {"type": "float", "store": True}),
    (
        "tks",
        "*_tks",
        {"type": "text", "similarity": "scripted_sim", "analyzer": "whitespace", "store": True},
    ),
    ("ltks", "*_ltks", {"type": "text", "analyzer": "whitespace", "store": True}),
    (
        "kwd",
        "^(.*_(kwd|id|ids|uid|uids)|uid)$",
        {"type": "keyword", "similarity": "boolean", "store": True},
    ),
    ("dt", "^.*(_dt|_time|_at)$", {"type": "date", "format": DATE_FORMAT, "store": True}),
    ("nested", "*_nst", {"type": "nested"}),
    ("object", "*_obj", {"type": "object", "dynamic": "true"}),
    ("string", "^.*_(with_weight|list)$", {"type": "text", "index": "false", "store": True}),
    ("rank_feature", "*_fea", {"type": "rank_feature"}),
    ("rank_features", "*_feas", {"type": "rank_features"}),
)


def vector_template_mapping(dim: int, flavor: Flavor) -> dict[str, Any]:
    """The mapping RAGFlow's template gives ``*_<dim>_vec``."""
    if flavor == "opensearch":
        return {"type": "knn_vector", "index": True, "space_type": "cosinesimil", "dimension": dim}
    return {"type": "dense_vector", "index": True, "similarity": "cosine", "dims": dim}


def _template(name: str, match: str, mapping: dict[str, Any]) -> dict[str, Any]:
    rule: dict[str, Any] = {"match": match, "mapping": copy.deepcopy(mapping)}
    if match.startswith("^"):
        rule = {"match_pattern": "regex", **rule}
    return {name: rule}


def dynamic_templates(flavor: Flavor) -> list[dict[str, Any]]:
    """RAGFlow's templates, in its order (the first match wins)."""
    templates = [_template(*spec) for spec in _TEMPLATES]
    vector_name = "knn_vector" if flavor == "opensearch" else "dense_vector"
    for dim in VECTOR_DIMS[flavor]:
        templates.append(
            _template(vector_name, f"*_{dim}_vec", vector_template_mapping(dim, flavor))
        )
    templates.append(_template("binary", "*_bin", {"type": "binary"}))
    return templates


def ragflow_index_body(flavor: Flavor) -> dict[str, Any]:
    """Settings and mappings equal to RAGFlow's mapping file of ``flavor``."""
    index = dict(INDEX_SETTINGS)
    settings: dict[str, Any] = {"index": index}
    if flavor == "opensearch":  # os_mapping.json: knn on, similarity inside "index"
        index["knn"] = True
        index["similarity"] = copy.deepcopy(SIMILARITY)
    else:  # mapping.json: similarity beside "index"
        settings["similarity"] = copy.deepcopy(SIMILARITY)
    mappings = {
        "properties": {"lat_lon": {"type": "geo_point", "store": "true"}},
        "date_detection": "true",
        "dynamic_templates": dynamic_templates(flavor),
    }
    return {"settings": settings, "mappings": mappings}


def has_vector_template(dim: int, flavor: Flavor) -> bool:
    """Whether RAGFlow's templates type ``q_<dim>_vec`` (else it needs an explicit property)."""
    return dim in VECTOR_DIMS[flavor]
