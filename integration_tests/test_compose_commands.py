"""The demo cluster's loader and page, run as docker-compose.yml runs them, on the real local engine.

No Docker engine runs in CI, so this is the compose file's twin: the `loader` and `serve` services'
commands and environment (engine URL, bind address and port swapped for the test's own), with
the data volume as a temporary STAIR_ES_CACHE. The Elasticsearch profile runs the same commands
(tests/test_compose.py checks that), so the Elasticsearch CI pass covers it too.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from serve_support import free_port, serve_process

yaml = pytest.importorskip("yaml")
pytest.importorskip("fastapi")

REPO = Path(__file__).resolve().parents[1]
# what the containers get from compose and the test replaces: where the engine is, where to bind
REPLACED = {"STAIR_ES_URL", "STAIR_ES_SERVE_HOST", "STAIR_ES_SERVE_PORT"}


def _service(name: str) -> tuple[list[str], dict[str, str]]:
    service = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"][name]
    defaults = [re.sub(r"\$\{[A-Za-z_][A-Za-z0-9_]*:-([^}]*)\}", r"\1", c) for c in service["command"]]
    env = {k: str(v) for k, v in service["environment"].items() if k not in REPLACED}
    return defaults, env


def _get(url: str) -> tuple[int, bytes, str]:
    with urllib.request.urlopen(url, timeout=30) as resp:
        return resp.status, resp.read(), resp.headers.get("content-type", "")


def test_compose_loader_then_serve_on_the_local_engine(engine_url: str, tmp_path: Path):
    from stair_es.demo import DEMO_INDEX
    from stair_es.engine import connect

    loader_cmd, loader_env = _service("loader")
    serve_cmd, serve_env = _service("serve")
    volume = {"STAIR_ES_CACHE": str(tmp_path / "data"), "STAIR_ES_URL": engine_url}
    backend = connect(urls=engine_url)
    backend.delete_index(DEMO_INDEX)  # the demo owns this index; start from nothing, as a new volume does
    try:
        loaded = subprocess.run(
            [sys.executable, "-m", "stair_es_cli.main", *loader_cmd],
            env={**_base_env(), **loader_env, **volume},
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert loaded.returncode == 0, loaded.stdout[-3000:] + loaded.stderr[-3000:]
        images = int(loader_cmd[loader_cmd.index("--images") + 1])
        backend.refresh(DEMO_INDEX)
        assert backend.count(DEMO_INDEX) == images  # the two broken files were reported, not indexed

        port = free_port()
        env = {**serve_env, **volume, "STAIR_ES_SERVE_HOST": "127.0.0.1", "STAIR_ES_SERVE_PORT": str(port)}
        with serve_process(serve_cmd, env, port) as base:
            status, body, _ = _get(base + "/api/health")
            assert json.loads(body)["indexes"][DEMO_INDEX]["docs"] == images
            status, body, _ = _get(base + "/api/search?q=pink&k=5")
            hits = json.loads(body)["hits"]
            assert hits and all(h["thumb"] for h in hits)  # the demo collection is the default root
            status, body, ctype = _get(base + hits[0]["thumb"])
            assert status == 200 and ctype == "image/jpeg" and body[:2] == b"\xff\xd8"
    finally:
        backend.delete_index(DEMO_INDEX)
        backend.close()


def _base_env() -> dict[str, str]:
    import os

    return dict(os.environ)
