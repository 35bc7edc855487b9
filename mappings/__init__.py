"""Index templates as JSON (installed as ``stair_es.mappings_data``); read through
:mod:`stair_es.engine.mappings`, which fills in model metadata and settings."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any


def load(name: str) -> dict[str, Any]:
    """Load ``<name>.json`` shipped in this folder."""
    return json.loads(resources.files(__name__).joinpath(f"{name}.json").read_text(encoding="utf-8"))
