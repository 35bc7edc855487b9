"""No secret is ever printed: credentials in ``--url``/``STAIR_ES_URL`` are taken out of the URL
before anything can show it (messages, errors, timeouts, doctor)."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from click.testing import CliRunner

from stair_es.engine import ConnectionConfig
from stair_es.engine.backend import detect
from stair_es.errors import EngineError, UsageError
from stair_es_cli.main import main

SECRET = "S3cret"


def _refused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again: connections are refused


@pytest.fixture()
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never answers: every request times out."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        yield s.getsockname()[1]


def test_describe_and_urls_hold_no_credentials() -> None:
    config = ConnectionConfig(urls=f"http://admin:{SECRET}@127.0.0.1:9200,https://admin:{SECRET}@h:9243/")
    assert SECRET not in config.describe() and "admin" not in config.describe()
    assert config.urls == ("http://127.0.0.1:9200", "https://h:9243")
    # the credentials are kept, as user and password, not lost
    assert (config.username, config.password) == ("admin", SECRET)
    assert "Authorization" in config.auth_headers()
    encoded = ConnectionConfig(urls="https://u%3Ax:p%40ss@h:9243")
    assert (encoded.username, encoded.password) == ("u:x", "p@ss") and "p%40ss" not in encoded.describe()


def test_url_credentials_conflicting_with_user_flags_are_refused() -> None:
    with pytest.raises(UsageError, match="credentials") as err:
        ConnectionConfig(urls=f"http://admin:{SECRET}@h:9200", username="other", password="x")
    assert SECRET not in str(err.value)
    with pytest.raises(UsageError) as err2:
        ConnectionConfig(urls=[f"http://a:{SECRET}@h:1", "http://b:other@h:2"])
    assert SECRET not in str(err2.value)


def test_redact_urls_in_any_text() -> None:
    from stair_es.engine.config import redact_urls

    text = f"failed: GET http://admin:{SECRET}@10.0.0.1:9200/x and https://k@h/ (user@example.org)"
    out = redact_urls(text)
    assert SECRET not in out and "https://k@" not in out
    assert "http://***@10.0.0.1:9200/x" in out and "user@example.org" in out


def test_refused_and_timed_out_detection_messages_hold_no_secret(silent_port: int) -> None:
    for port, timeout in ((_refused_port(), 5.0), (silent_port, 0.3)):
        with pytest.raises(EngineError) as err:
            detect(ConnectionConfig(urls=f"http://admin:{SECRET}@127.0.0.1:{port}", timeout=timeout))
        assert SECRET not in str(err.value) and f"127.0.0.1:{port}" in str(err.value)


@pytest.mark.parametrize("timeout", ["5", "0.3"])
def test_search_with_credentials_in_the_url_never_prints_them(silent_port: int, timeout: str) -> None:
    port = _refused_port() if timeout == "5" else silent_port
    url = f"http://admin:{SECRET}@127.0.0.1:{port}"
    for env in ({}, {"STAIR_ES_URL": url}):
        args = ["search", "--tokens", '{"red": 1}', "--timeout", timeout]
        result = CliRunner().invoke(main, args + ([] if env else ["--url", url]), env=env)
        assert result.exit_code == 3, result.output
        assert SECRET not in result.output and "cannot reach" in result.output


def test_doctor_never_prints_url_credentials(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STAIR_ES_CACHE", str(tmp_path))
    url = f"http://admin:{SECRET}@127.0.0.1:{_refused_port()}"
    result = CliRunner().invoke(
        main, ["doctor", "--url", url, "--timeout", "2"], env={"STAIR_ES_MODEL": None}
    )
    assert result.exit_code == 1
    assert SECRET not in result.output and "admin" not in result.output
