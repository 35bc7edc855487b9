"""``stair-es serve``: a JSON search API and a one-page web front for an index (the ``serve`` extra).

The page shows what makes STAIR different: every hit's matched tokens as chips sized by their
share of the score, and the query's own tokens. Nothing here imports torch; FastAPI and uvicorn
are imported only when a server is built.

    from stair_es.serve import SearchService, ServeConfig, create_app
    app = create_app(SearchService(ServeConfig(indexes=["photos"], connection=config, model_path=model)))
"""

from stair_es.serve.app import create_app
from stair_es.serve.service import SearchService, ServeConfig

__all__ = ["SearchService", "ServeConfig", "create_app"]
