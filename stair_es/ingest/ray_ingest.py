"""Image indexing on a Ray cluster (``stair-es index images PATHS --ray [ADDRESS]``).

The single-process pipeline (:mod:`stair_es.ingest.pipeline`) spread over machines with Ray Data:

    items (discovered on the driver) -> read + sha256 [CPU tasks] -> dedupe + "already indexed?"
    [one gate actor] -> decode + preprocess [CPU tasks] -> encode [actor pool: one ONNX session per
    actor, one GPU each where the cluster has GPUs] -> bulk write [a few writer actors] -> driver

Every item comes back to the driver as one small row saying what happened to it (indexed, skipped
as already indexed or duplicate, or failed with kind, stage and reason), and the driver keeps the
same :class:`RunReport` and failures file as the single-process run: the same document ids (content
hashes), exact counts, one failures file. The stage functions are the single-process ones
(``load_file``, ``decode_to_pixels``, the encoder, ``EngineSink``), so both paths fail and name
things the same way. Resume works as there: writes are idempotent by id, and a rerun skips ids the
index already has.

Files are read by the workers, so every node must see the collection (and the model directory) at
the same absolute path (a shared or replicated file system). Which copy of duplicate content is
indexed may differ from a single-process run (blocks are processed in parallel); the ids and
counts do not.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from stair_es.errors import EngineError, MissingDependencyError
from stair_es.ingest.discover import ImageItem
from stair_es.ingest.pipeline import (
    PipelineOptions,
    _record,
    _strip_source,
    _usable,
    load_file,
)
from stair_es.ingest.report import Ledger, Progress, RunReport, classify_decode_error

LOG = logging.getLogger(__name__)
# Every stage emits every column (Ray Data concatenates blocks, which must share one schema).
SCHEMA: dict[str, type] = {
    **dict.fromkeys(("i", "width", "height"), int),
    **dict.fromkeys(("decode_seconds", "inference_seconds"), float),
    **dict.fromkeys(("pixels", "token_ids", "weights", "text_ids", "text_weights"), bytes),
    **dict.fromkeys(
        ("key", "abs_path", "caption", "url", "id", "metadata", "status", "kind", "reason", "stage")
        + ("doc_id", "content_hash", "mime", "extra", "provider", "load_error"),
        str,
    ),
}
_DEFAULTS = {int: -1, float: 0.0, bytes: b"", str: ""}


@dataclass(frozen=True)
class RayOptions:
    """How the work is spread. ``address``: None for Ray's default (``RAY_ADDRESS``, else a cluster
    started with ``ray start`` on this machine, else a new local one), or ``host:port``."""

    address: str | None = None
    encoders: int | None = None  # encoder actors [default: one per GPU, else one per node]
    encoder_cpus: int = 1  # CPUs (onnxruntime threads) per encoder actor
    writers: int = 1  # bulk writer actors
    decode_cpus: float = 1.0  # logical CPUs per decode/read task


@dataclass(frozen=True)
class SinkSpec:
    """What a remote actor needs to open the sink: the connection (None: dry run), index, options."""

    connection: Any  # stair_es.engine.ConnectionConfig, or None for --dry-run
    index: str
    indexer_options: Any = None
    compact: bool = False
    lookup: bool = True  # ask the index which ids exist (False: new index or --reindex-existing)

    def open(self) -> Any:
        from stair_es.ingest.sink import EngineSink, MemorySink

        if self.connection is None:
            return MemorySink(self.index)
        from stair_es.engine import connect

        sink = EngineSink(connect(self.connection), self.index, self.indexer_options, self.compact)
        sink._can_have_docs = self.lookup
        return sink


def import_ray() -> Any:
    try:
        import ray
        import ray.data  # noqa: F401 - Ray Data needs the "data" extra (pyarrow, pandas)
    except ImportError as exc:
        raise MissingDependencyError(f'--ray needs Ray Data: pip install "stair-es[ray]" ({exc})') from exc
    return ray


# stages (module-level functions and classes: Ray pickles them by reference) ----------------------
def _rows(batch: dict[str, np.ndarray]) -> Iterator[dict[str, Any]]:
    keys = list(batch)
    for values in zip(*(batch[k] for k in keys)):
        yield dict(zip(keys, values))


def _columns(rows: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for key, kind in SCHEMA.items():
        default = _DEFAULTS[kind]
        values = [default if row.get(key) is None else row[key] for row in rows]
        if kind is int:
            out[key] = np.asarray(values, dtype=np.int64)
        elif kind is float:
            out[key] = np.asarray(values, dtype=np.float64)
        else:
            out[key] = np.asarray([v if kind is bytes else str(v) for v in values], dtype=object)
    return out


def read_and_hash(batch: dict[str, np.ndarray], max_file_bytes: int) -> dict[str, np.ndarray]:
    """Read each file and hash it (``load_file``): the document id, or the read failure."""
    from stair_es.engine.indexer import Document, document_id

    rows = []
    for row in _rows(batch):
        item = ImageItem(key=str(row["key"]), path=Path(str(row["abs_path"])))
        loaded = load_file(item, max_file_bytes)
        if loaded.error is not None:
            row.update(status="failed", kind=loaded.kind or "unreadable", reason=loaded.error, stage="read")
        else:
            caption = str(row["caption"]) or None
            doc = Document(content_hash=loaded.content_hash, caption=caption)
            row.update(
                status="encode",
                content_hash=loaded.content_hash,
                doc_id=str(row["id"]) or document_id(doc, {}),
                width=loaded.width if loaded.width is not None else -1,
                height=loaded.height if loaded.height is not None else -1,
                mime=loaded.mime or "",
            )
        rows.append(row)
    return _columns(rows)


class Gate:
    """One actor sees every id once: in-run duplicates first (as the single-process run), then one
    "which of these exist?" request per batch."""

    def __init__(self, spec: SinkSpec, skip_existing: bool) -> None:
        self.sink = spec.open() if skip_existing else None
        self.seen: set[str] = set()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows = list(_rows(batch))
        todo = [str(r["doc_id"]) for r in rows if r["status"] == "encode"]
        existing = self.sink.existing_ids(todo) if self.sink is not None and todo else set()
        for row in rows:
            if row["status"] != "encode":
                continue
            doc_id = str(row["doc_id"])
            if doc_id in self.seen:
                row["status"] = "skipped_duplicate"
                continue
            self.seen.add(doc_id)
            if doc_id in existing:
                row["status"] = "skipped_existing"
        return _columns(rows)


def decode(
    batch: dict[str, np.ndarray], spec: dict[str, Any], max_pixels: int | None
) -> dict[str, np.ndarray]:
    """Read the file again, check it is the one hashed, decode and preprocess (CPU task)."""
    from stair_es.runtime.images import ImagePreprocessing, decode_to_pixels

    preprocessing = ImagePreprocessing.from_dict(spec)
    rows = []
    for row in _rows(batch):
        row["pixels"] = None
        if row["status"] == "encode":
            start = time.perf_counter()
            try:
                data = Path(str(row["abs_path"])).read_bytes()
            except OSError as exc:
                data, error = b"", f"cannot read ({exc.strerror or exc})"
            else:
                error = None
                if hashlib.sha256(data).hexdigest() != row["content_hash"]:
                    error = "file changed while it was being indexed"
            if error is not None:
                row.update(status="failed", kind="unreadable", reason=error, stage="read")
                extra = json.dumps({"content_hash": row["content_hash"]})
                row["extra"] = extra
            else:
                pixels, error = decode_to_pixels(data, preprocessing, max_pixels)
                if error is not None:
                    reason = _strip_source(error)
                    extra = json.dumps({"content_hash": row["content_hash"]})
                    row.update(
                        status="failed",
                        kind=classify_decode_error(reason),
                        reason=reason,
                        stage="decode",
                        extra=extra,
                    )
                else:
                    row["pixels"] = np.ascontiguousarray(pixels, dtype=np.float32).tobytes()
            row["decode_seconds"] = time.perf_counter() - start
        rows.append(row)
    return _columns(rows)


class Encode:
    """One ONNX session per actor (on its GPU when it was given one); sparse vectors as id/weight
    byte strings, so the rows that travel on stay small."""

    def __init__(self, model_dir: str, encoder_kwargs: dict[str, Any], encode_captions: bool) -> None:
        from stair_es.runtime import load_encoder

        self.encoder = load_encoder(model_dir, **encoder_kwargs)
        self.encode_captions = encode_captions
        info = self.encoder.provider_info("image")
        self.provider = f"{info.active} [{self.encoder.active_precision('image')}]"
        height, width = self.encoder.manifest.image.size
        self.shape = (3, height, width)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows = list(_rows(batch))
        todo = [r for r in rows if r["status"] == "encode"]
        for row in rows:
            row["provider"] = self.provider
        if todo:
            pixels = np.stack(
                [np.frombuffer(r["pixels"], dtype=np.float32).reshape(self.shape) for r in todo]
            )
            start = time.perf_counter()
            vectors = self.encoder.to_vectors(self.encoder.run_images(pixels))
            seconds = (time.perf_counter() - start) / len(todo)
            captions = [str(r["caption"]) for r in todo]
            text_vectors: list[Any] = [None] * len(todo)
            if self.encode_captions:
                wanted = [i for i, c in enumerate(captions) if c]
                for i, vec in zip(wanted, self.encoder.encode_texts([captions[i] for i in wanted])):
                    text_vectors[i] = vec
            for row, vec, text in zip(todo, vectors, text_vectors):
                row["token_ids"] = np.asarray(vec.ids, dtype=np.int32).tobytes()
                row["weights"] = np.asarray(vec.weights, dtype=np.float32).tobytes()
                if text is not None:
                    row["text_ids"] = np.asarray(text.ids, dtype=np.int32).tobytes()
                    row["text_weights"] = np.asarray(text.weights, dtype=np.float32).tobytes()
                row["inference_seconds"] = seconds
        for row in rows:
            row["pixels"] = b""
        return _columns(rows)


class Write:
    """A bulk writer: one sink (engine connection) per actor, one bulk load per batch; each row
    comes back indexed, or failed with the engine's reason."""

    def __init__(self, spec: SinkSpec, model_dir: str) -> None:
        from stair_es.runtime import Manifest
        from stair_es.runtime.tokenizer import TextTokenizer

        manifest = Manifest.read(model_dir)
        self.tokens = TextTokenizer.from_file(manifest.tokenizer_path, manifest.max_text_length).tokens
        self.sink = spec.open()

    def _vector(self, ids: bytes, weights: bytes) -> Any:
        from stair_es.sparse import SparseVector

        index = np.frombuffer(ids, dtype=np.int32).astype(np.int64)
        tokens = [self.tokens[i] for i in index.tolist()]
        return SparseVector.from_arrays(tokens, np.frombuffer(weights, dtype=np.float32), index)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from stair_es.engine.indexer import Document

        rows = list(_rows(batch))
        docs, by_id = [], {}
        for row in rows:
            if row["status"] != "encode":
                continue
            text = row.get("text_ids")
            docs.append(
                Document(
                    image_tokens=self._vector(row["token_ids"], row["weights"]),
                    text_tokens=self._vector(text, row["text_weights"]) if text else None,
                    caption=str(row["caption"]) or None,
                    path=str(row["abs_path"]),
                    url=str(row["url"]) or None,
                    content_hash=str(row["content_hash"]),
                    width=int(row["width"]) if int(row["width"]) >= 0 else None,
                    height=int(row["height"]) if int(row["height"]) >= 0 else None,
                    mime=str(row["mime"]) or None,
                    user=json.loads(str(row["metadata"]) or "{}"),
                    id=str(row["doc_id"]),
                )
            )
            by_id[str(row["doc_id"])] = row
            row["status"] = "indexed"
        if docs:
            entries: list[dict[str, Any]] = []
            taken: set[str] = set()

            def stream() -> Iterator[Any]:
                for doc in docs:
                    taken.add(str(doc.id))
                    yield doc

            result = self.sink.write(stream(), on_failure=entries.append)
            for row in rows:
                if row["status"] == "indexed" and str(row["doc_id"]) not in taken:
                    row["status"] = "unsent"  # the load stopped before it: not reached
            unmatched = []
            for entry in entries:  # failed, or sent but never acknowledged (not reached)
                row = by_id.get(str(entry.get("id")))
                if row is None or row["status"] != "indexed":
                    unmatched.append(entry)
                    continue
                row.update(status="sink_entry", extra=json.dumps(entry, default=str))
            indexed = [r for r in rows if r["status"] == "indexed"]
            for row, entry in zip(indexed[::-1], unmatched):  # keep the totals exact if ids are missing
                row.update(status="sink_entry", extra=json.dumps(entry, default=str))
            if result.error is not None:
                for row in rows:
                    row["load_error"] = str(result.error)
        for row in rows:
            for key in ("token_ids", "weights", "text_ids", "text_weights"):
                row[key] = b""
        return _columns(rows)


