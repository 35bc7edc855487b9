"""The real engine for integration tests: never a mock, never a silent skip.

``STAIR_ES_URL`` points at a running node (``.ci/run`` starts one with ``stair-es engine up``);
without it a local OpenSearch node is started for the session on ``STAIR_ES_TEST_PORT`` (9251) and
stopped afterwards. An unreachable engine fails the tests.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "integration_tests" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.loads(resp.read().decode())


def _root(url: str) -> dict:
    """``GET /``; Elasticsearch builds without the rest-root module (Maven's 8.x/9.x zips) answer
    405 there, so the same fields are read from ``_nodes/_local`` (``rest_root``: False)."""
    try:
        return _get(url)
    except urllib.error.HTTPError as exc:
        if exc.code != 405 or exc.headers.get("X-Elastic-Product") != "Elasticsearch":
            raise
    nodes = _get(url.rstrip("/") + "/_nodes/_local?filter_path=cluster_name,nodes.*.version")
    node = next(iter(nodes["nodes"].values()))
    version = {"number": node["version"], "distribution": "elasticsearch"}
    return {"version": version, "cluster_name": nodes.get("cluster_name", ""), "rest_root": False}


@pytest.fixture(scope="session")
def engine_url() -> Iterator[str]:
    """URL of a live engine (or a cluster's node URLs, comma-separated, as stair-es takes them);
    starts (and later stops) a local node when STAIR_ES_URL is unset."""
    url = os.environ.get("STAIR_ES_URL")
    started_port = None
    if not url:
        from stair_es.local import start

        started_port = int(os.environ.get("STAIR_ES_TEST_PORT", "9251"))
        url = start(port=started_port, log=lambda m: None).url
    try:
        info = _root(url.split(",")[0])  # a cluster's nodes, comma-separated: ask the first
    except (urllib.error.URLError, OSError) as exc:
        pytest.fail(
            f"engine at {url} is unreachable ({exc}); start one with: stair-es engine up", pytrace=False
        )
    assert "version" in info, info
    yield url.rstrip("/")
    if started_port is not None:
        from stair_es.local import stop

        stop(port=started_port, log=lambda m: None)


@pytest.fixture(scope="session")
def engine_info(engine_url: str) -> dict:
    """``GET /`` of the engine under test."""
    return _root(engine_url.split(",")[0])


@pytest.fixture(scope="session")
def engine_distribution(engine_info: dict) -> str:
    return engine_info["version"].get("distribution", "elasticsearch")
