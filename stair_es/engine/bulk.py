"""The bulk loop: chunks, retries of transient rejections, and an early stop when going on is futile.

The clients' ``streaming_bulk`` retries every 429 the same way, but a 429 can be permanent: the
flood-stage ``read_only_allow_delete`` block answers 429 ``cluster_block_exception`` on every item,
so a load retried each chunk five times (31 s of backoff per chunk, hours for a large load). Here
each answer is sorted into ok / retry (a full write queue) / failed (this document is bad) / stop
(the index refuses writes, a shard has no copy, or the engine is gone); a stop raises
:class:`LoadStopped` after the chunk's acknowledged items were reported, so counts still add up.
"""

from __future__ import annotations

import asyncio
import datetime
import decimal
import json
import time
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any

import numpy as np

from stair_es.errors import EngineError

# item error types that no retry can fix: the whole load stops at the first one
STOP_TYPES = {
    "cluster_block_exception": "refuses writes ({}): stopped early instead of retrying; free disk "
    "space or lift the block, then run the same command again to resume",
    "unavailable_shards_exception": "has a shard with no active copy ({}): stopped; bring back the "
    "node that holds it, then run the same command again to resume",
    "index_closed_exception": "is closed ({}): stopped; open it, then run the same command again",
}


class LoadStopped(EngineError):
    """A bulk load stopped before the end; ``summary`` (set by the indexer) has the counts so far."""

    def __init__(self, message: str, summary: Any = None) -> None:
        super().__init__(message)
        self.summary = summary


@dataclass
class Entry:
    doc_id: str
    lines: str  # action line + source line, newline-terminated
    size: int


@dataclass
class Outcome:
    """How one bulk answer sorts out."""

    results: list[tuple[bool, dict[str, Any]]] = field(default_factory=list)
    retry: list[Entry] = field(default_factory=list)
    stop: str | None = None


def to_entry(action: Mapping[str, Any]) -> Entry:
    """An ``index`` action (``_index``, ``_id``, ``_source`` as a JSON string) as NDJSON lines."""
    meta = json.dumps({"index": {"_index": action["_index"], "_id": action["_id"]}})
    source = action["_source"]
    if not isinstance(source, str):
        source = json.dumps(source, separators=(",", ":"))
    lines = f"{meta}\n{source}\n"
    return Entry(str(action["_id"]), lines, len(lines.encode("utf-8")))


def chunks(actions: Iterable[Mapping[str, Any]], max_docs: int, max_bytes: int) -> Iterator[list[Entry]]:
    chunk: list[Entry] = []
    size = 0
    for action in actions:
        entry = to_entry(action)
        if chunk and (len(chunk) >= max_docs or size + entry.size > max_bytes):
            yield chunk
            chunk, size = [], 0
        chunk.append(entry)
        size += entry.size
    if chunk:
        yield chunk


async def achunks(
    actions: AsyncIterable[Mapping[str, Any]], max_docs: int, max_bytes: int
) -> AsyncIterator[list[Entry]]:
    chunk: list[Entry] = []
    size = 0
    async for action in actions:
        entry = to_entry(action)
        if chunk and (len(chunk) >= max_docs or size + entry.size > max_bytes):
            yield chunk
            chunk, size = [], 0
        chunk.append(entry)
        size += entry.size
    if chunk:
        yield chunk


def _item(doc_id: str, status: Any, error: Any) -> dict[str, Any]:
    return {"index": {"_id": doc_id, "status": status, "error": error}}


def _error_type(error: Any) -> str:
    return str(error.get("type", "")) if isinstance(error, Mapping) else ""


def _error_text(error: Any) -> str:
    if isinstance(error, Mapping):
        return f"{error.get('type', 'error')}: {error.get('reason', '')}".strip()
    return str(error)


def sort_answer(entries: list[Entry], resp: Mapping[str, Any], may_retry: bool, index: str) -> Outcome:
    """Sort a bulk response's items (in request order) into results, retries and a stop."""
    out = Outcome()
    items = list(resp.get("items") or [])
    for position, entry in enumerate(entries):
        item = items[position] if position < len(items) else _item(entry.doc_id, None, "no answer")
        result = next(iter(item.values())) if isinstance(item, Mapping) and item else {}
        status = result.get("status")
        error = result.get("error")
        if isinstance(status, int) and 200 <= status < 300 and not error:
            out.results.append((True, item))
        elif _error_type(error) in STOP_TYPES:
            if out.stop is None:
                out.stop = f"index '{index}' " + STOP_TYPES[_error_type(error)].format(_error_text(error))
        elif status == 429 and may_retry:
            out.retry.append(entry)
        else:
            out.results.append((False, item))
    return out


