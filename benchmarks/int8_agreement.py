"""int8 vs fp32 top-10 token agreement on trained models (what the int8 quality bar is judged on):
the shipped demo model (ONNX only, no torch needed) and, optionally, a saved torch model directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from encode_throughput import captions


def int8_agreement_on(model_dir: str, workdir: Path, data: str | None = None) -> dict[str, Any]:
    """int8 vs fp32 top-10 agreement (onnxruntime, both) on a trained model, over held-out pairs
    from ``data`` when given, else the export's built-in sample images and captions."""
    from stair_es.export import Tolerance, export_model, topk_agreement
    from stair_es.export.parity import SAMPLE_TEXTS, sample_images
    from stair_es.runtime import Manifest, load_encoder

    lax = {"int8": Tolerance(None, 0.0)}
    out = export_model(model_dir, workdir / "trained", int8=True, overwrite=True, tolerances=lax).root
    fp32 = load_encoder(out, provider="cpu", precision="fp32")
    int8 = load_encoder(out, provider="cpu", precision="int8")
    if data:
        from stair_es.data.readers import read_jsonl

        pairs = read_jsonl(data)[:64]
        texts = [p.caption for p in pairs]
        images: list[Any] = list(dict.fromkeys(str(p.image) for p in pairs))
    else:
        texts = SAMPLE_TEXTS + captions(24, 12, seed=3)
        images = sample_images(32, seed=5)
    result: dict[str, Any] = {"model": str(model_dir), "texts": len(texts), "images": len(images)}
    parity = Manifest.read(out).parity["int8"]
    result["export_parity_int8_vs_torch"] = {t: parity[t]["top10_agreement"] for t in ("image", "text")}
    for tower, run in (
        ("text", lambda e: e.encode_texts(texts)),
        ("image", lambda e: e.encode_images(images)),
    ):
        a, b = run(fp32), run(int8)
        dense = [np.zeros((len(a), fp32.manifest.vocab_size), np.float32) for _ in range(2)]
        for k, vecs in enumerate((a, b)):
            for i, v in enumerate(vecs):
                dense[k][i, v.ids] = v.weights
        result[f"{tower}_top10_agreement"] = round(topk_agreement(dense[0], dense[1], 10), 4)
    return result


def demo_int8_agreement(workdir: Path, count: int = 64) -> dict[str, Any]:
    """int8 vs fp32 top-10 agreement on the shipped demo model (trained; ONNX only): static int8
    calibrated on 32 synthetic scenes and dynamic int8, judged on ``count`` other scenes' images and
    captions. No torch needed: the demo's own fp32 graphs are the reference."""
    from stair_es.data.synthetic import SyntheticConfig, render_scene, sample_scene
    from stair_es.demo import demo_model_dir
    from stair_es.export import optimize, topk_agreement
    from stair_es.runtime import Manifest, create_session, load_pixels
    from stair_es.runtime.tokenizer import TextTokenizer

    demo = Manifest.read(demo_model_dir())
    tokenizer = TextTokenizer.from_file(demo.tokenizer_path, demo.max_text_length)

    def scenes(n: int, seed: int) -> tuple[list[Any], list[str]]:
        rng = np.random.default_rng(seed)
        drawn = [sample_scene(rng, SyntheticConfig()) for _ in range(n)]
        return [render_scene(d, rng, demo.image.size[0]) for d in drawn], [d.caption() for d in drawn]

    def feeds(images: list[Any], texts: list[str]) -> dict[str, dict[str, np.ndarray]]:
        ids, mask = tokenizer(texts)
        pixels = np.stack([load_pixels(img, demo.image) for img in images])
        return {"image": {"pixel_values": pixels}, "text": {"input_ids": ids, "attention_mask": mask}}

    calibration, held_out = feeds(*scenes(32, seed=11)), feeds(*scenes(count, seed=12))
    result: dict[str, Any] = {"model": "demo (stair_es/assets/demo-model)", "held_out_items": count}
    for tower in ("image", "text"):
        fused = workdir / f"demo.{tower}.onnx"
        optimize.fuse_transformer(demo.graph_path("fp32", tower), fused, "cpu")
        reference = create_session(fused, provider="cpu")[0].run(None, held_out[tower])[0]
        for method in ("static-qdq", "dynamic"):
            out = workdir / f"demo.{tower}.{method}.onnx"
            if method == "dynamic":
                optimize.quantize_dynamic_int8(fused, out)
            else:
                optimize.quantize_static_int8(fused, out, [calibration[tower]])
            got = create_session(out, provider="cpu")[0].run(None, held_out[tower])[0]
            result[f"{tower}_{method}_top10_agreement"] = round(topk_agreement(reference, got, 10), 4)
    return result
