"""OpenSearch adapter (opensearch-py)."""

from __future__ import annotations

from typing import Any

from stair_es.engine.backend import Backend, ClusterInfo
from stair_es.engine.config import ConnectionConfig
from stair_es.errors import UsageError, require


class OpenSearchBackend(Backend):
    def __init__(self, config: ConnectionConfig, info: ClusterInfo) -> None:
        super().__init__(config, info)
        self._adopt(make_client(config))

    def _adopt(self, client: Any) -> None:
        self.helpers = require("opensearchpy.helpers", "opensearch", "Bulk indexing into OpenSearch")
        self.client = client


def make_client(config: ConnectionConfig) -> Any:
    opensearchpy = require("opensearchpy", "opensearch", "Talking to OpenSearch")
    return opensearchpy.OpenSearch(**client_kwargs(config))


def aws_auth(config: ConnectionConfig, use_async: bool = False) -> dict[str, Any]:
    """SigV4 signing with opensearch-py's own signers; credentials from boto3's usual chain
    (environment, ~/.aws, instance or task roles)."""
    boto3 = require("boto3", "aws", "AWS SigV4 signing")
    credentials = boto3.Session().get_credentials()
    if credentials is None:
        raise UsageError(
            "AWS SigV4 needs credentials: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE "
            "or run with an instance/task role"
        )
    region, service = config.aws_region, config.aws_service
    if not region:
        raise UsageError("AWS SigV4 signing needs a region (--aws-region or STAIR_ES_AWS_REGION)")
    if use_async:
        from opensearchpy import AsyncHttpConnection, AWSV4SignerAsyncAuth

        return {
            "http_auth": AWSV4SignerAsyncAuth(credentials, region, service),
            "connection_class": AsyncHttpConnection,
        }
    from opensearchpy import AWSV4SignerAuth, RequestsHttpConnection

    return {
        "http_auth": AWSV4SignerAuth(credentials, region, service),
        "connection_class": RequestsHttpConnection,
    }


def client_kwargs(config: ConnectionConfig, use_async: bool = False) -> dict[str, Any]:
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
    if config.aws_region:
        kwargs.update(aws_auth(config, use_async))
    headers = dict(config.headers)
    if config.api_key:
        headers["Authorization"] = f"ApiKey {config.encoded_api_key()}"
    elif config.bearer_token:
        headers["Authorization"] = f"Bearer {config.bearer_token}"
    if headers:
        kwargs["headers"] = headers
    return kwargs
