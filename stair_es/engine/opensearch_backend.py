"""OpenSearch adapter (opensearch-py)."""

from __future__ import annotations

from typing import Any

from stair_es.engine.backend import Backend, ClusterInfo
from stair_es.engine.config import ConnectionConfig
from stair_es.errors import require


class OpenSearchBackend(Backend):
    def __init__(self, config: ConnectionConfig, info: ClusterInfo) -> None:
        super().__init__(config, info)
        opensearchpy = require("opensearchpy", "opensearch", "Talking to OpenSearch")
        self.helpers = require("opensearchpy.helpers", "opensearch", "Bulk indexing into OpenSearch")
        self.client = opensearchpy.OpenSearch(**client_kwargs(config))

    def _error_status(self, exc: BaseException) -> int | None:
        status = getattr(exc, "status_code", None)
        return status if isinstance(status, int) else None


def client_kwargs(config: ConnectionConfig) -> dict[str, Any]:
    """opensearch-py constructor arguments (shared by the sync and async clients)."""
    kwargs: dict[str, Any] = {
        "hosts": list(config.urls),
        "timeout": config.timeout,
        "max_retries": config.max_retries,
        "retry_on_timeout": True,
        "retry_on_status": (502, 503, 504),
        "verify_certs": config.verify_certs,
        "ssl_show_warn": config.verify_certs,
        "http_compress": False,
    }
    if any(u.startswith("https://") for u in config.urls):
        kwargs["use_ssl"] = True
    if config.ca_certs:
        kwargs["ca_certs"] = config.ca_certs
    if config.username is not None:
        kwargs["http_auth"] = (config.username, config.password)
    headers = dict(config.headers)
    if config.api_key:
        headers["Authorization"] = f"ApiKey {config.encoded_api_key()}"
    if headers:
        kwargs["headers"] = headers
    return kwargs
