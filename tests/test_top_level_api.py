"""The short top-level API: ``stair_es.connect`` and friends, imported on first use, never torch."""

from __future__ import annotations

import subprocess
import sys


def test_top_level_names_resolve_without_torch() -> None:
    code = (
        "import sys, stair_es;"
        "names = [stair_es.connect, stair_es.Indexer, stair_es.Searcher, stair_es.SparseVector, stair_es.load_encoder];"
        "from stair_es.engine import connect, Indexer, Searcher; from stair_es.runtime import load_encoder;"
        "from stair_es.sparse import SparseVector;"
        "assert names == [connect, Indexer, Searcher, SparseVector, load_encoder];"
        "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd="/")
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_unknown_name_is_an_attribute_error() -> None:
    import pytest

    import stair_es

    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        stair_es.nope  # noqa: B018
