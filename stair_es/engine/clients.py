"""Clients made by the caller: which library they come from, where they point, what they talk to.

``connect(client=...)`` (:func:`~stair_es.engine.connection.wrap_client`) accepts an
``opensearchpy.OpenSearch`` or an ``elasticsearch.Elasticsearch`` exactly as an application configured it (SigV4, Elastic Cloud id,
bearer tokens, TLS, connection pools); the async variants take ``AsyncOpenSearch`` /
``AsyncElasticsearch``. The engine is identified with ``GET /`` sent through the client's own
transport (so it carries the client's auth), never through a second connection.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from stair_es.engine.config import DEFAULT_URL, ConnectionConfig
from stair_es.errors import EngineError, UsageError

if TYPE_CHECKING:
    from stair_es.engine.backend import Backend

_LIBRARIES = {"opensearchpy": "opensearch", "elasticsearch": "elasticsearch"}


def is_client(obj: Any) -> bool:
    """True for an opensearch-py or elasticsearch-py client (sync or async)."""
    module = type(obj).__module__.split(".")[0]
    return module in _LIBRARIES and hasattr(obj, "transport")


def is_async_client(client: Any) -> bool:
    """AsyncOpenSearch / AsyncElasticsearch (or a subclass)."""
    return any(cls.__name__.startswith("Async") for cls in type(client).__mro__)


def client_kind(client: Any, want_async: bool = False) -> str:
    """ "opensearch" (opensearch-py) or "elasticsearch" (elasticsearch-py); one line for anything else."""
    if not is_client(client):
        raise UsageError(
            f"expected an opensearchpy.OpenSearch or elasticsearch.Elasticsearch client, got {type(client).__name__}"
        )
    if is_async_client(client) != want_async:
        hint = (
            "use `await connect_async(client=...)`"
            if not want_async
            else "use connect(client=...) for a sync client"
        )
        raise UsageError(
            f"{type(client).__name__} is {'an async' if not want_async else 'a sync'} client: {hint}"
        )
    return _LIBRARIES[type(client).__module__.split(".")[0]]


def backend_class(kind: str) -> type[Backend]:
    """The adapter class for a client library / distribution name."""
    if kind == "opensearch":
        from stair_es.engine.opensearch_backend import OpenSearchBackend

        return OpenSearchBackend
    from stair_es.engine.elasticsearch_backend import ElasticsearchBackend

    return ElasticsearchBackend


def client_urls(client: Any) -> tuple[str, ...]:
    """The node addresses a client was given, without credentials (for messages)."""
    transport = client.transport
    urls: list[str] = []
    pool = getattr(transport, "node_pool", None)  # elasticsearch-py 8+ (elastic-transport)
    if pool is not None:
        for node in pool.all():
            config = node.config
            urls.append(f"{config.scheme}://{config.host}:{config.port}{config.path_prefix or ''}")
    for host in getattr(transport, "hosts", None) or []:  # opensearch-py
        if isinstance(host, Mapping):
            scheme = "https" if host.get("use_ssl") or host.get("scheme") == "https" else "http"
            urls.append(f"{scheme}://{host.get('host', 'localhost')}:{host.get('port', 9200)}")
    return tuple(urls) or (DEFAULT_URL,)


def client_config(client: Any, distribution: str = "auto") -> ConnectionConfig:
    """A :class:`ConnectionConfig` that describes a given client (addresses only, no secrets)."""
    return ConnectionConfig(urls=client_urls(client), distribution=distribution)


def _status_and_body(resp: Any) -> tuple[int, Any]:
    meta = getattr(resp, "meta", None)
    if meta is not None:  # elastic-transport response
        return int(meta.status), resp.body
    return 200, resp  # opensearch-py returns the parsed body (errors raise)


def _root_request(client: Any, kind: str, path: str) -> Any:
    if kind == "elasticsearch":
        return client.transport.perform_request("GET", path, headers={"accept": "application/json"})
    return client.transport.perform_request("GET", path)


def info_from_client(client: Any, kind: str) -> Any:
    """``GET /`` through the client's transport (with its auth); ``_nodes/_local`` where ``/`` is 405."""
    return check_pair(kind, _parse(kind, lambda path: _status_and_body(_root_request(client, kind, path))))


def check_pair(kind: str, info: Any) -> Any:
    """elasticsearch-py refuses OpenSearch servers (product check): say so before any real request."""
    if kind == "elasticsearch" and info.distribution == "opensearch":
        raise UsageError(
            f"an elasticsearch.Elasticsearch client cannot talk to {info.describe()} (elasticsearch-py "
            "refuses OpenSearch servers): pass an opensearchpy.OpenSearch client"
        )
    return info


async def info_from_async_client(client: Any, kind: str) -> Any:
    results: dict[str, tuple[int, Any]] = {}
    for path in ("/", "/_nodes/_local"):
        try:
            results[path] = _status_and_body(await _root_request(client, kind, path))
        except Exception as exc:  # noqa: BLE001 - reported by _parse
            results[path] = (0, exc)
        status, body = results[path]
        if (status or (_status(body) if isinstance(body, BaseException) else None)) != 405:
            break

    def cached(path: str) -> tuple[int, Any]:
        status, body = results.get(path, (0, EngineError("not requested")))
        if isinstance(body, BaseException):
            raise body
        return status, body

    return check_pair(kind, _parse(kind, cached))


def _status(exc: BaseException) -> int | None:
    status = getattr(exc, "status_code", None) or getattr(getattr(exc, "meta", None), "status", None)
    return status if isinstance(status, int) else None


def _parse(kind: str, get: Any) -> Any:
    from stair_es.engine.cluster_info import ClusterInfo, parse_root

    hint = "pass distribution='opensearch' or 'elasticsearch' to skip identification"
    try:
        try:
            status, body = get("/")
        except Exception as exc:  # noqa: BLE001 - opensearch-py raises where elasticsearch-py returns
            if _status(exc) != 405:
                raise
            status, body = 405, None
        if status == 405:  # Elasticsearch builds without the rest-root module
            status, body = get("/_nodes/_local")
            node = next(iter((body.get("nodes") or {}).values()), None) if status == 200 else None
            if node and node.get("version"):
                return ClusterInfo("elasticsearch", str(node["version"]))
        if status != 200:
            raise EngineError(f"GET / through the given {kind} client answered HTTP {status}; {hint}")
        return parse_root(body)
    except EngineError:
        raise
    except Exception as exc:  # noqa: BLE001 - any client failure becomes one line
        status = getattr(exc, "status_code", None) or getattr(getattr(exc, "meta", None), "status", None)
        where = f" (HTTP {status})" if isinstance(status, int) else ""
        reason = f"{type(exc).__name__}{where}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
        raise EngineError(
            f"cannot identify the engine through the given {kind} client: {reason}; {hint}"
        ) from exc
