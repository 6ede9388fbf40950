"""What RAGFlow v0.21.1 sends to Elasticsearch/OpenSearch for a question, written out as data.

``rag/nlp/search.py`` ``Dealer.search(req, ..., emb_mdl=None)`` builds a ``MatchTextExpr``
with ``FulltextQueryer.question(question, min_match=0.3)`` over its ``query_fields``, and
``rag/utils/es_conn.py`` ``ESConnection.search`` turns it into the body below: a
``query_string`` over the weighted fields, filters on ``kb_id`` and ``available_int``, the
bool boosted by ``1 - 0.5`` (no fusion weights without a vector), highlights on
``content_ltks``/``title_tks``, ``size`` = ``topk`` 1024.

The query strings follow ``FulltextQueryer.question``: English questions are lowercased,
stripped of punctuation and of question and stop words (``rmWWW``), tokenized (Porter stems:
"apple" -> "appl"), each term weighted, adjacent pairs as boosted phrases; a Chinese question
is split at spaces, each part weighted by its tokens, a token of three or more characters
also searched as its fine-grained tokens (as words and as a sloppy phrase). The term weights
come from upstream's term-weight tables, which are not available here: the values below are
of the right shape, not upstream's numbers, and WordNet synonyms (which only widen recall)
are left out. What these bodies
test is that RAGFlow's fields, analyzers and tokens meet what ragfleet wrote.
"""

from __future__ import annotations

from typing import Any

QUERY_FIELDS = [
    "title_tks^10",
    "title_sm_tks^5",
    "important_kwd^30",
    "important_tks^20",
    "question_tks^20",
    "content_ltks^2",
    "content_sm_ltks",
]

# (file name, text): the documents ragfleet ingests before RAGFlow's questions are asked
DOCUMENTS = [
    (
        "apple-pie.txt",
        "To bake an apple pie, slice the apples, add cinnamon and sugar, and bake it "
        "for forty minutes.",
    ),
    ("banana-bread.txt", "Banana bread needs ripe bananas, flour and an oven at 180 degrees."),
    ("apple-orchards.txt", "Apple orchards in autumn: harvesting apples by hand."),
    ("ragflow.txt", "RAGFlow是一个基于深度文档理解的开源RAG引擎。"),
    ("library.txt", "学生们在北京大学图书馆学习数据分析。"),
    ("universities.txt", "北京有很多大学，大学里都有图书馆。"),  # noqa: RUF001
    ("scholars.txt", "北方的京城里，大量学者在馆中读书。"),  # noqa: RUF001
]


def dealer_search_body(query: str, kb_ids: list[str]) -> dict[str, Any]:
    """ESConnection.search's body for a MatchTextExpr with min_match 0.3, no vector."""
    return {
        "query": {
            "bool": {
                "must": [
                    {
                        "query_string": {
                            "fields": QUERY_FIELDS,
                            "type": "best_fields",
                            "query": query,
                            "minimum_should_match": "30%",
                            "boost": 1,
                        }
                    }
                ],
                "filter": [
                    {"bool": {"must_not": [{"range": {"available_int": {"lt": 1}}}]}},
                    {"terms": {"kb_id": kb_ids}},
                ],
                "boost": 0.5,
            }
        },
        "highlight": {"fields": {"content_ltks": {}, "title_tks": {}}},
        "from": 0,
        "size": 1024,
    }


# (question, the query string FulltextQueryer.question makes of it, the document expected
# first, documents that must not match)
QUESTIONS = [
    (
        "How do I bake an apple pie?",
        '(bake^0.3000 ) (appl^0.4000 ) (pie^0.3000 ) "bake appl"^0.8000 "appl pie"^0.8000',
        "apple-pie.txt",
        {"banana-bread.txt", "ragflow.txt", "library.txt", "scholars.txt"},
    ),
    (
        "Who is harvesting apples?",
        '(harvest^0.5000 ) (appl^0.5000 ) "harvest appl"^1.0000',
        "apple-orchards.txt",
        {"banana-bread.txt", "ragflow.txt", "library.txt"},
    ),
    (
        "深度文档理解",
        '((深度)^0.3 (文档)^0.4 (理解)^0.3 ("深度 文档 理解"~2)^1.5)',
        "ragflow.txt",
        {"apple-pie.txt", "library.txt", "scholars.txt"},
    ),
    (
        "北京大学图书馆",
        '((北京大学图书馆 OR "北京大学 图书馆" OR ("北京大学 图书馆"~2)^0.5)^1.0)',
        "library.txt",
        {"ragflow.txt", "apple-pie.txt", "scholars.txt"},
    ),
]
