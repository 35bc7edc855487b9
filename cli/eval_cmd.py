"""``stair-es eval DATASET``: Recall@1/5/10 (text->image, image->text) or zero-shot accuracy, computed
in memory and through the engine, side by side.

The dataset is encoded once; the in-memory column is the model's exact float32 dot product, the
engine column comes from a temporary index queried with the production query builder (deleted
afterwards unless ``--keep``), so the difference is what the engine costs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from stair_es.engine.modes import EVAL_MODES, USER_MODES, user_mode_name
from stair_es_cli.common import (
    EngineOptions,
    connect_backend,
    connection_options,
    echo_err,
    load_runtime_encoder,
    model_option,
    provider_option,
)

EVAL_EXIT_HELP = """
\b
Exit status:
  0  evaluated    2  bad arguments or dataset    3  engine error    5  model error
"""

DIRECTION_LABELS = {
    "text_to_image": "text -> image",
    "image_to_text": "image -> text",
    "image_to_class": "image -> class",
}


def render_report(report: dict[str, Any]) -> str:
    """The side-by-side table plus agreement, pruning and timing lines."""
    data, model, engine = report["dataset"], report["model"], report["engine"]
    if report["task"] == "retrieval":
        split = f" (split {data['split']})" if data.get("split") else ""
        head = f"retrieval on {data['name']}{split}: {data['images']} images, {data['captions']} captions"
        if data.get("relevance") == "caption":
            head += " (identical captions count as matches)"
    else:
        head = f"zero-shot on {data['name']}: {data['images']} images, {data['classes']} classes, prompts {data['templates']}"
    if data.get("failed_images"):
        head += f"; {data['failed_images']} undecodable images left out"
    lines = [head]
    where = f"model {model.get('id')}" + (f" on {model['provider']}" if model.get("provider") else "")
    if engine:
        kept = "kept" if engine["kept"] else "deleted"
        where += f"; engine {engine['engine']}, mode {engine['mode']}, index '{engine['index']}' ({kept})"
    else:
        where += "; engine side skipped (--no-engine)"
    lines += [where, ""]
    lines.append(f"{'':<16}{'metric':<8}{'in memory':>10}{'engine':>10}{'diff':>9}")
    for name, d in report["directions"].items():
        label = DIRECTION_LABELS.get(name, name)
        for i, (metric, value) in enumerate(d["memory"].items()):
            engine_value = (d.get("engine") or {}).get(metric)
            row = f"{label if i == 0 else '':<16}{metric:<8}{value:>10.4f}"
            if engine_value is not None:
                row += f"{engine_value:>10.4f}{engine_value - value:>+9.4f}"
            lines.append(row)
    if engine:
        lines.append("")
        for name, d in report["directions"].items():
            label = DIRECTION_LABELS.get(name, name)
            text = (
                f"{label}: same first result for {100 * d['top1_agreement']:.1f}% of {d['queries']} queries; "
                f"engine scores within {100 * d['score_rel_diff_max']:.3g}% of float32 "
                f"({100 * d['score_rel_diff_9bit_max']:.2g}% of exact 9-bit arithmetic)"
            )
            if d["pruned_queries"]:
                text += f"; {d['pruned_queries']} queries pruned to the clause cap"
            lines.append(text)
    t = report["timings"]
    parts = [f"encode {t.get('encode_s', 0):.1f}s", f"in memory {t.get('memory_s', 0):.2f}s"]
    if "index_s" in t:
        queries = sum(d["queries"] for d in report["directions"].values())
        rate = queries / t["engine_query_s"] if t.get("engine_query_s") else 0.0
        parts += [f"index {t['index_s']:.1f}s", f"engine queries {t['engine_query_s']:.1f}s ({rate:.0f}/s)"]
    lines.append("time: " + ", ".join(parts))
    return "\n".join(lines)


@click.command(epilog=EVAL_EXIT_HELP)
@click.argument("dataset", type=click.Path(exists=True, path_type=Path))
@click.option(
    "--task",
    type=click.Choice(["auto", "retrieval", "zeroshot"]),
    default="auto",
    show_default=True,
    help="auto: zero-shot for a JSONL with a label field and no caption, else retrieval.",
)
@click.option(
    "--image-root",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Folder the dataset's image paths are relative to [default: the dataset file's folder].",
)
@click.option(
    "--split",
    default=None,
    help="Split to evaluate (Karpathy: train/val/test; JSONL rows with 'split') [default: test for "
    "Karpathy JSON, every row otherwise].",
)
@click.option("--max-images", type=click.IntRange(min=1), default=None, help="Use only the first N images.")
@click.option(
    "--classes",
    default=None,
    help="Zero-shot class names: a file (one per line or a JSON list) or comma-separated "
    "[default: the distinct labels].",
)
@click.option(
    "--template",
    "templates",
    multiple=True,
    help="Zero-shot prompt with {label} (repeatable: prompts are averaged) [default: 'a photo of a {label}'].",
)
@click.option(
    "--relevance",
    type=click.Choice(["id", "caption"]),
    default="id",
    show_default=True,
    help="Retrieval gold: id = a caption's own image (COCO/Flickr30K protocol); caption = also any "
    "image with an identical caption (sets with canonical captions, e.g. the synthetic set).",
)
@click.option("--label-field", default="label", show_default=True, help="JSONL key holding the label.")
@click.option(
    "--mode",
    type=click.Choice([user_mode_name(m) for m in EVAL_MODES]),
    default="exact",
    show_default=True,
    help="Engine query mode to evaluate.",
)
@click.option(
    "--engine/--no-engine", "use_engine", default=True, show_default=True, help="Also run through the engine."
)
@click.option(
    "--index",
    "index_name",
    default=None,
    help="Name of the temporary index [default: stair-es-eval-<random>].",
)
@click.option("--keep", is_flag=True, help="Keep the temporary index (to inspect it or search it).")
@click.option(
    "--batch-size", type=click.IntRange(min=1), default=64, show_default=True, help="Encoding batch size."
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write the JSON report here.",
)
@model_option(default_help="none: evaluating needs a model")
@provider_option()
@connection_options
def eval_cmd(
    dataset: Path,
    task: str,
    image_root: Path | None,
    split: str | None,
    max_images: int | None,
    classes: str | None,
    templates: tuple[str, ...],
    relevance: str,
    label_field: str,
    mode: str,
    use_engine: bool,
    index_name: str | None,
    keep: bool,
    batch_size: int,
    as_json: bool,
    output: Path | None,
    model_path: Path | None,
    provider: str,
    connection: EngineOptions,
) -> None:
    """Evaluate a model on DATASET: captioned images (Karpathy COCO/Flickr30K JSON, COCO captions
    JSON, JSONL {"image","caption"}, a folder with photo.txt captions) or labelled images (JSONL
    {"image","label"}, or --task zeroshot on a folder of class sub-folders).

    \b
    Examples:
      stair-es eval dataset_flickr30k.json --image-root flickr30k-images --split test
      stair-es eval test.jsonl --no-engine --json
      stair-es eval labelled.jsonl --classes "cat,dog,bird" --template "a photo of a {label}"
    """
    from stair_es.eval import (
        DEFAULT_TEMPLATE,
        EngineTarget,
        evaluate_retrieval,
        evaluate_zeroshot,
        load_labelled_set,
        load_retrieval_set,
        looks_labelled,
        read_class_names,
    )

    if task == "auto":
        task = "zeroshot" if looks_labelled(dataset, label_field) else "retrieval"
    if task == "retrieval" and (classes or templates):
        from stair_es.errors import UsageError

        raise UsageError("--classes/--template are for zero-shot sets (--task zeroshot)")
    if task == "retrieval":
        if split is None and dataset.suffix == ".json" and _is_karpathy(dataset):
            split = "test"
        data: Any = load_retrieval_set(dataset, image_root, split, max_images)
    else:
        data = load_labelled_set(
            dataset,
            read_class_names(classes),
            templates or (DEFAULT_TEMPLATE,),
            label_field,
            image_root,
            split,
            max_images,
        )
    if model_path is None:  # evaluating the demo model by default would report someone else's numbers
        from stair_es.errors import UsageError

        raise UsageError("which model? pass --model DIR (an exported model) or set STAIR_ES_MODEL")
    encoder = load_runtime_encoder(model_path, provider)
    echo_err(f"model {encoder.model_id} at {model_path} on {encoder.provider_info('text').describe()}")
    target = None
    backend = None
    if use_engine:
        backend = connect_backend(connection)
        target = EngineTarget(backend, mode=USER_MODES[mode][0], index=index_name, keep=keep)
    try:
        if task == "retrieval":
            result = evaluate_retrieval(
                data, encoder, engine=target, batch_size=batch_size, relevance=relevance, log=echo_err
            )
        else:
            result = evaluate_zeroshot(data, encoder, engine=target, batch_size=batch_size, log=echo_err)
        report = result.to_dict()
    finally:
        if backend is not None:
            backend.close()
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    click.echo(json.dumps(report, indent=2) if as_json else render_report(report))


def _is_karpathy(path: Path) -> bool:
    """Karpathy split files have top-level "images" with per-image "split" (COCO captions do not)."""
    try:
        with path.open(encoding="utf-8") as handle:
            head = handle.read(1 << 16)
    except OSError:
        return False
    return '"images"' in head and '"split"' in head and '"annotations"' not in head
