"""Search latency: exact vs two-phase sparse queries vs BM25 on one synthetic corpus, plus index size.

Prints one JSON object. Run against a live engine (STAIR_ES_URL), e.g.::

    python benchmarks/search_latency.py --docs 200000

Keys: two_phase_speedup = exact p50 / two-phase p50; two_phase_top10_overlap = mean |exact top-10
and two-phase top-10| / 10; exact_vs_bm25_p50 = exact p50 / BM25 p50; bytes_per_doc_vs_dense512 =
index bytes per document (after force-merge) / 2048 (a 512-d float32 vector). All latencies are
client wall time, one query at a time, measured interleaved (exact, two-phase, BM25 per query) so
that load from other processes affects the three alike.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from sparse_corpus import CorpusSpec, SparseCorpus  # noqa: E402

from stair_es.engine import Indexer, IndexerOptions, ModelMeta, QueryOptions, build_query, connect  # noqa: E402

MODEL = ModelMeta("bench-synthetic", "synthetic-vocab-30522")


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=20_000)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--query-tokens", type=int, nargs=2, default=(50, 150), metavar=("MIN", "MAX"))
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--index", default=None, help="index name (default: stair-bench-<docs>)")
    ap.add_argument("--reuse", action="store_true", help="reuse an existing index with the same name")
    ap.add_argument("--keep", action="store_true", help="keep the index afterwards")
    ap.add_argument("--tokens-in-source", choices=("yes", "no"), default="yes")
    ap.add_argument("--codec", default=None, help="index.codec, e.g. best_compression")
    ap.add_argument("--phase1-ratio", type=float, default=QueryOptions().phase1_ratio)
    ap.add_argument("--phase1-max-tokens", type=int, default=QueryOptions().phase1_max_tokens)
    ap.add_argument("--min-window", type=int, default=QueryOptions().min_window)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--zipf-s",
        type=float,
        default=CorpusSpec(1).zipf_s,
        help="token popularity exponent (lower = sparser)",
    )
    args = ap.parse_args()

    backend = connect()
    index = args.index or f"stair-bench-{args.docs}-s{args.zipf_s}"
    corpus = SparseCorpus(CorpusSpec(n_docs=args.docs, seed=args.seed, zipf_s=args.zipf_s))
    index_seconds = None
    if not (args.reuse and backend.index_exists(index)):
        backend.delete_index(index)
        backend.create_index(
            index,
            MODEL,
            tokens_in_source=args.tokens_in_source == "yes",
            extra_settings={"codec": args.codec} if args.codec else None,
        )
        summary = Indexer(backend, index, options=IndexerOptions(chunk_size=1000)).index_documents(
            corpus.index_documents()
        )
        if summary.indexed != args.docs:
            raise SystemExit(f"indexing incomplete: {summary.line()}")
        index_seconds = summary.seconds
        backend.force_merge(index)
        backend.refresh(index)
    n_docs = backend.count(index)
    store_bytes = backend.store_size_bytes(index)

    options = QueryOptions(
        phase1_ratio=args.phase1_ratio, phase1_max_tokens=args.phase1_max_tokens, min_window=args.min_window
    )
    queries = corpus.queries(args.queries + args.warmup, *args.query_tokens)
    limit = backend.max_clause_count()
    lat: dict[str, list[float]] = {"exact": [], "two_phase": [], "bm25": []}
    overlaps, phase1_sizes, query_sizes = [], [], []
    for i, (vec, text) in enumerate(queries):
        bodies = {
            mode: build_query(
                vec,
                ["image_tokens"],
                mode=mode,
                size=args.k,
                caption=text,
                options=options,
                engine_limit=limit,
                source=False,
            )  # fmt: skip
            for mode in lat
        }
        tops = {}
        for mode, plan in bodies.items():
            start = time.perf_counter()
            resp = backend.client.search(index=index, body=plan.body)
            elapsed = (time.perf_counter() - start) * 1000
            tops[mode] = [h["_id"] for h in resp["hits"]["hits"]]
            if i >= args.warmup:
                lat[mode].append(elapsed)
        if i >= args.warmup:
            overlaps.append(len(set(tops["exact"]) & set(tops["two_phase"])) / max(len(tops["exact"]), 1))
            phase1_sizes.append(bodies["two_phase"].phase1_tokens)
            query_sizes.append(len(bodies["exact"].used))

    p50 = {m: percentile(v, 50) for m, v in lat.items()}
    p99 = {m: percentile(v, 99) for m, v in lat.items()}
    bytes_per_doc = store_bytes / max(n_docs, 1)
    result = {
        "engine": backend.info.describe(),
        "docs": n_docs,
        "queries": len(lat["exact"]),
        "k": args.k,
        "tokens_in_source": args.tokens_in_source == "yes",
        "codec": args.codec or "default",
        "zipf_s": args.zipf_s,
        "corpus_flops": round(corpus.flops(), 2),
        "mean_query_tokens": float(np.mean(query_sizes)),
        "mean_phase1_tokens": float(np.mean(phase1_sizes)),
        "rescore_window": bodies["two_phase"].window,
        "exact_p50_ms": round(p50["exact"], 2),
        "exact_p99_ms": round(p99["exact"], 2),
        "two_phase_p50_ms": round(p50["two_phase"], 2),
        "two_phase_p99_ms": round(p99["two_phase"], 2),
        "bm25_p50_ms": round(p50["bm25"], 2),
        "bm25_p99_ms": round(p99["bm25"], 2),
        "two_phase_speedup": round(p50["exact"] / p50["two_phase"], 3),
        "two_phase_top10_overlap": round(float(np.mean(overlaps)), 4),
        "exact_vs_bm25_p50": round(p50["exact"] / p50["bm25"], 3),
        "index_bytes": store_bytes,
        "bytes_per_doc": round(bytes_per_doc, 1),
        "bytes_per_doc_vs_dense512": round(bytes_per_doc / 2048, 4),
        "index_seconds": None if index_seconds is None else round(index_seconds, 1),
        "cpu_count": os.cpu_count(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }
    if not args.keep:
        backend.delete_index(index)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
