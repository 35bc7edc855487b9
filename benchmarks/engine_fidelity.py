"""Engine fidelity: does the engine's exact top-10 equal a numpy brute-force dot product?

Prints one JSON object for the engine at STAIR_ES_URL. Documents and queries come from the
synthetic corpus; the reference scores use the 9-bit-truncated document weights (what the engine
stores). Reported: top-10 overlap of exact mode with the reference, top-10 order equal, the max
relative score error; where the engine has ES's ``sparse_vector`` query, the same for ``native``
(``prune: false``) and the top-10 overlap of ``native`` with ES's token pruning against exact::

    STAIR_ES_URL=http://127.0.0.1:9200 python benchmarks/engine_fidelity.py --docs 5000
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from sparse_corpus import CorpusSpec, SparseCorpus  # noqa: E402

from stair_es.engine import Indexer, IndexerOptions, ModelMeta, QueryOptions, Searcher, connect  # noqa: E402
from stair_es.engine.search import brute_force_top_k  # noqa: E402

MODEL = ModelMeta("bench-fidelity", "synthetic")


def _compare(result, reference) -> tuple[float, bool, float]:
    got = [(h.id, h.score) for h in result.hits]
    ref_ids = [d for d, _ in reference]
    overlap = len({d for d, _ in got} & set(ref_ids)) / max(len(ref_ids), 1)
    ref = dict(reference)
    errors = [abs(s - ref[d]) / ref[d] for d, s in got if d in ref]
    # equal order up to ties: scores sorted the same way
    order = [d for d, _ in got] == ref_ids or all(
        abs(a[1] - ref[b]) / ref[b] < 1e-5 for a, b in zip(got, ref_ids, strict=False) if b in ref
    )
    return overlap, order, max(errors, default=0.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=5000)
    ap.add_argument("--queries", type=int, default=50)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    backend = connect()
    index = f"stair-fidelity-{args.docs}"
    corpus = SparseCorpus(CorpusSpec(n_docs=args.docs, seed=args.seed))
    docs = list(corpus.index_documents())
    backend.delete_index(index)
    backend.create_index(index, MODEL)
    summary = Indexer(backend, index, options=IndexerOptions(chunk_size=1000)).index_documents(docs)
    if summary.indexed != args.docs:
        raise SystemExit(f"indexing incomplete: {summary.line()}")
    backend.refresh(index)
    meta = backend.index_meta(index)
    pairs = [(d.id, d.image_tokens) for d in docs if d.image_tokens is not None]
    modes = {"exact": QueryOptions()}
    if meta.token_field_type == "sparse_vector" and backend.has_sparse_vector_query:
        modes["native"] = QueryOptions()
    stats: dict[str, dict[str, list]] = {m: {"overlap": [], "order": [], "err": []} for m in modes}
    pruned_overlap = []
    for vec, _text in corpus.queries(args.queries, 15, 150, seed=3):
        reference = brute_force_top_k(vec, pairs, k=args.k)
        tops = {}
        for mode, options in modes.items():
            result = Searcher(backend, index, options=options).search(tokens=vec, k=args.k, mode=mode)
            overlap, order, err = _compare(result, reference)
            stats[mode]["overlap"].append(overlap)
            stats[mode]["order"].append(order)
            stats[mode]["err"].append(err)
            tops[mode] = {h.id for h in result.hits}
        if "native" in modes:
            pruned = Searcher(backend, index, options=QueryOptions(native_prune=True)).search(
                tokens=vec, k=args.k, mode="native"
            )
            pruned_overlap.append(
                len({h.id for h in pruned.hits} & tops["exact"]) / max(len(tops["exact"]), 1)
            )
    out = {
        "engine": backend.info.describe(),
        "token_field_type": meta.token_field_type,
        "docs": args.docs,
        "queries": args.queries,
        **{
            f"{m}_{key}": value
            for m, s in stats.items()
            for key, value in (
                ("top10_overlap", round(float(np.mean(s["overlap"])), 4)),
                ("order_equal", float(np.mean(s["order"]))),
                ("max_rel_score_error", float(np.max(s["err"]))),
            )
        },
    }
    if pruned_overlap:
        out["native_pruned_top10_overlap_vs_exact"] = round(float(np.mean(pruned_overlap)), 4)
        out["native_pruned_min_overlap"] = round(float(np.min(pruned_overlap)), 2)
    backend.delete_index(index)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
