"""``stair-es train`` and ``stair-es make-synthetic`` (torch is imported only inside ``train``)."""

from __future__ import annotations

from pathlib import Path

import click
from click.core import ParameterSource

STAGE_CHOICES = ["all", "1", "2", "3", "dense-to-sparse"]


@click.command("make-synthetic")
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--num-images", default=5000, show_default=True, help="Images to draw (all splits).")
@click.option("--seed", default=0, show_default=True, help="Same seed, same bytes.")
@click.option("--image-size", default=64, show_default=True, help="Side of the square images, in pixels.")
@click.option(
    "--format", "image_format", type=click.Choice(["png", "jpeg"]), default="png", show_default=True
)
@click.option("--test-fraction", default=0.1, show_default=True, help="Share of images in test.jsonl.")
@click.option("--val-fraction", default=0.0, show_default=True, help="Share of images in val.jsonl.")
def make_synthetic(
    out_dir: Path,
    num_images: int,
    seed: int,
    image_size: int,
    image_format: str,
    test_fraction: float,
    val_fraction: float,
) -> None:
    """Write seeded synthetic captioned images (coloured shapes) and JSONL manifests per split."""
    from stair_es.data.synthetic import SyntheticConfig, generate_synthetic
    from stair_es.errors import UsageError

    if num_images < 1 or not 0 <= test_fraction + val_fraction < 1:
        raise UsageError("need --num-images >= 1 and 0 <= test + val fraction < 1")
    config = SyntheticConfig(
        num_images=num_images,
        seed=seed,
        image_size=image_size,
        image_format=image_format,
        test_fraction=test_fraction,
        val_fraction=val_fraction,
    )
    manifests = generate_synthetic(out_dir, config)
    for split, path in manifests.items():
        lines = sum(1 for _ in path.open(encoding="utf-8"))
        click.echo(f"{split}: {lines} pairs -> {path}")


