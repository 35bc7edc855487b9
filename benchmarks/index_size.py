"""Index bytes per document for the storage variants, on the synthetic corpus (sparse_corpus.py).

Prints one JSON object: bytes/doc and the ratio to a 512-d float32 vector (2048 bytes) for
  * tokens in ``_source`` (the default: maps can be read back; explanations from ``_source``),
  * tokens left out of ``_source`` (``tokens_in_source=False``: explanations from the engine), which
    makes a compact index (weights stored x 2**-112: same scores, ~4 fewer bits per stored token),
    and the same without the shift (``no_token_source_unshifted``),
each with the default and the ``best_compression`` codec. When ``_source`` is filtered the engine
keeps a ``_recovery_source`` copy until its retention lease moves past the documents, so the
script waits ``--retention-wait`` seconds before flushing and force-merging; without that wait the
filtered variants look as big as the default::

    python benchmarks/index_size.py --docs 10000
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from sparse_corpus import CorpusSpec, SparseCorpus, pruning_overlap  # noqa: E402

from stair_es.engine import Indexer, IndexerOptions, ModelMeta, connect  # noqa: E402

VARIANTS: dict[str, dict] = {
    "tokens_in_source": {},
    "tokens_in_source_best_compression": {"extra_settings": {"codec": "best_compression"}},
    # tokens out of _source make a compact index: weights stored x 2**-112 (same scores, fewer bits)
    "no_token_source": {"tokens_in_source": False},
    "no_token_source_unshifted": {"tokens_in_source": False, "weight_shift": 0},
    "no_token_source_best_compression": {
        "tokens_in_source": False,
        "extra_settings": {"codec": "best_compression"},
    },
    # document-side pruning at index time (IndexerOptions.mass): the lightest tokens that together
    # carry the last 10% of a document's weight are not stored; its cost in ranking is printed too
    "no_token_source_doc_mass_0.9": {"tokens_in_source": False, "indexer": {"mass": 0.9}},
    "no_token_source_doc_mass_0.8": {"tokens_in_source": False, "indexer": {"mass": 0.8}},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=10_000)
    ap.add_argument("--zipf-s", type=float, default=CorpusSpec(1).zipf_s)
    ap.add_argument("--retention-wait", type=float, default=70.0)
    ap.add_argument(
        "--variants", default=",".join(VARIANTS), help="comma-separated subset of: " + ", ".join(VARIANTS)
    )
    args = ap.parse_args()
    chosen = {label: VARIANTS[label] for label in args.variants.split(",")}
    backend = connect()
    # the pid keeps two runs on one node (e.g. this script and its smoke test) out of each other's way
    names = {label: f"stair-bench-size-{label.replace('_', '-')}-{os.getpid()}" for label in chosen}
    result: dict[str, object] = {"engine": backend.info.describe(), "docs": args.docs, "zipf_s": args.zipf_s}
    try:
        for label, kwargs in chosen.items():
            backend.delete_index(names[label])
            create = {k: v for k, v in kwargs.items() if k != "indexer"}
            backend.create_index(names[label], ModelMeta("bench-synthetic", "synthetic"), **create)
            corpus = SparseCorpus(CorpusSpec(n_docs=args.docs, zipf_s=args.zipf_s))
            options = IndexerOptions(**kwargs.get("indexer", {}))
            summary = Indexer(backend, names[label], options=options).index_documents(
                corpus.index_documents()
            )
            if summary.indexed != args.docs:
                raise SystemExit(f"indexing incomplete: {summary.line()}")
        time.sleep(args.retention_wait)
        for label, name in names.items():
            backend.client.indices.flush(index=name)
            backend.force_merge(name)
            backend.refresh(name)
            backend.client.indices.flush(index=name)
            per_doc = backend.store_size_bytes(name) / args.docs
            result[label] = {
                "bytes_per_doc": round(per_doc, 1),
                "vs_dense512": round(per_doc / 2048, 4),
                "weight_shift": backend.index_meta(name).weight_shift,
            }
            prune = chosen[label].get("indexer")
            if prune:  # exact top-10 over pruned vs unpruned documents, text and image queries
                corpus = SparseCorpus(CorpusSpec(n_docs=args.docs, zipf_s=args.zipf_s))
                queries = {
                    "text_queries": corpus.queries(200, 15, 30, seed=1),
                    "image_queries": corpus.queries(200, 50, 150, seed=2),
                }
                result[label].update(pruning_overlap(corpus, queries, **prune))
    finally:
        for name in names.values():
            backend.delete_index(name)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
