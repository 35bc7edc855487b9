"""``stair-es export``: a saved STAIR model -> image.onnx + text.onnx + manifest.json (parity-checked)."""

from __future__ import annotations

import json

import click


@click.command()
@click.argument("model_dir", type=click.Path(exists=True, file_okay=False))
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option(
    "--fp16",
    is_flag=True,
    help="Also write fp16 graphs for CUDA (fused attention; LayerNorm/softmax/tail stay fp32).",
)
@click.option(
    "--int8",
    is_flag=True,
    help="Also write int8 graphs for CPU: dynamic and static (calibrated) quantization, the faster kept.",
)
@click.option(
    "--optimize/--no-optimize",
    default=True,
    show_default=True,
    help="Transformer fusions (attention, GELU; + SkipLayerNorm for CUDA) and static int8, parity-checked.",
)
@click.option(
    "--calibration-images",
    type=click.Path(exists=True, file_okay=False),
    default=None,
    help="Folder of images that sets static int8's activation ranges [default: built-in samples].",
)
@click.option(
    "--calibration-texts",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Text file, one text per line, for static int8 calibration [default: built-in samples].",
)
@click.option(
    "--top-k",
    type=click.IntRange(min=1),
    default=None,
    help="Emit the top K (indices, values) inside the graph instead of dense vocabulary weights.",
)
@click.option("--opset", type=click.IntRange(min=17), default=18, show_default=True, help="ONNX opset.")
@click.option(
    "--model-id", default=None, help="Identity stored in the manifest [default: dir name + weights hash]."
)
@click.option("--overwrite", is_flag=True, help="Replace an existing export in OUT_DIR.")
@click.option(
    "--prune-top-k",
    type=click.IntRange(min=1),
    default=None,
    help="Default top-k pruning the runtime applies to every vector [default: none].",
)
@click.option(
    "--prune-min-weight",
    type=click.FloatRange(min=0.0),
    default=0.0,
    show_default=True,
    help="Default minimum weight the runtime keeps.",
)
@click.option(
    "--int8-min-agreement",
    type=click.FloatRange(0.0, 1.0),
    default=0.9,
    show_default=True,
    help="Top-10 token agreement int8 must reach against torch, else nothing is written.",
)
@click.option(
    "--fp16-min-agreement",
    type=click.FloatRange(0.0, 1.0),
    default=0.9,
    show_default=True,
    help="Top-10 token agreement fp16 must reach against torch, else nothing is written.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as JSON instead of a summary.")
def export(
    model_dir: str,
    out_dir: str,
    fp16: bool,
    int8: bool,
    optimize: bool,
    calibration_images: str | None,
    calibration_texts: str | None,
    top_k: int | None,
    opset: int,
    model_id: str | None,
    overwrite: bool,
    prune_top_k: int | None,
    prune_min_weight: float,
    int8_min_agreement: float,
    fp16_min_agreement: float,
    as_json: bool,
) -> None:
    """Export MODEL_DIR (a saved STAIR model) to ONNX in OUT_DIR.

    Both graphs run from raw inputs (pixels; token ids + mask) to final sparse weights. Export
    compares torch and onnxruntime on sample inputs and writes nothing when a precision is out of
    tolerance; the parity report is stored in OUT_DIR/manifest.json.
    """
    from stair_es.errors import require

    require("torch", "train", "ONNX export")
    require("onnx", "train", "ONNX export")
    from stair_es.export import DEFAULT_TOLERANCES, Tolerance, export_model

    images = texts = None
    if calibration_images:
        from stair_es.runtime.files import list_image_files

        images = [str(p) for p in list_image_files(calibration_images)[:64]]
        if not images:
            raise click.BadParameter("no image files in the folder", param_hint="--calibration-images")
    if calibration_texts:
        with open(calibration_texts, encoding="utf-8") as handle:
            texts = [line.strip() for line in handle if line.strip()][:256]
    tolerances = {
        "int8": Tolerance(None, int8_min_agreement, DEFAULT_TOLERANCES["int8"].k),
        "fp16": Tolerance(None, fp16_min_agreement, DEFAULT_TOLERANCES["fp16"].k),
    }
    manifest = export_model(
        model_dir,
        out_dir,
        fp16=fp16,
        int8=int8,
        top_k=top_k,
        opset=opset,
        model_id=model_id,
        overwrite=overwrite,
        tolerances=tolerances,
        pruning={"top_k": prune_top_k, "min_weight": prune_min_weight},
        log=lambda msg: click.echo(msg, err=True),
        optimize=optimize,
        calibration_images=images,
        calibration_texts=texts,
    )
    from stair_es.runtime.registry import register_model

    register_model(manifest)  # so `stair-es search --index ...` finds it without --model
    if as_json:
        click.echo(json.dumps(manifest.to_dict(), indent=2))
        return
    click.echo(f"exported {manifest.model_id} to {manifest.root}")
    for precision, towers in manifest.graphs.items():
        click.echo(f"  {precision}: {', '.join(f'{t}={f}' for t, f in towers.items())}")
    if manifest.auto:
        click.echo("  auto: " + "; ".join(f"{p} {t}" for p, t in manifest.auto.items()))
    click.echo(f"  vocabulary: {manifest.vocab_size} tokens, hash {manifest.vocab_hash[:16]}")
    click.echo(
        f"  output: {manifest.output_kind}"
        + (f" (top {manifest.output_top_k})" if manifest.output_top_k else "")
    )
