"""Faster graphs: transformer fusions and int8 on exported ONNX files (tiny models and the demo model)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxscript")

from stair_es.data.synthetic import SyntheticConfig, render_scene, sample_scene  # noqa: E402
from stair_es.demo import demo_model_dir  # noqa: E402
from stair_es.export import optimize, topk_agreement  # noqa: E402
from stair_es.runtime import Manifest, create_session, load_pixels  # noqa: E402
from stair_es.runtime.tokenizer import TextTokenizer  # noqa: E402


def _ops(path: Path) -> set[str]:
    return {node.op_type for node in onnx.load(str(path), load_external_data=False).graph.node}


def _scenes(count: int, seed: int) -> tuple[list, list[str]]:
    rng = np.random.default_rng(seed)
    config = SyntheticConfig()
    scenes = [sample_scene(rng, config) for _ in range(count)]
    return [render_scene(s, rng, 64) for s in scenes], [s.caption() for s in scenes]


@pytest.fixture(scope="module")
def demo() -> Manifest:
    return Manifest.read(demo_model_dir())


def test_fusions_rewrite_attention_and_gelu_and_keep_the_numbers(demo: Manifest, tmp_path: Path) -> None:
    """The demo model's plain dynamo graphs (a trained STAIR model) go through the same fusions as
    an export; the outputs stay equal within fp32 rounding."""
    images, captions = _scenes(6, seed=3)
    tokenizer = TextTokenizer.from_file(demo.tokenizer_path, demo.max_text_length)
    ids, mask = tokenizer(captions + ["", "a"])
    feeds = {
        "image": {"pixel_values": np.stack([load_pixels(img, demo.image) for img in images])},
        "text": {"input_ids": ids, "attention_mask": mask},
    }
    for tower, target, must in (
        ("image", "cpu", {"MultiHeadAttention", "BiasGelu"}),
        ("text", "cpu", {"MultiHeadAttention", "BiasGelu"}),
        ("image", "cuda", {"Attention", "SkipLayerNormalization"}),
        ("text", "cuda", {"Attention", "SkipLayerNormalization"}),
    ):
        src = demo.graph_path("fp32", tower)
        dst = tmp_path / f"{tower}.{target}.onnx"
        counts = optimize.fuse_transformer(src, dst, target)
        assert must <= _ops(dst) and "Erf" not in _ops(dst), (tower, target, counts)
        if target == "cpu":
            assert "SkipLayerNormalization" not in _ops(dst)  # slower than Add + LayerNorm on CPU
        plain = create_session(src, provider="cpu")[0].run(None, feeds[tower])[0]
        fused = create_session(dst, provider="cpu")[0].run(None, feeds[tower])[0]
        np.testing.assert_allclose(fused, plain, atol=1e-4)


def test_static_int8_keeps_the_trained_models_top_tokens(demo: Manifest, tmp_path: Path) -> None:
    """Static QDQ int8 calibrated on 32 synthetic scenes, judged on 48 others (images and captions):
    top-10 token agreement with fp32 >= 0.9 on the trained demo model."""
    cal_images, cal_captions = _scenes(32, seed=11)
    test_images, test_captions = _scenes(48, seed=12)
    tokenizer = TextTokenizer.from_file(demo.tokenizer_path, demo.max_text_length)

    def image_feed(imgs: list) -> dict[str, np.ndarray]:
        return {"pixel_values": np.stack([load_pixels(img, demo.image) for img in imgs])}

    def text_feed(texts: list[str]) -> dict[str, np.ndarray]:
        ids, mask = tokenizer(texts)
        return {"input_ids": ids, "attention_mask": mask}

    for tower, calibration, held_out in (
        ("image", [image_feed(cal_images[i : i + 16]) for i in (0, 16)], image_feed(test_images)),
        ("text", [text_feed(cal_captions)], text_feed(test_captions)),
    ):
        fused = tmp_path / f"{tower}.onnx"
        optimize.fuse_transformer(demo.graph_path("fp32", tower), fused, "cpu")
        quantized = tmp_path / f"{tower}.int8.onnx"
        details = optimize.quantize_static_int8(fused, quantized, calibration)
        assert details["quantized_gemms"] == len(optimize.weight_matmuls(fused)) > 0
        assert {"QuantizeLinear", "DequantizeLinear"} <= _ops(quantized)
        reference = create_session(fused, provider="cpu")[0].run(None, held_out)[0]
        session = create_session(quantized, provider="cpu")[0]
        got = session.run(None, held_out)[0]
        assert topk_agreement(reference, got, 10) >= 0.9, tower
        # per item, not per batch: the first item alone gives the same vector as in the batch
        alone = session.run(None, {k: v[:1] for k, v in held_out.items()})[0]
        np.testing.assert_allclose(alone[0], got[0], atol=1e-5)
