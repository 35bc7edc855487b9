"""stair-es: STAIR sparse image/text retrieval on Elasticsearch and OpenSearch.

The runtime path (encode, index, search) never imports torch; torch and transformers are only
needed for training and export (``pip install "stair-es[train]"``).
"""

import logging

from stair_es._version import __version__

# the library logs (which execution provider runs, which engine answered) to "stair_es.*";
# applications choose what to show
logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = ["__version__"]
