"""stair-es: STAIR sparse image/text retrieval on Elasticsearch and OpenSearch.

The runtime path (encode, index, search) never imports torch; torch and transformers are only
needed for training and export (``pip install "stair-es[train]"``).

The common entry points are here, imported on first use (``import stair_es`` stays instant)::

    encoder = stair_es.load_encoder("models/stair-onnx")
    backend = stair_es.connect()  # STAIR_ES_URL etc.
    stair_es.Searcher(backend, "photos", encoder).search(text="a dog on a beach")
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any

from stair_es._version import __version__

if TYPE_CHECKING:
    from stair_es.engine import Indexer, Searcher, connect
    from stair_es.runtime import load_encoder
    from stair_es.sparse import SparseVector

# the library logs (which execution provider runs, which engine answered) to "stair_es.*";
# applications choose what to show
logging.getLogger(__name__).addHandler(logging.NullHandler())

# name -> module that defines it
_LAZY = {
    "load_encoder": "stair_es.runtime",
    "connect": "stair_es.engine",
    "Indexer": "stair_es.engine",
    "Searcher": "stair_es.engine",
    "SparseVector": "stair_es.sparse",
}

__all__ = ["Indexer", "Searcher", "SparseVector", "__version__", "connect", "load_encoder"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'stair_es' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
