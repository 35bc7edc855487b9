"""Export orchestration: model directory -> ONNX graphs + manifest + parity report, all or nothing.

Everything is built in a staging directory next to the destination and moved into place only after
every requested precision passed its parity tolerance, so a failed export never leaves a
half-written model that an indexer could pick up.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from stair_es import __version__
from stair_es.errors import ModelError, UsageError
from stair_es.export import variants
from stair_es.export.graphs import ImageGraph, TextGraph, output_names
from stair_es.export.onnx_export import DEFAULT_OPSET, export_graph
from stair_es.export.parity import (
    DEFAULT_TOLERANCES,
    SAMPLE_TEXTS,
    Tolerance,
    dense_from_output,
    sample_images,
    sample_pixels,
)
from stair_es.runtime.images import ImagePreprocessing, load_pixels
from stair_es.runtime.manifest import MANIFEST_NAME, Manifest
from stair_es.runtime.tokenizer import TextTokenizer, file_sha256, read_vocab_file, vocabulary_hash

TOWERS = ("image", "text")
# ONNX metadata: the output vocabulary a graph's dimensions mean, and (text graph) the input tokenizer
VOCAB_HASH_KEY = "stair_es.vocab_hash"
TOKENIZER_KEY = "stair_es.input_tokenizer_sha256"
OUTPUT_VOCAB_NAME = "output_vocab.txt"


@dataclass
class ModelSources:
    """What export needs besides the torch module, read from the model directory."""

    tokenizer_path: Path
    preprocessing: ImagePreprocessing
    max_text_length: int
    model_id: str
    zeroed_token_ids: list[int] = field(default_factory=list)
    output_vocab_path: Path | None = None  # separate output vocabulary (one token per line)


def read_model_dir(model_dir: str | os.PathLike, model_id: str | None = None) -> ModelSources:
    """Tokenizer, preprocessing and identity from a saved model directory (issue-3 layout)."""
    root = Path(model_dir)
    pre_path = root / "preprocessor_config.json"
    if not (root / "tokenizer.json").is_file():
        raise ModelError(f"{root}: no tokenizer.json (is this a stair-es model directory?)")
    if not pre_path.is_file():
        raise ModelError(f"{root}: no preprocessor_config.json")
    try:
        pre = json.loads(pre_path.read_text(encoding="utf-8"))
        config = json.loads((root / "config.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"{root}: unreadable model config ({exc})") from exc
    image = dict(pre.get("image", pre))  # ImagePreprocessing.from_dict reads the model's key names
    max_len = pre.get("max_text_length", pre.get("max_length", config.get("max_text_length")))
    if max_len is None:
        raise ModelError(f"{pre_path}: no max_text_length")
    weights = root / "model.safetensors"
    digest = file_sha256(weights)[:12] if weights.is_file() else "unknown"
    zeroed = config.get("zeroed_token_ids", config.get("zero_token_ids", []))
    output_vocab = root / config["output_vocab_file"] if config.get("output_vocab_file") else None
    if output_vocab is not None and not output_vocab.is_file():
        raise ModelError(f"{root}: output vocabulary {output_vocab.name} is missing")
    return ModelSources(
        tokenizer_path=root / "tokenizer.json",
        preprocessing=ImagePreprocessing.from_dict(image),
        max_text_length=int(max_len),
        model_id=model_id or f"{root.resolve().name}-{digest}",
        zeroed_token_ids=[int(i) for i in zeroed or []],
        output_vocab_path=output_vocab,
    )


def export_model(
    model_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    fp16: bool = False,
    int8: bool = False,
    top_k: int | None = None,
    opset: int = DEFAULT_OPSET,
    model_id: str | None = None,
    overwrite: bool = False,
    tolerances: dict[str, Tolerance] | None = None,
    pruning: dict[str, Any] | None = None,
    log: Callable[[str], None] | None = None,
    optimize: bool = True,
    calibration_images: list[Any] | None = None,
    calibration_texts: list[str] | None = None,
    towers: tuple[str, ...] = TOWERS,
) -> Manifest:
    """Load a saved STAIR model and export it (see :func:`export_module`)."""
    from stair_es.model import StairModel

    try:
        model = StairModel.from_pretrained(Path(model_dir))
    except FileNotFoundError as exc:
        raise ModelError(f"{model_dir}: not a saved model ({exc})") from exc
    return export_module(
        model,
        read_model_dir(model_dir, model_id),
        out_dir,
        fp16=fp16,
        int8=int8,
        top_k=top_k,
        opset=opset,
        overwrite=overwrite,
        tolerances=tolerances,
        pruning=pruning,
        log=log,
        optimize=optimize,
        calibration_images=calibration_images,
        calibration_texts=calibration_texts,
        towers=towers,
    )


def export_module(
    model: torch.nn.Module,
    sources: ModelSources,
    out_dir: str | os.PathLike,
    *,
    fp16: bool = False,
    int8: bool = False,
    top_k: int | None = None,
    opset: int = DEFAULT_OPSET,
    overwrite: bool = False,
    tolerances: dict[str, Tolerance] | None = None,
    pruning: dict[str, Any] | None = None,
    log: Callable[[str], None] | None = None,
    optimize: bool = True,
    calibration_images: list[Any] | None = None,
    calibration_texts: list[str] | None = None,
    towers: tuple[str, ...] = TOWERS,
) -> Manifest:
    """Export both towers of ``model`` (any module with ``encode_image``/``encode_text``) to ``out_dir``.

    ``optimize``: transformer fusions (see :mod:`stair_es.export.optimize`) and, with ``int8``, static
    int8 besides dynamic, the faster kept; ``calibration_images``/``calibration_texts`` (paths or
    PIL images, strings) set static int8's activation ranges (default: built-in samples).
    ``towers``: a subset of ("image", "text") exports only those (e.g. an image-only GPU check).
    Raises :class:`ModelError` and writes nothing when a precision misses its parity tolerance.
    """
    log = log or logging.getLogger(__name__).info
    tol = {**DEFAULT_TOLERANCES, **(tolerances or {})}
    out = Path(out_dir)
    _check_destination(out, overwrite)
    if opset < 17:
        raise UsageError(f"opset {opset} is too old: LayerNormalization needs opset >= 17")
    tokenizer = TextTokenizer.from_file(sources.tokenizer_path, sources.max_text_length)
    names = read_vocab_file(sources.output_vocab_path) if sources.output_vocab_path else tokenizer.tokens
    vocab_size = _model_vocab_size(model, len(names))
    if top_k is not None and not 0 < top_k <= vocab_size:
        raise UsageError(f"--top-k must be between 1 and the vocabulary size {vocab_size}, got {top_k}")

    model = model.eval().float()
    pixels = sample_pixels(sources.preprocessing)
    input_ids, mask = tokenizer(SAMPLE_TEXTS)
    if not towers or not set(towers) <= set(TOWERS):
        raise UsageError(f"towers must be a non-empty subset of {TOWERS}, got {towers}")
    inputs = {
        "image": {"pixel_values": pixels},
        "text": {"input_ids": input_ids, "attention_mask": mask},
    }
    inputs = {tower: feed for tower, feed in inputs.items() if tower in towers}
    wrappers: dict[str, Any] = {"image": ImageGraph(model, top_k), "text": TextGraph(model, top_k)}
    with torch.no_grad():
        reference = {
            tower: dense_from_output(
                _as_numpy(wrappers[tower](*[torch.from_numpy(a) for a in feed.values()])), vocab_size
            )
            for tower, feed in inputs.items()
        }

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".stair-export-", dir=out.parent))
    staging.chmod(0o755)  # mkdtemp makes it private; the export is an ordinary directory
    try:
        raw: dict[str, Path] = {}
        exporters: dict[str, str] = {}
        for tower in inputs:
            raw[tower] = staging / f".{tower}.exported.onnx"
            example = tuple(torch.from_numpy(a[:2]) for a in inputs[tower].values())
            dynamic = (
                {"pixel_values": {0: "batch"}}
                if tower == "image"
                else {
                    "input_ids": {0: "batch", 1: "sequence"},
                    "attention_mask": {0: "batch", 1: "sequence"},
                }
            )
            log(f"exporting {tower} tower")
            exporters[tower] = export_graph(
                wrappers[tower],
                example,
                raw[tower],
                list(inputs[tower]),
                output_names(top_k),
                dynamic,
                opset=opset,
                max_seq=sources.max_text_length,
            )
        candidates = variants.Candidates(
            staging=staging,
            inputs=inputs,
            reference=reference,
            vocab_size=vocab_size,
            tolerances=tol,
            calibration=_calibration(sources, tokenizer, calibration_images, calibration_texts)
            if int8 and optimize
            else {},
            log=log,
        )
        graphs: dict[str, dict[str, str]] = {"fp32": variants.build_fp32(candidates, raw, optimize)}
        if fp16:
            graphs["fp16"] = variants.build_fp16(candidates, raw, optimize)
        if int8 and not candidates.failures:
            graphs["int8"] = variants.build_int8(candidates, graphs["fp32"], static=optimize)
        for path in raw.values():
            path.unlink(missing_ok=True)
        for leftover in staging.glob(".*.onnx"):
            leftover.unlink()
        if candidates.failures:
            raise ModelError(
                f"parity check failed, nothing written to {out}: {'; '.join(candidates.failures)}"
            )
        auto = variants.choose_auto(candidates, graphs)
        log("auto precision: " + ", ".join(f"{p} {t}" for p, t in auto.items()))
        parity = candidates.parity
        stamp = {VOCAB_HASH_KEY: vocabulary_hash(names), TOKENIZER_KEY: file_sha256(sources.tokenizer_path)}
        for files in graphs.values():  # each graph names the vocabularies it was built for
            for tower, name in files.items():
                stamp_graph(
                    staging / name, stamp if tower == "text" else {VOCAB_HASH_KEY: stamp[VOCAB_HASH_KEY]}
                )

        shutil.copyfile(sources.tokenizer_path, staging / "tokenizer.json")
        names_file = None
        if sources.output_vocab_path is not None:
            names_file = OUTPUT_VOCAB_NAME
            shutil.copyfile(sources.output_vocab_path, staging / names_file)
        manifest = Manifest(
            root=out,
            model_id=sources.model_id,
            vocab_size=vocab_size,
            vocab_hash=vocabulary_hash(names),
            tokenizer_file="tokenizer.json",
            tokenizer_sha256=file_sha256(staging / "tokenizer.json"),
            max_text_length=sources.max_text_length,
            image=sources.preprocessing,
            output_kind="topk" if top_k else "dense",
            output_top_k=top_k,
            pruning=dict(pruning or {"top_k": None, "min_weight": 0.0}),
            zeroed_token_ids=list(sources.zeroed_token_ids),
            graphs=graphs,
            parity=parity,
            exporter=_exporter_info(opset, exporters, staging, graphs),
            output_vocab_file=names_file,
            output_vocab_sha256=file_sha256(staging / names_file) if names_file else None,
            auto=auto,
            optimization=candidates.info,
        )
        manifest.write(staging)
        _move_into_place(staging, out)
        log(f"wrote {out / MANIFEST_NAME}")
        return Manifest.read(out)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def stamp_graph(path: Path, properties: dict[str, str]) -> None:
    """Record ``properties`` in the graph file's metadata (onnxruntime's custom_metadata_map)."""
    import onnx

    model = onnx.load(str(path))
    kept = [p for p in model.metadata_props if p.key not in properties]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    for key, value in properties.items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))


def _calibration(
    sources: ModelSources,
    tokenizer: TextTokenizer,
    images: list[Any] | None,
    texts: list[str] | None,
) -> dict[str, list[dict[str, np.ndarray]]]:
    """Static int8 calibration batches: the caller's images/texts, else built-in samples other than
    the parity samples (so the int8 parity numbers are not measured on the calibration set)."""
    spec = sources.preprocessing
    pixels = (
        np.stack([load_pixels(img, spec) for img in images])
        if images
        else np.stack([load_pixels(img, spec) for img in sample_images(16, seed=1)])
    )
    texts = list(texts) if texts else [t.title() for t in SAMPLE_TEXTS] + [" ".join(SAMPLE_TEXTS[1:4])]
    batches: dict[str, list[dict[str, np.ndarray]]] = {"image": [], "text": []}
    for start in range(0, len(pixels), 8):
        batches["image"].append({"pixel_values": pixels[start : start + 8]})
    for start in range(0, len(texts), 16):
        ids, mask = tokenizer(texts[start : start + 16])
        batches["text"].append({"input_ids": ids, "attention_mask": mask})
    return batches


def _as_numpy(outputs: Any) -> tuple[np.ndarray, ...]:
    if isinstance(outputs, torch.Tensor):
        outputs = (outputs,)
    return tuple(t.detach().cpu().numpy() for t in outputs)


def _model_vocab_size(model: torch.nn.Module, names: int) -> int:
    """The graphs' output width; it must equal the number of token names (tokenizer or output vocab)."""
    config = getattr(model, "config", None)
    size = getattr(config, "vocab_size", None) or names
    if size != names:
        raise ModelError(f"model vocabulary ({size}) and its token names ({names}) differ in size")
    return int(size)


