"""``stair-es index images --ray`` on a real local Ray cluster (a head and one worker node on loopback,
started here and stopped after) into a real engine: the same document ids, counts and failure records
as the single-process run, and a run killed halfway resumes without loss or duplicates."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("ray", reason='needs the ray extra: pip install "stair-es[ray]"')

from stair_es.engine import ConnectionConfig, connect  # noqa: E402
from stair_es.ingest.ray_local import LocalRayCluster  # noqa: E402
from stair_es.ingest.testing import make_messy_folder  # noqa: E402

pytestmark = pytest.mark.ray
RAY_PORT = int(os.environ.get("STAIR_ES_TEST_RAY_PORT", "6400"))  # uses RAY_PORT .. RAY_PORT+79


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[LocalRayCluster]:
    with LocalRayCluster(base_port=RAY_PORT, workers=1, cpus_per_node=2) as cluster:
        yield cluster


@pytest.fixture()
def backend(engine_url: str):
    with connect(ConnectionConfig.from_env(env={}, urls=engine_url)) as b:
        yield b


@pytest.fixture()
def indexes(backend) -> Iterator[list[str]]:
    names: list[str] = []
    yield names
    for name in names:
        backend.delete_index(name)


def _cli(engine_url: str, model: Path, folder: Path, index: str, failures: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "stair_es_cli.main", "index", "images", str(folder), "--model", str(model),
            "--url", engine_url, "--index", index, "--failures", str(failures), "--json", "--no-progress",
            "--batch-size", "4", *extra]  # fmt: skip


def _run(cmd: list[str]) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode in (0, 10), result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    return json.loads(result.stdout)


def _ids(backend, index: str) -> list[str]:
    backend.refresh(index)
    body = {"query": {"match_all": {}}, "_source": False, "size": 10000}
    return sorted(hit["_id"] for hit in backend.search(index, body)["hits"]["hits"])


def _failures(path: Path) -> set[tuple[str, str, str, str]]:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return {(r["path"], r["kind"], r["stage"], r["reason"]) for r in rows}


COUNTS = ("discovered", "indexed", "skipped_existing", "skipped_duplicate", "failed", "failed_by_kind")


def test_ray_run_equals_the_single_process_run(
    engine_url: str, backend, indexes: list[str], tiny_onnx_model: Path, ray_cluster, tmp_path: Path
) -> None:
    messy = make_messy_folder(tmp_path / "photos", num_images=20)
    single, on_ray = f"test-ray-single-{uuid.uuid4().hex[:8]}", f"test-ray-{uuid.uuid4().hex[:8]}"
    indexes += [single, on_ray]
    one = _run(_cli(engine_url, tiny_onnx_model, messy.root, single, tmp_path / "single.jsonl"))
    ray_cmd = _cli(engine_url, tiny_onnx_model, messy.root, on_ray, tmp_path / "ray.jsonl")
    many = _run([*ray_cmd, f"--ray={ray_cluster.address}"])

    assert {k: many[k] for k in COUNTS} == {k: one[k] for k in COUNTS}
    assert many["balanced"] and many["indexed"] == len(messy.good) and many["failed"] == len(messy.bad)
    assert many["ray"]["nodes"] == 2 and many["ray"]["encoders"] == 2
    assert _ids(backend, on_ray) == _ids(backend, single) and len(_ids(backend, single)) == len(messy.good)
    assert _failures(tmp_path / "ray.jsonl") == _failures(tmp_path / "single.jsonl")
    assert len(_failures(tmp_path / "ray.jsonl")) == len(messy.bad)

    again = _run([*ray_cmd, f"--ray={ray_cluster.address}"])  # resume: everything is already there
    assert again["indexed"] == 0 and again["skipped_existing"] == len(messy.good) and again["balanced"]
    assert _failures(tmp_path / "ray.jsonl") == _failures(tmp_path / "single.jsonl")


def test_ray_run_killed_halfway_resumes_without_loss_or_duplicates(
    engine_url: str, backend, indexes: list[str], tiny_onnx_model: Path, ray_cluster, tmp_path: Path
) -> None:
    messy = make_messy_folder(tmp_path / "photos", num_images=120, seed=1)
    single, on_ray = f"test-ray-single-{uuid.uuid4().hex[:8]}", f"test-ray-kill-{uuid.uuid4().hex[:8]}"
    indexes += [single, on_ray]
    _run(_cli(engine_url, tiny_onnx_model, messy.root, single, tmp_path / "single.jsonl"))
    expected = _ids(backend, single)
    cmd = [*_cli(engine_url, tiny_onnx_model, messy.root, on_ray, tmp_path / "ray.jsonl"),
           "--batch-size", "2", f"--ray={ray_cluster.address}"]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    process = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True
    )
    indexed_at_kill = 0
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and process.poll() is None:
            if backend.index_exists(on_ray):
                indexed_at_kill = len(_ids(backend, on_ray))
                if indexed_at_kill > 0:
                    break
            time.sleep(0.2)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)  # the driver dies without a word: no cleanup
        process.wait(timeout=60)
    assert 0 < indexed_at_kill < len(expected), "the run was not caught halfway"

    resumed = _run(cmd)
    assert resumed["balanced"] and resumed["failed"] == len(messy.bad)
    assert resumed["skipped_existing"] + resumed["indexed"] == len(expected)
    assert resumed["skipped_existing"] >= indexed_at_kill
    assert _ids(backend, on_ray) == expected  # nothing lost, nothing twice
    assert backend.count(on_ray) == len(expected)
