"""Default-model resolution, by upstream RAGFlow's rules (v0.21.1 ``init_settings``).

For each kind (chat, embedding, rerank, asr, image2text):

1. the entry is ``user_default_llm.default_models[kind]`` when that key is present, else the
   built-in constant: "" for every kind but embedding, whose constant is
   ``BAAI/bge-large-zh-v1.5@BAAI`` unless LIGHTEN is on (then "");
2. a string entry is the model name; a mapping gives ``name`` (or its alias ``model``),
   ``factory``, ``api_key`` and ``base_url``; anything else is an empty entry;
3. name is stripped; factory, api_key and base_url come from the entry, else from the
   ``user_default_llm`` top level, else "" (empty values count as missing); the model becomes
   ``name@factory`` only when the name is non-empty, has no ``@`` and the factory is non-empty.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

MODEL_KINDS = ("chat_model", "embedding_model", "rerank_model", "asr_model", "image2text_model")
BUILTIN_EMBEDDING_MODEL = "BAAI/bge-large-zh-v1.5@BAAI"


@dataclass(frozen=True)
class ResolvedModel:
    model: str
    factory: str
    api_key: str
    base_url: str

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def builtin_default(kind: str, lighten: bool) -> str:
    return BUILTIN_EMBEDDING_MODEL if kind == "embedding_model" and not lighten else ""


def parse_entry(entry: Any) -> dict[str, Any]:
    """Upstream's entry parsing: a string is a name, a mapping is read, the rest is empty."""
    if isinstance(entry, str):
        return {"name": entry}
    if isinstance(entry, Mapping):
        return {
            "name": entry.get("name") or entry.get("model") or "",
            "factory": entry.get("factory"),
            "api_key": entry.get("api_key"),
            "base_url": entry.get("base_url"),
        }
    return {}


def resolve_entry(entry: Mapping[str, Any], llm: Mapping[str, Any]) -> ResolvedModel:
    name = str(entry.get("name") or "").strip()
    factory = entry.get("factory") or llm.get("factory") or ""
    api_key = entry.get("api_key") or llm.get("api_key") or ""
    base_url = entry.get("base_url") or llm.get("base_url") or ""
    model = f"{name}@{factory}" if name and "@" not in name and factory else name
    return ResolvedModel(model=model, factory=factory, api_key=api_key, base_url=base_url)


def resolve_models(user_default_llm: Mapping[str, Any] | None, lighten: bool) -> dict[str, dict]:
    """Resolve every model kind; the result goes into the compiled executor config."""
    llm = user_default_llm or {}
    defaults = llm.get("default_models") or {}
    resolved = {}
    for kind in MODEL_KINDS:
        entry = defaults[kind] if kind in defaults else builtin_default(kind, lighten)
        resolved[kind] = resolve_entry(parse_entry(entry), llm).as_dict()
    return resolved
