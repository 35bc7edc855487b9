"""The bulk loop's decisions against a scripted stand-in for the bulk API (the real engine is in
integration_tests/test_faults.py): a write block stops at once, a dead engine stops with every
unacknowledged document counted, relaxed settings are noted in _meta and restored by the next run."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from opensearchpy.exceptions import ConnectionError as OSConnectionError
from opensearchpy.exceptions import TransportError

from stair_es.engine.backend import Backend, ClusterInfo
from stair_es.engine.bulk import LoadStopped, sort_answer, to_entry
from stair_es.engine.config import ConnectionConfig
from stair_es.engine.indexer import Document, Indexer, IndexerOptions
from stair_es.engine.relax import MARKER

BLOCK = {
    "type": "cluster_block_exception",
    "reason": "index [i] blocked by: [TOO_MANY_REQUESTS/12/disk usage exceeded flood-stage watermark, "
    "index has read-only-allow-delete block];",
}


class ScriptedEngine:
    """Keeps settings, _meta and documents; ``answer(n, ids)`` decides the n-th bulk request."""

    def __init__(self, answer: Callable[[int, list[str]], Any] | None = None) -> None:
        self.answer = answer or (lambda n, ids: None)
        self.settings: dict[str, Any] = {"refresh_interval": "1s", "number_of_replicas": "1"}
        self.meta: dict[str, Any] = {}
        self.stored: set[str] = set()
        self.requests = 0
        self.dead = False
        self.indices = self

    def _alive(self) -> None:
        if self.dead:
            raise OSConnectionError("N/A", "Connection refused", None)

    # indices API
    def exists(self, index: str) -> bool:
        return True

    def get_mapping(self, index: str) -> dict:
        self._alive()
        return {index: {"mappings": {"_meta": dict(self.meta)}}}

    def put_mapping(self, index: str, body: dict) -> dict:
        self._alive()
        self.meta = dict(body["_meta"])
        return {}

    def get_settings(self, index: str) -> dict:
        self._alive()
        return {index: {"settings": {"index": dict(self.settings)}}}

    def put_settings(self, index: str, body: dict) -> dict:
        self._alive()
        self.settings.update(body["index"])
        return {}

    def refresh(self, index: str) -> dict:
        self._alive()
        return {}

    # document API
    def bulk(self, body: str, **_: Any) -> dict:
        self._alive()
        lines = body.strip("\n").split("\n")
        ids = [json.loads(line)["index"]["_id"] for line in lines[::2]]
        self.requests += 1
        scripted = self.answer(self.requests, ids)
        if isinstance(scripted, Exception):
            raise scripted
        items = []
        for doc_id in ids:
            error = scripted(doc_id) if callable(scripted) else None
            if error is None:
                self.stored.add(doc_id)
                items.append({"index": {"_id": doc_id, "status": 201, "result": "created"}})
            else:
                items.append({"index": {"_id": doc_id, "status": error[0], "error": error[1]}})
        return {"errors": any("error" in i["index"] for i in items), "items": items}


class ScriptedBackend(Backend):
    def __init__(self, engine: ScriptedEngine) -> None:
        super().__init__(ConnectionConfig(), ClusterInfo("opensearch", "3.8.0"))
        self.client = engine

    def _error_status(self, exc: BaseException) -> int | None:
        status = getattr(exc, "status_code", None)
        return status if isinstance(status, int) else None


def docs(n: int) -> list[Document]:
    return [Document(image_tokens={f"t{i % 7}": 1.0 + i}, id=f"d{i}", path=f"{i}.png") for i in range(n)]


def _counts_add_up(summary: Any) -> bool:
    return summary.indexed + summary.failed + summary.skipped + summary.not_reached == summary.total


def test_a_write_block_stops_the_load_at_once_and_counts_add_up(tmp_path: Path) -> None:
    engine = ScriptedEngine(lambda n, ids: (lambda doc_id: (429, BLOCK)) if n >= 3 else None)
    failures = tmp_path / "failures.jsonl"
    opts = IndexerOptions(chunk_size=10, initial_backoff=5.0)  # a retry would take seconds
    start = time.monotonic()
    with pytest.raises(LoadStopped, match="refuses writes .*cluster_block_exception") as err:
        Indexer(ScriptedBackend(engine), "i", failures_path=failures, options=opts).index_documents(docs(100))
    assert time.monotonic() - start < 2 and engine.requests == 3  # no retry of a permanent block
    summary = err.value.summary
    # total: the documents taken from the input (the rest were never read); the blocked chunk and
    # the documents prepared ahead are "not reached", each with a line in the failures file
    assert summary.indexed == 20 == len(engine.stored) and summary.total >= 30 and _counts_add_up(summary)
    rows = [json.loads(line) for line in failures.read_text().splitlines()]
    assert len(rows) == summary.not_reached >= 10 and {r["kind"] for r in rows} == {"not_reached"}


def test_transient_429s_are_retried_and_nothing_is_lost() -> None:
    rejected: set[str] = set()

    def item(doc_id: str) -> Any:
        if doc_id.endswith("3") and doc_id not in rejected:  # a full write queue, once per document
            rejected.add(doc_id)
            return 429, {"type": "es_rejected_execution_exception", "reason": "queue full"}
        return None

    def answer(n: int, ids: list[str]) -> Any:
        if n == 2:
            return TransportError(429, "es_rejected_execution_exception", {})  # the whole request
        return item

    engine = ScriptedEngine(answer)
    opts = IndexerOptions(chunk_size=10, initial_backoff=0.01, max_backoff=0.01)
    summary = Indexer(ScriptedBackend(engine), "i", options=opts).index_documents(docs(50))
    assert summary.indexed == 50 and summary.failed == 0 and len(engine.stored) == 50
    assert rejected  # some items were rejected once, and retried


def test_engine_death_counts_the_unacknowledged_and_the_next_run_restores_settings(tmp_path: Path) -> None:
    def answer(n: int, ids: list[str]) -> Any:
        if n == 3:
            engine.dead = True
            raise OSConnectionError("N/A", "Connection refused", None)
        return None

    engine = ScriptedEngine(answer)
    failures = tmp_path / "failures.jsonl"
    opts = IndexerOptions(chunk_size=10, relax_after=5)
    with pytest.raises(LoadStopped, match="stopped answering") as err:
        Indexer(ScriptedBackend(engine), "i", failures_path=failures, options=opts).index_documents(docs(60))
    summary = err.value.summary
    assert summary.indexed == 20 and _counts_add_up(summary) and summary.not_reached == summary.total - 20
    rows = [json.loads(line) for line in failures.read_text().splitlines()]
    assert len(rows) == summary.not_reached and all(r["id"].startswith("d") for r in rows)
    # the relaxed settings could not be restored on a dead engine: the note in _meta says what to restore
    assert engine.settings["refresh_interval"] == "-1"
    assert engine.meta[MARKER]["previous"] == {"refresh_interval": "1s", "number_of_replicas": "1"}

    engine.dead, engine.answer = False, lambda n, ids: None
    again = Indexer(ScriptedBackend(engine), "i", options=IndexerOptions(relax_after=None)).index_documents(
        docs(3)
    )
    assert again.indexed == 3
    assert (
        engine.settings == {"refresh_interval": "1s", "number_of_replicas": "1"} and MARKER not in engine.meta
    )


def test_a_second_load_never_takes_minus_one_for_the_value_to_restore() -> None:
    engine = ScriptedEngine()
    backend = ScriptedBackend(engine)
    # what a killed load left behind: relaxed settings and its note
    engine.settings = {"refresh_interval": "-1", "number_of_replicas": 0}
    engine.meta = {"stair_es": {"model_id": "m"}, MARKER: {"previous": {"refresh_interval": "5s",
                   "number_of_replicas": "2"}, "pid": 1, "host": "h", "since": "t"}}  # fmt: skip
    Indexer(backend, "i", options=IndexerOptions(chunk_size=10, relax_after=5)).index_documents(docs(30))
    assert engine.settings == {"refresh_interval": "5s", "number_of_replicas": "2"}
    assert engine.meta == {"stair_es": {"model_id": "m"}}  # other _meta keys are kept


def test_sort_answer() -> None:
    entries = [to_entry({"_index": "i", "_id": str(n), "_source": "{}"}) for n in range(4)]
    resp = {"items": [
        {"index": {"_id": "0", "status": 201}},
        {"index": {"_id": "1", "status": 429, "error": {"type": "es_rejected_execution_exception"}}},
        {"index": {"_id": "2", "status": 400, "error": {"type": "mapper_parsing_exception"}}},
        {"index": {"_id": "3", "status": 503, "error": {"type": "unavailable_shards_exception", "reason": "x"}}},
    ]}  # fmt: skip
    out = sort_answer(entries, resp, may_retry=True, index="i")
    assert [ok for ok, _ in out.results] == [True, False] and [e.doc_id for e in out.retry] == ["1"]
    assert out.stop is not None and "no active copy" in out.stop
    last = sort_answer(entries[1:2], {"items": resp["items"][1:2]}, may_retry=False, index="i")
    assert [ok for ok, _ in last.results] == [False] and not last.retry  # retries used up: failed


def test_doctor_reports_settings_left_by_an_interrupted_load() -> None:
    from stair_es_cli.doctor_cmd import FAIL, OK, WARN, Report, check_load_settings

    engine = ScriptedEngine()
    backend = ScriptedBackend(engine)
    report = Report()
    check_load_settings(report, backend, "i")
    engine.settings["refresh_interval"] = "-1"
    check_load_settings(report, backend, "i")
    engine.meta[MARKER] = {"previous": {"refresh_interval": "1s", "number_of_replicas": "1"}, "pid": 7}
    check_load_settings(report, backend, "i")
    assert [c.status for c in report.checks] == [OK, WARN, FAIL]
    assert "pid 7" in report.checks[2].detail and '"refresh_interval": "1s"' in report.checks[2].hint