# driver ------------------------------------------------------------------------------------------
def connect_ray(options: RayOptions) -> Any:
    """Connect to (or start) Ray quietly: no dashboard, no per-task log lines on our stderr."""
    ray = import_ray()
    # Ray's own progress, deprecation and C++ core-worker lines would bury the run's summary (Ray
    # Data logs an error line per actor pool about its own constructor arguments, ray#53727).
    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
    for name in ("ray", "ray.data"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module=r"ray\..*")
    if not ray.is_initialized():
        ray.init(
            address=options.address,
            include_dashboard=False,
            log_to_driver=False,
            logging_level=logging.WARNING,
            configure_logging=True,
        )
    from ray.data import DataContext

    ctx = DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    for name in ("ray", "ray.data"):
        logging.getLogger(name).setLevel(logging.ERROR)
    return ray


def plan(ray: Any, options: RayOptions) -> dict[str, Any]:
    """How many encoder actors and which resources each, from what the cluster has. The actors
    must leave CPUs for the read and decode tasks, or those would wait for ever."""
    from stair_es.errors import UsageError

    resources = ray.cluster_resources()
    cpus, gpus = float(resources.get("CPU", 0)), int(resources.get("GPU", 0))
    nodes = max(1, sum(1 for node in ray.nodes() if node.get("Alive")))
    per_encoder = max(1, options.encoder_cpus)
    if options.encoders:
        encoders = options.encoders
    elif gpus:
        encoders = gpus
    else:
        encoders = max(1, min(nodes, int((cpus - options.decode_cpus) // per_encoder)))
    spare = cpus - encoders * per_encoder
    if spare < options.decode_cpus:
        raise UsageError(
            f"{encoders} encoder actor(s) x {per_encoder} CPU(s) leave {spare:g} of the cluster's {cpus:g} "
            "CPUs for reading and decoding: use fewer --ray-encoders or --threads, or a bigger cluster"
        )
    if gpus and encoders > gpus:
        raise UsageError(f"{encoders} encoder actors but the cluster has {gpus} GPU(s): one GPU per actor")
    return {
        "nodes": nodes,
        "cpus": cpus,
        "gpus": gpus,
        "encoders": encoders,
        "gpus_per_encoder": 1 if gpus else 0,
        "cpus_per_encoder": per_encoder,
        "writers": options.writers,
    }


def index_images_ray(
    items: list[ImageItem],
    model_dir: str | os.PathLike[str],
    sink: SinkSpec,
    report: RunReport,
    ledger: Ledger,
    *,
    options: PipelineOptions | None = None,
    ray_options: RayOptions | None = None,
    encoder_kwargs: dict[str, Any] | None = None,
    progress: Progress | None = None,
) -> RunReport:
    """Index ``items`` (already sharded) on a Ray cluster; fills and returns ``report`` exactly as
    :func:`stair_es.ingest.pipeline.index_images` would."""
    from stair_es.runtime import Manifest

    options = options or PipelineOptions()
    ray_options = ray_options or RayOptions()
    start = time.perf_counter()
    report.discovered += len(items)
    tick = progress.update if progress is not None else (lambda force=False: None)

    def fail(where: str, kind: str, reason: str, stage: str, **extra: Any) -> None:
        ledger.fail(where, kind, reason, stage, **extra)
        tick()

    usable = [item for item in items if _usable(item, fail)]
    manifest = Manifest.read(model_dir)
    model_root = str(Path(model_dir).resolve())
    ray = connect_ray(ray_options)
    layout = plan(ray, ray_options)
    report.ray = dict(layout)
    kwargs = dict(encoder_kwargs or {})
    kwargs.setdefault("intra_op_threads", ray_options.encoder_cpus)
    if layout["gpus_per_encoder"]:
        kwargs.setdefault("provider", "cuda")
    else:
        kwargs["provider"] = "cpu" if kwargs.get("provider") in (None, "auto") else kwargs["provider"]
    displays = {}
    records = []
    for i, item in enumerate(usable):
        assert item.path is not None
        displays[i] = item.display
        records.append(
            {
                "i": i,
                "key": item.key,
                "abs_path": os.path.abspath(item.path),
                "caption": item.caption or "",
                "url": item.url or "",
                "id": item.id or "",
                "metadata": json.dumps(item.metadata, ensure_ascii=False, default=str),
            }
        )
    providers: set[str] = set()
    seen_rows = 0
    try:
        if records:
            pool = ray.data.ActorPoolStrategy
            blocks = max(1, min(-(-len(records) // options.batch_size), 2000))
            ds = ray.data.from_items(records, override_num_blocks=blocks)
            # A decode task holds a batch of preprocessed pixels; saying so also keeps Ray Data from
            # fusing decoding into the encoder actors (different remote arguments): CPU tasks decode.
            height, width = manifest.image.size
            decode_memory = max(64 << 20, 3 * options.batch_size * 3 * height * width * 4)
            ds = ds.map_batches(
                read_and_hash,
                batch_size=options.lookup_chunk,
                fn_kwargs={"max_file_bytes": options.max_file_bytes},
                num_cpus=ray_options.decode_cpus,
                batch_format="numpy",
            )
            ds = ds.map_batches(
                Gate,
                batch_size=options.lookup_chunk,
                fn_constructor_args=(sink, options.skip_existing),
                compute=pool(size=1),
                num_cpus=0,
                batch_format="numpy",
            )
            ds = ds.map_batches(
                decode,
                batch_size=options.batch_size,
                fn_kwargs={"spec": manifest.image.to_dict(), "max_pixels": kwargs.get("max_image_pixels")},
                num_cpus=ray_options.decode_cpus,
                memory=decode_memory,
                batch_format="numpy",
            )
            ds = ds.map_batches(
                Encode,
                batch_size=options.batch_size,
                fn_constructor_args=(model_root, kwargs, options.encode_captions),
                compute=pool(size=layout["encoders"]),
                num_cpus=layout["cpus_per_encoder"],
                num_gpus=layout["gpus_per_encoder"],
                batch_format="numpy",
            )
            ds = ds.map_batches(
                Write,
                batch_size=max(1, min(options.batch_size * 4, 500)),
                fn_constructor_args=(sink, model_root),
                compute=pool(size=max(1, ray_options.writers)),
                num_cpus=0,
                batch_format="numpy",
            )
            for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
                stop = None
                for row in _rows(batch):
                    seen_rows += 1
                    _account(row, displays, report, ledger, fail, providers)
                    stop = stop or str(row.get("load_error") or "") or None
                    tick()
                if stop is not None:  # the engine refused or went away: stop as the single process does
                    raise EngineError(stop)
    except KeyboardInterrupt:
        report.interrupted = True
        raise
    finally:
        report.encoded = 0
        report.seconds += time.perf_counter() - start
        report.provider = ", ".join(sorted(providers)) or report.provider
        if report.ray is not None:
            report.ray["rows_returned"] = seen_rows
    if progress is not None:
        progress.close()
    return report


def _account(
    row: dict[str, Any],
    displays: dict[int, str],
    report: RunReport,
    ledger: Ledger,
    fail: Any,
    providers: set[str],
) -> None:
    """One returned row into the report and the failures file, as the single-process run does."""
    status = str(row["status"])
    if row.get("provider"):
        providers.add(str(row["provider"]))
    report.decode_cpu_seconds += float(row.get("decode_seconds") or 0.0)
    report.stage_seconds["inference"] += float(row.get("inference_seconds") or 0.0)
    if status == "indexed":
        report.indexed += 1
    elif status == "skipped_existing":
        report.skipped_existing += 1
    elif status == "skipped_duplicate":
        report.skipped_duplicate += 1
    elif status == "sink_entry":  # what the engine said, recorded exactly as the single-process run does
        _record(ledger, json.loads(str(row["extra"])))
    elif status == "failed":
        extra = json.loads(str(row.get("extra") or "") or "{}")
        fail(displays[int(row["i"])], str(row["kind"]), str(row["reason"]), str(row["stage"]), **extra)
    elif status != "unsent":  # unsent: the load stopped before it (not reached; a rerun picks it up)
        fail(displays[int(row["i"])], "decode", f"unexpected row status {status!r}", "ray")
