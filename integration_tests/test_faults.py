"""Faults injected into real loads on a real node this module starts (and kills) itself (issue 12).

- the engine is killed with SIGKILL mid-load, restarted, and the run resumed: nothing lost, nothing
  duplicated, settings restored, summary and failures file written by the killed run;
- the CLI is killed with SIGKILL mid-load: the next run restores the index settings (doctor reports
  them in between);
- a node with a tiny write queue is flooded into 429s: everything retried, nothing lost;
- a write block (flood-stage read_only_allow_delete, or index.blocks.write) stops the run at once.

The node runs on ``STAIR_ES_FAULT_PORTS`` (default 9270; the cluster test takes the next ports), not
on the shared test node, because it gets killed. Counts are checked against every text's id.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from stair_es.engine import Backend, ConnectionConfig, Document, connect
from stair_es.engine.indexer import document_id
from stair_es.engine.relax import MARKER
from stair_es.local import NodeState, start, stop

pytestmark = [pytest.mark.faults, pytest.mark.timeout(900)]

PORT = int(os.environ.get("STAIR_ES_FAULT_PORTS", "9270"))
# one write thread and one queue slot: a bulk request touching 4 shards gets 429s for two of them
TINY_WRITE_QUEUE = {"thread_pool.write.size": 1, "thread_pool.write.queue_size": 1}
TEXTS = 1500
WORDS = "red green blue yellow circle square triangle small large two three one left right".split()


@dataclass
class FaultNode:
    port: int
    data: Path
    state: NodeState

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def kill(self) -> None:
        """SIGKILL the whole engine (its process group): no shutdown, no flush."""
        os.killpg(os.getpgid(self.state.pid), signal.SIGKILL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                os.killpg(self.state.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)

    def restart(self) -> None:
        self.state = start(port=self.port, data_dir=self.data, settings=TINY_WRITE_QUEUE, log=lambda m: None)


@pytest.fixture(scope="module")
def node() -> Iterator[FaultNode]:
    data = Path(tempfile.mkdtemp(prefix="stair-es-fault-data-"))
    data.chmod(0o755)  # the node may run as the unprivileged stair-es user
    state = start(port=PORT, data_dir=data, settings=TINY_WRITE_QUEUE, log=lambda m: None)
    yield FaultNode(PORT, data, state)
    stop(port=PORT, log=lambda m: None)


@pytest.fixture()
def backend(node: FaultNode) -> Iterator[Backend]:
    with connect(ConnectionConfig(urls=node.url, timeout=60)) as b:
        yield b


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, set[str]]:
    """``TEXTS`` distinct texts as JSONL, and the document id each must get."""
    path = tmp_path_factory.mktemp("fault-corpus") / "texts.jsonl"
    texts = [
        " ".join(WORDS[(i * 7 + j * 3) % len(WORDS)] for j in range(6)) + f" number {i}" for i in range(TEXTS)
    ]
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    ids = {
        document_id(Document(content_hash=hashlib.sha256(t.encode()).hexdigest(), caption=t), {})
        for t in texts
    }
    assert len(ids) == TEXTS
    return path, ids


def index_cmd(
    node: FaultNode, corpus: Path, index: str, model: Path, failures: Path, *extra: str
) -> list[str]:
    return [sys.executable, "-m", "stair_es_cli.main", "index", "texts", str(corpus), "--url", node.url,
            "--index", index, "--model", str(model), "--failures", str(failures), "--json",
            "--no-progress", "--bulk-docs", "50", "--relax-after", "500", *extra]  # fmt: skip


def run(cmd: list[str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def wait_relaxed(backend: Backend, index: str, proc: subprocess.Popen[str], timeout: float = 120) -> None:
    """Until the load turned refresh off (so it is mid-load, with its note written)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        try:
            if backend.index_exists(index) and backend.get_settings(index).get("refresh_interval") == "-1":
                return
        except Exception:  # noqa: BLE001 - the index is being created
            pass
        time.sleep(0.1)
    raise AssertionError("the load never relaxed the index settings")


