"""Fitting into an existing stack: your own clients, Elastic Cloud ids, bearer tokens, SigV4 settings,
a given distribution that costs no request, the async API's exports, ``py.typed``.

What needs a real engine (user-made clients searching, SigV4 headers on the wire) is in
integration_tests/test_user_clients.py."""

from __future__ import annotations

import base64
import socket
from pathlib import Path

import pytest

import stair_es
from stair_es.engine import ConnectionConfig, connect
from stair_es.engine.config import cloud_id_url
from stair_es.errors import UsageError


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the block ends: nothing listens there


def test_given_distribution_sends_no_request() -> None:
    """The docs said a given distribution skips detection; it used to GET / anyway (and fail here)."""
    url = f"http://127.0.0.1:{_closed_port()}"
    backend = connect(urls=url, distribution="opensearch")
    assert backend.info.distribution == "opensearch" and not backend.info.detected
    import opensearchpy

    assert backend.info.number == opensearchpy.__versionstr__  # assumed: the client library's version
    assert "version assumed" in backend.info.describe()
    backend.close()
    es = connect(urls=url, distribution="elasticsearch")
    assert type(es).__name__ == "ElasticsearchBackend" and not es.compat_rewritten
    es.close()


def test_cloud_id_is_parsed_like_elasticsearch_py() -> None:
    from elastic_transport.client_utils import parse_cloud_id

    for host in ("europe-west1.gcp.cloud.es.io", "us-east-1.aws.found.io:9243"):
        cloud_id = "my-deployment:" + base64.b64encode(f"{host}$abc123$kib456".encode()).decode()
        parsed = parse_cloud_id(cloud_id)
        es_host, port = parsed.es_address
        assert cloud_id_url(cloud_id) == f"https://{es_host}:{port}"
        config = ConnectionConfig(cloud_id=cloud_id)
        assert config.urls == (f"https://{es_host}:{port}",)
        from stair_es.engine.elasticsearch_backend import client_kwargs

        kwargs = client_kwargs(config)
        assert kwargs["cloud_id"] == cloud_id and "hosts" not in kwargs
    with pytest.raises(UsageError, match="not an Elastic Cloud id"):
        ConnectionConfig(cloud_id="garbage")


def test_bearer_token_and_one_way_to_authenticate() -> None:
    config = ConnectionConfig(bearer_token="tok-123")
    assert config.auth_headers()["Authorization"] == "Bearer tok-123"
    from stair_es.engine import elasticsearch_backend, opensearch_backend

    assert elasticsearch_backend.client_kwargs(config)["bearer_auth"] == "tok-123"
    assert opensearch_backend.client_kwargs(config)["headers"]["Authorization"] == "Bearer tok-123"
    with pytest.raises(UsageError, match="one way to authenticate"):
        ConnectionConfig(api_key="id:key", bearer_token="t")
    with pytest.raises(UsageError, match="one way to authenticate"):
        ConnectionConfig(username="u", password="p", aws_region="eu-west-1")
    with pytest.raises(UsageError, match="SigV4 signing is for OpenSearch"):
        ConnectionConfig(aws_region="eu-west-1", distribution="elasticsearch")
    env = {
        "STAIR_ES_AWS_REGION": "eu-west-1",
        "STAIR_ES_AWS_SERVICE": "aoss",
        "STAIR_ES_URL": "https://x:443",
    }
    from_env = ConnectionConfig.from_env(env)
    assert (from_env.aws_region, from_env.aws_service) == ("eu-west-1", "aoss")


def test_sigv4_uses_opensearch_py_signer(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("boto3")
    from opensearchpy import AWSV4SignerAuth, RequestsHttpConnection

    from stair_es.engine.opensearch_backend import client_kwargs

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
    kwargs = client_kwargs(
        ConnectionConfig(urls="https://search-x.eu-west-1.es.amazonaws.com", aws_region="eu-west-1")
    )
    assert isinstance(kwargs["http_auth"], AWSV4SignerAuth)
    assert kwargs["connection_class"] is RequestsHttpConnection
    assert kwargs["http_auth"].service == "es"


def test_sigv4_without_credentials_is_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    pytest.importorskip("boto3")
    from stair_es.engine.opensearch_backend import client_kwargs

    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"):  # fmt: skip
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(UsageError, match="AWS SigV4 needs credentials"):
        client_kwargs(ConnectionConfig(urls="https://x:443", aws_region="eu-west-1"))


def test_clients_that_are_not_clients_are_refused() -> None:
    import opensearchpy

    with pytest.raises(UsageError, match="expected an opensearchpy.OpenSearch"):
        connect(client=object())
    with pytest.raises(UsageError, match="async client"):
        connect(client=opensearchpy.AsyncOpenSearch(hosts=["http://127.0.0.1:9"]))


def test_user_client_with_given_distribution_sends_no_request() -> None:
    import opensearchpy

    url = f"http://127.0.0.1:{_closed_port()}"
    client = opensearchpy.OpenSearch(hosts=[url])
    backend = connect(client, distribution="opensearch")  # positional works too
    assert backend.client is client and backend.config.urls == (url,) and not backend.info.detected
    backend.close()  # the caller's client stays theirs: not closed
    assert client.transport.connection_pool.connections


def test_async_api_is_exported_and_typed() -> None:
    import stair_es.engine as engine

    for name in ("AsyncBackend", "AsyncSearcher", "AsyncIndexer", "connect_async"):
        assert name in engine.__all__ and hasattr(engine, name)
    assert (Path(stair_es.__file__).parent / "py.typed").is_file()
    pyproject = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    assert '"stair_es" = ["py.typed"]' in pyproject
