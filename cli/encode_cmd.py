"""``stair-es encode``: texts and images to token->weight JSONL (debugging and interchange).

One line per input: ``{"id", "kind", "tokens": {token: weight, ...}, "text" or "path"}``, heaviest
token first; ``stair-es index tokens`` indexes such a file (vectors encoded on another host).
Undecodable images are reported on stderr and in ``--failures`` and never stop the run.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import click

from stair_es_cli.common import max_image_pixels_option, model_option, precision_option, provider_option


@click.command()
@model_option()
@click.option("--text", "texts", multiple=True, help="A text to encode (repeatable).")
@click.option(
    "--texts-file",
    type=click.File("r", encoding="utf-8"),
    default=None,
    help="Texts to encode: one per line, or JSONL with 'text' (and optional 'id'); '-' reads stdin.",
)
@click.option("--image", "images", multiple=True, type=click.Path(), help="An image file (repeatable).")
@click.option(
    "--images-dir",
    type=click.Path(exists=True, file_okay=False),
    default=None,
    help="Encode every image file under this folder (recursive); ids are paths relative to it.",
)
@click.option("--top-k", type=click.IntRange(min=1), default=None, help="Keep the K heaviest tokens.")
@click.option(
    "--min-weight", type=click.FloatRange(min=0.0), default=None, help="Drop tokens below this weight."
)
@provider_option()
@precision_option()
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@click.option(
    "--workers", type=click.IntRange(min=1), default=None, help="Image decode threads [default: cores]."
)
@click.option("--threads", type=click.IntRange(min=1), default=None, help="onnxruntime intra-op threads.")
@max_image_pixels_option()
@click.option("--escape", is_flag=True, help="Print feature names escaped as stored in rank_features.")
@click.option("--digits", type=click.IntRange(0, 9), default=None, help="Round weights to this many digits.")
@click.option(
    "--output", "-o", type=click.File("w", encoding="utf-8"), default="-", help="JSONL destination."
)
@click.option(
    "--failures",
    type=click.Path(dir_okay=False),
    default=None,
    help="Write undecodable inputs here as JSONL {id, error} [default: stderr only].",
)
def encode(
    model_path: Path | None,
    texts: tuple[str, ...],
    texts_file: IO[str] | None,
    images: tuple[str, ...],
    images_dir: str | None,
    top_k: int | None,
    min_weight: float | None,
    provider: str,
    precision: str,
    batch_size: int,
    workers: int | None,
    threads: int | None,
    max_image_pixels: int,
    escape: bool,
    digits: int | None,
    output: IO[str],
    failures: str | None,
) -> None:
    """Encode texts and/or images with an exported model (--model, a directory with manifest.json).

    Exit status 1 when some images failed (the others are still printed).
    """
    from stair_es.errors import UsageError
    from stair_es.runtime import load_encoder
    from stair_es.runtime.files import relative_key, walk_image_files
    from stair_es_cli.common import resolve_model_path

    text_items = [(f"text-{i}", t) for i, t in enumerate(texts)]
    if texts_file is not None:
        text_items.extend(_read_texts(texts_file, start=len(text_items)))
    image_items: list[tuple[str, str]] = [(p, p) for p in images]
    unlisted: list[tuple[str, str]] = []  # folders under --images-dir that cannot be listed
    if images_dir is not None:
        root = Path(images_dir)
        if not root.is_dir():
            raise UsageError(f"{root}: not a directory")
        for path, error in walk_image_files(root):
            (unlisted if error else image_items).append((relative_key(path, root), error or str(path)))
    if not text_items and not image_items and not unlisted:
        raise UsageError("nothing to encode: give --text, --texts-file, --image or --images-dir")

    encoder = load_encoder(
        resolve_model_path(model_path),
        provider=provider,
        precision=precision,
        intra_op_threads=threads,
        decode_workers=workers,
        max_image_pixels=max_image_pixels,
    )
    prune: dict[str, Any] = {}
    if top_k is not None:
        prune["top_k"] = top_k
    if min_weight is not None:
        prune["min_weight"] = min_weight

    def emit(item_id: str, vector: Any, kind: str, **extra: str) -> None:
        tokens = vector.to_features() if escape else vector.to_dict()
        if digits is not None:
            tokens = {k: round(v, digits) for k, v in tokens.items()}
        # kind and text/path let `stair-es index tokens` load the file as it is
        line = {"id": item_id, "kind": kind, "tokens": tokens, **extra}
        output.write(json.dumps(line, ensure_ascii=False) + "\n")

    if text_items:
        _describe(encoder, "text")
        vectors = encoder.encode_texts([t for _, t in text_items], batch_size=batch_size, **prune)
        for (item_id, text), vector in zip(text_items, vectors):
            emit(item_id, vector, "text", text=text)

    failed = 0
    if image_items or unlisted:
        failure_file = open(failures, "w", encoding="utf-8") if failures else None  # noqa: SIM115
        try:
            for item_id, error in unlisted:
                failed += 1
                click.echo(f"failed: {item_id}: {error}", err=True)
                if failure_file is not None:
                    failure_file.write(json.dumps({"id": item_id, "error": error}, ensure_ascii=False) + "\n")
            if image_items:
                _describe(encoder, "image")
            results = encoder.iter_encode_images(
                [path for _, path in image_items], batch_size=batch_size, workers=workers, **prune
            )
            for result in results:
                item_id = image_items[result.index][0]
                if result.ok:
                    emit(
                        item_id,
                        result.vector,
                        "image",
                        path=str(Path(image_items[result.index][1]).absolute()),
                    )
                    continue
                failed += 1
                click.echo(f"failed: {result.error}", err=True)
                if failure_file is not None:
                    failure_file.write(
                        json.dumps({"id": item_id, "error": result.error}, ensure_ascii=False) + "\n"
                    )
        finally:
            if failure_file is not None:
                failure_file.close()
    output.flush()
    if failed:
        where = f"; listed in {failures}" if failures else ""
        click.echo(f"{failed} of {len(image_items) + len(unlisted)} images failed{where}", err=True)
        sys.exit(1)


def _describe(encoder: Any, tower: str) -> None:
    info = encoder.provider_info(tower)
    click.echo(
        f"{tower} encoder: {encoder.model_id} [{encoder.active_precision(tower)}] on {info.describe()}",
        err=True,
    )


def _read_texts(handle: IO[str], start: int) -> Iterator[tuple[str, str]]:
    """Plain lines, or JSONL objects with 'text' and optional 'id'."""
    from stair_es.errors import UsageError

    name = getattr(handle, "name", "texts")
    for number, line in enumerate(handle, 1):
        line = line.rstrip("\r\n")
        if not line.strip():
            continue
        if line.lstrip().startswith("{"):
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise UsageError(f"{name}:{number}: invalid JSON ({exc.msg})") from exc
            if not isinstance(record, dict) or not isinstance(record.get("text"), str):
                raise UsageError(f"{name}:{number}: a JSON line needs a string 'text'")
            yield str(record.get("id", f"text-{start + number - 1}")), record["text"]
        else:
            yield f"text-{start + number - 1}", line
