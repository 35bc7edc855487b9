"""Turn ``stair-es train`` options into a recipe run (kept here so the CLI module stays thin)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from stair_es.data.readers import read_pairs
from stair_es.errors import UsageError
from stair_es.model.modeling import StairModel
from stair_es.training.recipes import PRESETS, ModelSize, build_model, run_stages, three_stage, train_preset
from stair_es.training.trainer import TrainConfig

DEFAULT_STEPS = 500


def run_train_command(opts: dict[str, Any], log: Callable[[str], None]) -> dict[str, Any]:
    """Validate, read data, build or load the model, run the stages; returns the training record."""
    output = Path(opts["output"])
    if opts["preset"] and opts["data"] is None:
        return train_preset(
            opts["preset"],
            output,
            None,
            opts["steps"],
            opts["seed"],
            log,
            opts["resume"],
            opts.get("command"),
        )
    if opts["data"] is None:
        raise UsageError("--data is required (or use --preset demo to train on the synthetic set)")
    if opts["stage"] == "dense-to-sparse" and not (
        opts["vision_checkpoint"] or opts["text_checkpoint"] or opts["init_model"]
    ):
        raise UsageError(
            "dense-to-sparse needs pretrained towers: --vision-checkpoint/--text-checkpoint or --init"
        )

    train_pairs = read_pairs(opts["data"], opts["image_root"], opts["split"])
    if opts["max_pairs"]:
        train_pairs = train_pairs[: opts["max_pairs"]]
    eval_source = opts["eval_data"] or (opts["data"] if opts["eval_split"] else None)
    eval_pairs = read_pairs(eval_source, opts["image_root"], opts["eval_split"]) if eval_source else None

    if opts["preset"]:
        recipe = PRESETS[opts["preset"]](
            **({"total_steps": opts["steps"]} if opts["steps"] else {}), seed=opts["seed"]
        )
        size, stages = recipe.size, recipe.stages
        if opts["stage"] != "all":
            stages = [s for s in stages if s.stage == opts["stage"]]
    else:
        size = ModelSize(
            image_size=opts["image_size"],
            patch_size=opts["patch_size"],
            vision_stem=opts["vision_stem"],
            hidden_size=opts["hidden_size"],
            layers=opts["layers"],
            vocab_size=opts["vocab_size"],
        )
        base = TrainConfig(
            steps=opts["steps"] or DEFAULT_STEPS,
            batch_size=opts["batch_size"],
            grad_accum=opts["grad_accum"],
            lr=opts["lr"],
            weight_decay=opts["weight_decay"],
            warmup_fraction=opts["warmup"],
            flops_image=opts["flops_image"],
            flops_text=opts["flops_text"],
            flops_ramp_fraction=opts["flops_ramp"],
            unfreeze_last_blocks=opts["unfreeze_last_blocks"],
            stage1_text=opts["stage1_text"],
            grounding_weight=opts["grounding_weight"],
            tag_weight=opts["tag_weight"],
            pool_temperature=opts["pool_temperature"],
            hard_negative_fraction=opts["hard_negatives"],
            seed=opts["seed"],
            device=opts["device"],
            eval_every=opts["eval_every"],
            checkpoint_every=opts["checkpoint_every"],
        )
        if opts["stage"] == "all":
            stages = three_stage(base.steps, base)
        else:
            stages = [TrainConfig(**{**asdict(base), "stage": opts["stage"]})]
    for stage in stages:
        stage.validate()
        if stage.batch_size > len(train_pairs):
            raise UsageError(f"--batch-size {stage.batch_size} exceeds the {len(train_pairs)} training pairs")

    if opts["init_model"]:
        model = StairModel.from_pretrained(opts["init_model"])
    else:
        model = build_model(
            train_pairs, size, opts["seed"], opts["vision_checkpoint"], opts["text_checkpoint"]
        )
    metadata = {
        "command": opts.get("command"),
        "recipe": opts["preset"] or f"custom-stage-{opts['stage']}",
        "model_size": asdict(size),
        "seed": opts["seed"],
        "data": str(opts["data"]),
        "eval_data": str(eval_source) if eval_source else None,
        "init": str(opts["init_model"]) if opts["init_model"] else None,
        "vision_checkpoint": str(opts["vision_checkpoint"]) if opts["vision_checkpoint"] else None,
        "text_checkpoint": str(opts["text_checkpoint"]) if opts["text_checkpoint"] else None,
    }
    return run_stages(model, stages, train_pairs, eval_pairs, output, log, opts["resume"], metadata)
