"""The one-command demo's building blocks: where the demo model lives, and how it is made.

No model hub is reachable, so the demo model is one this project produces reproducibly: trained
by the ``demo`` preset on the seeded synthetic captioned set, exported to ONNX, and labelled as a
demo model in its manifest. It is cached, so only the first demo run trains.
"""

from __future__ import annotations

from pathlib import Path

DEMO_MODEL_NAME = "stair-demo-synthetic"


def demo_root() -> Path:
    from stair_es.local import cache_root

    return cache_root() / "demo"


def demo_model_dir() -> Path:
    """Exported (ONNX) demo model folder."""
    return demo_root() / "models" / DEMO_MODEL_NAME


def demo_train_dir() -> Path:
    """The trained torch model (kept so ``stair-es export`` can be re-run on it)."""
    return demo_root() / "train"


def ensure_demo_model(log=print, steps: int | None = None, rebuild: bool = False) -> Path:
    """The exported demo model, trained and exported on first use (needs the train extra).

    Reproducible: the ``demo`` preset with seed 0 on the seeded synthetic set; the manifest's
    ``exporter.demo`` records that it is a demo model and the command that rebuilds it.
    """
    import json
    import shutil
    import time

    from stair_es.errors import require
    from stair_es.runtime import Manifest

    out = demo_model_dir()
    if (out / "manifest.json").is_file() and not rebuild:
        return out
    require("torch", "train", "building the demo model")
    from stair_es.export import export_model
    from stair_es.training.recipes import train_preset

    train_dir = demo_train_dir()
    if rebuild and train_dir.exists():
        shutil.rmtree(train_dir)
    t0 = time.perf_counter()
    log("training the demo model (first run only; a few minutes on a 2-core CPU) ...")
    record = train_preset(
        "demo",
        train_dir,
        data_dir=demo_root() / "train-data",
        total_steps=steps,
        seed=0,
        log=log,
        resume=True,
    )
    log(f"trained in {time.perf_counter() - t0:.0f}s; exporting to ONNX ...")
    manifest = export_model(train_dir, out, int8=True, model_id=DEMO_MODEL_NAME, overwrite=True, log=log)
    manifest = Manifest.read(out)
    manifest.exporter["demo"] = {
        "label": "DEMO MODEL: trained on synthetic coloured shapes only; not for real photos",
        "reproduce": record.get("reproduce"),
        "final_metrics": record.get("final_metrics"),
    }
    manifest.write()
    (out / "training.json").write_text(json.dumps(record, indent=2) + "\n")
    return out


DEMO_INDEX = "stair-demo"
DEMO_TEXT_QUERIES = (
    "two red circles",
    "a blue square on a white background",
    "yellow triangles",
)


def build_collection(out_dir: Path, num_images: int = 240, seed: int = 1234) -> Path:
    """A sample image folder with sidecar captions, and two broken files.

    Seeded apart from the training set, so the demo searches images the model never saw. The
    broken files (a truncated JPEG, a text file named .png) show that bad input is reported and
    written to the failures file while everything else is indexed.
    """
    import json

    from stair_es.data.synthetic import SyntheticConfig, generate_synthetic

    if (out_dir / ".complete").is_file():
        return out_dir
    config = SyntheticConfig(num_images=num_images, seed=seed, image_format="jpeg", test_fraction=1.0)
    manifest = generate_synthetic(out_dir, config)["test"]
    for line in manifest.read_text().splitlines():
        row = json.loads(line)
        (out_dir / row["image"]).with_suffix(".txt").write_text(row["caption"] + "\n")
    manifest.unlink()
    images = out_dir / "images"
    good = sorted(images.glob("*.jpg"))[0].read_bytes()
    (images / "broken-truncated.jpg").write_bytes(good[: len(good) // 3])
    (images / "not-really-an-image.png").write_text("this is text, not a PNG\n")
    (out_dir / ".complete").write_text("")
    return out_dir
