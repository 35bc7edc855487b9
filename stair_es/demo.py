"""The one-command demo's building blocks: where the demo model lives, and how it is made.

No model hub is reachable, so the demo model is one this project produces reproducibly: trained
by the ``demo`` preset on the seeded synthetic captioned set (``stair-es train --preset demo``),
exported to ONNX, and labelled as a demo model in its manifest, which records the exact commands.
The exported graphs ship in the package (``stair_es/assets/demo-model``, about 8 MB), so the demo
needs neither torch nor a training run; ``--rebuild-model`` trains and exports it again locally.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

DEMO_MODEL_NAME = "stair-demo-synthetic"


def demo_root() -> Path:
    from stair_es.local import cache_root

    return cache_root() / "demo"


def shipped_demo_model() -> Path:
    """The demo model exported by the project and shipped with the package."""
    return Path(__file__).resolve().parent / "assets" / "demo-model"


def demo_model_dir() -> Path:
    """The demo model to use: one rebuilt locally (``--rebuild-model``) wins over the shipped one."""
    rebuilt = demo_root() / "models" / DEMO_MODEL_NAME
    if (rebuilt / "manifest.json").is_file() or not (shipped_demo_model() / "manifest.json").is_file():
        return rebuilt
    return shipped_demo_model()


def demo_train_dir() -> Path:
    """The trained torch model (kept so ``stair-es export`` can be re-run on it)."""
    return demo_root() / "train"


DEMO_STEPS = 4000
DEMO_LABEL = "DEMO MODEL: trained on synthetic coloured shapes only; not for real photos"


def label_demo_model(model_dir: Path, train_dir: Path, steps: int) -> None:
    """Mark an exported model as the demo model and record the commands that rebuild it."""
    import json

    from stair_es.runtime import Manifest

    record = json.loads((train_dir / "training.json").read_text())
    manifest = Manifest.read(model_dir)
    manifest.exporter["demo"] = {
        "label": DEMO_LABEL,
        "reproduce": [
            f"stair-es train --preset demo --seed 0 --steps {steps} --output TRAIN_DIR",
            f"stair-es export TRAIN_DIR OUT_DIR --model-id {DEMO_MODEL_NAME}",
        ],
        "final_metrics": record.get("final_metrics"),
        "torch": record.get("torch"),
        "train_seconds": record.get("total_seconds"),
    }
    manifest.write()
    (model_dir / "training.json").write_text(json.dumps(record, indent=2) + "\n")


def _demo_key(part: object) -> str:
    import hashlib
    import json
    from dataclasses import asdict

    return hashlib.sha256(json.dumps(asdict(part), sort_keys=True).encode()).hexdigest()[:12]  # type: ignore[call-overload]


def demo_train_data_dir(steps: int = DEMO_STEPS) -> Path:
    """Where the demo's synthetic training set lives, keyed by its generator settings so a recipe
    change never silently trains on a set an older version generated."""
    from stair_es.training.recipes import PRESETS

    return demo_root() / "train-data" / _demo_key(PRESETS["demo"](total_steps=steps).synthetic)


def demo_run_dir(steps: int = DEMO_STEPS) -> Path:
    """The (resumable) training run, keyed by the whole recipe: resuming never mixes recipes."""
    from stair_es.training.recipes import PRESETS

    return demo_train_dir() / f"steps-{steps}-{_demo_key(PRESETS['demo'](total_steps=steps))}"


def ensure_demo_model(
    log: Callable[[str], None] | None = None, steps: int | None = None, rebuild: bool = False
) -> Path:
    """The demo model: the shipped (or an earlier rebuilt) one, else train and export it locally.

    Rebuilding runs what the manifest's ``exporter.demo.reproduce`` says (the ``demo`` preset with
    seed 0 on the seeded synthetic set) and needs the train extra (torch).
    """
    import time

    from stair_es.errors import require

    log = log or logging.getLogger(__name__).info  # the CLI passes click.echo
    if not rebuild and (demo_model_dir() / "manifest.json").is_file():
        return demo_model_dir()
    require("torch", "train", "rebuilding the demo model")
    from stair_es.export import export_model
    from stair_es.training.recipes import train_preset

    steps = steps or DEMO_STEPS
    out = demo_root() / "models" / DEMO_MODEL_NAME
    train_dir = demo_run_dir(steps)
    t0 = time.perf_counter()
    log(f"training the demo model ({steps} steps; resumable) ...")
    train_preset(
        "demo",
        train_dir,
        data_dir=demo_train_data_dir(steps),
        total_steps=steps,
        seed=0,
        log=log,
        resume=True,
    )
    log(f"trained in {time.perf_counter() - t0:.0f}s; exporting to ONNX ...")
    export_model(train_dir, out, model_id=DEMO_MODEL_NAME, overwrite=True, log=log)
    label_demo_model(out, train_dir, steps)
    return out


DEMO_INDEX = "stair-demo"
# What people type first: two or three words in the captions' vocabulary. Each has at least three
# right answers among the 240 sample images, and the demo prints whether its top 3 hold them (the
# shipped model gets all of these right; an integration test keeps it so).
DEMO_TEXT_QUERIES = (
    "red circles",
    "three crosses",
    "green triangles",
)
DEMO_HINT_QUERY = "pink crosses"


def build_collection(out_dir: Path, num_images: int = 240, seed: int = 1234) -> Path:
    """A sample image folder with sidecar captions, and two broken files.

    Seeded apart from the training set, so the demo searches images the model never saw. The
    broken files (a truncated JPEG, a text file named .png) show that bad input is reported and
    written to the failures file while everything else is indexed.
    """
    import json

    from stair_es.data.synthetic import SyntheticConfig, generate_synthetic

    key = f"{num_images} images, seed {seed}\n"
    done = out_dir / ".complete"
    if done.is_file() and done.read_text() == key:
        return out_dir
    if out_dir.exists():  # another size or seed (demo --images 60 after a default run): start over
        import shutil

        shutil.rmtree(out_dir)
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
    done.write_text(key)
    return out_dir
