"""file -> read + content hash -> (skip if already indexed) -> decode -> encoder -> Document -> index.

Stages overlap: files are read and hashed in a thread pool ahead of use; the runtime decodes images
in its own pool while the previous batch is in the session; the indexer sends bulk requests as
documents arrive. Whatever goes wrong with one file (unreadable, empty, not an image, corrupt, a
decompression bomb, rejected by the engine) is recorded in the :class:`Ledger` and the run goes on.

Time is measured on the main thread, where it is spent waiting: ``read`` (for file reads and hashes),
``lookup`` (asking the index which ids exist), ``decode_wait`` (for decoded pixels: the session is
starved by the CPU), ``inference`` and ``index`` (building and sending bulk requests). Decode CPU time
summed over the workers is reported separately.
"""

from __future__ import annotations

import hashlib
import io
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from stair_es.ahead import map_ahead
from stair_es.engine.indexer import Document, document_id
from stair_es.ingest.discover import ImageItem, TextItem
from stair_es.ingest.report import Ledger, Progress, RunReport, classify_decode_error
from stair_es.ingest.sink import Sink

MAX_FILE_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True)
class PipelineOptions:
    batch_size: int = 32
    decode_workers: int | None = None
    read_workers: int = 4
    read_ahead: int = 64  # files read and hashed ahead of the decoder (their bytes are in memory)
    lookup_chunk: int = 64  # ids per "which exist?" request
    skip_existing: bool = True
    encode_captions: bool = False  # also put caption tokens in text_tokens
    max_file_bytes: int = MAX_FILE_BYTES
    index_queue: int = 1000  # encoded documents waiting for the indexer thread


@dataclass
class LoadedFile:
    """A file's bytes and content hash, or the one-line reason it cannot be used."""

    item: ImageItem
    data: bytes | None = None
    content_hash: str | None = None
    width: int | None = None
    height: int | None = None
    mime: str | None = None
    error: str | None = None
    kind: str | None = None
    doc_id: str | None = None


def content_hash(data: bytes) -> str:
    """sha256 of the bytes: the identity used for resume (same bytes, same document)."""
    return hashlib.sha256(data).hexdigest()


