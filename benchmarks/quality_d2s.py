"""Dense-to-sparse (D2S) from a real ``transformers.CLIPModel`` folder, on the synthetic analog.

No pretrained weights can be downloaded here, so the "CLIP on disk" is made first: a dense CLIP
(``CLIPModel``: ViT + CLIP text transformer, projections, learned logit scale) is trained on the
seeded synthetic set with a byte-level BPE tokenizer trained on its captions, and saved as a real
CLIPModel folder (config.json, model.safetensors, tokenizer.json, preprocessor_config.json). Then,
exactly as a user would:

  stair-es train --from-clip CLIP_DIR --output-vocab vocab.txt --data train.jsonl --eval-data test.jsonl --steps N
  stair-es export SPARSE_DIR ONNX_DIR
  stair-es eval test.jsonl --model ONNX_DIR --relevance caption        (R@1 through the engine)
  stair-es index images COLLECTION --model ONNX_DIR                    (short queries, engine)

Prints one JSON object:
  {"dense": {"t2i_r1", "i2t_r1", "short_query_p_at_5", "steps", "seconds"},
   "d2s": {"t2i_r1_engine", "i2t_r1_engine", "t2i_r1_memory", "i2t_r1_memory", "active_image",
           "active_text", "active_fraction", "grounding", "short_query_p_at_5", "steps", "seconds"},
   "target": {"r1_kept_t2i", "r1_kept_i2t", "active_fraction", "steps_vs_three_stage", "met"},
   "details": {...}}

R@1 on both sides: held-out test split, every caption a query, every distinct image an item, an
identical caption counts as a match (``--relevance caption``: the synthetic captions are canonical).
Dense: exact cosine in memory. D2S: through the engine (``stair-es eval``), exact mode. Short queries:
stair_es/eval/short_queries.py families on a held-out collection (as benchmarks/quality_short_queries.py):
D2S through the engine, dense by brute force. The "three-stage recipe" steps are the demo preset's.

Usage: python benchmarks/quality_d2s.py --json [--dense-steps 2000] [--d2s-steps 1000] [--workdir DIR]
The workdir caches the data and the dense CLIP folder (delete it to retrain).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", action="store_true", help="print only the JSON result on stdout")
    p.add_argument("--num-images", type=int, default=20000, help="synthetic set size (the demo preset's)")
    p.add_argument("--test-images", type=int, default=500)
    p.add_argument("--dense-steps", type=int, default=2000, help="optimizer steps of the dense CLIP")
    p.add_argument("--dense-lr", type=float, default=1e-3)
    p.add_argument("--patch-size", type=int, default=8, help="dense CLIP ViT patch size (64 px images)")
    p.add_argument("--hidden-size", type=int, default=128)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--d2s-steps", type=int, default=1000, help="optimizer steps of --from-clip")
    p.add_argument(
        "--d2s-args",
        default="",
        help="further `stair-es train --from-clip` options (default: none, i.e. --from-clip's own defaults)",
    )
    p.add_argument("--collection-images", type=int, default=2000, help="short-query collection size")
    p.add_argument("--collection-seed", type=int, default=4321)
    p.add_argument("--min-relevant", type=int, default=5)
    p.add_argument("--index", default="stair-bench-d2s")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: from load)")
    p.add_argument("--workdir", type=Path, default=None, help="keep data and models here (default: temp)")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def cli(args: list[str], env: dict[str, str] | None = None, log: Any = None) -> str:
    """Run ``stair-es ARGS`` as a user would; stdout back, stderr to the log; non-zero exit stops here."""
    command = [sys.executable, "-m", "stair_es_cli.main", *args]
    done = subprocess.run(command, env={**os.environ, **(env or {})}, capture_output=True, text=True)
    if log is not None:
        for line in done.stderr.splitlines():
            if '"eval"' in line or line.startswith(("stage", "data", "from", "skipped")):
                log(line[:300])
    if done.returncode != 0:
        raise SystemExit(f"stair-es {' '.join(args[:2])} failed ({done.returncode}): {done.stderr[-2000:]}")
    return done.stdout


def train_dense_clip(args: argparse.Namespace, train_pairs: list, out: Path, log: Any) -> dict[str, Any]:
    """Train a CLIPModel on the synthetic training split and save it as a Hugging Face folder."""
    import torch

    from stair_es.data.images import default_preprocessor_config
    from stair_es.model.bpe import build_clip_bpe_tokenizer
    from stair_es.model.clip import ClipDualEncoder, new_clip, save_clip_folder
    from stair_es.training.batches import load_pairs
    from stair_es.training.trainer import TrainConfig, Trainer

    record_path = out / "dense_training.json"
    if record_path.is_file():
        return json.loads(record_path.read_text())
    torch.manual_seed(args.seed)
    tokenizer = build_clip_bpe_tokenizer([p.caption for p in train_pairs], vocab_size=2000, max_length=32)
    clip = new_clip(tokenizer, image_size=64, patch_size=args.patch_size, hidden_size=args.hidden_size,
                    layers=args.layers, heads=4, projection_dim=args.hidden_size, max_text_length=32)  # fmt: skip
    data = load_pairs(train_pairs, tokenizer, default_preprocessor_config(64, 32), 32)
    config = TrainConfig(stage="dense", steps=args.dense_steps, batch_size=args.batch_size, lr=args.dense_lr,
                         seed=args.seed, log_every=max(1, args.dense_steps // 10))  # fmt: skip
    started = time.perf_counter()
    metrics = Trainer(ClipDualEncoder(clip), config, data, log=log).train()
    seconds = time.perf_counter() - started
    save_clip_folder(clip, tokenizer, out, 64)
    record = {"steps": args.dense_steps, "seconds": round(seconds, 1), "train_seconds": metrics["train_seconds"],
              "config": {"lr": args.dense_lr, "batch_size": args.batch_size, "patch_size": args.patch_size,
                         "hidden_size": args.hidden_size, "layers": args.layers}}  # fmt: skip
    record_path.write_text(json.dumps(record, indent=2) + "\n")
    return record


def dense_ranks(clip_dir: Path, pixels: Any, texts: list[str], k: int = 10) -> tuple[Any, Any]:
    """(text->image top-k, image embeddings x text embeddings scores) with the dense CLIP, exact cosine."""
    import torch

    from stair_es.model.clip import ClipDualEncoder, load_clip, load_input_tokenizer
    from stair_es.model.modeling import tokenize

    model = ClipDualEncoder(load_clip(clip_dir)).eval()
    tokenizer = load_input_tokenizer(clip_dir, 32)
    with torch.no_grad():
        images = torch.cat([model.encode_image(pixels[i : i + 256]) for i in range(0, len(pixels), 256)])
        texts_out = []
        for start in range(0, len(texts), 256):
            ids, mask = tokenize(tokenizer, texts[start : start + 256], 32, 1)
            texts_out.append(model.encode_text(ids, mask))
    scores = torch.cat(texts_out) @ images.T
    return scores.topk(min(k, scores.shape[1]), dim=1).indices.tolist(), scores


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    import torch

    sys.path.insert(0, str(HERE))
    import quality_short_queries as sq

    from stair_es.data import SyntheticConfig, generate_synthetic, read_jsonl
    from stair_es.data.synthetic import parse_caption
    from stair_es.engine import Searcher, connect
    from stair_es.eval.datasets import RetrievalSet
    from stair_es.eval.metrics import recall_at_k
    from stair_es.eval.short_queries import group_centres, short_queries, short_query_report
    from stair_es.model.tokenizer import build_wordpiece_tokenizer
    from stair_es.runtime import load_encoder
    from stair_es.training.batches import load_pairs
    from stair_es.training.recipes import auto_threads, demo_recipe

    threads = args.threads or auto_threads()
    torch.set_num_threads(threads)

    def log(message: str) -> None:
        if not args.json or '"eval"' in message or message.startswith(("stage", "data", "==", "from")):
            print(message[:400], file=sys.stderr, flush=True)

    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        work = args.workdir or Path(tmp)
        data = work / "data"
        synthetic = SyntheticConfig(num_images=args.num_images, seed=args.seed,
                                    test_fraction=args.test_images / args.num_images)  # fmt: skip
        if not (data / "train.jsonl").is_file():
            generate_synthetic(data, synthetic)
        train_pairs, test_pairs = read_jsonl(data / "train.jsonl"), read_jsonl(data / "test.jsonl")
        log(f"== data: {len(train_pairs)} training, {len(test_pairs)} test pairs")

        # --- the dense CLIP "on disk" ------------------------------------------------------------
        clip_dir = work / "clip"
        dense_record = train_dense_clip(args, train_pairs, clip_dir, log)
        log(f"== dense CLIP: {dense_record['steps']} steps, {dense_record['seconds']} s -> {clip_dir}")
        from stair_es.model.clip import clip_preprocessor

        pre = clip_preprocessor(clip_dir, 64, 32)
        from stair_es.model.clip import load_input_tokenizer

        test = load_pairs(test_pairs, load_input_tokenizer(clip_dir, 32), pre, 32)
        unique: dict[str, int] = {}
        for row, image_id in enumerate(test.image_ids or []):
            unique.setdefault(image_id, row)
        image_rows = list(unique.values())
        groups = RetrievalSet("test", [Path(i) for i in unique], list(unique), test.captions,
                              [list(unique).index(i) for i in test.image_ids or []])  # fmt: skip
        t2i_ranked, scores = dense_ranks(clip_dir, test.pixels[image_rows], test.captions)
        dense_t2i = recall_at_k(t2i_ranked, groups.relevant_images("caption"), (1,))[1]
        i2t_ranked = scores.T.topk(10, dim=1).indices.tolist()
        dense_i2t = recall_at_k(i2t_ranked, groups.relevant_captions("caption"), (1,))[1]
        log(f"== dense CLIP test R@1: t2i {dense_t2i:.4f} i2t {dense_i2t:.4f}")

        # --- D2S: stair-es train --from-clip, export, eval through the engine --------------------
        vocab = work / "vocab.txt"  # a WordPiece vocabulary the user names (here: the demo model's kind)
        tokens = build_wordpiece_tokenizer([p.caption for p in train_pairs]).get_vocab()
        vocab.write_text("".join(t + "\n" for t, _ in sorted(tokens.items(), key=lambda kv: kv[1])))
        sparse, onnx = work / "d2s", work / "d2s-onnx"
        train_args = ["train", "--from-clip", str(clip_dir), "--output-vocab", str(vocab), "--data",
                      str(data / "train.jsonl"), "--eval-data", str(data / "test.jsonl"), "--output", str(sparse),
                      "--steps", str(args.d2s_steps), "--batch-size", str(args.batch_size), "--seed",
                      str(args.seed), "--threads", str(threads), *args.d2s_args.split()]  # fmt: skip
        t0 = time.perf_counter()
        cli(train_args, log=log)
        d2s_seconds = time.perf_counter() - t0
        record = json.loads((sparse / "training.json").read_text())
        final = record["final_metrics"]
        cli(["export", str(sparse), str(onnx), "--overwrite", "--model-id", "d2s-bench"])
        url = sq.engine_url()
        report = json.loads(cli(["eval", str(data / "test.jsonl"), "--model", str(onnx), "--relevance", "caption",
                                 "--json"], env={"STAIR_ES_URL": url}))  # fmt: skip
        t2i, i2t = report["directions"]["text_to_image"], report["directions"]["image_to_text"]
        log(f"== D2S engine R@1: t2i {t2i['engine']['R@1']:.4f} i2t {i2t['engine']['R@1']:.4f}")

        # --- short queries on a held-out collection --------------------------------------------------
        collection = sq.write_collection(
            work / "collection", args.collection_images, args.collection_seed, 64
        )
        scenes = [parse_caption(caption) for _, caption, _ in collection]
        # positions judged where the objects are, as benchmarks/quality_short_queries.py does
        centres = [group_centres(objects, len(s.groups)) for s, (_, _, objects) in zip(scenes, collection)]
        queries = short_queries(scenes, args.min_relevant, seed=args.collection_seed, centres=centres)
        texts = [q.text for q in queries]
        summary = sq.index_collection(url, work / "collection" / "images", onnx, args.index)
        backend = connect(urls=url)
        try:
            searcher = Searcher(backend, args.index, load_encoder(onnx))
            position = {path.name: i for i, (path, _, _) in enumerate(collection)}
            d2s_short = short_query_report(queries, sq.engine_rankings(searcher, texts, position, "exact"))
            backend.delete_index(args.index)
        finally:
            backend.close()
        pixels = load_pairs(
            [sq._pair(p, c) for p, c, _ in collection], load_input_tokenizer(clip_dir, 32), pre, 32
        ).pixels
        dense_short = short_query_report(queries, dense_ranks(clip_dir, pixels, texts, 5)[0])

    three_stage_steps = sum(s.steps for s in demo_recipe().stages)
    d2s_t2i, d2s_i2t = t2i["engine"]["R@1"], i2t["engine"]["R@1"]
    kept = {
        "t2i": d2s_t2i / dense_t2i if dense_t2i else 0.0,
        "i2t": d2s_i2t / dense_i2t if dense_i2t else 0.0,
    }
    target = {
        "r1_kept_t2i": round(kept["t2i"], 4),
        "r1_kept_i2t": round(kept["i2t"], 4),
        "active_fraction": round(final["active_fraction"], 5),
        "steps_vs_three_stage": round(args.d2s_steps / three_stage_steps, 4),
    }
    target["met"] = bool(
        min(kept.values()) >= 0.95
        and final["active_fraction"] <= 0.02
        and target["steps_vs_three_stage"] <= 0.25
    )
    result = {
        "dense": {
            "t2i_r1": round(dense_t2i, 4),
            "i2t_r1": round(dense_i2t, 4),
            "short_query_p_at_5": dense_short["p_at_5"],
            "steps": dense_record["steps"],
            "seconds": dense_record["seconds"],
        },
        "d2s": {
            "t2i_r1_engine": round(d2s_t2i, 4),
            "i2t_r1_engine": round(d2s_i2t, 4),
            "t2i_r1_memory": round(t2i["memory"]["R@1"], 4),
            "i2t_r1_memory": round(i2t["memory"]["R@1"], 4),
            "active_image": round(final["active_image"], 2),
            "active_text": round(final["active_text"], 2),
            "active_fraction": round(final["active_fraction"], 5),
            "grounding": round(final.get("grounding", 0.0), 4),
            "short_query_p_at_5": d2s_short["p_at_5"],
            "steps": args.d2s_steps,
            "seconds": round(d2s_seconds, 1),
            "train_seconds": final["train_seconds"],
        },
        "target": target,
        "details": {
            "command": record["command"],
            "three_stage_recipe_steps": three_stage_steps,
            "vocab_size": len(tokens),
            "dense_config": dense_record["config"],
            "d2s_training_held_out": {k: round(v, 4) for k, v in final.items()},
            "engine": report["engine"]["engine"] if report.get("engine") else None,
            "top1_agreement": {"t2i": t2i["top1_agreement"], "i2t": i2t["top1_agreement"]},
            "short_queries": {
                "queries": len(queries),
                "indexed": summary.get("indexed"),
                "d2s_families": d2s_short["families"],
                "dense_families": dense_short["families"],
            },  # fmt: skip
            "test_images": len(image_rows),
            "threads": threads,
            "total_seconds": round(time.perf_counter() - started, 1),
        },
    }
    print(json.dumps(result, indent=None if args.json else 2))
    return result


if __name__ == "__main__":
    main()
