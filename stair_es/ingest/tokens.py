"""Index token maps encoded elsewhere (``stair-es encode`` output, a GPU farm, another process).

One JSON object per line: ``{"id", "kind": "image"|"text", "tokens": {token: weight}}`` (what
``stair-es encode`` writes, plus ``text``/``path`` when it knows them), or ``image_tokens`` /
``text_tokens`` maps directly, with optional ``caption``, ``path``, ``url`` and metadata (stored
under ``user.*``). Bad lines are failures with a reason; the counts add up like every other run.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from stair_es.engine.indexer import Document, document_id
from stair_es.ingest.pipeline import PipelineOptions, write_overlapped
from stair_es.ingest.report import Ledger, Progress, RunReport
from stair_es.ingest.sink import Sink

KINDS = ("image", "text")


@dataclass
class TokenRecord:
    key: str  # file:line, for failure messages
    doc: Document | None = None
    error: str | None = None


def read_token_records(path: str | Path, default_kind: str | None = None) -> Iterator[TokenRecord]:
    """Documents from a token-map JSONL file; a line that cannot be one comes back with ``error``."""
    from stair_es.ingest.discover import _jsonl_rows

    path = Path(path)
    for line_no, row, error in _jsonl_rows(path):
        key = f"{path.name}:{line_no}"
        if error is not None:
            yield TokenRecord(key, error=error)
            continue
        row = dict(row)
        if "tokens" in row:
            kind = row.pop("kind", None) or default_kind
            if kind not in KINDS:
                yield TokenRecord(key, error='a \'tokens\' line needs "kind": "image" or "text" (or --kind)')
                continue
            row[f"{kind}_tokens"] = row.pop("tokens")
            if kind == "text" and "text" in row and "caption" not in row:
                row["caption"] = row.pop("text")
        else:
            row.pop("kind", None)
        if not isinstance(row.get("image_tokens"), dict) and not isinstance(row.get("text_tokens"), dict):
            yield TokenRecord(key, error="no token map (tokens, image_tokens or text_tokens)")
            continue
        try:
            doc = Document.from_mapping(row)
        except (TypeError, ValueError) as exc:
            yield TokenRecord(key, error=str(exc))
            continue
        if doc.id is None:
            doc.id = document_id(
                doc, {"image_tokens": row.get("image_tokens"), "text_tokens": row.get("text_tokens")}
            )
        yield TokenRecord(key, doc=doc)


def index_tokens(
    records: Iterator[TokenRecord],
    sink: Sink,
    report: RunReport,
    ledger: Ledger,
    *,
    options: PipelineOptions | None = None,
    progress: Progress | None = None,
    chunk_size: int = 256,
) -> RunReport:
    """Bulk-load already-encoded documents; ids already in the index are skipped (resume)."""
    options = options or PipelineOptions()
    start = time.perf_counter()
    seen: set[str] = set()
    tick = progress.update if progress is not None else (lambda force=False: None)

    def documents() -> Iterator[Document]:
        chunk: list[TokenRecord] = []
        for record in records:
            report.discovered += 1
            if record.error is not None:
                ledger.fail(record.key, "manifest", record.error, "read")
                tick()
                continue
            chunk.append(record)
            if len(chunk) >= chunk_size:
                yield from new_only(chunk)
                chunk = []
        yield from new_only(chunk)

    def new_only(chunk: list[TokenRecord]) -> Iterator[Document]:
        if not chunk:
            return
        t = time.perf_counter()
        ids = [str(r.doc.id) for r in chunk if r.doc is not None]
        existing = sink.existing_ids(ids) if options.skip_existing else set()
        report.stage_seconds["lookup"] += time.perf_counter() - t
        for record in chunk:
            assert record.doc is not None
            doc_id = str(record.doc.id)
            if doc_id in seen:
                report.skipped_duplicate += 1
            elif doc_id in existing:
                report.skipped_existing += 1
            else:
                seen.add(doc_id)
                report.encoded += 1
                tick()
                yield record.doc
                continue
            seen.add(doc_id)
            tick()

    try:
        write_overlapped(sink, documents(), report, ledger, options.index_queue)
    finally:
        report.seconds += time.perf_counter() - start
    if progress is not None:
        progress.close()
    return report
