"""stair-es: STAIR sparse image/text retrieval on Elasticsearch and OpenSearch.

The runtime path (encode, index, search) never imports torch; torch and transformers are only
needed for training and export (``pip install "stair-es[train]"``).
"""

from stair_es._version import __version__

__all__ = ["__version__"]
