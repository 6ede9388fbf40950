"""The ingestion plug-ins' exception types (blob storage, embeddings, tokenizer, parsers,
document stores). A leaf, like :mod:`executor.errors`: the pipeline turns the "unavailable"
ones into :class:`executor.errors.DependencyUnavailable` and the rest into
:class:`executor.errors.TaskInputError`, so the worker never classifies these itself."""

from __future__ import annotations


class StorageError(RuntimeError):
    """The blob storage refused an operation (permissions, bad configuration)."""


class StorageUnavailable(StorageError, ConnectionError):
    """The blob storage cannot be reached right now; retry later, fail nothing."""


class EmbeddingError(RuntimeError):
    """Embedding failed in a way retrying will not fix: a rejected request (4xx), a malformed
    response, or a model config that cannot work."""


class EmbeddingUnavailable(EmbeddingError, ConnectionError):
    """The embedding endpoint cannot be reached, or kept failing with 5xx/429 through every
    retry: an infrastructure problem, not the document's."""


class TokenizerUnavailable(RuntimeError):
    """The tokenizer's package or data is missing; the message says how to install them."""


class DocumentError(ValueError):
    """The document cannot be processed (corrupt, unsupported, too large): fail the task with
    this message; retrying would not help. Messages are for an operator: say what and why."""


class DocStoreError(RuntimeError):
    """The document store refused or failed an operation; the message says which and why."""


class DocStoreUnavailable(ConnectionError):
    """The document store cannot take the operation now: unreachable, timed out, answering
    429/502/503/504, or (embedded) its file locked past ``lock_timeout`` or its disk full.
    An outage, not the task's fault: the executor pauses and runs the task again later
    instead of failing it."""
