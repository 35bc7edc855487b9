"""The one list of search modes (no imports: the CLI reads it to build its choices).

The planner (:func:`stair_es.engine.query.build_query`) names modes with underscores; people (CLI,
web page, HTTP API) type hyphens. ``native-pruned`` is ``native`` with Elasticsearch's pruning.
"""

from __future__ import annotations

MODES = ("exact", "two_phase", "hybrid", "native", "bm25")
# as people type them: name -> (planner mode, native prune)
USER_MODES: dict[str, tuple[str, bool]] = {
    "exact": ("exact", False),
    "two-phase": ("two_phase", False),
    "hybrid": ("hybrid", False),
    "native": ("native", False),
    "native-pruned": ("native", True),
    "bm25": ("bm25", False),
}
TEXT_ONLY_MODES = frozenset({"hybrid", "bm25"})  # planner modes that need a text (BM25 on captions)
EVAL_MODES = ("exact", "two_phase", "native")  # the sparse modes stair-es eval compares with memory


def user_mode_name(mode: str) -> str:
    """How people spell a planner mode (``two_phase`` -> ``two-phase``)."""
    return next(name for name, (planner, prune) in USER_MODES.items() if planner == mode and not prune)
