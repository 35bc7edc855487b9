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

import json
import logging
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stair_es.errors import EngineError, MissingDependencyError
from stair_es.ingest.discover import ImageItem
from stair_es.ingest.pipeline import PipelineOptions, _record, _usable
from stair_es.ingest.ray_stages import Encode, Gate, SinkSpec, Write, _rows, decode, read_and_hash
from stair_es.ingest.report import Ledger, Progress, RunReport
from stair_es.runtime.images import DEFAULT_MAX_PIXELS

__all__ = ["RayOptions", "SinkSpec", "connect_ray", "import_ray", "index_images_ray", "plan"]

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class RayOptions:
    """How the work is spread. ``address``: None for Ray's default (``RAY_ADDRESS``, else a cluster
    started with ``ray start`` on this machine, else a new local one), or ``host:port``."""

    address: str | None = None
    encoders: int | None = None  # encoder actors [default: one per GPU, else one per node]
    encoder_cpus: int = 1  # CPUs (onnxruntime threads) per encoder actor
    writers: int = 1  # bulk writer actors
    decode_cpus: float = 1.0  # logical CPUs per decode/read task


def import_ray() -> Any:
    try:
        import ray
        import ray.data  # noqa: F401 - Ray Data needs the "data" extra (pyarrow, pandas)
    except ImportError as exc:
        raise MissingDependencyError(f'--ray needs Ray Data: pip install "stair-es[ray]" ({exc})') from exc
    return ray


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
                fn_kwargs={
                    "spec": manifest.image.to_dict(),
                    "max_pixels": kwargs.get("max_image_pixels", DEFAULT_MAX_PIXELS),
                },
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
    if int(row.get("caption_only") or 0) == 1:
        report.caption_only += 1  # counted when encoded, as the single-process run does
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
