"""STAIR (three stages) vs a dense CLIP baseline on the seeded synthetic set, same towers/data/steps.

Prints one JSON object:
  {"stair": {"t2i_r1", "i2t_r1", "grounding", "active_fraction", "active_image", "active_text"},
   "clip": {"t2i_r1", "i2t_r1"}, "details": {...}}
Correct = the retrieved item's caption is identical to the query's (held-out test split). Grounding =
fraction of test images whose top-k tokens (k = content words of the caption) hold every colour and
shape word. active_fraction = mean non-zero tokens per image / vocabulary size.

Fairness: the CLIP baseline uses the same ViT + BERT towers (same sizes and init seed), the same data,
batch size and total optimizer steps, and its own learning rate and temperature, chosen on a separate
validation split (never the test split). STAIR uses the fixed demo recipe.

Usage: python benchmarks/quality_synthetic.py --json [--steps 2000] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", action="store_true", help="print only the JSON result on stdout")
    p.add_argument("--steps", type=int, default=2000, help="total optimizer steps per model")
    p.add_argument("--num-images", type=int, default=20000)
    p.add_argument("--test-pairs", type=int, default=500, help="held-out pairs (val: half as many)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--clip-grid",
        default="1e-3:0.07:0,2e-3:0.07:0,1e-3:0.03:0,1e-3:0.015:0,1e-3:0.07:0.5",
        help="CLIP baseline candidates lr:temperature_init[:hard_negative_fraction], picked on the val split",
    )
    p.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: from CPU count and load)"
    )
    p.add_argument("--workdir", type=Path, default=None, help="keep data and models here (default: temp dir)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    import torch

    from stair_es.data import SyntheticConfig, generate_synthetic, read_jsonl
    from stair_es.model.dense import DenseClipModel
    from stair_es.training.batches import load_pairs
    from stair_es.training.evaluation import retrieval_metrics
    from stair_es.training.recipes import auto_threads, build_model, demo_recipe, run_stages
    from stair_es.training.trainer import TrainConfig, Trainer

    torch.set_num_threads(args.threads or auto_threads())

    def log(message: str) -> None:
        if not args.json or '"eval"' in message or message.startswith(("stage", "data", "clip", "synthetic")):
            print(message[:400], file=sys.stderr, flush=True)

    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        work = args.workdir or Path(tmp)
        data_dir = work / "data"
        synthetic = SyntheticConfig(
            num_images=args.num_images,
            seed=args.seed,
            test_fraction=args.test_pairs / args.num_images,
            val_fraction=args.test_pairs / 2 / args.num_images,
        )
        if not (data_dir / "train.jsonl").is_file():
            generate_synthetic(data_dir, synthetic)
        train_pairs, val_pairs, test_pairs = (
            read_jsonl(data_dir / f"{s}.jsonl") for s in ("train", "val", "test")
        )
        log(f"synthetic: {len(train_pairs)} train, {len(val_pairs)} val, {len(test_pairs)} test pairs")

        # --- STAIR: the three-stage recipe ---------------------------------------------------------
        recipe = demo_recipe(total_steps=args.steps, seed=args.seed)
        stages = [replace(s, batch_size=args.batch_size) for s in recipe.stages]
        stair = build_model(train_pairs, recipe.size, args.seed)
        stair_start = time.perf_counter()
        run_stages(stair, stages, train_pairs, val_pairs, work / "stair", log)
        stair_seconds = time.perf_counter() - stair_start
        test = load_pairs(
            test_pairs, stair.tokenizer, stair.preprocessor_config, stair.config.max_text_length
        )
        val = load_pairs(val_pairs, stair.tokenizer, stair.preprocessor_config, stair.config.max_text_length)
        train = load_pairs(
            train_pairs, stair.tokenizer, stair.preprocessor_config, stair.config.max_text_length
        )
        stair_test = retrieval_metrics(stair, test, stair.tokenizer.get_vocab())

        # --- dense CLIP: same towers, data, batch, steps; lr/temperature tuned on val ----------------
        candidates = []
        for item in args.clip_grid.split(","):
            fields = [float(x) for x in item.split(":")]
            lr, temperature, hard = fields[0], fields[1], (fields[2] if len(fields) > 2 else 0.0)
            torch.manual_seed(args.seed)
            clip = DenseClipModel(stair.config, embed_dim=stair.config.vision_config["hidden_size"],
                                  temperature_init=temperature)  # fmt: skip
            cfg = TrainConfig(stage="dense", steps=args.steps, batch_size=args.batch_size, lr=lr, seed=args.seed,
                              log_every=max(1, args.steps // 4), hard_negative_fraction=hard)  # fmt: skip
            clip_start = time.perf_counter()
            val_metrics = Trainer(clip, cfg, train, val, log=log).train()
            score = val_metrics["t2i_r1"] + val_metrics["i2t_r1"]
            log(f"clip lr={lr} temperature_init={temperature} hard_negatives={hard}: val R@1 sum {score:.3f}")
            candidates.append(
                {
                    "lr": lr,
                    "temperature_init": temperature,
                    "hard_negatives": hard,
                    "val": val_metrics,
                    "score": score,
                    "model": clip,
                    "seconds": round(time.perf_counter() - clip_start, 1),
                }  # fmt: skip
            )
        best = max(candidates, key=lambda c: c["score"])
        clip_test = retrieval_metrics(best["model"], test)

    result = {
        "stair": {
            "t2i_r1": round(stair_test["t2i_r1"], 4),
            "i2t_r1": round(stair_test["i2t_r1"], 4),
            "grounding": round(stair_test["grounding"], 4),
            "active_fraction": round(stair_test["active_fraction"], 5),
            "active_image": round(stair_test["active_image"], 2),
            "active_text": round(stair_test["active_text"], 2),
        },
        "clip": {"t2i_r1": round(clip_test["t2i_r1"], 4), "i2t_r1": round(clip_test["i2t_r1"], 4)},
        "details": {
            "vocab_size": stair.config.vocab_size,
            "steps_per_model": args.steps,
            "batch_size": args.batch_size,
            "test_pairs": len(test_pairs),
            "stair_stages": [
                {
                    "stage": s.stage,
                    "steps": s.steps,
                    "lr": s.lr,
                    "flops_image": s.flops_image,
                    "flops_text": s.flops_text,
                    "stage1_text": s.stage1_text,
                    "grounding_weight": s.grounding_weight,
                    "tag_weight": s.tag_weight,
                    "pool_temperature": s.pool_temperature,
                    "min_lr_ratio": s.min_lr_ratio,
                }
                for s in stages
            ],  # fmt: skip
            "stair_test_r5_r10": {k: round(v, 4) for k, v in stair_test.items() if k[-2:] in ("r5", "10")},
            "clip_test_r5_r10": {k: round(v, 4) for k, v in clip_test.items() if k[-2:] in ("r5", "10")},
            "clip_chosen": {k: best[k] for k in ("lr", "temperature_init", "hard_negatives")},
            "clip_candidates_val": [
                {
                    k: (round(v, 4) if isinstance(v, float) else v)
                    for k, v in c.items()
                    if k not in ("model", "val")
                }
                for c in candidates
            ],
            "model_size": asdict(recipe.size),
            "stair_train_seconds": round(stair_seconds, 1),
            "total_seconds": round(time.perf_counter() - started, 1),
            "threads": torch.get_num_threads(),
        },
    }
    print(json.dumps(result if args.json else result, indent=None if args.json else 2))
    return result


if __name__ == "__main__":
    main()
