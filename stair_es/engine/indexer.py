"""Bulk indexing that loses nothing: every input document ends up indexed, failed or skipped, and
every failed or skipped one is written to a failures JSONL with the reason.

Documents get deterministic ids (content hash, see :func:`document_id`) so re-running a load
overwrites instead of duplicating. Weights the engine would reject (<= 0, NaN, inf) are dropped on the
client; optional document-side pruning keeps the heaviest tokens. Large loads relax
``refresh_interval``/replicas while they run and restore them afterwards, even on errors, or, when
the process or the engine died, at the next load (:mod:`stair_es.engine.relax`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Generator, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from stair_es.ahead import prefetch
from stair_es.engine.backend import Backend
from stair_es.engine.bulk import LoadStopped, Retry, describe_doc, engine_reason, json_default, send
from stair_es.engine.mappings import CAPTION_FIELD, IMAGE_FIELD, TEXT_FIELD, IndexMeta
from stair_es.engine.relax import LoadSettings
from stair_es.errors import DocumentRejected, EngineError, ModelError, StairError
from stair_es.sparse import (
    SparseVector,
    encode_feature_name,
    min_storable_weight,
    shift_weights,
    storable_mask,
    truncate_9bit,
)

logger = logging.getLogger(__name__)

META_FIELDS = ("path", "url", "content_hash", "width", "height", "mime")


@dataclass
class Document:
    """One thing to index: an image, a text, or an image with its caption.

    Token maps use raw tokens (``u.s.``, ``##s``); feature-name escaping happens here, once.
    """

    image_tokens: SparseVector | Mapping[str, float] | None = None
    text_tokens: SparseVector | Mapping[str, float] | None = None
    caption: str | None = None
    path: str | None = None
    url: str | None = None
    content_hash: str | None = None
    width: int | None = None
    height: int | None = None
    mime: str | None = None
    user: dict[str, Any] = field(default_factory=dict)
    id: str | None = None

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> Document:
        """From a JSON record (e.g. a line of ``stair-es encode`` output); unknown keys go to ``user``."""
        known = {"image_tokens", "text_tokens", "caption", "user", "id", *META_FIELDS}
        user = dict(data.get("user") or {})
        user.update({k: v for k, v in data.items() if k not in known})
        kwargs = {k: data[k] for k in known - {"user"} if data.get(k) is not None}
        for key in ("image_tokens", "text_tokens"):
            if key in kwargs:
                kwargs[key] = _as_token_map(key, kwargs[key])
        return cls(user=user, **kwargs)


def _as_token_map(key: str, value: Any) -> SparseVector | Mapping[str, float]:
    if isinstance(value, (SparseVector, Mapping)):
        return value
    if isinstance(value, list) and all(isinstance(p, (list, tuple)) and len(p) == 2 for p in value):
        return {str(t): w for t, w in value}
    raise DocumentRejected(f"{key} must be an object token->weight or a list of [token, weight] pairs")


def _clean(tokens: SparseVector | Mapping[str, float] | None) -> tuple[SparseVector | None, int]:
    """A SparseVector of storable weights and the number of dropped entries."""
    if tokens is None:
        return None, 0
    if isinstance(tokens, SparseVector):
        keep = storable_mask(tokens.weights)
        dropped = int((~keep).sum())
        vec = tokens if not dropped else SparseVector.from_arrays(tokens.tokens, tokens.weights, tokens.ids)
        return vec, dropped
    names = [str(t) for t in tokens]
    try:
        weights = np.array([float(w) for w in tokens.values()], dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DocumentRejected(f"token weights must be numbers ({exc})") from None
    with np.errstate(over="ignore", invalid="ignore"):
        w32 = weights.astype(np.float32)
    vec = SparseVector.from_arrays(names, w32)
    return vec, len(names) - len(vec)


def short_storable_weights(weights: np.ndarray) -> list[float]:
    """Per weight, the shortest decimal the engine stores exactly like the weight itself.

    The engine keeps only 9 significant bits (:func:`~stair_es.sparse.truncate_9bit`), so any value
    in the same 9-bit bucket scores identically; 3-4 significant digits always land in the bucket.
    Sending ``0.124`` instead of ``0.12376543134450912`` roughly halves the JSON and ``_source``.
    """
    w = np.asarray(weights, dtype=np.float32)
    target = truncate_9bit(w)
    bits = target.view(np.uint32).astype(np.uint64)
    upper = ((bits + (1 << 15)).astype(np.uint32)).view(np.float32)  # next bucket's start
    mid = (target.astype(np.float64) + upper.astype(np.float64)) / 2
    out = w.astype(np.float64)
    exponent = np.floor(np.log10(mid, where=mid > 0, out=np.zeros_like(mid)))
    # 2, 3 and 4 digits for every weight at once (4 always land in the bucket for normal weights),
    # then one digit at a time for whatever is left (huge or tiny exponents); the fewest digits win
    first = np.arange(2, 5)[:, None]
    with np.errstate(all="ignore"):  # huge weights overflow the scale; they keep their value
        scale = 10.0 ** (first - 1 - exponent[None, :])
        candidates = np.round(mid[None, :] * scale) / scale
    ok = truncate_9bit(candidates.astype(np.float32)) == target[None, :]
    found = ok.any(axis=0)
    out[found] = candidates[ok.argmax(axis=0), np.arange(len(w))][found]
    todo = ~found
    for digits in range(5, 10):
        if not todo.any():
            break
        with np.errstate(all="ignore"):
            scale = 10.0 ** (digits - 1 - exponent[todo])
            candidate = np.round(mid[todo] * scale) / scale
        ok1 = truncate_9bit(candidate.astype(np.float32)) == target[todo]
        idx = np.flatnonzero(todo)[ok1]
        out[idx] = candidate[ok1]
        todo[idx] = False
    return out.tolist()


def document_id(doc: Document, source: Mapping[str, Any]) -> str:
    """Stable id: the caller's id, else sha256 of content hash + caption (path/url/tokens as fallback).

    The caption is part of the key so one image indexed with several captions gives several docs.
    """
    if doc.id:
        return str(doc.id)
    parts = ["v1", doc.content_hash or "", doc.caption or ""]
    if not doc.content_hash:
        parts.append(doc.path or doc.url or "")
        if not (doc.path or doc.url or doc.caption):
            for name in (IMAGE_FIELD, TEXT_FIELD):
                parts.append(json.dumps(source.get(name) or {}, sort_keys=True))
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()[:32]


def missing_index(index: str) -> EngineError:
    # the engine would auto-create it with dynamic mappings: floats, not rank_features, and no _meta
    return EngineError(
        f"index '{index}' does not exist: create it first (stair-es index creates it; in Python "
        "Backend.create_index), or the engine would guess a mapping without rank_features"
    )


@dataclass(frozen=True)
class IndexerOptions:
    """Chunking, retries, pruning and bulk-load settings.

    ``max_chunk_bytes`` caps the request body (Elastic's advice: a few MB, never hundreds).
    ``relax_after``: once this many documents have been queued, refresh is disabled and replicas set
    to 0 until the load ends (``None`` never relaxes). ``prepare_ahead``: documents are prepared and
    serialized in a background thread up to this many ahead of the bulk requests, so that Python
    work overlaps the engine's (0: in line, one thread).
    """

    chunk_size: int = 500
    max_chunk_bytes: int = 8 * 1024 * 1024
    max_retries: int = 5
    initial_backoff: float = 1.0
    max_backoff: float = 60.0
    top_k: int | None = None
    min_weight: float = 0.0
    mass: float | None = None
    relax_after: int | None = 5_000
    refresh_at_end: bool = True
    prepare_ahead: int = 2_000


@dataclass
class IndexSummary:
    """Counts that add up: ``total == indexed + failed + skipped + not_reached``.

    ``not_reached``: documents sent (or about to be) when the load stopped, never acknowledged.
    """

    index: str
    total: int = 0
    indexed: int = 0
    created: int = 0
    updated: int = 0
    failed: int = 0
    skipped: int = 0
    dropped_weights: int = 0
    pruned_weights: int = 0
    not_reached: int = 0
    seconds: float = 0.0
    failures_path: str | None = None
    stopped: str | None = None

    @property
    def docs_per_second(self) -> float:
        return self.indexed / self.seconds if self.seconds > 0 else 0.0

    @property
    def ok(self) -> bool:
        return self.failed == 0 and self.skipped == 0 and self.not_reached == 0 and not self.stopped

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "docs_per_second": round(self.docs_per_second, 1)}

    def line(self) -> str:
        text = (
            f"{self.indexed} indexed ({self.created} new, {self.updated} replaced), {self.failed} failed, "
            f"{self.skipped} skipped"
            + (f", {self.not_reached} not reached" if self.not_reached else "")
            + f" of {self.total} in {self.seconds:.1f}s ({self.docs_per_second:.0f} docs/s)"
        )
        if self.failures_path and (self.failed or self.skipped or self.not_reached):
            text += f"; reasons in {self.failures_path}"
        return text


class Indexer:
    """Stream documents into ``index`` in bulk requests (:mod:`stair_es.engine.bulk`).

    Per-item failures never raise: they are counted and written to ``failures_path`` (JSONL, one
    object per failed/skipped document with its id, path/caption and the engine's reason). A load
    that cannot go on raises :class:`~stair_es.engine.bulk.LoadStopped` with the counts so far.
    """

    def __init__(
        self,
        backend: Backend,
        index: str,
        *,
        failures_path: str | Path | None = None,
        options: IndexerOptions | None = None,
        on_failure: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.backend = backend
        self.index = index
        self.failures_path = Path(failures_path) if failures_path else None
        self.on_failure = on_failure  # also gets every failures-file entry, as it happens
        self.options = options or IndexerOptions()
        # the index's _meta.stair_es.weight_shift, read when a load starts (resolve_weight_shift)
        self.weight_shift = 0

    def resolve_weight_shift(self, meta: IndexMeta | None) -> None:
        """Store weights the way the index expects (a compact index keeps them times 2**-shift).

        ``None`` (an index not made by stair-es) means plain weights.
        """
        self.weight_shift = meta.weight_shift if meta is not None else 0

    def _index_meta(self) -> IndexMeta | None:
        if not self.backend.index_exists(self.index):
            raise missing_index(self.index)
        try:
            return self.backend.index_meta(self.index)
        except ModelError:  # not created by stair-es: its mapping is the caller's business
            return None

    # preparation ------------------------------------------------------------------------------
    def prepare(self, doc: Document | Mapping[str, Any], summary: IndexSummary) -> tuple[str, dict[str, Any]]:
        """The ``(id, _source)`` pair; raises :class:`DocumentRejected` with a human reason for bad
        documents (callers also catch ValueError/TypeError, which parsing a mapping may raise)."""
        if not isinstance(doc, Document):
            if not isinstance(doc, Mapping):
                raise DocumentRejected(f"expected a document object, got {type(doc).__name__}")
            doc = Document.from_mapping(doc)
        opts = self.options
        source: dict[str, Any] = {}
        kinds = []
        for name, tokens, kind in (
            (IMAGE_FIELD, doc.image_tokens, "image"),
            (TEXT_FIELD, doc.text_tokens, "text"),
        ):
            vec, dropped = _clean(tokens)
            if vec is not None and self.weight_shift:  # below the shifted index's smallest weight
                storable = vec.prune(min_weight=min_storable_weight(self.weight_shift))
                dropped, vec = dropped + len(vec) - len(storable), storable
            summary.dropped_weights += dropped
            if vec is None or len(vec) == 0:
                continue
            pruned = vec.prune(top_k=opts.top_k, min_weight=opts.min_weight, mass=opts.mass)
            summary.pruned_weights += len(vec) - len(pruned)
            source[name] = dict(
                zip(
                    map(encode_feature_name, pruned.tokens),
                    short_storable_weights(shift_weights(pruned.weights, self.weight_shift)),
                    strict=True,
                )
            )
            kinds.append(kind)
        if doc.caption:
            source[CAPTION_FIELD] = doc.caption
        if not kinds and not doc.caption:
            raise DocumentRejected("no token with a positive finite weight (nothing searchable)")
        has_text = "text" in kinds or bool(doc.caption)
        if kinds:
            source["modality"] = "image+text" if "image" in kinds and has_text else kinds[0]
        else:  # an empty token map: the caption alone still finds the document (BM25, hybrid)
            source["modality"] = "image" if doc.image_tokens is not None else "text"
        for name in META_FIELDS:
            value = getattr(doc, name)
            if value is not None:
                source[name] = value
        if doc.user:
            source["user"] = doc.user
        return document_id(doc, source), source

    # running ----------------------------------------------------------------------------------
    def retry(self) -> Retry:
        opts = self.options
        return Retry(opts.max_retries, opts.initial_backoff, opts.max_backoff)

    def index_documents(self, docs: Iterable[Document | Mapping[str, Any]]) -> IndexSummary:
        """Index everything in ``docs``; returns counts that add up (see :class:`IndexSummary`).

        Raises :class:`~stair_es.engine.bulk.LoadStopped` (its ``summary`` has the counts, the
        failures file every failed and every unacknowledged document) when the load cannot go on.
        """
        self.resolve_weight_shift(self._index_meta())
        settings = LoadSettings(self.backend, self.index)
        settings.recover()  # what a killed load (or one whose engine died) left relaxed
        run = BulkRun(self)
        relaxed = False

        def actions() -> Generator[dict[str, Any], None, None]:
            nonlocal relaxed
            for doc in docs:
                action = run.action(doc)
                if action is None:
                    continue
                if not relaxed and run.should_relax():
                    relaxed = True
                    try:
                        settings.relax()
                    except StairError as exc:  # only an optimisation; a blocked index stops below
                        logger.warning("index '%s': bulk-load settings not applied: %s", self.index, exc)
                yield action

        ahead = self.options.prepare_ahead
        source = prefetch(actions(), ahead) if ahead else actions()
        problems: list[StairError] = []
        opts = self.options
        try:
            for ok, item in send(
                self.backend, self.index, source, opts.chunk_size, opts.max_chunk_bytes, self.retry()
            ):
                run.handle(ok, item)
        except StairError as exc:  # a stop (write block, engine gone) or a failed relax
            problems.append(exc)
        finally:
            source.close()  # stops and joins the preparing thread before settings are restored
            problems += run.settle(settings.restore if relaxed else None, self.options.refresh_at_end)
        if problems:
            raise run.stopped(problems)
        return run.summary


class BulkRun:
    """Bookkeeping of one load (shared by the sync and async indexers): counts, ids in flight, and
    the failures file, opened on the first failure and truncated per run."""

    def __init__(self, indexer: Indexer) -> None:
        self.indexer = indexer
        path = indexer.failures_path
        self.summary = IndexSummary(index=indexer.index, failures_path=str(path) if path else None)
        self.in_flight: dict[str, dict[str, Any]] = {}
        self._failures: IO[str] | None = None
        self._lock = threading.Lock()
        self._start = time.perf_counter()

    def record(self, entry: dict[str, Any]) -> None:
        path = self.indexer.failures_path
        with self._lock:  # the preparing thread and the bulk loop both report
            if self.indexer.on_failure is not None:
                self.indexer.on_failure(entry)
            if path is None:
                return
            if self._failures is None:
                path.parent.mkdir(parents=True, exist_ok=True)
                self._failures = path.open("w", encoding="utf-8")
            self._failures.write(json.dumps(entry, ensure_ascii=False, default=str) + "\n")
            self._failures.flush()  # on disk at once: a killed run still leaves its failures

    def action(self, doc: Any) -> dict[str, Any] | None:
        """The bulk action for ``doc``, or None (counted as skipped, reason recorded)."""
        position = self.summary.total
        self.summary.total += 1
        try:
            doc_id, source = self.indexer.prepare(doc, self.summary)
        except (ValueError, TypeError) as exc:
            self.summary.skipped += 1
            self.record({"position": position, "stage": "prepare", "reason": str(exc), **describe_doc(doc)})
            return None
        try:  # serialized here, off the request path; the clients pass JSON strings through
            body = json.dumps(source, ensure_ascii=False, separators=(",", ":"), default=json_default)
        except (TypeError, ValueError) as exc:
            self.summary.skipped += 1
            self.record({"position": position, "stage": "prepare", "reason": str(exc), **describe_doc(doc)})
            return None
        self.in_flight[doc_id] = {"position": position, **describe_doc(source)}
        return {"_op_type": "index", "_index": self.indexer.index, "_id": doc_id, "_source": body}

    def should_relax(self) -> bool:
        limit = self.indexer.options.relax_after
        return limit is not None and self.summary.total >= limit

    def handle(self, ok: bool, item: Any) -> None:
        result = next(iter(item.values())) if isinstance(item, Mapping) and item else {}
        doc_id = str(result.get("_id", ""))
        described = self.in_flight.pop(doc_id, {})
        if ok:
            self.summary.indexed += 1
            if result.get("result") == "updated":
                self.summary.updated += 1
            else:
                self.summary.created += 1
        else:
            self.summary.failed += 1
            self.record({"id": doc_id, "stage": "engine", **described, **engine_reason(result)})

    def settle(self, restore: Callable[[], None] | None, refresh: bool) -> list[StairError]:
        """End of a load, whatever happened: restore settings, refresh, count and record what was
        sent but never acknowledged as not reached, close the failures file. Returns the errors."""
        problems: list[StairError] = []
        for step in (restore, self._refresh if refresh else None):
            if step is None:
                continue
            try:
                step()
            except StairError as exc:
                problems.append(exc)
        for doc_id, described in list(self.in_flight.items()):
            self.summary.not_reached += 1
            self.record({"id": doc_id, "stage": "engine", "kind": "not_reached", **described,
                         "reason": "sent, but the engine never acknowledged it"})  # fmt: skip
        self.in_flight.clear()
        self.close()
        self.summary.seconds = time.perf_counter() - self._start
        return problems

    def _refresh(self) -> None:
        if self.summary.indexed:
            self.indexer.backend.refresh(self.indexer.index)

    def stopped(self, problems: list[StairError]) -> LoadStopped:
        """One error for the caller, carrying the summary; the first problem is the cause."""
        first = problems[0]
        self.summary.stopped = str(first)
        if isinstance(first, LoadStopped):
            first.summary = self.summary
            return first
        stop = LoadStopped(str(first), summary=self.summary)
        stop.__cause__ = first
        return stop

    def close(self) -> None:
        if self._failures is not None:
            self._failures.close()
            self._failures = None

    def finish(self) -> None:
        self.summary.seconds = time.perf_counter() - self._start
