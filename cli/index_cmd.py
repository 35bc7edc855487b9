"""``stair-es index images PATH...`` and ``stair-es index texts FILE.jsonl``.

Thin layer over :mod:`stair_es.ingest`: options, the engine connection, stderr reporting. Library
imports happen inside the commands so ``stair-es --help`` stays instant.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from stair_es.engine.config import DEFAULT_IMAGE_INDEX, DEFAULT_TEXT_INDEX, DEFAULT_TOKENS_INDEX
from stair_es_cli import index_ray
from stair_es_cli.common import (
    connect_backend,
    connection_options,
    echo_err,
    index_option,
    load_runtime_encoder,
    max_image_pixels_option,
    model_option,
    precision_option,
    provider_option,
)

EXIT_SOME_FAILED = 10
SHOWN_FAILURES = 20  # failure lines printed on stderr before only counting (the file has them all)

EXIT_CODES_HELP = f"""
\b
Exit status:
  0    every item was indexed or skipped (already indexed)
  {EXIT_SOME_FAILED}   the run finished but some items failed (see --failures)
  2    bad arguments or input   5  model/index mismatch   130  interrupted
  3    engine error; also a load stopped early (a write block, the engine gone): the summary
       and the failures file are still written, and the same command resumes
"""


class BatchSize(click.ParamType):
    """A positive integer, or ``auto`` (tuned by measuring the model on this machine)."""

    name = "N|auto"

    def convert(self, value: Any, param: Any, ctx: Any) -> int | str:
        if isinstance(value, int) or value == "auto":
            return value
        try:
            number = int(value)
        except (TypeError, ValueError):
            number = 0
        if number < 1:
            self.fail(f"{value!r} is neither a positive integer nor 'auto'", param, ctx)
        return number


def _common_options(
    default_index: str, encoder: bool = True
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    encoder_only = {"--batch-size", "--provider", "--precision", "--threads", "--shard-id", "--num-shards"}
    options = [
        model_option(default_help="the model an existing index was built with, else the demo model"),
        index_option("Index name", f"{default_index}, or ALIAS-<model id> with --alias"),
        click.option(
            "--alias",
            default=None,
            help="Build ALIAS-<model id> beside the live index, then move the alias ALIAS to it in one "
            "atomic step when the run has no failures (re-index without downtime).",
        ),
        click.option(
            "--keep-settings",
            is_flag=True,
            help="Leave refresh_interval and replicas alone during the load (for a live index that "
            "serves searches); by default large loads relax them and restore them afterwards.",
        ),
        click.option(
            "--failures",
            "failures_path",
            type=click.Path(dir_okay=False, path_type=Path),
            default=None,
            help="Write one JSONL line per item not indexed (path, kind, reason); rewritten each run.",
        ),
        click.option(
            "--batch-size",
            type=BatchSize(),
            default="32",
            show_default=True,
            help="Items per encoder run, or 'auto': measure a few sizes on this machine first.",
        ),
        click.option(
            "--bulk-docs",
            type=click.IntRange(min=1),
            default=500,
            show_default=True,
            help="Documents per bulk request.",
        ),
        click.option(
            "--bulk-bytes",
            type=click.IntRange(min=1024),
            default=8 * 1024 * 1024,
            show_default=True,
            help="Maximum bulk request body in bytes.",
        ),
        provider_option(),
        precision_option(),
        click.option(
            "--threads", type=click.IntRange(min=1), default=None, help="onnxruntime intra-op threads."
        ),
        click.option("--shard-id", type=click.IntRange(min=0), default=0, show_default=True),
        click.option(
            "--num-shards",
            type=click.IntRange(min=1),
            default=1,
            show_default=True,
            help="Split the work: this process takes the items whose stable key hash % N == --shard-id.",
        ),
        click.option("--recreate", is_flag=True, help="Delete and recreate the index first."),
        click.option(
            "--compact",
            is_flag=True,
            help="New index only: keep token maps out of _source and store weights shifted (about "
            "half the size, same scores; explanations then come from the engine).",
        ),
        click.option(
            "--relax-after",
            type=click.IntRange(min=0),
            default=5000,
            show_default=True,
            help="Turn refresh off and replicas to 0 once this many documents are queued, restored at the "
            "end (or by the next run if this one is killed); 0: never.",
        ),
        click.option(
            "--shards",
            type=click.IntRange(min=1),
            default=None,
            help="New index only: primary shards [default: 1].",
        ),
        click.option(
            "--replicas",
            type=click.IntRange(min=0),
            default=None,
            help="New index only: copies of each shard on other nodes [default: 0].",
        ),
        click.option(
            "--skip-existing/--reindex-existing",
            default=True,
            show_default=True,
            help="Skip items whose content hash id is already in the index (resume/incremental runs).",
        ),
        click.option(
            "--dry-run", is_flag=True, help="Discover, read and encode, but write nothing to the engine."
        ),
        click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout."),
        click.option(
            "--progress/--no-progress",
            default=True,
            show_default=True,
            help="Progress on stderr: one updating line on a terminal, a line every 10 s otherwise.",
        ),
    ]

    if not encoder:
        options = [o for o in options if not encoder_only & set(_flags(o))]

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed(options):
            func = option(func)
        return connection_options(func)

    return decorate


def _flags(decorator: Callable[..., Any]) -> list[str]:
    """The flags of a click.option decorator (applied to a throwaway function)."""

    def probe() -> None: ...

    decorator(probe)
    return [flag for param in getattr(probe, "__click_params__", []) for flag in param.opts]


@click.group()
def index() -> None:
    """Index image folders/manifests or text corpora into the engine."""


@index.command(epilog=EXIT_CODES_HELP)
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@_common_options(DEFAULT_IMAGE_INDEX)
@click.option(
    "--caption-from",
    type=click.Choice(["auto", "sidecar", "manifest", "none"]),
    default="auto",
    show_default=True,
    help="auto: manifest captions for manifests, photo.txt next to photo.jpg for folders.",
)
@click.option(
    "--encode-captions", is_flag=True, help="Also encode captions into text_tokens (searchable as text)."
)
@click.option(
    "--decode-workers",
    type=click.IntRange(min=1),
    default=None,
    help="Image decode threads [default: cores, max 8].",
)
@max_image_pixels_option()
@index_ray.ray_options()
def images(paths: tuple[Path, ...], **kw: Any) -> None:
    """Index images from folders (recursive), image files, or .jsonl/.csv manifests.

    \b
    Folders: every *.jpg/.jpeg/.png/.webp/.gif/.bmp/.tif(f)/.jfif, any case, symlinks followed
    once (loops are safe); photo.txt next to photo.jpg is its caption, photo.json its metadata.
    Manifests: one record per image with "image" (or path/file), optional "caption" (text or list),
    "url", "id" and any metadata (stored under user.*); relative paths are relative to the manifest.

    Documents get ids from the file's sha256 (+ caption), so running the same command again
    skips what is already indexed: interrupted runs resume, new files are added incrementally.
    With --ray the same happens on a Ray cluster (read and decode in CPU tasks, encoding in an
    actor pool, bulk writers), with the same ids, counts and failures file.
    """
    from stair_es.ingest import discover_images, select_shard

    items = list(
        select_shard(discover_images(paths, kw.pop("caption_from")), kw["shard_id"], kw["num_shards"])
    )
    _run("images", items, kw, DEFAULT_IMAGE_INDEX)


@index.command(epilog=EXIT_CODES_HELP)
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_common_options(DEFAULT_TEXT_INDEX)
@click.option("--text-field", default="text", show_default=True, help="JSON key holding the text.")
def texts(file: Path, **kw: Any) -> None:
    """Index a JSONL text corpus: {"id"?, "text", ...metadata} per line, into text_tokens.

    The text is also stored in the caption field (BM25 for hybrid search); other keys go to user.*.
    Without "id", ids are the sha256 of the text, so re-running skips texts already indexed.
    """
    from stair_es.ingest import read_text_corpus, select_shard
    from stair_es.ingest.discover import check_text_field

    check_text_field(file, kw["text_field"])  # before any index exists: one line, nothing left behind
    items = select_shard(read_text_corpus(file, kw.pop("text_field")), kw["shard_id"], kw["num_shards"])
    with file.open("rb") as handle:  # for the progress line's ETA (a shard takes about its share)
        total = -(-sum(1 for line in handle if line.strip()) // kw["num_shards"])
    _run("texts", items, kw, DEFAULT_TEXT_INDEX, total)


@index.command(epilog=EXIT_CODES_HELP)
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_common_options(DEFAULT_TOKENS_INDEX, encoder=False)
@click.option("--model-id", default=None, help="Model id of whoever encoded FILE (instead of --model DIR).")
@click.option(
    "--vocab-hash", default=None, help="Its vocabulary hash (manifest.json); needed for a new index."
)
@click.option(
    "--kind",
    type=click.Choice(["image", "text"]),
    default=None,
    help="Token field for lines with plain 'tokens' and no 'kind'.",
)
def tokens(file: Path, **kw: Any) -> None:
    """Index token maps encoded elsewhere: `stair-es encode` output or any JSONL of
    {"id", "kind", "tokens": {token: weight}} (or image_tokens / text_tokens maps) per line.

    
    The model is named by --model DIR (only its manifest is read) or --model-id [--vocab-hash];
    adding to an existing index of that model needs only the id. No encoder runs.
      stair-es encode --model m/ --images-dir ~/photos -o photos.jsonl     # e.g. on a GPU host
      stair-es index tokens photos.jsonl --model m/ --index photos
    """
    from stair_es_cli.index_tokens import run_tokens

    run_tokens(file, kw, _report_failure_lines, EXIT_SOME_FAILED)


def _report_failure_lines(kw: dict[str, Any], progress: Any) -> Callable[[dict[str, Any]], None]:
    """Failure lines on stderr: the first SHOWN_FAILURES, then only a pointer to the failures file."""
    shown = [0]

    def on_failure(entry: dict[str, Any]) -> None:
        shown[0] += 1
        if kw["failures_path"] is None or shown[0] <= SHOWN_FAILURES:
            if progress is not None:
                progress.clear()
            echo_err(f"failed: {entry['path']}: {entry['reason']}")
        elif shown[0] == SHOWN_FAILURES + 1:
            echo_err(f"more failures are not shown here; all are in {kw['failures_path']}")

    return on_failure


def _run(kind: str, items: Any, kw: dict[str, Any], default_index: str, total: int = 0) -> None:
    from stair_es.engine import IndexerOptions
    from stair_es.errors import StairError, UsageError
    from stair_es.ingest import EngineSink, Ledger, MemorySink, PipelineOptions, Progress, RunReport
    from stair_es.ingest.pipeline import index_images, index_texts
    from stair_es.runtime.registry import register_model
    from stair_es_cli.index_target import IndexTarget

    if kw["recreate"] and kw["num_shards"] > 1:
        raise UsageError(
            "--recreate with --num-shards would let each shard delete the others' documents: "
            "delete or recreate the index once before starting the shards"
        )
    report = RunReport(index="", kind=kind, dry_run=kw["dry_run"])
    if kw["num_shards"] > 1:
        report.shard = f"{kw['shard_id']}/{kw['num_shards']}"
    encoder_kwargs: dict[str, Any] = {"precision": kw["precision"], "intra_op_threads": kw["threads"]}
    if kind == "images":
        import warnings

        from PIL import Image

        # oversized images are refused and reported per file; Pillow's own warning would only add noise
        warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
        encoder_kwargs.update(decode_workers=kw["decode_workers"], max_image_pixels=kw["max_image_pixels"])
    backend = None if kw["dry_run"] else connect_backend(kw["connection"])  # fail fast, before the model
    target = IndexTarget.plan(kw, backend, default_index)
    encoder = load_runtime_encoder(target.model_path, kw["provider"], **encoder_kwargs)
    target.name_for(encoder.model_id)
    report.index = target.index
    tower = "image" if kind == "images" else "text"
    ray_options = index_ray.ray_options_from(kw)
    if ray_options is None:
        info = encoder.provider_info(tower)
        report.provider = info.active
        echo_err(
            f"{tower} encoder: {encoder.model_id} [{encoder.active_precision(tower)}] on {info.describe()}"
        )
        if kw["batch_size"] == "auto":
            tuned = encoder.tune_batch_size(tower)
            kw["batch_size"] = tuned["batch_size"]
            rates = ", ".join(f"{b}: {r:.1f}/s" for b, r in tuned["items_per_s"].items())
            echo_err(f"batch size {kw['batch_size']} (measured {rates})")
    else:
        echo_err(f"{tower} encoder: {encoder.model_id}, on the Ray cluster's encoder actors")
        if kw["batch_size"] == "auto":
            kw["batch_size"] = 32

    if backend is None:
        sink: Any = MemorySink(target.index)
    else:
        target.check_existing(kw["compact"], kw["recreate"])
        relax: dict[str, Any] = {"relax_after": None if kw["keep_settings"] else kw["relax_after"] or None}
        options = IndexerOptions(chunk_size=kw["bulk_docs"], max_chunk_bytes=kw["bulk_bytes"], **relax)
        sink = EngineSink(
            backend,
            target.index,
            options,
            compact=kw["compact"],
            shards=kw["shards"],
            replicas=kw["replicas"],
        )
        target.state = sink.prepare(
            encoder.model_id,
            encoder.vocab_hash,
            encoder.manifest.vocab_size,
            kw["recreate"],
            model_path=str(Path(encoder.manifest.root).resolve()),
        )
        register_model(encoder.manifest)
        echo_err(f"index '{target.index}' on {backend.info.describe()}: {target.state}")
        if sink.layout_note:
            echo_err(f"note: {sink.layout_note}")

    progress = None
    if kw["progress"]:
        total = len(items) if isinstance(items, list) else total
        progress = Progress(report, total, sys.stderr, tty=sys.stderr.isatty())
    ledger = Ledger(report, kw["failures_path"], _report_failure_lines(kw, progress))
    pipeline_options = PipelineOptions(
        batch_size=kw["batch_size"],
        decode_workers=kw.get("decode_workers"),
        skip_existing=kw["skip_existing"] and not kw["recreate"],
        encode_captions=kw.get("encode_captions", False),
    )
    try:
        if kind == "images":
            echo_err(
                f"discovered {len(items)} images" + (f" for shard {report.shard}" if report.shard else "")
            )
            if ray_options is not None:
                spec = index_ray.sink_spec(sink, backend, target.index, kw)
                index_ray.index_on_ray(
                    items, encoder, spec, report, ledger, kw, ray_options, pipeline_options, progress
                )
            else:
                index_images(
                    items, encoder, sink, report, ledger, options=pipeline_options, progress=progress
                )
        else:
            index_texts(items, encoder, sink, report, ledger, options=pipeline_options, progress=progress)
    except KeyboardInterrupt:
        _clear_line(progress)
        report.interrupted = True
        for line in report.summary_lines():
            echo_err(line)
        raise
    except StairError as exc:  # the load stopped early: the summary still comes, then the error
        report.stopped = str(exc)
        stopped: StairError | None = exc
    else:
        stopped = None
    finally:
        ledger.close()
        try:
            if backend is not None:
                target.finish(report)
        except StairError as exc:  # e.g. the engine went away: the summary must still come
            target.messages.append(f"could not tidy up after the run: {exc}")
        finally:
            if backend is not None:
                backend.close()
    _clear_line(progress)
    for line in report.summary_lines():
        echo_err(line)
    for line in target.messages:
        echo_err(line)
    if kw["as_json"]:
        click.echo(json.dumps(report.to_dict(), indent=2))
    if stopped is not None:
        raise stopped
    if report.failed:
        sys.exit(EXIT_SOME_FAILED)


def _clear_line(progress: Any) -> None:
    if progress is not None:
        progress.close()  # a terminal's progress line goes away before the summary
