"""Search under load: N concurrent clients for a bounded time, exact vs two-phase, on one index.

Prints one JSON object (``--json``; a short summary otherwise). Run against a live engine
(``STAIR_ES_URL``, or ``--url``), e.g.::

    python benchmarks/search_load.py --docs 50000 --clients 8 --seconds 30 --json

Each mode (exact, then two-phase) runs for ``--seconds`` after ``--warmup`` seconds, every client in
its own thread with its own connection, sending pre-built request bodies one after another (closed
loop: the next query leaves when the previous answer is back), so the figures are what the engine
sustains, not what Python can serialize. A request that raises, times out, or comes back with a
shard missing counts as an error. Queries are the image profile of ``search_latency.py`` (50-150
tokens: where two-phase matters); latencies are client wall times.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from typing import Any

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from sparse_corpus import CorpusSpec, SparseCorpus  # noqa: E402

from stair_es.engine import (  # noqa: E402
    ConnectionConfig,
    Indexer,
    IndexerOptions,
    ModelMeta,
    QueryOptions,
    build_query,
    connect,
)

MODEL = ModelMeta("bench-synthetic", "synthetic-vocab-30522")
MODES = ("exact", "two_phase")


def run_clients(config: ConnectionConfig, index: str, bodies: list[str], clients: int, seconds: float,
                warmup: float) -> dict[str, Any]:  # fmt: skip
    """``clients`` threads in a closed loop over ``bodies`` for ``warmup`` + ``seconds``."""
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    first_error: list[str] = []
    start_gate = threading.Barrier(clients + 1)
    t_start = [0.0]

    def client(n: int) -> None:
        backend = connect(config)
        try:
            i = n * 7919
            start_gate.wait()
            measure_from = t_start[0] + warmup
            end = measure_from + seconds
            while (now := time.perf_counter()) < end:
                body = bodies[i % len(bodies)]
                i += 1
                try:
                    resp = backend.client.search(index=index, body=body)
                    shards = resp.get("_shards") or {}
                    ok = not resp.get("timed_out") and shards.get("successful", 0) + shards.get(
                        "skipped", 0
                    ) >= shards.get("total", 0)
                except Exception as exc:  # noqa: BLE001 - counted, not raised
                    ok = False
                    if not first_error:
                        first_error.append(f"{type(exc).__name__}: {exc}"[:300])
                took = time.perf_counter() - now
                if now >= measure_from:
                    latencies[n].append(took * 1000)
                    errors[n] += not ok
        finally:
            backend.close()

    threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(clients)]
    for t in threads:
        t.start()
    t_start[0] = time.perf_counter()
    start_gate.wait()
    for t in threads:
        t.join()
    every = np.concatenate([np.asarray(x) for x in latencies]) if any(latencies) else np.zeros(0)
    queries = int(every.size)
    return {
        "queries": queries,
        "errors": int(sum(errors)),
        "first_error": first_error[0] if first_error else None,
        "queries_per_second": round(queries / seconds, 1),
        "p50_ms": round(float(np.percentile(every, 50)), 2) if queries else None,
        "p99_ms": round(float(np.percentile(every, 99)), 2) if queries else None,
        "mean_ms": round(float(every.mean()), 2) if queries else None,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", default=None, help="engine URL(s) [default: STAIR_ES_URL]")
    ap.add_argument("--docs", type=int, default=20_000)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=20.0, help="measured seconds per mode")
    ap.add_argument("--warmup", type=float, default=3.0, help="unmeasured seconds per mode first")
    ap.add_argument("--queries", type=int, default=200, help="distinct queries cycled through")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--index", default=None)
    ap.add_argument("--keep", action="store_true", help="keep the index afterwards (and reuse it)")
    ap.add_argument("--json", action="store_true", help="print the JSON object only")
    args = ap.parse_args()

    config = ConnectionConfig.from_env(urls=args.url)
    backend = connect(config)
    index = args.index or f"stair-bench-load-{args.docs}"
    corpus = SparseCorpus(CorpusSpec(n_docs=args.docs))
    if not (args.keep and backend.index_exists(index) and backend.count(index) == args.docs):
        backend.delete_index(index)
        backend.create_index(index, MODEL, tokens_in_source=False)
        summary = Indexer(backend, index, options=IndexerOptions(chunk_size=1000)).index_documents(
            corpus.index_documents()
        )
        if summary.indexed != args.docs:
            raise SystemExit(f"indexing incomplete: {summary.line()}")
        backend.force_merge(index)
        backend.refresh(index)
    meta = backend.index_meta(index)
    limit = backend.max_clause_count()
    queries = corpus.queries(args.queries, 50, 150, seed=2)
    modes: dict[str, Any] = {}
    for mode in MODES:
        bodies = [
            json.dumps(build_query(vec, ["image_tokens"], mode=mode, size=args.k, options=QueryOptions(),
                                   engine_limit=limit, source=False, weight_shift=meta.weight_shift,
                                   field_type=meta.token_field_type).body)
            for vec, _text in queries
        ]  # fmt: skip
        modes[mode] = run_clients(config, index, bodies, args.clients, args.seconds, args.warmup)
    result = {
        "engine": backend.info.describe(),
        "lucene": backend.info.lucene_version,
        "nodes": len(config.urls),
        "docs": backend.count(index),
        "clients": args.clients,
        "seconds_per_mode": args.seconds,
        "warmup_seconds": args.warmup,
        "distinct_queries": len(queries),
        "mean_query_tokens": round(float(np.mean([len(v) for v, _ in queries])), 1),
        "k": args.k,
        "modes": modes,
        "errors": sum(m["errors"] for m in modes.values()),
        "two_phase_qps_gain": round(
            modes["two_phase"]["queries_per_second"] / max(modes["exact"]["queries_per_second"], 1e-9), 2
        ),
        "cpu_count": os.cpu_count(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }
    if not args.keep:
        backend.delete_index(index)
    backend.close()
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(
        f"{result['engine']}, {result['docs']} docs, {args.clients} clients x {args.seconds:.0f} s per mode"
    )
    for mode, m in modes.items():
        print(f"  {mode:<9} {m['queries_per_second']:>8} q/s  p50 {m['p50_ms']} ms  p99 {m['p99_ms']} ms  "
              f"errors {m['errors']} of {m['queries']}")  # fmt: skip


if __name__ == "__main__":
    main()