def all_ids(backend: Backend, index: str) -> list[str]:
    backend.refresh(index)
    body = {"query": {"match_all": {}}, "_source": False, "size": 10_000}
    return [h["_id"] for h in backend.search(index, body)["hits"]["hits"]]


def summary_of(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    return json.loads(result.stdout)


def adds_up(s: dict[str, Any]) -> bool:
    return s["indexed"] + s["skipped"] + s["failed"] + s["not_reached"] == s["discovered"]


def test_engine_killed_mid_load_then_restarted_loses_and_duplicates_nothing(
    node: FaultNode, backend: Backend, corpus, tiny_onnx_model: Path, tmp_path: Path
) -> None:
    path, expected = corpus
    failures = tmp_path / "failures.jsonl"
    cmd = index_cmd(node, path, "fault-engine-kill", tiny_onnx_model, failures)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_relaxed(backend, "fault-engine-kill", proc)
    time.sleep(1.5)  # some chunks acknowledged, more in flight
    node.kill()
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 3, err
    killed = json.loads(out)
    assert killed["stopped"] and adds_up(killed) and killed["indexed"] < TEXTS, killed
    assert "stopped early" in err and "not reached" in err and "error: " in err.splitlines()[-1]
    rows = [json.loads(line) for line in failures.read_text().splitlines()]
    assert rows and all(r["kind"] == "not_reached" for r in rows), rows[:3]  # sent, never acknowledged

    victim = plant_symlink_in_instance(node, tmp_path)
    node.restart()
    if victim is not None:  # root: the restart handed the instance to the node user, not the link's target
        assert victim.stat().st_uid == 0 and oct(victim.stat().st_mode)[-3:] == "600"
    # the killed run's relaxed settings survived the engine restart, with the note of what to restore
    assert backend.get_settings("fault-engine-kill")["refresh_interval"] == "-1"
    assert MARKER in backend.mapping_meta("fault-engine-kill")

    resumed = run(cmd)
    assert resumed.returncode == 0, resumed.stderr
    again = summary_of(resumed)
    assert adds_up(again) and again["failed"] == 0 and again["indexed"] + again["skipped_existing"] == TEXTS
    settings = backend.get_settings("fault-engine-kill")
    assert (settings["refresh_interval"], settings["number_of_replicas"]) == ("1s", "0")
    assert MARKER not in backend.mapping_meta("fault-engine-kill")
    ids = all_ids(backend, "fault-engine-kill")
    assert len(ids) == len(set(ids)) == TEXTS and set(ids) == expected  # none lost, none duplicated
    assert failures.read_text() == ""  # rewritten by the resumed run, which failed nothing
    print(f"\nengine killed: {killed['indexed']} indexed, {killed['not_reached']} not reached "
          f"({len(rows)} listed as sent, unacknowledged); resumed: {again['indexed']} indexed, "
          f"{again['skipped_existing']} already there; index: {len(ids)} docs, {len(set(ids))} distinct, "
          f"{len(expected - set(ids))} lost")  # fmt: skip


def plant_symlink_in_instance(node: FaultNode, tmp_path: Path) -> Path | None:
    """What the node user could do: a link in its instance folder to a file it must not own."""
    if os.geteuid() != 0:
        return None
    victim = tmp_path / "victim"
    victim.write_text("secret")
    victim.chmod(0o600)
    link = Path(node.state.instance_dir) / "tmp" / "planted"
    link.unlink(missing_ok=True)
    link.symlink_to(victim)
    return victim


def test_cli_killed_mid_load_the_next_run_restores_settings(
    node: FaultNode, backend: Backend, corpus, tiny_onnx_model: Path, tmp_path: Path
) -> None:
    from click.testing import CliRunner

    from stair_es_cli.main import main

    path, expected = corpus
    failures = tmp_path / "failures.jsonl"
    cmd = index_cmd(node, path, "fault-cli-kill", tiny_onnx_model, failures)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_relaxed(backend, "fault-cli-kill", proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert backend.get_settings("fault-cli-kill")["refresh_interval"] == "-1"

    doctor = CliRunner().invoke(main, ["doctor", "--url", node.url, "--index", "fault-cli-kill", "--json"])
    checks = {c["name"]: c for c in json.loads(doctor.stdout)["checks"]}
    stuck = checks["index fault-cli-kill refresh"]
    assert stuck["status"] == "fail" and f"pid {proc.pid}" in stuck["detail"], stuck

    resumed = run(cmd)
    assert resumed.returncode == 0, resumed.stderr
    assert adds_up(summary_of(resumed))
    settings = backend.get_settings("fault-cli-kill")
    assert (settings["refresh_interval"], settings["number_of_replicas"]) == ("1s", "0")
    assert MARKER not in backend.mapping_meta("fault-cli-kill")
    ids = all_ids(backend, "fault-cli-kill")
    assert len(ids) == len(set(ids)) == TEXTS and set(ids) == expected


def write_rejections(backend: Backend) -> int:
    pools = backend.client.nodes.stats(metric="thread_pool")
    return sum(n["thread_pool"]["write"]["rejected"] for n in pools["nodes"].values())


def test_a_flood_of_429s_is_retried_and_nothing_is_lost(
    node: FaultNode, backend: Backend, corpus, tiny_onnx_model: Path, tmp_path: Path
) -> None:
    path, expected = corpus
    before = write_rejections(backend)
    cmd = index_cmd(node, path, "fault-flood", tiny_onnx_model, tmp_path / "f.jsonl", "--shards", "4",
                    "--bulk-docs", "150")  # fmt: skip
    result = run(cmd)
    assert result.returncode == 0, result.stderr
    summary = summary_of(result)
    assert summary["indexed"] == TEXTS and summary["failed"] == 0
    rejected = write_rejections(backend) - before
    assert rejected > 0  # the engine did answer 429 (es_rejected_execution)
    print(f"\n429 flood: {rejected} shard-level write rejections, all retried; {summary['indexed']} indexed")
    ids = all_ids(backend, "fault-flood")
    assert len(ids) == len(set(ids)) == TEXTS and set(ids) == expected


@pytest.mark.parametrize(
    ("block", "status"), [("index.blocks.read_only_allow_delete", 429), ("index.blocks.write", 403)]
)
def test_a_write_block_stops_the_run_early_and_counts_add_up(
    node: FaultNode, backend: Backend, corpus, tiny_onnx_model: Path, tmp_path: Path, block: str, status: int
) -> None:
    path, _ = corpus
    index = f"fault-block-{status}"
    failures = tmp_path / "failures.jsonl"
    empty = tmp_path / "one.jsonl"
    empty.write_text(json.dumps({"text": "a block test"}) + "\n")
    assert run(index_cmd(node, empty, index, tiny_onnx_model, failures)).returncode == 0  # creates it
    backend.put_settings(index, {block.removeprefix("index."): True})
    try:
        start_time = time.monotonic()
        result = run(index_cmd(node, path, index, tiny_onnx_model, failures), timeout=120)
        seconds = time.monotonic() - start_time
    finally:
        backend.put_settings(index, {block.removeprefix("index."): None})
    assert result.returncode == 3, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "refuses writes" in last and "cluster_block_exception" in last
    summary = summary_of(result)
    assert summary["indexed"] == 0 and summary["stopped"] and adds_up(summary)
    # the corpus is read as a stream: what was read before the stop is "discovered", none of it indexed
    assert summary["not_reached"] == summary["discovered"] - summary["skipped"] - summary["failed"] > 0
    assert seconds < 60, f"took {seconds:.1f}s to stop"  # retried 5 times per chunk it took minutes
    print(f"\nwrite block {block}: stopped after {seconds:.1f}s (whole command, model load included)")
