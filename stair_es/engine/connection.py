"""Connecting: which adapter a cluster gets, from a URL and ``STAIR_ES_*`` settings or from a
client the application made. In its own module because it imports the adapters, which subclass
:class:`~stair_es.engine.backend.Backend` (so ``backend.py`` imports neither them nor this)."""

from __future__ import annotations

import logging
from typing import Any

from stair_es.engine.backend import Backend
from stair_es.engine.cluster_info import ClusterInfo, detect
from stair_es.engine.config import ConnectionConfig

logger = logging.getLogger("stair_es.engine.backend")  # the name these lines have always had


def wrap_client(
    client: Any,
    *,
    distribution: str | None = None,
    config: ConnectionConfig | None = None,
    owned: bool = False,
    backend_cls: type[Backend] | None = None,
) -> Backend:
    """Wrap your own ``opensearchpy.OpenSearch`` or ``elasticsearch.Elasticsearch`` client.

    Its connection settings and auth (SigV4, Cloud id, bearer token, TLS, pools) are used as
    they are. The engine is identified with ``GET /`` through that client, unless
    ``distribution`` ("opensearch"/"elasticsearch") is given: then nothing is requested and the
    version is assumed to be the client library's. ``close()`` leaves the client open unless
    ``owned``.
    """
    from stair_es.engine.clients import (
        backend_class,
        check_pair,
        client_config,
        client_kind,
        info_from_client,
    )

    kind = client_kind(client)
    config = config or client_config(client, distribution or "auto")
    wanted = distribution or config.distribution
    info = check_pair(kind, assumed_info(wanted) if wanted != "auto" else info_from_client(client, kind))
    target: type[Backend] = backend_cls or backend_class(kind)
    backend = target.__new__(target)
    Backend.__init__(backend, config, info)
    backend._adopt(client)
    backend._owns_client = owned
    return backend


def assumed_info(distribution: str) -> ClusterInfo:
    """A given distribution, no request: the version is assumed to be the client library's."""
    module = "opensearchpy" if distribution == "opensearch" else "elasticsearch"
    from stair_es.errors import require

    lib = require(module, distribution, f"Talking to {distribution}")
    return ClusterInfo(distribution, str(lib.__versionstr__), detected=False)


def cluster_info(config: ConnectionConfig) -> ClusterInfo:
    """``GET /`` unless ``config.distribution`` says what the cluster is (then no request at all)."""
    if config.distribution != "auto":
        return assumed_info(config.distribution)
    return detect(config)


def connect(config: ConnectionConfig | Any = None, *, client: Any = None, **overrides: Any) -> Backend:
    """The adapter for a cluster. ``connect()`` reads ``STAIR_ES_*`` variables; ``connect(urls=...)``;
    ``connect(client=OpenSearch(...))`` (or ``Elasticsearch(...)``, also positional) wraps your own
    client: its auth (SigV4, Cloud id, bearer, TLS) is used as it is (see :func:`wrap_client`).
    """
    from stair_es.engine.clients import backend_class, is_client

    if client is None and config is not None and is_client(config):
        client, config = config, None
    if client is not None:
        return wrap_client(client, config=config, distribution=overrides.get("distribution"))
    config = config if config is not None else ConnectionConfig.from_env(**overrides)
    if config.aws_region:  # requests are signed by the client, so detection goes through it too
        from stair_es.engine.opensearch_backend import OpenSearchBackend, make_client

        return wrap_client(make_client(config), config=config, owned=True, backend_cls=OpenSearchBackend)
    info = cluster_info(config)
    logger.info("connected to %s at %s", info.describe(), config.describe())
    return backend_class(info.distribution)(config, info)