@click.command("train")
@click.option(
    "--data",
    type=click.Path(exists=True, path_type=Path),
    help="Training pairs: .jsonl or .csv manifest, "
    "COCO/Karpathy .json (with --image-root) or a folder of images with .txt sidecars. "
    "Optional with --preset (the preset's synthetic set is generated under OUTPUT/data).",
)
@click.option(
    "--eval-data", type=click.Path(exists=True, path_type=Path), help="Held-out pairs for recall logs."
)
@click.option(
    "--image-root",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Image folder for COCO/Karpathy JSON.",
)
@click.option("--split", default=None, help="Split to train on (Karpathy/JSONL 'split' field).")
@click.option(
    "--eval-split", default=None, help="Split of --eval-data (or of --data when --eval-data is unset)."
)
@click.option(
    "--output",
    "-o",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Model directory to write (checkpoints and logs go inside).",
)
@click.option(
    "--preset",
    type=click.Choice(["demo", "tiny"]),
    default=None,
    help="Known-good recipe (demo: ~3 min CPU on the synthetic set).",
)
@click.option(
    "--stage",
    type=click.Choice(STAGE_CHOICES),
    default=None,
    help="'all' runs stages 1->2->3 (30/20/50 of --steps); or one mode.  "
    "[default: all; dense-to-sparse with --from-clip]",
)
@click.option(
    "--steps",
    type=int,
    default=None,
    envvar="STAIR_ES_TRAIN_STEPS",
    help="Optimizer steps (total for --stage all) [env STAIR_ES_TRAIN_STEPS; default: the preset's, else 500].",
)
@click.option("--batch-size", type=int, default=64, show_default=True)
@click.option("--grad-accum", type=int, default=1, show_default=True, help="Micro-batches per step.")
@click.option("--lr", type=float, default=1e-3, show_default=True, help="Peak AdamW learning rate.")
@click.option("--weight-decay", type=float, default=0.01, show_default=True)
@click.option("--warmup", type=float, default=0.05, show_default=True, help="Warmup as a fraction of steps.")
@click.option("--flops-image", type=float, default=1e-3, show_default=True, help="FLOPs weight, image side.")
@click.option("--flops-text", type=float, default=5e-3, show_default=True, help="FLOPs weight, text side.")
@click.option(
    "--l1-image",
    type=float,
    default=0.0,
    show_default=True,
    help="L1 weight (total weight per vector), image side.",
)
@click.option(
    "--l1-text",
    type=float,
    default=0.0,
    show_default=True,
    help="L1 weight, text side: ends long tails of tiny weights that FLOPs leaves (queries of hundreds of tokens).",
)
@click.option(
    "--flops-ramp",
    type=float,
    default=0.3,
    show_default=True,
    help="Quadratic FLOPs ramp as a fraction of the (first) stage's steps.",
)
@click.option(
    "--stage1-text",
    type=click.Choice(["binary", "learned"]),
    default="binary",
    show_default=True,
    help="Stage 1 text vector: the caption's token bag, or the text tower masked to it.",
)
@click.option(
    "--grounding-weight",
    type=float,
    default=1.0,
    show_default=True,
    help="Stage 3 / dense-to-sparse: weight of the image-vs-caption-bag loss that keeps tokens grounded.",
)
@click.option(
    "--tag-weight",
    type=float,
    default=0.0,
    show_default=True,
    help="Stages 1, 3, dense-to-sparse: weight of the class-balanced loss that trains each image token as "
    "a detector of its caption word (the demo preset uses 6).",
)
@click.option(
    "--pool-temperature",
    type=float,
    default=0.0,
    show_default=True,
    help="Image side: soft (logsumexp) pooling over positions at this temperature, annealed to the "
    "exported max over each stage (the demo preset uses 0.5).",
)
@click.option(
    "--hard-negatives",
    type=float,
    default=0.0,
    show_default=True,
    help="Share of each batch filled with near-duplicate captions of a random anchor.",
)
@click.option(
    "--init",
    "init_model",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Continue from a saved STAIR model directory.",
)
@click.option(
    "--vision-checkpoint",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Local CLIP vision checkpoint for the image tower.",
)
@click.option(
    "--text-checkpoint",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Local BERT checkpoint (with vocab.txt) for the text tower; its vocabulary is the output space.",
)
@click.option(
    "--from-clip",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="A Hugging Face CLIPModel folder: both towers and its own tokenizer; sparse heads are trained "
    "on its image/text embeddings (dense-to-sparse). Its defaults, for options not given: --steps 500 "
    "--lr 2e-3 --flops-image/--flops-text 5e-2 --l1-image/--l1-text 3e-3 --tag-weight 1 "
    "--distill-weight 3 --expansion-control 0.5.",
)
@click.option(
    "--output-vocab",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="With --from-clip: WordPiece vocab.txt of the output tokens (e.g. bert-base-uncased's) "
    "[default: built from the captions plus common English words].",
)
@click.option(
    "--distill-weight",
    type=float,
    default=None,
    help="With --from-clip: weight of the loss matching the dense model's own in-batch ranking.",
)
@click.option(
    "--expansion-control",
    type=click.FloatRange(0.0, 1.0),
    default=None,
    help="With --from-clip: chance (annealed to 0) that a step's text vectors keep only their caption's "
    "own tokens, which keeps image tokens on caption words.",
)
@click.option(
    "--failures",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write one JSON line per image that could not be read (it is left out; exit status 10).",
)
@click.option(
    "--unfreeze-last-blocks",
    type=int,
    default=0,
    show_default=True,
    help="dense-to-sparse: also train the last N blocks of each tower.",
)
@click.option("--image-size", type=int, default=64, show_default=True, help="Fresh image tower input size.")
@click.option("--patch-size", type=int, default=16, show_default=True)
@click.option(
    "--vision-stem",
    type=click.Choice(["patch", "conv"]),
    default="patch",
    show_default=True,
    help="Fresh image towers: ViT patchify layer, or an early-convolution stem (learns shapes far faster).",
)
@click.option("--hidden-size", type=int, default=128, show_default=True)
@click.option("--layers", type=int, default=2, show_default=True)
@click.option("--vocab-size", type=int, default=None, help="Cap the vocabulary (>= 1000 recommended).")
@click.option("--max-pairs", type=int, default=None, help="Use at most this many training pairs.")
@click.option("--eval-every", type=int, default=0, show_default=True, help="Steps between held-out evals.")
@click.option("--checkpoint-every", type=int, default=0, show_default=True, help="Steps between checkpoints.")
@click.option(
    "--workers",
    type=click.IntRange(min=0),
    default=None,
    help="Processes decoding training images during training; 0 decodes all into memory first  "
    "[default: in memory when the decoded images fit in 2 GiB, else up to 8 workers].",
)
@click.option("--augment", is_flag=True, help="Random crops (70-100% of the image, no flips) while training.")
@click.option(
    "--precision",
    type=click.Choice(["auto", "fp32", "bf16", "fp16"]),
    default="auto",
    show_default=True,
    help="Autocast: auto = bf16 on CUDA (fp16 where bf16 is missing), fp32 on CPU.",
)
@click.option("--resume", is_flag=True, help="Continue an interrupted run in --output.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:1 ...")
@click.option(
    "--threads", type=int, default=None, help="torch CPU threads (default: from the CPU count and load)."
)
@click.option("--quiet", is_flag=True, help="Only the final summary.")
@click.option("--json", "as_json", is_flag=True, help="Print the final summary as one JSON line.")
def train(**opts: object) -> None:
    """Train a STAIR model: stages 1-3 (grounding recipe), one stage, or dense-to-sparse."""
    from stair_es.errors import require

    require("torch", "train", "training")
    import json

    import torch

    from stair_es.training import distributed
    from stair_es.training.cli_support import run_train_command
    from stair_es.training.recipes import auto_threads

    info = distributed.init_from_env(str(opts["device"]))  # torchrun: one process per device
    threads = int(opts["threads"] or max(1, auto_threads() // info.world_size))  # type: ignore[call-overload]
    torch.set_num_threads(threads)
    log = (lambda _m: None) if opts["quiet"] else (lambda m: click.echo(m, err=True))
    as_json = opts.pop("as_json")
    ctx = click.get_current_context()
    opts["explicit"] = {  # options given (command line or env); --from-clip fills in its own defaults
        p.name
        for p in ctx.command.params
        if ctx.get_parameter_source(p.name or "")
        in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)
    }
    if not info.is_main:
        log = lambda _m: None  # noqa: E731 - rank 0 speaks for the job
    try:
        record = run_train_command({**opts, "command": _command_line(ctx)}, log)
    finally:
        distributed.shutdown()
    if not info.is_main:
        return
    failed = int(record.get("failed_images") or 0)
    if as_json:
        summary = {
            "output": str(opts["output"]),
            "final_metrics": record["final_metrics"],
            "failed_images": failed,
        }
        click.echo(json.dumps(summary))
    else:
        metrics = record.get("final_metrics") or {}
        shown = ", ".join(f"{k} {v:.3f}" for k, v in metrics.items() if k.endswith("_r1") or k == "grounding")
        click.echo(f"trained model in {opts['output']}" + (f" (held-out {shown})" if shown else ""))
        if failed:
            click.echo(f"  {failed} images could not be read and were left out (--failures FILE lists them)")
        click.echo(f"  log: {opts['output']}/train_log.jsonl; next: stair-es export {opts['output']} OUT_DIR")
    if failed:
        ctx.exit(10)  # trained, but some images were left out (the stable "some items failed" status)


def _command_line(ctx: click.Context) -> str:
    """The command as a person would retype it: every option that differs from its default."""
    import shlex

    parts = ["stair-es", ctx.info_name or "train"]
    for param in ctx.command.params:
        value = ctx.params.get(param.name or "")
        if not isinstance(param, click.Option) or value is None or value == param.get_default(ctx):
            continue
        if param.name == "as_json":  # output format, not part of the recipe
            continue
        flag = max(param.opts, key=len)
        if param.is_flag:
            if value or param.secondary_opts:
                parts.append(flag if value else param.secondary_opts[0])
        else:
            parts.extend([flag, str(value)])
    return shlex.join(parts)


@click.command("convert-open-clip")
@click.argument("checkpoint", type=click.Path(exists=True, path_type=Path))
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--bpe-merges",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="CLIP's BPE merges (bpe_simple_vocab_16e6.txt.gz) [default: the one in the open_clip package].",
)
@click.option(
    "--quick-gelu/--no-quick-gelu",
    default=None,
    help="The towers' activation (OpenAI weights: QuickGELU) [default: from open_clip_config.json].",
)
def convert_open_clip(
    checkpoint: Path, out_dir: Path, bpe_merges: Path | None, quick_gelu: bool | None
) -> None:
    """Write the Hugging Face CLIPModel folder of an open_clip ViT checkpoint (a folder with
    open_clip_config.json + open_clip_pytorch_model.bin/open_clip_model.safetensors, or the weights file),
    for `stair-es train --from-clip OUT_DIR`."""
    from stair_es.errors import require

    require("torch", "train", "the conversion")
    from stair_es.model.open_clip_convert import convert

    click.echo(f"wrote {convert(checkpoint, out_dir, bpe_merges, quick_gelu)}")
