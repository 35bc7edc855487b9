"""Which exported model an index was built with, found again on this machine.

An index's ``_meta.stair_es`` holds the model id, the vocabulary hash and the folder the model was
indexed from; ``stair-es export`` and ``stair-es index`` also note every model they use in a small
registry (``models.json`` in the stair-es cache, keyed by model id). :func:`find_model` tries the
recorded folder, then the registry, then the demo model, and accepts a folder only when its
manifest has the same model id *and* vocabulary hash, so a moved or retrained model is never used
by mistake.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from stair_es.errors import StairError
from stair_es.runtime.manifest import Manifest

logger = logging.getLogger(__name__)
REGISTRY_NAME = "models.json"


def registry_path() -> Path:
    from stair_es.local import cache_root

    return cache_root() / REGISTRY_NAME


def _read(path: Path) -> list[dict[str, Any]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    models = data.get("models") if isinstance(data, dict) else None
    return [m for m in models or [] if isinstance(m, dict) and m.get("model_id") and m.get("path")]


def registered(model_id: str | None = None) -> list[dict[str, Any]]:
    """Registry entries (newest first), optionally only those of ``model_id``."""
    entries = sorted(_read(registry_path()), key=lambda m: -float(m.get("registered_at", 0)))
    return [m for m in entries if model_id is None or m["model_id"] == model_id]


def register_model(manifest: Manifest) -> Path | None:
    """Note ``manifest``'s folder under its model id; returns the registry file (None if unwritable).

    Never fails a command: an unwritable cache only means the model must be named next time.
    """
    path = registry_path()
    root = str(Path(manifest.root).resolve())
    entry = {
        "model_id": manifest.model_id,
        "vocab_hash": manifest.vocab_hash,
        "path": root,
        "registered_at": time.time(),
    }
    models = [m for m in _read(path) if m["path"] != root and Path(m["path"]).is_dir()]
    models.append(entry)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".models-", suffix=".json", dir=path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump({"models": models}, handle, indent=2)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError as exc:
        logger.warning("could not record model %s in %s: %s", manifest.model_id, path, exc)
        return None
    return path


def _matches(folder: str | os.PathLike[str], model_id: str, vocab_hash: str) -> Path | None:
    try:
        manifest = Manifest.read(folder)
    except (StairError, OSError):
        return None
    if manifest.model_id == model_id and manifest.vocab_hash == vocab_hash:
        return Path(manifest.root)
    return None


def find_model(model_id: str, vocab_hash: str, hints: Iterable[str | None] = ()) -> tuple[Path, str] | None:
    """``(folder, where it was found)`` of the model with this id and vocabulary, or None.

    ``hints``: folders to try first (the index's recorded ``model_path``).
    """
    candidates: list[tuple[str, str]] = [(h, "recorded in the index") for h in hints if h]
    candidates += [(m["path"], f"model registry {registry_path()}") for m in registered(model_id)]
    from stair_es.demo import demo_model_dir, shipped_demo_model

    candidates += [(str(demo_model_dir()), "the demo model"), (str(shipped_demo_model()), "the demo model")]
    for folder, where in candidates:
        found = _matches(folder, model_id, vocab_hash)
        if found is not None:
            return found, where
    return None
