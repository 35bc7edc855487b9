"""Bulk indexing throughput: the Indexer (streaming_bulk, chunked) vs one request per document.

Prints one JSON object with docs/s for both and their ratio (``bulk_vs_loop``), measured in the same
run on the same synthetic documents (see sparse_corpus.py) into two fresh indices::

    python benchmarks/bulk_throughput.py --docs 20000 --loop-docs 1000

The per-document loop indexes only ``--loop-docs`` documents (it is slow by design); both use
``refresh=false`` so neither pays for refreshes inside the timed section.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from sparse_corpus import CorpusSpec, SparseCorpus  # noqa: E402

from stair_es.engine import Indexer, IndexerOptions, IndexSummary, ModelMeta, connect  # noqa: E402

MODEL = ModelMeta("bench-synthetic", "synthetic-vocab-30522")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=20_000)
    ap.add_argument("--loop-docs", type=int, default=1_000)
    ap.add_argument("--chunk-size", type=int, default=IndexerOptions().chunk_size)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--compact", action="store_true", help="compact indexes (tokens out of _source, shifted)")
    args = ap.parse_args()

    backend = connect()
    corpus = SparseCorpus(CorpusSpec(n_docs=args.docs, seed=args.seed))
    docs = list(corpus.index_documents())  # generated up front: only indexing is timed
    bulk_index, loop_index = "stair-bench-bulk", "stair-bench-loop"
    for name in (bulk_index, loop_index):
        backend.delete_index(name)
        backend.create_index(name, MODEL, tokens_in_source=not args.compact)
    try:
        options = IndexerOptions(chunk_size=args.chunk_size, refresh_at_end=False)
        indexer = Indexer(backend, bulk_index, options=options)
        summary = indexer.index_documents(docs)
        if summary.indexed != len(docs):
            raise SystemExit(f"bulk indexing incomplete: {summary.line()}")

        loop_docs = docs[: args.loop_docs]
        prepared = [indexer.prepare(d, IndexSummary(index=loop_index)) for d in loop_docs]
        start = time.perf_counter()
        for doc_id, source in prepared:
            backend.index_document(loop_index, doc_id, source)
        loop_seconds = time.perf_counter() - start
        backend.refresh(bulk_index)
        backend.refresh(loop_index)
        counts = (backend.count(bulk_index), backend.count(loop_index))
    finally:
        backend.delete_index(bulk_index)
        backend.delete_index(loop_index)

    loop_rate = len(loop_docs) / loop_seconds
    print(
        json.dumps(
            {
                "engine": backend.info.describe(),
                "bulk_docs": summary.indexed,
                "bulk_seconds": round(summary.seconds, 2),
                "bulk_docs_per_s": round(summary.docs_per_second, 1),
                "loop_docs": len(loop_docs),
                "loop_seconds": round(loop_seconds, 2),
                "loop_docs_per_s": round(loop_rate, 1),
                "bulk_vs_loop": round(summary.docs_per_second / loop_rate, 2),
                "chunk_size": args.chunk_size,
                "compact": args.compact,
                "indexed_counts": counts,
                "note": "bulk time includes building the request bodies; the loop's bodies are prebuilt",
                "cpu_count": os.cpu_count(),
                "load_avg_1m": round(os.getloadavg()[0], 2),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
