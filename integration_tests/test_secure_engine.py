"""Auth and TLS against a real secured Elasticsearch node (x-pack security, HTTPS, certutil CA).

The node is started here, once per CI run, on ``STAIR_ES_SECURE_TEST_PORT`` (default 9275) with
``stair_es.local.start(secure=True)`` (what ``stair-es engine up --secure`` runs), Elasticsearch
``STAIR_ES_SECURE_TEST_VERSION`` (default: the newest provisioned). Every command's output, the
library's log records, exception messages and the failures file are searched for the password, the
API key and an ``Authorization`` header: none may appear.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from stair_es.local.distributions import DEFAULT_ELASTICSEARCH_VERSION

PORT = int(os.environ.get("STAIR_ES_SECURE_TEST_PORT", "9275"))
VERSION = os.environ.get("STAIR_ES_SECURE_TEST_VERSION", DEFAULT_ELASTICSEARCH_VERSION)
pytestmark = pytest.mark.secure


@pytest.fixture(scope="module")
def node() -> Iterator[dict]:
    from stair_es.local import start, stop

    # data in the instance folder: the node may run as the unprivileged stair-es user, who cannot
    # enter pytest's root-owned temporary folders
    state = start(engine="elasticsearch", version=VERSION, port=PORT, secure=True, log=lambda m: None)
    try:
        password = Path(state.password_file).read_text().strip()
        yield {"url": state.url, "ca": state.ca_certs, "user": state.username, "password": password}
    finally:
        stop(port=PORT, log=lambda m: None)


@pytest.fixture(scope="module")
def secrets_seen() -> list[str]:
    """Every secret the tests use; the last test greps all captured text for each of them."""
    return []


@pytest.fixture(scope="module")
def captured() -> list[str]:
    return []


def _cli(env_extra: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STAIR_ES_")}
    env.update(env_extra)
    # the CLI with every library logger at DEBUG (elastic_transport, urllib3, stair_es) on stderr
    code = (
        "import logging; logging.basicConfig(level=logging.DEBUG); from stair_es_cli.main import cli; cli()"
    )
    return subprocess.run(
        [sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=300
    )


def _basic(node: dict, **over: str) -> dict[str, str]:
    env = {
        "STAIR_ES_URL": node["url"],
        "STAIR_ES_CA_CERTS": node["ca"],
        "STAIR_ES_USER": node["user"],
        "STAIR_ES_PASSWORD": node["password"],
    }
    env.update(over)
    return {k: v for k, v in env.items() if v}


def _one_error_line(proc: subprocess.CompletedProcess) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


@pytest.fixture(scope="module")
def index(node: dict, tmp_path_factory: pytest.TempPathFactory, captured: list[str]) -> dict:
    """Token maps indexed through the CLI over HTTPS with basic auth (and a failures file)."""
    name = f"stair-secure-{uuid.uuid4().hex[:8]}"
    folder = tmp_path_factory.mktemp("secure-tokens")
    tokens = folder / "tokens.jsonl"
    rows = [
        {"id": "a", "kind": "image", "tokens": {"dog": 1.5, "cat": 0.2}},
        {"id": "b", "kind": "image", "tokens": {"cat": 1.0}},
        {"id": "bad", "kind": "image"},  # no token map: one line in the failures file
    ]
    tokens.write_text("".join(json.dumps(r) + "\n" for r in rows))
    failures = folder / "failures.jsonl"
    proc = _cli(
        _basic(node),
        *("index", "tokens", str(tokens), "--index", name, "--model-id", "m", "--vocab-hash", "h"),
        *("--failures", str(failures)),
    )
    captured += [proc.stdout, proc.stderr, failures.read_text()]
    assert proc.returncode != 0 and failures.read_text().strip(), proc.stderr  # one line failed
    return {"name": name, "failures": failures}


def _search(env: dict[str, str], index: str) -> subprocess.CompletedProcess:
    return _cli(env, "search", "--tokens", '{"dog": 2, "cat": 1}', "--index", index, "--json")


def test_basic_auth_over_verified_tls(node: dict, index: dict, captured: list[str]) -> None:
    proc = _search(_basic(node), index["name"])
    captured += [proc.stdout, proc.stderr]
    assert proc.returncode == 0, proc.stderr
    hits = json.loads(proc.stdout)["hits"]
    assert [h["id"] for h in hits] == ["a", "b"]


def test_wrong_password_is_one_line_exit_3(node: dict, index: dict, captured: list[str]) -> None:
    proc = _search(_basic(node, STAIR_ES_PASSWORD="not-the-password"), index["name"])
    captured += [proc.stdout, proc.stderr]
    assert proc.returncode == 3
    assert "refused the credentials (HTTP 401)" in _one_error_line(proc)


def test_unknown_api_key_is_one_line_exit_3(
    node: dict, index: dict, captured: list[str], secrets_seen: list[str]
) -> None:
    """``--api-key`` reaches the node as an ``ApiKey`` header, and a key it does not know (revoked, or
    never issued) is refused with one line. Issuing a real key needs the ``.security`` index, whose
    analyzers live in analysis-common, which Maven's 8.x/9.x zips lack (no jar is published)."""
    key_id, key = "stair-" + uuid.uuid4().hex[:8], uuid.uuid4().hex
    encoded = base64.b64encode(f"{key_id}:{key}".encode()).decode()
    secrets_seen += [key, encoded]
    env = _basic(node, STAIR_ES_USER="", STAIR_ES_PASSWORD="")
    for given in (f"{key_id}:{key}", encoded):
        proc = _cli(env, "search", "--tokens", '{"dog": 1}', "--index", index["name"], "--api-key", given)
        captured += [proc.stdout, proc.stderr]
        assert proc.returncode == 3, proc.stderr
        assert "refused the credentials (HTTP 401)" in _one_error_line(proc)


