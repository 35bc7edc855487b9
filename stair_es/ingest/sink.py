"""Where documents go: the engine (through :class:`~stair_es.engine.Indexer`) or, for ``--dry-run``,
memory. Both answer "which of these ids are already indexed?" so resume works the same way."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from stair_es.engine.bulk import LoadStopped
from stair_es.engine.indexer import Document, Indexer, IndexerOptions, IndexSummary

OnFailure = Callable[[dict[str, Any]], None]


@dataclass
class SinkResult:
    """``indexed`` + failures (collected in ``failures`` or handed to ``on_failure`` as they came)
    + ``not_reached`` equals the number of documents taken; ``error``: why the load stopped early."""

    indexed: int = 0
    failures: list[dict[str, Any]] = field(default_factory=list)
    not_reached: int = 0
    error: Exception | None = None


class Sink(Protocol):
    name: str

    def existing_ids(self, ids: Sequence[str]) -> set[str]: ...

    def write(self, docs: Iterable[Document], on_failure: OnFailure | None = None) -> SinkResult: ...


class EngineSink:
    """Bulk-loads into an index; per-document engine failures come back with their reasons."""

    def __init__(
        self,
        backend: Any,
        index: str,
        options: IndexerOptions | None = None,
        compact: bool = False,
        shards: int | None = None,
        replicas: int | None = None,
    ) -> None:
        self.backend = backend
        self.name = index
        self.options = options or IndexerOptions()
        self.compact = compact  # a new index keeps tokens out of _source, weights shifted
        self.layout = {"shards": shards, "replicas": replicas}  # a new index's; None: 1 shard, 0 replicas
        self.layout_note: str | None = None  # set when an existing index has another layout
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
            self._check_layout()
            return "existing"
        layout = {k: v for k, v in self.layout.items() if v is not None}
        try:
            self.backend.create_index(self.name, meta, tokens_in_source=not self.compact, **layout)
        except EngineError:
            if not self.backend.index_exists(self.name):
                raise
            self.backend.check_model(self.name, model_id, vocab_hash)
            return "existing"
        self._can_have_docs = False  # new and empty: no lookups needed
        return "recreated" if existed else "created"

    def _check_layout(self) -> None:
        wanted = {k: v for k, v in self.layout.items() if v is not None}
        if not wanted:
            return
        settings = self.backend.get_settings(self.name)
        have = {"shards": settings.get("number_of_shards"), "replicas": settings.get("number_of_replicas")}
        if any(str(have[k]) != str(v) for k, v in wanted.items()):
            self.layout_note = (
                f"index '{self.name}' exists with {have['shards']} shard(s) and {have['replicas']} "
                "replica(s): --shards/--replicas apply to new indexes (replicas can change: "
                f'PUT /{self.name}/_settings {{"index": {{"number_of_replicas": N}}}})'
            )

    def existing_ids(self, ids: Sequence[str]) -> set[str]:
        if not ids or not self._can_have_docs:
            return set()
        body = {"query": {"ids": {"values": list(ids)}}, "_source": False, "size": len(ids)}
        resp = self.backend.search(self.name, body)
        return {str(hit["_id"]) for hit in resp["hits"]["hits"]}

    def write(self, docs: Iterable[Document], on_failure: OnFailure | None = None) -> SinkResult:
        """Load ``docs``; never raises for a load that stopped early (``error`` says why), so that
        the caller can always settle its counts. Failures reach ``on_failure`` as they happen."""
        result = SinkResult()
        forwarded = {"failed": 0}

        def record(entry: dict[str, Any]) -> None:
            if entry.get("kind") != "not_reached":
                forwarded["failed"] += 1
            (on_failure or result.failures.append)(entry)

        indexer = Indexer(self.backend, self.name, options=self.options, on_failure=record)
        try:
            summary = indexer.index_documents(docs)
        except LoadStopped as exc:
            summary, result.error = exc.summary, exc
        result.indexed, result.not_reached = summary.indexed, summary.not_reached
        for _ in range(max(0, summary.failed + summary.skipped - forwarded["failed"])):
            record({"stage": "engine", "reason": "failed without a recorded reason"})  # counts add up
        return result


class MemorySink:
    """Keeps ``(id, _source)`` pairs (exactly what would be sent) instead of writing: ``--dry-run``."""

    def __init__(self, name: str = "dry-run", existing: Iterable[str] = ()) -> None:
        self.name = name
        self.existing = set(existing)
        self.sources: dict[str, dict[str, Any]] = {}

    def existing_ids(self, ids: Sequence[str]) -> set[str]:
        return self.existing.intersection(ids)

    def write(self, docs: Iterable[Document], on_failure: OnFailure | None = None) -> SinkResult:
        indexer = Indexer(None, self.name)  # type: ignore[arg-type]  # prepare() never touches the backend
        summary = IndexSummary(index=self.name)
        result = SinkResult()
        for doc in docs:
            try:
                doc_id, source = indexer.prepare(doc, summary)
            except (ValueError, TypeError) as exc:
                entry = {"id": doc.id, "path": doc.path, "stage": "prepare", "reason": str(exc)}
                (on_failure or result.failures.append)(entry)
                continue
            self.sources[doc_id] = source
            self.existing.add(doc_id)
            result.indexed += 1
        return result