def _check_destination(out: Path, overwrite: bool) -> None:
    if not out.exists():
        return
    if not out.is_dir():
        raise UsageError(f"{out}: exists and is not a directory")
    entries = list(out.iterdir())
    if not entries:
        return
    if not (out / MANIFEST_NAME).is_file():
        raise UsageError(
            f"{out}: directory is not empty and holds no stair-es export; choose another OUT_DIR"
        )
    if not overwrite:
        raise UsageError(f"{out}: already holds an export; pass --overwrite to replace it")


def _move_into_place(staging: Path, out: Path) -> None:
    if out.exists():
        backup = out.with_name(out.name + ".old-export")
        if backup.exists():
            shutil.rmtree(backup)
        os.replace(out, backup)
        os.replace(staging, out)
        shutil.rmtree(backup, ignore_errors=True)
    else:
        os.replace(staging, out)


def _exporter_info(
    opset: int, exporters: dict[str, str], staging: Path, graphs: dict[str, dict[str, str]]
) -> dict[str, Any]:
    import onnx
    import onnxruntime

    files = {}
    for towers in graphs.values():
        for name in towers.values():
            path = staging / name
            files[name] = {"bytes": path.stat().st_size, "sha256": file_sha256(path)}
    return {
        "stair_es": __version__,
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "opset": opset,
        "exporter": exporters,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "files": files,
    }
