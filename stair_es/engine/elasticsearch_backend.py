"""Elasticsearch adapter (elasticsearch-py), usable against ES 7.14+/8.x/9.x with one client.

elasticsearch-py N sends ``Accept/Content-Type: application/vnd.elasticsearch+json;
compatible-with=N``; an ES server of another major answers 400 ``media_type_header_exception``
(a 9.x client against an 8.x server). We know the server's major from ``GET /``, so the adapter
rewrites those two headers per request: ``compatible-with=<server major>`` for 8+, plain
``application/json`` for 7.x (which predates compatible-with negotiation in practice).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from stair_es.engine.backend import Backend, ClusterInfo
from stair_es.engine.config import ConnectionConfig
from stair_es.errors import require

_COMPAT_RE = re.compile(r"application/vnd\.elasticsearch\+([\w-]+)\s*;\s*compatible-with=\d+")


def compat_mimetype(value: str, server_major: int) -> str:
    """Rewrite a compat media type for ``server_major``."""
    if server_major >= 8:
        return _COMPAT_RE.sub(
            lambda m: f"application/vnd.elasticsearch+{m.group(1)}; compatible-with={server_major}", value
        )
    return _COMPAT_RE.sub(lambda m: f"application/{m.group(1)}", value)


def pin_compat_headers(client: Any, server_major: int) -> bool:
    """Make ``client`` send media types the server understands; True when a rewrite was installed."""
    import elasticsearch

    client_major = int(elasticsearch.__versionstr__.partition(".")[0])
    if client_major == server_major:
        return False
    transport = client.transport
    original = transport.perform_request

    def perform_request(method: str, target: str, *args: Any, headers: Any = None, **kwargs: Any) -> Any:
        if headers:
            headers = headers.copy() if hasattr(headers, "copy") else dict(headers)
            for name in ("accept", "content-type"):
                value = _get(headers, name)
                if value:
                    headers[name] = compat_mimetype(value, server_major)
        return original(method, target, *args, headers=headers, **kwargs)

    transport.perform_request = perform_request
    return True


def _get(headers: Mapping[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None


class ElasticsearchBackend(Backend):
    def __init__(self, config: ConnectionConfig, info: ClusterInfo) -> None:
        super().__init__(config, info)
        es = require("elasticsearch", "elasticsearch", "Talking to Elasticsearch")
        self._adopt(es.Elasticsearch(**client_kwargs(config)))

    def _adopt(self, client: Any) -> None:
        self.helpers = require("elasticsearch.helpers", "elasticsearch", "Bulk indexing into Elasticsearch")
        self.client = client
        # an assumed version is the client's own: nothing to rewrite
        self.compat_rewritten = self.info.detected and pin_compat_headers(client, self.info.major)

    def bulk_lines(self, lines: list[str]) -> dict[str, Any]:
        return self._call("bulk request", self.client.bulk, operations=lines)


def client_kwargs(config: ConnectionConfig) -> dict[str, Any]:
    """elasticsearch-py constructor arguments (shared by the sync and async clients)."""
    kwargs: dict[str, Any] = {
        "request_timeout": config.timeout,
        "max_retries": config.max_retries,
        "retry_on_timeout": True,
        "verify_certs": config.verify_certs,
        "ssl_show_warn": config.verify_certs,
    }
    if config.cloud_id:
        kwargs["cloud_id"] = config.cloud_id
    else:
        kwargs["hosts"] = list(config.urls)
    if config.ca_certs:
        kwargs["ca_certs"] = config.ca_certs
    if config.username is not None:
        kwargs["basic_auth"] = (config.username, config.password)
    if config.api_key:
        kwargs["api_key"] = config.encoded_api_key()
    if config.bearer_token:
        kwargs["bearer_auth"] = config.bearer_token
    if config.headers:
        kwargs["headers"] = dict(config.headers)
    return kwargs
