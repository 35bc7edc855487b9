"""``stair-es demo``: the README's first command, end to end on a fresh machine.

Local engine -> demo model (trained + exported on first run, then cached) -> a sample image folder
with captions and two broken files -> ``stair-es index images`` -> text and image searches with the
matched tokens. Each step prints the command a user would type to do the same.
"""

from __future__ import annotations

import shlex
import time
from pathlib import Path

import click

from stair_es_cli.common import local_port_option


def _step(number: int, total: int, title: str) -> None:
    click.secho(f"\n== [{number}/{total}] {title}", bold=True)


def _run(args: list[str], ok_codes: tuple[int, ...] = (0,)) -> int:
    """Run a stair-es command in-process, exactly as typed on a shell."""
    from stair_es_cli.main import main

    click.secho("$ stair-es " + " ".join(shlex.quote(a) for a in args), fg="cyan")
    try:
        # without standalone mode click *returns* the exit code of ctx.exit() instead of raising
        returned = main.main(args=args, prog_name="stair-es", standalone_mode=False)
        code = returned if isinstance(returned, int) else 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    except click.exceptions.Exit as exc:
        code = exc.exit_code
    if code not in ok_codes:
        from stair_es.errors import StairError

        raise StairError(f"demo step failed: stair-es {' '.join(args)} exited with {code}")
    return code


def _index_needs_rebuild(url: str, index: str, model_path: Path, num_images: int) -> bool:
    """True when the demo's own index holds another model's tokens (e.g. after ``--model``), or
    more documents than this sample collection (``--images 60`` after a default run).

    The demo owns this index, so it is rebuilt instead of failing on the model mismatch that
    protects user indexes; the message says so.
    """
    from stair_es.engine import connect
    from stair_es.runtime import Manifest

    backend = connect(urls=url)
    if not backend.index_exists(index):
        return False
    manifest = Manifest.read(model_path)
    meta = backend.index_meta(index)
    if meta.matches(manifest.model_id, manifest.vocab_hash):
        backend.refresh(index)
        held = backend.count(index)
        if held <= num_images:
            return False
        click.secho(
            f"index '{index}' holds {held} documents of an earlier, larger sample collection: "
            f"recreating it for {num_images} (the demo owns this index)",
            fg="yellow",
        )
        return True
    click.secho(
        f"index '{index}' holds tokens of model '{meta.model.model_id}', not '{manifest.model_id}': "
        "recreating it (the demo owns this index)",
        fg="yellow",
    )
    return True


class _HitChecker:
    """Says how many of a query's hits hold what it names (the collection's captions are the truth)."""

    def __init__(self, url: str, model_path: Path) -> None:
        from stair_es.demo import DEMO_INDEX
        from stair_es.engine import Searcher, connect
        from stair_es.runtime import load_encoder

        self.searcher = Searcher(connect(urls=url), DEMO_INDEX, load_encoder(model_path))

    def report(self, query: str, k: int) -> None:
        from stair_es.eval.short_queries import caption_answers

        hits = self.searcher.search(text=query, k=k, explain=False).hits
        right = sum(1 for h in hits if caption_answers(query, h.source.get("caption")))
        ok = right == len(hits) == k
        click.secho(
            f'  {"ok" if ok else "MISS"}: {right} of the top {k} hold what "{query}" names',
            fg="green" if ok else "yellow",
        )


@click.command()
@local_port_option("Port of the local engine")
@click.option(
    "--url",
    envvar="STAIR_ES_URL",
    default=None,
    help="Use this cluster instead of the local engine [env STAIR_ES_URL].",
)
@click.option(
    "--model",
    "model_path",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Your exported model instead of the demo model.",
)
@click.option(
    "--images", "num_images", type=int, default=240, show_default=True, help="Size of the sample collection."
)
@click.option(
    "--rebuild-model",
    is_flag=True,
    help="Train and export the demo model here instead of using the shipped one (needs torch).",
)
@click.option("--steps", type=int, default=None, help="Training steps for --rebuild-model [default: 4000].")
def demo(
    port: int,
    url: str | None,
    model_path: Path | None,
    num_images: int,
    steps: int | None,
    rebuild_model: bool,
) -> None:
    """Start the local engine, get a model, index sample images, search them."""
    import os

    from stair_es.demo import (
        DEMO_HINT_QUERY,
        DEMO_INDEX,
        DEMO_TEXT_QUERIES,
        build_collection,
        demo_root,
        ensure_demo_model,
    )
    from stair_es_cli.index_cmd import EXIT_SOME_FAILED

    started = time.perf_counter()
    total = 5
    _step(1, total, "search engine")
    if url is None:
        from stair_es.local import ensure_running

        url = ensure_running(port=port, log=click.echo)
        click.echo(f"local engine at {url} (stop it later with: stair-es engine down)")
    os.environ["STAIR_ES_URL"] = url  # the commands below connect through the usual env var

    _step(2, total, "model")
    if model_path is None:
        model_path = ensure_demo_model(log=click.echo, steps=steps, rebuild=rebuild_model)
        from stair_es.runtime import Manifest

        label = Manifest.read(model_path).exporter.get("demo", {})
        click.secho(label.get("label", "demo model"), fg="yellow")
        for command in label.get("reproduce", []):
            click.echo(f"  built with: {command}")
    click.echo(f"model: {model_path}")

    _step(3, total, "sample collection")
    collection = build_collection(demo_root() / "collection", num_images=num_images)
    click.echo(
        f"{collection / 'images'}: {num_images} synthetic JPEGs with .txt captions, plus 2 broken files"
    )

    _step(4, total, "index the images (broken files are reported, the rest is indexed)")
    failures = demo_root() / "failures.jsonl"
    recreate = _index_needs_rebuild(url, DEMO_INDEX, model_path, num_images)
    # exit code 0: all indexed or skipped; the broken files make it the "some failed" code
    _run(
        [
            "index",
            "images",
            str(collection / "images"),
            "--index",
            DEMO_INDEX,
            "--model",
            str(model_path),
            "--failures",
            str(failures),
            "--no-progress",
            *(["--recreate"] if recreate else []),
        ],
        ok_codes=(0, EXIT_SOME_FAILED),
    )
    click.echo(f"failures file: {failures}")

    _step(5, total, "search: text -> image, and image -> image")
    checker = _HitChecker(url, model_path)
    for query in DEMO_TEXT_QUERIES:
        _run(["search", query, "--index", DEMO_INDEX, "--model", str(model_path), "-k", "3"])
        checker.report(query, k=3)
    sample = sorted((collection / "images").glob("0*.jpg"))[0]
    caption = sample.with_suffix(".txt").read_text().strip()
    click.echo(f'(query image {sample.name}: "{caption}")')
    _run(["search", "--image", str(sample), "--index", DEMO_INDEX, "--model", str(model_path), "-k", "3"])
    click.secho(f"\ndemo finished in {time.perf_counter() - started:.0f}s", bold=True)
    click.echo(f'try: stair-es search "{DEMO_HINT_QUERY}" --index {DEMO_INDEX} --explain')
