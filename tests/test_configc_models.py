"""Default-model resolution, rule by rule, as upstream RAGFlow v0.21.1 resolves it."""

from __future__ import annotations

import pytest

from configc.models import BUILTIN_EMBEDDING_MODEL, MODEL_KINDS, resolve_models

EMPTY = {"model": "", "factory": "", "api_key": "", "base_url": ""}
TOP = {"factory": "TopF", "api_key": "top-key", "base_url": "http://top"}


def model(name="", factory="", api_key="", base_url=""):
    return {"model": name, "factory": factory, "api_key": api_key, "base_url": base_url}


# (case, user_default_llm, lighten, kind, expected)
CASES = [
    ("no section: every kind empty but embedding", None, False, "chat_model", EMPTY),
    (
        "no section: built-in embedding",
        None,
        False,
        "embedding_model",
        model(BUILTIN_EMBEDDING_MODEL),
    ),
    ("LIGHTEN drops the built-in embedding", None, True, "embedding_model", EMPTY),
    (
        "built-in embedding takes the top-level factory but keeps its own @",
        {**TOP},
        False,
        "embedding_model",
        model(BUILTIN_EMBEDDING_MODEL, "TopF", "top-key", "http://top"),
    ),
    (
        "a present key wins over the built-in, even when empty",
        {"default_models": {"embedding_model": ""}},
        False,
        "embedding_model",
        EMPTY,
    ),
    (
        "null entry is an empty entry, not the built-in",
        {"default_models": {"embedding_model": None}},
        False,
        "embedding_model",
        EMPTY,
    ),
    (
        "string entry with top-level factory becomes name@factory",
        {**TOP, "default_models": {"chat_model": "qwen-plus"}},
        False,
        "chat_model",
        model("qwen-plus@TopF", "TopF", "top-key", "http://top"),
    ),
    (
        "string entry without any factory stays a bare name",
        {"default_models": {"chat_model": "qwen-plus"}},
        False,
        "chat_model",
        model("qwen-plus"),
    ),
    (
        "name is stripped",
        {"factory": "F", "default_models": {"chat_model": "  qwen  "}},
        False,
        "chat_model",
        model("qwen@F", "F"),
    ),
    (
        "a name that already has @ is never suffixed",
        {"factory": "F", "default_models": {"chat_model": "m@Own"}},
        False,
        "chat_model",
        model("m@Own", "F"),
    ),
    (
        "mapping entry: its own fields win over the top level",
        {
            **TOP,
            "default_models": {
                "chat_model": {
                    "name": "qwen2.5-7b-instruct",
                    "factory": "xxxx",
                    "api_key": "k",
                    "base_url": "https://api.xx.com",
                }
            },
        },
        False,
        "chat_model",
        model("qwen2.5-7b-instruct@xxxx", "xxxx", "k", "https://api.xx.com"),
    ),
    (
        "mapping entry: missing fields fall back to the top level",
        {**TOP, "default_models": {"embedding_model": {"name": "bge-m3"}}},
        False,
        "embedding_model",
        model("bge-m3@TopF", "TopF", "top-key", "http://top"),
    ),
    (
        "mapping entry: empty values count as missing",
        {**TOP, "default_models": {"rerank_model": {"name": "r", "factory": "", "api_key": ""}}},
        False,
        "rerank_model",
        model("r@TopF", "TopF", "top-key", "http://top"),
    ),
    (
        "`model` is an alias of `name`",
        {"default_models": {"asr_model": {"model": "whisper-large-v3", "factory": "W"}}},
        False,
        "asr_model",
        model("whisper-large-v3@W", "W"),
    ),
    (
        "`name` wins over `model`",
        {"default_models": {"asr_model": {"name": "a", "model": "b"}}},
        False,
        "asr_model",
        model("a"),
    ),
    (
        "empty name stays empty but factory, key and url still resolve",
        {**TOP, "default_models": {"image2text_model": ""}},
        False,
        "image2text_model",
        model("", "TopF", "top-key", "http://top"),
    ),
    (
        "empty name in a mapping, own factory",
        {"default_models": {"image2text_model": {"factory": "Own"}}},
        False,
        "image2text_model",
        model("", "Own"),
    ),
    (
        "null default_models behaves as absent",
        {"factory": "F", "default_models": None},
        False,
        "embedding_model",
        model(BUILTIN_EMBEDDING_MODEL, "F"),
    ),
]


@pytest.mark.parametrize(
    ("llm", "lighten", "kind", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_resolution_rule(llm, lighten, kind, expected):
    assert resolve_models(llm, lighten)[kind] == expected


def test_every_kind_is_resolved():
    assert list(resolve_models(None, False)) == list(MODEL_KINDS)


def test_seed_example_resolves_as_upstream():
    """The user_default_llm example of the seed document, all five kinds at once."""
    llm = {
        "factory": "BAAI",
        "api_key": "backup",
        "base_url": "backup_base_url",
        "default_models": {
            "chat_model": {
                "name": "qwen2.5-7b-instruct",
                "factory": "xxxx",
                "api_key": "xxxx",
                "base_url": "https://api.xx.com",
            },
            "embedding_model": {"name": "bge-m3"},
            "rerank_model": "bge-reranker-v2",
            "asr_model": {"model": "whisper-large-v3"},
            "image2text_model": "",
        },
    }
    backup = ("BAAI", "backup", "backup_base_url")
    assert resolve_models(llm, False) == {
        "chat_model": model("qwen2.5-7b-instruct@xxxx", "xxxx", "xxxx", "https://api.xx.com"),
        "embedding_model": model("bge-m3@BAAI", *backup),
        "rerank_model": model("bge-reranker-v2@BAAI", *backup),
        "asr_model": model("whisper-large-v3@BAAI", *backup),
        "image2text_model": model("", *backup),
    }
