"""Where documents go: the engine (through :class:`~stair_es.engine.Indexer`) or, for ``--dry-run``,
memory. Both answer "which of these ids are already indexed?" so resume works the same way."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from stair_es.engine.indexer import Document, Indexer, IndexerOptions, IndexSummary


@dataclass
class SinkResult:
    """``indexed + len(failures)`` equals the number of documents written."""

    indexed: int = 0
    failures: list[dict[str, Any]] = field(default_factory=list)


class Sink(Protocol):
    name: str

    def existing_ids(self, ids: Sequence[str]) -> set[str]: ...

    def write(self, docs: Iterable[Document]) -> SinkResult: ...


class EngineSink:
    """Bulk-loads into an index; per-document engine failures come back with their reasons."""

    def __init__(
        self, backend: Any, index: str, options: IndexerOptions | None = None, compact: bool = False
    ) -> None:
        self.backend = backend
        self.name = index
        self.options = options or IndexerOptions()
        self.compact = compact  # a new index keeps tokens out of _source, weights shifted
        self._can_have_docs = True

    def prepare(
        self,
        model_id: str,
        vocab_hash: str,
        vocab_size: int | None,
        recreate: bool,
        model_path: str | None = None,
    ) -> str:
        """Create the index for this model (or check an existing one was built with it).

        Returns "created", "recreated" or "existing". Several shards starting at once may race to
        create the index; the loser finds it existing and checks the model like any later run.
        """
        from stair_es.engine import ModelMeta
        from stair_es.errors import EngineError

        meta = ModelMeta(model_id, vocab_hash, vocab_size, model_path)
        existed = self.backend.index_exists(self.name)
        if existed and recreate:
            self.backend.delete_index(self.name)
        if existed and not recreate:
            self.backend.check_model(self.name, model_id, vocab_hash)
            self.backend.refresh(self.name)  # a killed run may have left docs unrefreshed
            return "existing"
        try:
            self.backend.create_index(self.name, meta, tokens_in_source=not self.compact)
        except EngineError:
            if not self.backend.index_exists(self.name):
                raise
            self.backend.check_model(self.name, model_id, vocab_hash)
            return "existing"
        self._can_have_docs = False  # new and empty: no lookups needed
        return "recreated" if existed else "created"

    def existing_ids(self, ids: Sequence[str]) -> set[str]:
        if not ids or not self._can_have_docs:
            return set()
        body = {"query": {"ids": {"values": list(ids)}}, "_source": False, "size": len(ids)}
        resp = self.backend.search(self.name, body)
        return {str(hit["_id"]) for hit in resp["hits"]["hits"]}

    def write(self, docs: Iterable[Document]) -> SinkResult:
        fd, tmp = tempfile.mkstemp(prefix="stair-es-bulk-", suffix=".jsonl")
        os.close(fd)
        try:
            summary = Indexer(
                self.backend, self.name, failures_path=tmp, options=self.options
            ).index_documents(docs)
            failures = _read_failures(Path(tmp))
        finally:
            Path(tmp).unlink(missing_ok=True)
        return SinkResult(indexed=summary.indexed, failures=_balance(summary, failures))


class MemorySink:
    """Keeps ``(id, _source)`` pairs (exactly what would be sent) instead of writing: ``--dry-run``."""

    def __init__(self, name: str = "dry-run", existing: Iterable[str] = ()) -> None:
        self.name = name
        self.existing = set(existing)
        self.sources: dict[str, dict[str, Any]] = {}

    def existing_ids(self, ids: Sequence[str]) -> set[str]:
        return self.existing.intersection(ids)

    def write(self, docs: Iterable[Document]) -> SinkResult:
        indexer = Indexer(None, self.name)  # type: ignore[arg-type]  # prepare() never touches the backend
        summary = IndexSummary(index=self.name)
        result = SinkResult()
        for doc in docs:
            try:
                doc_id, source = indexer.prepare(doc, summary)
            except (ValueError, TypeError) as exc:
                result.failures.append(
                    {"id": doc.id, "path": doc.path, "stage": "prepare", "reason": str(exc)}
                )
                continue
            self.sources[doc_id] = source
            self.existing.add(doc_id)
            result.indexed += 1
        return result


def _read_failures(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def _balance(summary: IndexSummary, failures: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The indexer writes one line per failed/skipped document; if that ever disagrees with its
    counts, add placeholders so the run's totals still add up (and say so)."""
    missing = summary.failed + summary.skipped - len(failures)
    for _ in range(max(0, missing)):
        failures.append({"stage": "engine", "reason": "failed without a recorded reason"})
    return failures
