"""The official Elasticsearch/OpenSearch clients for the document store, and the mapping of
their errors: no answer, or "not now", is DocStoreUnavailable (an outage, elastic.py)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from ..errors import DocStoreUnavailable
from .elastic_bodies import Flavor

if TYPE_CHECKING:
    from .elastic import ElasticDocStore

T = TypeVar("T")


def _hosts(config: Mapping[str, Any]) -> list[str]:
    hosts = config.get("hosts") or []
    if isinstance(hosts, str):
        hosts = hosts.split(",")
    urls = [str(h).strip() for h in hosts if str(h).strip()]
    if not urls:
        raise ValueError(f"doc_store engine {config.get('engine')!r} needs 'hosts' (URLs)")
    return urls


def make_client(flavor: Flavor, config: Mapping[str, Any]) -> Any:
    """The official client for ``flavor`` from a ``doc_store`` config section.

    Optional keys: ``request_timeout`` (seconds, default 60), ``ca_certs`` (TLS: configc
    writes it, with https hosts, when the nodes have its certificates) and ``verify_certs``,
    passed to the client as they are.
    """
    hosts = _hosts(config)
    user, password = config.get("username"), config.get("password")
    timeout = float(config.get("request_timeout", 60))
    tls = {k: config[k] for k in ("ca_certs", "verify_certs") if k in config}
    if flavor == "elasticsearch":
        from elasticsearch import Elasticsearch

        es_auth: dict[str, Any] = {}
        if config.get("api_key"):
            es_auth["api_key"] = config["api_key"]
        elif user:
            es_auth["basic_auth"] = (user, password or "")
        return Elasticsearch(
            hosts, request_timeout=timeout, max_retries=3, retry_on_timeout=True, **es_auth, **tls
        )
    if config.get("api_key"):
        raise ValueError("OpenSearch takes username/password, not an api_key (doc_store.api_key)")
    from opensearchpy import OpenSearch

    os_auth = {"http_auth": (user, password or "")} if user else {}
    return OpenSearch(
        hosts, timeout=timeout, max_retries=3, retry_on_timeout=True, **os_auth, **tls
    )


def api_error(flavor: Flavor) -> type[Exception]:
    """The exception a client raises for an error response (status, error type, reason)."""
    if flavor == "elasticsearch":
        from elasticsearch import ApiError

        return ApiError
    from opensearchpy import TransportError

    return TransportError


def unreachable(flavor: Flavor) -> tuple[type[Exception], ...]:
    """What a client raises when no response came: refused, reset, timed out, TLS failed."""
    if flavor == "elasticsearch":
        from elastic_transport import ConnectionError, ConnectionTimeout

        return (ConnectionError, ConnectionTimeout)
    from opensearchpy import ConnectionError

    return (ConnectionError,)  # its ConnectionTimeout and SSLError are ConnectionErrors


RETRY_LATER = frozenset({429, 502, 503, 504})
"""Statuses that say "not now" (rejected for load, no master, a proxy without a backend)."""


def outage_aware(method: Callable[..., T]) -> Callable[..., T]:
    """Raise DocStoreUnavailable where the cluster gave no answer or said "not now", so the
    executor waits the outage out instead of failing the task."""

    @functools.wraps(method)
    def call(self: ElasticDocStore, *args: Any, **kwargs: Any) -> T:
        try:
            return method(self, *args, **kwargs)
        except self._unreachable as exc:
            raise DocStoreUnavailable(f"{self.flavor} unreachable: {exc}") from exc
        except self._api_error as exc:
            if (status := error_status(exc)) in RETRY_LATER:
                raise DocStoreUnavailable(f"{self.flavor} answered {status}: {exc}") from exc
            raise

    return call


def error_status(exc: BaseException) -> int | None:
    status = getattr(getattr(exc, "meta", None), "status", None)  # elasticsearch-py 8
    if not isinstance(status, int):
        status = getattr(exc, "status_code", None)  # opensearch-py
    return status if isinstance(status, int) else None


def item_errors(response: Mapping[str, Any], ignore_status: int | None = None) -> list[str]:
    errors = []
    for item in response.get("items", []):
        (op, result), *_ = item.items()
        if "error" in result and result.get("status") != ignore_status:
            error = result["error"]
            reason = error.get("reason", error) if isinstance(error, dict) else error
            errors.append(f"{op} {result.get('_id')}: {reason}")
    return errors