def file_content_hash(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def load_file(item: ImageItem, max_bytes: int = MAX_FILE_BYTES) -> LoadedFile:
    """Read and hash one file; sniff its header (size, MIME) without decoding the pixels."""
    loaded = LoadedFile(item)
    path = item.path
    assert path is not None
    try:
        size = os.stat(path).st_size
        if size == 0:
            loaded.error, loaded.kind = "empty file (0 bytes)", "empty"
            return loaded
        if size > max_bytes:
            loaded.error, loaded.kind = (
                f"file is {size:,} bytes, over the {max_bytes:,}-byte limit",
                "too_large",
            )
            return loaded
        with open(path, "rb") as handle:
            data = handle.read(max_bytes + 1)
    except FileNotFoundError:
        broken = os.path.islink(path)
        loaded.error = "broken symbolic link" if broken else "file not found"
        loaded.kind = "missing"
        return loaded
    except IsADirectoryError:
        loaded.error, loaded.kind = "is a folder, not a file", "unreadable"
        return loaded
    except OSError as exc:
        loaded.error, loaded.kind = f"cannot read ({exc.strerror or exc})", "unreadable"
        return loaded
    if not data:
        loaded.error, loaded.kind = "empty file (0 bytes)", "empty"
        return loaded
    loaded.data = data
    loaded.content_hash = content_hash(data)
    _sniff(loaded, data)
    return loaded


def _sniff(loaded: LoadedFile, data: bytes) -> None:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as img:
            loaded.width, loaded.height = img.size
            loaded.mime = Image.MIME.get(img.format or "")
    except Exception:  # noqa: BLE001 - the decoder reports the real reason
        pass


_END = object()


def write_overlapped(
    sink: Sink, docs: Iterable[Document], report: RunReport, ledger: Ledger, queue_size: int = 1000
) -> None:
    """Hand ``docs`` to ``sink.write`` running in a second thread, so bulk requests go out while the
    next images decode and encode; settles the counts when the load ends, also on Ctrl-C (documents
    already encoded are still indexed, then the interrupt propagates).

    ``index`` time is what the producer spends blocked on a full queue plus the final drain: the
    wall time indexing adds, not the time it overlaps.
    """
    handoff: queue.Queue[Any] = queue.Queue(maxsize=max(1, queue_size))
    outcome: dict[str, Any] = {}

    def consume() -> Iterator[Document]:
        while (doc := handoff.get()) is not _END:
            yield doc

    def run() -> None:
        try:
            outcome["result"] = sink.write(consume(), on_failure=lambda entry: _record(ledger, entry))
        except BaseException as exc:  # noqa: BLE001 - re-raised in the producer thread
            outcome["error"] = exc

    writer = threading.Thread(target=run, name="stair-index", daemon=True)
    writer.start()

    def put(item: Any) -> None:
        t = time.perf_counter()
        while writer.is_alive():
            try:
                handoff.put(item, timeout=0.2)
                break
            except queue.Full:
                continue
        report.stage_seconds["index"] += time.perf_counter() - t

    try:
        for doc in docs:
            if "error" in outcome or not writer.is_alive():  # the load stopped: read no further
                break
            put(doc)
    except KeyboardInterrupt:
        report.interrupted = True
        raise
    finally:
        put(_END)
        t = time.perf_counter()
        writer.join()
        report.stage_seconds["index"] += time.perf_counter() - t
        if "result" in outcome:
            _settle(report, ledger, outcome["result"])
    if "error" in outcome:
        raise outcome["error"]
    if outcome["result"].error is not None:
        raise outcome["result"].error


class _Clock:
    """Adds the seconds since a start time to one stage of the report."""

    def __init__(self, report: RunReport) -> None:
        self.report = report

    def add(self, stage: str, since: float) -> float:
        now = time.perf_counter()
        self.report.stage_seconds[stage] += now - since
        return now


def index_images(
    items: list[ImageItem],
    encoder: Any,
    sink: Sink,
    report: RunReport,
    ledger: Ledger,
    *,
    options: PipelineOptions | None = None,
    progress: Progress | None = None,
) -> RunReport:
    """Index ``items`` (already sharded) into ``sink``; fills and returns ``report``."""
    from stair_es.runtime import StreamStats

    options = options or PipelineOptions()
    clock = _Clock(report)
    stats = StreamStats()
    start = time.perf_counter()
    report.discovered += len(items)
    in_decoder: dict[int, LoadedFile] = {}
    seen_ids: set[str] = set()
    tick = progress.update if progress is not None else (lambda force=False: None)
    base = dict(report.stage_seconds)

    def sync() -> None:
        """Copy the runtime's stream timings into the report (live, for the progress line). Our
        own reads and lookups run inside the runtime's wait for decoded images: subtract them."""
        stages = report.stage_seconds
        ours = (stages["read"] - base["read"]) + (stages["lookup"] - base["lookup"])
        stages["inference"] = base["inference"] + stats.inference_seconds + stats.extra.get("captions", 0.0)
        stages["decode_wait"] = base["decode_wait"] + max(0.0, stats.waiting_for_decode_seconds - ours)
        report.decode_cpu_seconds = stats.decode_seconds

    def fail(where: str, kind: str, reason: str, stage: str, **extra: Any) -> None:
        ledger.fail(where, kind, reason, stage, **extra)
        tick()

    def accepted(pool: ThreadPoolExecutor) -> Iterator[LoadedFile]:
        """Files to decode: read, hashed, not yet indexed, not seen earlier in this run."""
        usable = (item for item in items if _usable(item, fail))
        chunk: list[LoadedFile] = []
        for future in map_ahead(
            pool, partial(load_file, max_bytes=options.max_file_bytes), usable, options.read_ahead
        ):
            t = time.perf_counter()
            loaded = future.result()
            clock.add("read", t)
            if loaded.error is not None:
                fail(loaded.item.display, loaded.kind or "unreadable", loaded.error, "read")
                continue
            loaded.doc_id = loaded.item.id or document_id(
                Document(content_hash=loaded.content_hash, caption=loaded.item.caption), {}
            )
            chunk.append(loaded)
            if len(chunk) >= options.lookup_chunk:
                yield from _new_only(chunk)
                chunk = []
        yield from _new_only(chunk)

    def _new_only(chunk: list[LoadedFile]) -> Iterator[LoadedFile]:
        t = time.perf_counter()
        existing = sink.existing_ids([f.doc_id for f in chunk]) if options.skip_existing and chunk else set()  # type: ignore[misc]
        clock.add("lookup", t)
        for loaded in chunk:
            assert loaded.doc_id is not None
            # in-run duplicates first: whether the engine already shows the first copy is a race
            if loaded.doc_id in seen_ids:
                report.skipped_duplicate += 1
                tick()
                continue
            seen_ids.add(loaded.doc_id)
            if loaded.doc_id in existing:
                report.skipped_existing += 1
                tick()
            else:
                yield loaded

    def sources(pool: ThreadPoolExecutor) -> Iterator[bytes]:
        for index, loaded in enumerate(accepted(pool)):
            in_decoder[index] = loaded
            assert loaded.data is not None
            yield loaded.data
            loaded.data = None  # the decoder holds its own reference until it is done

    def documents(pool: ThreadPoolExecutor) -> Iterator[Document]:
        results = encoder.iter_encode_images(
            sources(pool), batch_size=options.batch_size, workers=options.decode_workers, stats=stats
        )
        for result in results:
            loaded = in_decoder.pop(result.index)
            sync()
            if not result.ok:
                reason = _strip_source(result.error or "")
                kind = result.kind or classify_decode_error(reason)  # an encoder of another make: words
                fail(loaded.item.display, kind, reason, "decode", content_hash=loaded.content_hash)
                continue
            doc = _image_document(loaded, result.vector)
            if result.vector is not None and len(result.vector) == 0 and loaded.item.caption:
                report.caption_only += 1
            if options.encode_captions and loaded.item.caption:
                t2 = time.perf_counter()
                doc.text_tokens = encoder.encode_texts([loaded.item.caption])[0]
                stats.extra["captions"] = stats.extra.get("captions", 0.0) + time.perf_counter() - t2
            report.encoded += 1
            tick()
            yield doc

    with ThreadPoolExecutor(
        max_workers=max(1, options.read_workers), thread_name_prefix="stair-read"
    ) as pool:
        try:
            write_overlapped(sink, documents(pool), report, ledger, options.index_queue)
        finally:
            sync()
            report.seconds += time.perf_counter() - start
    if progress is not None:
        progress.close()
    return report


def _usable(item: ImageItem, fail: Callable[..., None]) -> bool:
    if item.error is not None or item.path is None:
        fail(item.display, item.kind or "manifest", item.error or "no path", "discover")
        return False
    return True


def _strip_source(reason: str) -> str:
    """The decoder names in-memory sources ``<N bytes>: ...``; the failure entry has the path."""
    if reason.startswith("<") and ">: " in reason:
        return reason.split(">: ", 1)[1]
    return reason


def _image_document(loaded: LoadedFile, vector: Any) -> Document:
    item = loaded.item
    return Document(
        image_tokens=vector,
        caption=item.caption,
        path=os.path.abspath(item.path) if item.path is not None else None,
        url=item.url,
        content_hash=loaded.content_hash,
        width=loaded.width,
        height=loaded.height,
        mime=loaded.mime,
        user=dict(item.metadata),
        id=loaded.doc_id,
    )


def _record(ledger: Ledger, entry: dict[str, Any]) -> None:
    """A sink's failure entry into the ledger (a sent but unacknowledged document is only noted)."""
    stage = entry.get("stage", "engine")
    where = str(entry.get("path") or entry.get("id") or "?")
    extra = {k: v for k, v in entry.items() if k in ("id", "content_hash", "status", "caption")}
    if entry.get("kind") == "not_reached":
        ledger.note(where, "not_reached", str(entry.get("reason", "")), stage, **extra)
        return
    kind = "no_tokens" if stage == "prepare" else "engine"
    ledger.fail(where, kind, str(entry.get("reason", "")), stage, **extra)


def _settle(report: RunReport, ledger: Ledger, result: Any) -> None:
    """Move the documents handed to the sink into indexed/failed."""
    report.indexed += result.indexed
    for entry in result.failures:  # sinks that collected instead of reporting as they went
        _record(ledger, entry)
    report.encoded = 0


# texts -------------------------------------------------------------------------------------------
def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def index_texts(
    items: Iterable[TextItem],
    encoder: Any,
    sink: Sink,
    report: RunReport,
    ledger: Ledger,
    *,
    options: PipelineOptions | None = None,
    progress: Progress | None = None,
    chunk_size: int = 256,
) -> RunReport:
    """Index a text corpus into ``text_tokens`` (the text itself goes to ``caption`` for BM25)."""
    options = options or PipelineOptions()
    clock = _Clock(report)
    start = time.perf_counter()
    seen_ids: set[str] = set()
    tick = progress.update if progress is not None else (lambda force=False: None)

    def documents() -> Iterator[Document]:
        chunk: list[tuple[TextItem, str, str]] = []
        source = iter(items)
        while True:
            t = time.perf_counter()
            item = next(source, None)
            clock.add("read", t)
            if item is not None:
                report.discovered += 1
                if item.error is not None or item.text is None:
                    ledger.fail(item.key, item.kind or "manifest", item.error or "no text", "read")
                    tick()
                    continue
                digest = text_hash(item.text)
                doc_id = item.id or document_id(Document(content_hash=digest, caption=item.text), {})
                chunk.append((item, digest, doc_id))
                if len(chunk) < chunk_size:
                    continue
            if not chunk:
                break
            yield from _encode_chunk(chunk)
            chunk = []
            if item is None:
                break

    def _encode_chunk(chunk: list[tuple[TextItem, str, str]]) -> Iterator[Document]:
        t = time.perf_counter()
        existing = sink.existing_ids([c[2] for c in chunk]) if options.skip_existing else set()
        clock.add("lookup", t)
        todo = []
        for item, digest, doc_id in chunk:
            if doc_id in seen_ids:
                report.skipped_duplicate += 1
                continue
            seen_ids.add(doc_id)
            if doc_id in existing:
                report.skipped_existing += 1
            else:
                todo.append((item, digest, doc_id))
        t = time.perf_counter()
        vectors = (
            encoder.encode_texts([c[0].text for c in todo], batch_size=options.batch_size) if todo else []
        )
        clock.add("inference", t)
        for (item, digest, doc_id), vector in zip(todo, vectors):
            report.encoded += 1
            tick()
            yield Document(
                text_tokens=vector,
                caption=item.text,
                url=item.url,
                content_hash=digest,
                user=dict(item.metadata),
                id=doc_id,
            )
        tick()

    try:
        write_overlapped(sink, documents(), report, ledger, options.index_queue)
    finally:
        report.seconds += time.perf_counter() - start
    if progress is not None:
        progress.close()
    return report


def describe_paths(paths: Iterable[Path]) -> str:
    names = [str(p) for p in paths]
    return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