def test_untrusted_ca_is_one_line_exit_3(node: dict, index: dict, captured: list[str]) -> None:
    proc = _search(_basic(node, STAIR_ES_CA_CERTS=""), index["name"])  # the system CAs only
    captured += [proc.stdout, proc.stderr]
    assert proc.returncode == 3
    assert "TLS certificate not trusted" in _one_error_line(proc)


def test_wrong_hostname_is_one_line_exit_3(node: dict, index: dict, captured: list[str]) -> None:
    url = node["url"].replace("localhost", "127.0.0.1")  # the certificate names localhost only
    proc = _search(_basic(node, STAIR_ES_URL=url), index["name"])
    captured += [proc.stdout, proc.stderr]
    assert proc.returncode == 3
    assert "TLS hostname mismatch" in _one_error_line(proc)


def test_library_errors_and_logs_hold_no_secret(
    node: dict, caplog: pytest.LogCaptureFixture, captured: list[str]
) -> None:
    from stair_es.engine import connect
    from stair_es.errors import EngineError

    caplog.set_level(logging.DEBUG)
    with connect(
        urls=node["url"], username=node["user"], password=node["password"], ca_certs=node["ca"]
    ) as b:
        assert b.info.distribution == "elasticsearch" and b.token_field_type() == "sparse_vector"
        with pytest.raises(EngineError) as missing:
            b.search("no-such-index-here", {"query": {"match_all": {}}})
        captured.append(str(missing.value))
    with pytest.raises(EngineError) as refused:
        connect(urls=node["url"], username=node["user"], password=node["password"] + "x", ca_certs=node["ca"])
    captured += [str(refused.value), caplog.text]


def test_no_secret_in_any_captured_text(node: dict, captured: list[str], secrets_seen: list[str]) -> None:
    """Runs last in this module: every output above, grepped for every secret."""
    assert len(captured) >= 10  # the tests above ran and recorded their output
    basic = base64.b64encode(f"{node['user']}:{node['password']}".encode()).decode()
    for text in captured:
        for secret in [node["password"], basic, *secrets_seen]:
            assert secret not in text
        # elastic_transport's DEBUG log names the header but masks its value: no value may show
        for line in text.lower().splitlines():
            if "authorization" in line:
                assert line.split("authorization", 1)[1].strip(" :").split()[-1] == "<hidden>", line
