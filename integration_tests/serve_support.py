"""A small indexed image collection for the `stair-es serve` tests, built with the shipped demo model.

The tests check that results come back and how the API and page behave, never which images the
demo model ranks first (it is retrained from time to time); exact assertions use token queries.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path

from click.testing import CliRunner


@dataclass
class ServedCollection:
    url: str
    index: str
    root: Path  # the folder that was indexed (thumbnails come only from below it)
    model: Path
    images: list[Path]


def build_served_collection(engine_url: str, workdir: Path, num_images: int) -> ServedCollection:
    from stair_es.demo import build_collection, shipped_demo_model
    from stair_es_cli.main import main

    collection = build_collection(workdir / "collection", num_images=num_images, seed=77)
    root = collection / "images"
    for broken in ("broken-truncated.jpg", "not-really-an-image.png"):
        (root / broken).unlink()  # the demo's bad-input files are not what these tests are about
    index = f"stair-serve-test-{uuid.uuid4().hex[:8]}"
    model = shipped_demo_model()
    args = ["index", "images", str(root), "--index", index, "--model", str(model), "--no-progress"]
    result = CliRunner().invoke(main, [*args, "--url", engine_url, "--provider", "cpu"])
    assert result.exit_code == 0, result.output
    images = sorted(root.glob("*.jpg"))
    assert len(images) == num_images
    return ServedCollection(engine_url, index, root, model, images)
