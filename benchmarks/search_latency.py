"""Search latency: exact vs two-phase sparse queries vs BM25 on one synthetic corpus, plus index size.

Prints one JSON object. Run against a live engine (STAIR_ES_URL), e.g.::

    python benchmarks/search_latency.py --docs 200000

Two query profiles run on the same index: *text* queries (15-30 tokens, what a STAIR text tower
makes of a short query; BM25 gets 3-8 of the source document's caption words) and *image* queries
(50-150 tokens, image -> image search). Each profile reports exact, two-phase and BM25 p50/p99.

Top-level keys: exact_vs_bm25_p50 = exact p50 / BM25 p50 for text queries (the comparison BM25
users make); exact_vs_bm25_p50_image_queries the same for image queries; two_phase_speedup = exact
p50 / two-phase p50 and two_phase_top10_overlap = mean |exact top-10 and two-phase top-10| / 10, for
image queries (two-phase exists for long queries; text queries are in the profile too);
bytes_per_doc_vs_dense512 = index bytes per document (after the recovery-source retention wait,
flush and force-merge) / 2048 (a 512-d float32 vector). All latencies are client wall time, one
query at a time, measured interleaved (exact, two-phase, BM25 per query) so that load from other
processes affects the three alike.
"""

from __future__ import annotations

import argparse
import dataclasses
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


