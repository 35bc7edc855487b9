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
