"""Short queries ("red circles", "three crosses") on a held-out collection, through the real engine.

Prints one JSON object:
  {"stair": {"p_at_5", "p_at_1", "families": {family: {"p_at_5", "p_at_1", "queries"}}, "full_caption_r1"},
   "clip": {...same keys...}, "bm25": {...same keys...}, "details": {...}}

What is measured (see stair_es/eval/short_queries.py for the query families and relevance):
- a held-out synthetic collection (seeded apart from the training set: the model never saw these
  images) is written as an image folder with sidecar captions and indexed with
  ``stair-es index images`` into the engine (``STAIR_ES_URL``, else the local node on
  ``STAIR_ES_PORT``, started when needed);
- STAIR: each query is encoded and searched through the engine (exact mode); p@5 = share of the
  first 5 hits that hold every attribute the query names, p@1 = first hit right; a position is
  judged where the objects are (the generator's regions overlap: a top-left group is captioned
  "left" or "top" at random), and ``position_by_caption_word`` judges it by the caption's word;
- dense CLIP: the same towers, data, batch and steps (and the same short views when the STAIR
  recipe trains with them), exact brute-force cosine search in memory; its learning rate /
  temperature / hard negatives are picked from ``--clip-grid`` on a separate validation collection;
- BM25: the same query text against the engine's caption field (the ground-truth captions: an
  upper bound that needs captions, which STAIR does not);
- full_caption_r1: each image's own caption as the query, right when the first hit has an
  identical caption (R@1 over the collection, engine for STAIR and BM25).

Usage: python benchmarks/quality_short_queries.py --json [--steps 2000] [--stair-model DIR]
``--stair-model`` evaluates an exported model (e.g. the shipped demo model,
stair_es/assets/demo-model) instead of training one; CLIP is trained either way.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", action="store_true", help="print only the JSON result on stdout")
    p.add_argument("--preset", default="demo", help="training recipe (demo; tiny for smoke runs)")
    p.add_argument(
        "--steps", type=int, default=None, help="optimizer steps per model (default: the preset's)"
    )
    p.add_argument("--stair-model", type=Path, default=None, help="exported STAIR model to evaluate")
    p.add_argument("--collection-images", type=int, default=2000, help="held-out collection size")
    p.add_argument("--collection-seed", type=int, default=4321)
    p.add_argument("--val-images", type=int, default=1000, help="CLIP selection collection size")
    p.add_argument("--min-relevant", type=int, default=5, help="keep queries with this many relevant images")
    p.add_argument(
        "--clip-grid",
        default="1e-3:0.07:0.5,1e-3:0.07:0",
        help="CLIP candidates lr:temperature_init[:hard_negative_fraction], picked on the val collection",
    )
    p.add_argument("--index", default="stair-bench-short-queries")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: from load)")
    p.add_argument("--workdir", type=Path, default=None, help="keep data and models here (default: temp)")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def write_collection(out: Path, num_images: int, seed: int, image_size: int) -> list[tuple[Path, str, list]]:
    """An image folder with ``.txt`` captions beside the images (what ``index images`` reads); per
    image its path, caption and object placements (where "at the top" really is)."""
    from stair_es.data import SyntheticConfig, generate_synthetic

    manifest = out / "collection.jsonl"
    if not manifest.is_file():
        config = SyntheticConfig(num_images=num_images, seed=seed, image_size=image_size, test_fraction=1.0)
        generate_synthetic(out, config)["test"].rename(manifest)
        for row in map(json.loads, manifest.read_text().splitlines()):
            (out / row["image"]).with_suffix(".txt").write_text(row["caption"] + "\n")
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    return [(out / r["image"], r["caption"], r["objects"]) for r in rows]


def engine_url() -> str:
    if os.environ.get("STAIR_ES_URL"):
        return os.environ["STAIR_ES_URL"].split(",")[0]
    from stair_es.local import ensure_running

    return ensure_running(port=int(os.environ.get("STAIR_ES_PORT", "9200")), log=lambda _m: None)


def index_collection(url: str, images: Path, model: Path, index: str) -> dict[str, Any]:
    """``stair-es index images`` exactly as a user runs it; returns its JSON summary."""
    command = [sys.executable, "-m", "stair_es_cli.main", "index", "images", str(images), "--index", index,
               "--model", str(model), "--recreate", "--no-progress", "--json"]  # fmt: skip
    done = subprocess.run(command, env={**os.environ, "STAIR_ES_URL": url}, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"indexing failed ({done.returncode}): {done.stderr[-2000:]}")
    return json.loads(done.stdout)


def engine_rankings(searcher: Any, texts: list[str], position: dict[str, int], mode: str) -> list[list[int]]:
    """Collection indices of the first 5 hits of each query (-1 for a hit outside the collection)."""
    ranked = []
    for text in texts:
        hits = searcher.search(text=text, k=5, mode=mode, explain=False).hits
        ranked.append([position.get(Path(str(h.source.get("path", ""))).name, -1) for h in hits])
    return ranked


def full_caption_r1(rankings: list[list[int]], captions: list[str]) -> float:
    right = sum(1 for i, row in enumerate(rankings) if row and captions[row[0]] == captions[i])
    return round(right / max(1, len(captions)), 4)


def dense_rankings(model: Any, tokenizer: Any, pixels: Any, texts: list[str], k: int = 5) -> list[list[int]]:
    import torch

    from stair_es.model.modeling import tokenize

    model.eval()
    with torch.no_grad():
        images = torch.cat([model.encode_image(pixels[i : i + 256]) for i in range(0, len(pixels), 256)])
        ranked = []
        for start in range(0, len(texts), 256):
            ids, mask = tokenize(tokenizer, texts[start : start + 256], int(model.config.max_text_length))
            scores = model.encode_text(ids, mask) @ images.T
            ranked += scores.topk(min(k, scores.shape[1]), dim=1).indices.tolist()
    return ranked


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    import torch

    from stair_es.data import generate_synthetic, read_jsonl
    from stair_es.data.synthetic import parse_caption
    from stair_es.engine import Searcher, connect
    from stair_es.eval.short_queries import answers, group_centres, short_queries, short_query_report
    from stair_es.export import export_model
    from stair_es.model.dense import DenseClipModel
    from stair_es.runtime import load_encoder
    from stair_es.training.batches import load_pairs
    from stair_es.training.recipes import PRESETS, auto_threads, build_model, run_stages
    from stair_es.training.trainer import TrainConfig, Trainer

    torch.set_num_threads(args.threads or auto_threads())

    def log(message: str) -> None:
        if not args.json or '"eval"' in message or message.startswith(("stage", "data", "clip", "==")):
            print(message[:400], file=sys.stderr, flush=True)

    started = time.perf_counter()
    recipe = PRESETS[args.preset](**({"total_steps": args.steps} if args.steps else {}), seed=args.seed)
    steps = sum(s.steps for s in recipe.stages)
    assert recipe.synthetic is not None
    with tempfile.TemporaryDirectory() as tmp:
        work = args.workdir or Path(tmp)
        data = work / "train-data"
        if not (data / "train.jsonl").is_file():
            generate_synthetic(data, recipe.synthetic)
        train_pairs = read_jsonl(data / "train.jsonl")
        test_path = data / "test.jsonl"
        held_out = read_jsonl(test_path) if test_path.is_file() else None
        size = recipe.synthetic.image_size
        collection = write_collection(work / "collection", args.collection_images, args.collection_seed, size)
        val_collection = write_collection(
            work / "val-collection", args.val_images, args.collection_seed + 1, size
        )
        scenes = [parse_caption(caption) for _, caption, _ in collection]
        centres = [group_centres(objects, len(s.groups)) for s, (_, _, objects) in zip(scenes, collection)]
        queries = short_queries(scenes, args.min_relevant, seed=args.collection_seed, centres=centres)
        texts = [q.text for q in queries]
        captions = [caption for _, caption, _ in collection]
        log(f"== collection: {len(collection)} images, {len(queries)} short queries")

        # --- STAIR ---------------------------------------------------------------------------------
        stair = build_model(train_pairs, recipe.size, args.seed)
        stair_seconds = None
        stair_training: dict[str, Any] = {}
        if args.stair_model is None:
            t0 = time.perf_counter()
            record = run_stages(stair, recipe.stages, train_pairs, held_out, work / "stair", log)
            stair_seconds = round(time.perf_counter() - t0, 1)
            stair_training = {k: round(v, 4) for k, v in record["final_metrics"].items()}
            stair_dir = export_model(work / "stair", work / "stair-onnx", model_id="short-query-bench",
                                     overwrite=True).root  # fmt: skip
        else:
            stair_dir = args.stair_model
        url = engine_url()
        summary = index_collection(url, work / "collection" / "images", stair_dir, args.index)
        encoder = load_encoder(stair_dir)
        backend = connect(urls=url)
        try:
            searcher = Searcher(backend, args.index, encoder)
            mapping = dict(backend.client.indices.get_mapping(index=args.index))
            meta = next(iter(mapping.values()))["mappings"].get("_meta", {}).get("stair_es", {})
            caption_analyzer = meta.get("caption_analyzer")
            position = {path.name: i for i, (path, _, _) in enumerate(collection)}
            stair_ranked = engine_rankings(searcher, texts, position, "exact")
            bm25_ranked = engine_rankings(searcher, texts, position, "bm25")
            stair_full = engine_rankings(searcher, captions, position, "exact")
            bm25_full = engine_rankings(searcher, captions, position, "bm25")
            backend.delete_index(args.index)
        finally:
            backend.close()

        # --- dense CLIP: same towers, data, batch, steps (and short views) -------------------------
        tok, cfg = stair.tokenizer, stair.config
        train = load_pairs(train_pairs, tok, stair.preprocessor_config, cfg.max_text_length)
        pixel_sets = {
            name: load_pairs([_pair(p, c) for p, c, _ in pairs], tok, stair.preprocessor_config, cfg.max_text_length).pixels
            for name, pairs in (("test", collection), ("val", val_collection))
        }  # fmt: skip
        val_scenes = [parse_caption(c) for _, c, _ in val_collection]
        val_centres = [group_centres(o, len(s.groups)) for s, (_, _, o) in zip(val_scenes, val_collection)]
        val_queries = short_queries(val_scenes, args.min_relevant, seed=1, centres=val_centres)
        short_view_weight = max(s.short_view_weight for s in recipe.stages)
        candidates = []
        for item in args.clip_grid.split(","):
            lr, temperature, *rest = (float(x) for x in item.split(":"))
            hard = rest[0] if rest else 0.0
            torch.manual_seed(args.seed)
            clip = DenseClipModel(
                cfg, embed_dim=int(cfg.vision_config["hidden_size"]), temperature_init=temperature
            )
            config = TrainConfig(stage="dense", steps=steps, batch_size=recipe.stages[0].batch_size, lr=lr,
                                 seed=args.seed, log_every=max(1, steps // 4), hard_negative_fraction=hard,
                                 short_view_weight=short_view_weight)  # fmt: skip
            t0 = time.perf_counter()
            # a --workdir keeps each trained candidate, keyed by everything that shapes it
            key = hashlib.sha256(json.dumps([asdict(config), asdict(recipe.synthetic), temperature,
                                             stair.config.vocab_size, len(train)]).encode()).hexdigest()[:16]  # fmt: skip
            saved = work / "clip" / f"{key}.pt"
            reused = saved.is_file()
            if reused:
                clip.load_state_dict(torch.load(saved, map_location="cpu"))
                log(f"clip lr={lr} temperature_init={temperature} hard_negatives={hard}: reused {saved}")
            else:
                Trainer(clip, config, train, log=log, tokenizer=tok).train()
                saved.parent.mkdir(parents=True, exist_ok=True)
                torch.save(clip.state_dict(), saved)
            val = short_query_report(
                val_queries, dense_rankings(clip, tok, pixel_sets["val"], [q.text for q in val_queries])
            )
            log(
                f"clip lr={lr} temperature_init={temperature} hard_negatives={hard}: val short-query p@5 {val['p_at_5']}"
            )
            candidates.append({"lr": lr, "temperature_init": temperature, "hard_negatives": hard,
                               "val_p_at_5": val["p_at_5"], "seconds": round(time.perf_counter() - t0, 1), "reused": reused,
                               "model": clip})  # fmt: skip
        best = max(candidates, key=lambda c: c["val_p_at_5"])
        clip_ranked = dense_rankings(best["model"], tok, pixel_sets["test"], texts)
        clip_full = dense_rankings(best["model"], tok, pixel_sets["test"], captions)

    # the position family judged by the caption's word instead of where the objects are (a model
    # that sees only pixels cannot tell "left" from "top" for a top-left group; BM25 reads the word)
    by_word = [
        (i, replace(q, relevant=frozenset(j for j, s in enumerate(scenes) if answers(q.text, s))))
        for i, q in enumerate(queries)
        if q.family == "colour+shape+position"
    ]

    def system(ranked: list[list[int]], full: list[list[int]]) -> dict[str, Any]:
        word = short_query_report([q for _, q in by_word], [ranked[i] for i, _ in by_word])
        return {
            **short_query_report(queries, ranked),
            "full_caption_r1": full_caption_r1(full, captions),
            "position_by_caption_word": {k: word[k] for k in ("p_at_5", "p_at_1", "queries")},
        }

    result = {
        "stair": system(stair_ranked, stair_full),
        "clip": system(clip_ranked, clip_full),
        "bm25": system(bm25_ranked, bm25_full),
        "details": {
            "preset": args.preset,
            "steps_per_model": steps,
            "short_view_weight": short_view_weight,
            "stair_model": str(args.stair_model) if args.stair_model else "trained by this run",
            "stair_training_held_out": stair_training,
            "stair_train_seconds": stair_seconds,
            "indexed": summary.get("indexed"),
            "collection_images": len(collection),
            "collection_seed": args.collection_seed,
            "engine": backend.info.describe(),
            # BM25 needs stemming to meet plurals ("circles" / "circle"): engines without the
            # analysis-common module (the Elasticsearch test builds) only have "standard"
            "caption_analyzer": caption_analyzer,
            "clip_chosen": {k: best[k] for k in ("lr", "temperature_init", "hard_negatives")},
            "clip_candidates": [{k: v for k, v in c.items() if k != "model"} for c in candidates],
            "examples": [
                {"query": q.text, "family": q.family, "stair_top": [captions[i] for i in r[:2] if i >= 0]}
                for q, r in list(zip(queries, stair_ranked))[:: max(1, len(queries) // 8)]
            ],
            "total_seconds": round(time.perf_counter() - started, 1),
            "threads": torch.get_num_threads(),
        },
    }
    print(json.dumps(result, indent=None if args.json else 2))
    return result


def _pair(path: Path, caption: str) -> Any:
    from stair_es.data.readers import CaptionedImage

    return CaptionedImage(image=path, caption=caption, image_id=path.stem)


if __name__ == "__main__":
    main()