def measure(
    backend,
    index,
    queries,
    options,
    limit,
    k,
    warmup,
    weight_shift=0,
    field_type="rank_features",
    native=False,
) -> dict:
    """Exact, two-phase and BM25 per query, interleaved, one query at a time (client wall time);
    with ``native`` (ES 9 ``sparse_vector`` query) also native exact and native with ES pruning."""
    lat: dict[str, list[float]] = {"exact": [], "two_phase": [], "bm25": []}
    if native:
        lat.update(native=[], native_pruned=[])
    overlaps, pruned_overlaps, phase1_sizes, query_sizes = [], [], [], []
    plans = {}
    pruned_options = dataclasses.replace(options, native_prune=True)
    for i, (vec, text) in enumerate(queries):
        plans = {
            mode: build_query(
                vec,
                ["image_tokens"],
                mode="native" if mode == "native_pruned" else mode,
                size=k,
                caption=text,
                options=pruned_options if mode == "native_pruned" else options,
                engine_limit=limit,
                source=False,
                weight_shift=weight_shift,
                field_type=field_type,
                distribution=backend.distribution,
            )  # fmt: skip
            for mode in lat
        }
        tops = {}
        for mode, plan in plans.items():
            start = time.perf_counter()
            resp = backend.client.search(index=index, body=plan.body)
            elapsed = (time.perf_counter() - start) * 1000
            tops[mode] = [h["_id"] for h in resp["hits"]["hits"]]
            if i >= warmup:
                lat[mode].append(elapsed)
        if i >= warmup:
            overlaps.append(len(set(tops["exact"]) & set(tops["two_phase"])) / max(len(tops["exact"]), 1))
            if native:
                pruned_overlaps.append(
                    len(set(tops["exact"]) & set(tops["native_pruned"])) / max(len(tops["exact"]), 1)
                )
            phase1_sizes.append(plans["two_phase"].phase1_tokens)
            query_sizes.append(len(plans["exact"].used))
    p50 = {m: percentile(v, 50) for m, v in lat.items()}
    p99 = {m: percentile(v, 99) for m, v in lat.items()}
    return {
        "queries": len(lat["exact"]),
        "mean_query_tokens": round(float(np.mean(query_sizes)), 2),
        "mean_phase1_tokens": round(float(np.mean(phase1_sizes)), 2),
        "rescore_window": plans["two_phase"].window,
        **{f"{m}_p50_ms": round(p50[m], 2) for m in lat},
        **{f"{m}_p99_ms": round(p99[m], 2) for m in lat},
        "two_phase_speedup": round(p50["exact"] / p50["two_phase"], 3),
        "two_phase_top10_overlap": round(float(np.mean(overlaps)), 4),
        "exact_vs_bm25_p50": round(p50["exact"] / p50["bm25"], 3),
        **(
            {
                "native_pruned_speedup": round(p50["exact"] / p50["native_pruned"], 3),
                "native_pruned_top10_overlap": round(float(np.mean(pruned_overlaps)), 4),
            }
            if native
            else {}
        ),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=20_000)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument(
        "--warmup",
        type=int,
        default=200,
        help="queries per profile run before timing; a fresh JVM needs hundreds (with 20, BM25 p50 "
        "measured 2.4x its warm value on a just-started node)",
    )
    ap.add_argument(
        "--text-query-tokens",
        type=int,
        nargs=2,
        default=(15, 30),
        metavar=("MIN", "MAX"),
        help="tokens per text query (a STAIR text tower expands a short caption to a few dozen)",
    )
    ap.add_argument(
        "--image-query-tokens",
        type=int,
        nargs=2,
        default=(50, 150),
        metavar=("MIN", "MAX"),
        help="tokens per image query (image -> image search: a document-sized vector)",
    )
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--index", default=None, help="index name (default: stair-bench-<docs>)")
    ap.add_argument("--reuse", action="store_true", help="reuse an existing index with the same name")
    ap.add_argument("--keep", action="store_true", help="keep the index afterwards")
    ap.add_argument("--tokens-in-source", choices=("yes", "no"), default="yes")
    ap.add_argument("--codec", default=None, help="index.codec, e.g. best_compression")
    ap.add_argument(
        "--weight-shift",
        type=int,
        default=None,
        help="store weights x 2**-N (default: the compact shift when tokens are out of _source, else 0)",
    )
    ap.add_argument("--phase1-ratio", type=float, default=QueryOptions().phase1_ratio)
    ap.add_argument("--phase1-max-tokens", type=int, default=QueryOptions().phase1_max_tokens)
    ap.add_argument("--min-window", type=int, default=QueryOptions().min_window)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--retention-wait", type=float, default=70.0, help="seconds before merging (no-source)")
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
            weight_shift=args.weight_shift,
        )
        summary = Indexer(backend, index, options=IndexerOptions(chunk_size=1000)).index_documents(
            corpus.index_documents()
        )
        if summary.indexed != args.docs:
            raise SystemExit(f"indexing incomplete: {summary.line()}")
        index_seconds = summary.seconds
        # without the wait a filtered _source still has its _recovery_source copy (see index_size.py)
        time.sleep(args.retention_wait if args.tokens_in_source == "no" else 0)
        backend.client.indices.flush(index=index)
        backend.force_merge(index)
        backend.refresh(index)
        backend.client.indices.flush(index=index)
    n_docs = backend.count(index)
    meta = backend.index_meta(index)
    weight_shift = meta.weight_shift
    native = meta.token_field_type == "sparse_vector" and not weight_shift and backend.has_sparse_vector_query
    store_bytes = backend.store_size_bytes(index)

    options = QueryOptions(
        phase1_ratio=args.phase1_ratio, phase1_max_tokens=args.phase1_max_tokens, min_window=args.min_window
    )
    limit = backend.max_clause_count()
    profiles = {}
    for profile, sizes in (("text", args.text_query_tokens), ("image", args.image_query_tokens)):
        queries = corpus.queries(args.queries + args.warmup, *sizes, seed=1 if profile == "text" else 2)
        profiles[profile] = measure(
            backend,
            index,
            queries,
            options,
            limit,
            args.k,
            args.warmup,
            weight_shift,
            meta.token_field_type,
            native,
        )
        profiles[profile]["query_tokens_drawn"] = list(sizes)

    bytes_per_doc = store_bytes / max(n_docs, 1)
    text, image = profiles["text"], profiles["image"]
    result = {
        "engine": backend.info.describe(),
        "lucene": backend.info.lucene_version,
        "docs": n_docs,
        "queries_per_profile": args.queries,
        "k": args.k,
        "tokens_in_source": args.tokens_in_source == "yes",
        "codec": args.codec or "default",
        "weight_shift": weight_shift,
        "token_field_type": meta.token_field_type,
        "zipf_s": args.zipf_s,
        "corpus_flops": round(corpus.flops(), 2),
        # text queries are what BM25 answers too; two-phase exists for long (image) queries
        "exact_vs_bm25_p50": text["exact_vs_bm25_p50"],
        "two_phase_speedup": image["two_phase_speedup"],
        "two_phase_top10_overlap": image["two_phase_top10_overlap"],
        "exact_vs_bm25_p50_image_queries": image["exact_vs_bm25_p50"],
        "profiles": profiles,
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
