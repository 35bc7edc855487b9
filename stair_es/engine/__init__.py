"""Engine integration: mappings, OpenSearch/Elasticsearch adapters, bulk indexer, queries, search.

Typical use::

    from stair_es.engine import connect, ModelMeta, Indexer, Searcher
    backend = connect()                      # STAIR_ES_URL etc., or connect(urls="http://...")
    backend.create_index("photos", ModelMeta(encoder.model_id, encoder.vocab_hash))
    Indexer(backend, "photos", failures_path="failures.jsonl").index_documents(docs)
    hits = Searcher(backend, "photos", encoder).search(text="a dog on a beach", k=10).hits

Your own client: ``connect(client=OpenSearch(...))`` or ``connect(client=Elasticsearch(...))`` (its
auth as configured: SigV4, Cloud id, bearer token, TLS). Services on an event loop:
``await connect_async()`` and :class:`AsyncSearcher` (queries are encoded in a worker thread).
Nothing here imports torch.
"""

from stair_es.engine.aio import AsyncBackend, AsyncIndexer, AsyncSearcher, connect_async
from stair_es.engine.backend import Backend, ClusterInfo, detect
from stair_es.engine.bulk import LoadStopped
from stair_es.engine.config import ENV_VARS, ConnectionConfig
from stair_es.engine.connection import connect
from stair_es.engine.explain import TokenContribution, explain
from stair_es.engine.indexer import Document, Indexer, IndexerOptions, IndexSummary, document_id
from stair_es.engine.mappings import IMAGE_FIELD, TEXT_FIELD, IndexMeta, ModelMeta, index_body
from stair_es.engine.query import MODES, QueryOptions, QueryPlan, build_query
from stair_es.engine.search import Encoder, Hit, QueryEncoder, Searcher, SearchResult

__all__ = [
    "ENV_VARS",
    "AsyncBackend",
    "AsyncIndexer",
    "AsyncSearcher",
    "IMAGE_FIELD",
    "MODES",
    "TEXT_FIELD",
    "Backend",
    "ClusterInfo",
    "ConnectionConfig",
    "Document",
    "Encoder",
    "QueryEncoder",
    "Hit",
    "IndexMeta",
    "IndexSummary",
    "Indexer",
    "IndexerOptions",
    "LoadStopped",
    "ModelMeta",
    "QueryOptions",
    "QueryPlan",
    "SearchResult",
    "Searcher",
    "TokenContribution",
    "build_query",
    "connect",
    "connect_async",
    "detect",
    "document_id",
    "explain",
    "index_body",
]
