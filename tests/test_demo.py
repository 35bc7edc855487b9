"""The shipped demo model and the demo's sample collection."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stair_es.demo import DEMO_LABEL, build_collection, demo_model_dir, shipped_demo_model
from stair_es.runtime import Manifest, load_encoder


def test_shipped_demo_model_is_labelled_and_parity_checked() -> None:
    manifest = Manifest.read(shipped_demo_model())
    demo = manifest.exporter["demo"]
    assert demo["label"] == DEMO_LABEL
    assert any(cmd.startswith("stair-es train --preset demo") for cmd in demo["reproduce"])
    assert all(report["passed"] for tower in manifest.parity.values() for report in tower.values())
    assert manifest.vocab_size >= 1000


def test_demo_model_dir_prefers_a_local_rebuild(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STAIR_ES_CACHE", str(tmp_path))
    assert demo_model_dir() == shipped_demo_model()
    rebuilt = tmp_path / "demo" / "models" / "stair-demo-synthetic"
    rebuilt.mkdir(parents=True)
    (rebuilt / "manifest.json").write_text("{}")
    assert demo_model_dir() == rebuilt


def test_collection_has_captions_and_two_broken_files(tmp_path: Path) -> None:
    out = build_collection(tmp_path / "c", num_images=6, seed=3)
    images = sorted((out / "images").iterdir())
    jpgs = [p for p in images if p.suffix == ".jpg" and not p.name.startswith("broken")]
    assert len(jpgs) == 6 and all(p.with_suffix(".txt").is_file() for p in jpgs)
    assert {p.name for p in images} >= {"broken-truncated.jpg", "not-really-an-image.png"}
    assert build_collection(tmp_path / "c", num_images=6, seed=3) == out  # cached
    smaller = build_collection(tmp_path / "c", num_images=3, seed=3)  # demo --images 3 after 6
    jpgs = [p for p in (smaller / "images").glob("*.jpg") if not p.name.startswith("broken")]
    assert len(jpgs) == 3


def test_demo_model_grounds_colours_in_words(tmp_path: Path) -> None:
    """An image's heaviest tokens name its colours: what makes the index readable."""
    out = build_collection(tmp_path / "c", num_images=12, seed=11)
    encoder = load_encoder(shipped_demo_model(), provider="cpu")
    rows = []
    for caption_file in sorted((out / "images").glob("0*.txt")):
        caption = caption_file.read_text().strip()
        vector = encoder.encode_images([caption_file.with_suffix(".jpg")])[0]
        rows.append((caption, vector.tokens[:8]))
    from stair_es.data.synthetic import COLOURS

    hits = [all(w in top for w in caption.split() if w in COLOURS) for caption, top in rows]
    assert sum(hits) / len(hits) >= 0.75, json.dumps(rows, indent=1)


def test_demo_step_failure_stops_the_demo(tmp_path: Path) -> None:
    """A failing step (here: a missing model, exit code 5) must not be reported as a finished demo."""
    from stair_es.errors import StairError
    from stair_es_cli.demo_cmd import _run

    with pytest.raises(StairError, match="exited with 5"):
        _run(["encode", "--model", str(tmp_path / "no-model"), "--text", "red circle"])
    assert _run(["encode", "--help"]) == 0


def test_demo_rebuild_dirs_are_keyed_by_the_recipe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A cached set or half-finished run from another recipe version is never resumed silently."""
    from dataclasses import replace

    from stair_es import demo
    from stair_es.training import recipes

    monkeypatch.setenv("STAIR_ES_CACHE", str(tmp_path))
    data, run = demo.demo_train_data_dir(), demo.demo_run_dir()
    assert data.parent == tmp_path / "demo" / "train-data"
    assert demo.demo_train_data_dir(500) == data  # same synthetic set for another step count
    assert demo.demo_run_dir(500) != run
    original = recipes.PRESETS["demo"]

    def bigger(**kwargs: object) -> recipes.Recipe:
        recipe = original(**kwargs)  # type: ignore[arg-type]
        return replace(recipe, synthetic=replace(recipe.synthetic, num_images=123))

    monkeypatch.setitem(recipes.PRESETS, "demo", bigger)
    assert demo.demo_train_data_dir() != data and demo.demo_run_dir() != run
