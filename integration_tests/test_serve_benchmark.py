"""benchmarks/serve_latency.py end to end on a small demo collection (its figures come from the
full 200-query run; this keeps the script working and its JSON keys stable)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "serve_latency.py"


def test_serve_latency_reports_each_mode(engine_url: str, tmp_path: Path) -> None:
    from stair_es.demo import DEMO_INDEX
    from stair_es.engine import connect

    env = {**os.environ, "STAIR_ES_URL": engine_url, "STAIR_ES_CACHE": str(tmp_path / "cache")}
    args = ["--queries", "6", "--warmup", "1", "--images", "24", "--k", "5", "--json"]
    with connect(urls=engine_url) as backend:
        backend.delete_index(DEMO_INDEX)
        try:
            done = subprocess.run(
                [sys.executable, str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=600
            )
        finally:
            backend.delete_index(DEMO_INDEX)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    result = json.loads(done.stdout)
    assert result["queries"] == 6 and result["docs"] == 24
    assert set(result["modes"]) == {"exact", "two-phase", "hybrid"}
    for mode in result["modes"].values():
        assert 0 < mode["p50_ms"] <= mode["p99_ms"]
        assert mode["engine_round_trip"]["p50_ms"] > 0 and mode["mean_hits"] > 0
    assert result["explain_encode_only"]["p50_ms"] > 0
