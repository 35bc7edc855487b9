"""What ``stair-es engine status`` and ``logs`` show about a node started by :mod:`stair_es.local.node`."""

from __future__ import annotations

import time
import urllib.error
from pathlib import Path

from stair_es.local.node import NodeState, pid_alive


def node_status(state: NodeState) -> dict:
    """Liveness and what the node says about itself."""
    info: dict = {"engine": state.engine, "version": state.version, "url": state.url, "pid": state.pid}
    info["port"], info["cluster"] = state.port, state.cluster
    info["running"] = pid_alive(state.pid, state.home)
    if info["running"]:
        try:
            # not GET /: Elasticsearch 8/9 integ-test builds answer it 405 (no rest-root module)
            health = state.get_json("/_cluster/health", timeout=3)
            info["health"] = health.get("status")
            info["distribution"] = state.engine
        except (urllib.error.URLError, OSError, ValueError) as exc:
            info["health"] = f"unreachable ({exc})"
    info["uptime_s"] = round(time.time() - state.started_at, 1)
    info["log"] = state.log_file
    info["data_dir"] = state.data_dir
    return info


def tail_log(state: NodeState, lines: int = 50) -> str:
    path = Path(state.log_file)
    if not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