def request_failure(
    entries: list[Entry], status: int | None, reason: str, may_retry: bool
) -> tuple[Outcome, bool]:
    """A whole request failed: (outcome, retry all?). No status (connection refused, reset, timed
    out) or a 5xx left after the client's own retries means the engine is gone: stop."""
    out = Outcome()
    if status == 429 and may_retry:
        return out, True
    if status is None:
        out.stop = (
            f"the engine stopped answering during the load ({reason}): stopped; start it again, "
            "then run the same command again to resume"
        )
        return out, False
    if status >= 500 or status in (401, 403):
        out.stop = f"the engine failed a bulk request (HTTP {status}: {reason}): stopped"
        return out, False
    out.results = [(False, _item(e.doc_id, status, reason)) for e in entries]
    return out, False


@dataclass(frozen=True)
class Retry:
    max_retries: int = 5
    initial_backoff: float = 1.0
    max_backoff: float = 60.0

    def delay(self, attempt: int) -> float:
        return min(self.max_backoff, self.initial_backoff * 2 ** (attempt - 1))


def send(backend: Any, index: str, actions: Iterable[Mapping[str, Any]], max_docs: int, max_bytes: int,
         retry: Retry) -> Iterator[tuple[bool, dict[str, Any]]]:  # fmt: skip
    """Yield ``(ok, item)`` per document in input order of answers; raise :class:`LoadStopped`."""
    for chunk in chunks(actions, max_docs, max_bytes):
        pending = chunk
        for attempt in range(retry.max_retries + 1):
            if attempt:
                time.sleep(retry.delay(attempt))
            may_retry = attempt < retry.max_retries
            try:
                resp = backend.bulk_lines([e.lines for e in pending])
            except EngineError as exc:
                out, again = request_failure(pending, _status(exc), _reason(exc), may_retry)
            else:
                out, again = sort_answer(pending, resp, may_retry, index), False
            yield from out.results
            if out.stop is not None:
                raise LoadStopped(out.stop)
            pending = pending if again else out.retry
            if not pending:
                break


async def asend(backend: Any, index: str, actions: AsyncIterable[Mapping[str, Any]], max_docs: int,
                max_bytes: int, retry: Retry) -> AsyncIterator[tuple[bool, dict[str, Any]]]:  # fmt: skip
    """The async twin of :func:`send`."""
    async for chunk in achunks(actions, max_docs, max_bytes):
        pending = chunk
        for attempt in range(retry.max_retries + 1):
            if attempt:
                await asyncio.sleep(retry.delay(attempt))
            may_retry = attempt < retry.max_retries
            try:
                resp = await backend.bulk_lines([e.lines for e in pending])
            except EngineError as exc:
                out, again = request_failure(pending, _status(exc), _reason(exc), may_retry)
            else:
                out, again = sort_answer(pending, resp, may_retry, index), False
            for result in out.results:
                yield result
            if out.stop is not None:
                raise LoadStopped(out.stop)
            pending = pending if again else out.retry
            if not pending:
                break


def _status(exc: EngineError) -> int | None:
    status = getattr(exc, "status", None)
    return status if isinstance(status, int) else None


def _reason(exc: EngineError) -> str:
    return str(getattr(exc, "reason", None) or exc)


# bookkeeping helpers of a load (the indexer's failure entries)
def json_default(value: Any) -> Any:
    """What the engine clients' serializers also accept: numpy values, dates, decimals, UUIDs, paths."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (datetime.date, datetime.datetime)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, (uuid.UUID, PurePath)):
        return str(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def describe_doc(doc: Any) -> dict[str, Any]:
    """Enough to find a document again: path/url/hash/caption (shortened)."""
    get = doc.get if isinstance(doc, Mapping) else (lambda k, d=None: getattr(doc, k, d))
    out = {}
    for key in ("id", "path", "url", "content_hash"):
        value = get(key, None)
        if value:
            out[key] = value
    caption = get("caption", None)
    if caption:
        out["caption"] = caption if len(caption) <= 200 else caption[:197] + "..."
    return out


def engine_reason(result: Mapping[str, Any]) -> dict[str, Any]:
    error = result.get("error")
    status = result.get("status")
    if isinstance(error, Mapping):
        reason = f"{error.get('type', 'error')}: {error.get('reason', '')}"
        cause = error.get("caused_by")
        if isinstance(cause, Mapping) and cause.get("reason"):
            reason += f" ({cause.get('type', '')}: {cause['reason']})"
    else:
        reason = str(error or result.get("exception") or "unknown error")
    return {"status": status, "reason": reason}
