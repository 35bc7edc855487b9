"""torch -> ONNX export: graph shape, manifest, parity gate, CLI (tiny models built here)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

from stair_es.errors import ModelError, UsageError  # noqa: E402
from stair_es.export import Tolerance, export_model, export_module, read_model_dir, topk_agreement  # noqa: E402
from stair_es.model.testing import save_tiny_model, tiny_model  # noqa: E402
from stair_es.runtime import Manifest  # noqa: E402
from stair_es_cli.main import main  # noqa: E402


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("export") / "tiny")


@pytest.fixture(scope="module")
def exported(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_model(model_dir, tmp_path_factory.mktemp("export-out") / "onnx").root


def test_graphs_are_single_files_with_dynamic_batch(exported: Path) -> None:
    assert sorted(p.name for p in exported.iterdir()) == [
        "image.onnx",
        "manifest.json",
        "text.onnx",
        "tokenizer.json",
    ]
    for name, inputs in (("image.onnx", ["pixel_values"]), ("text.onnx", ["input_ids", "attention_mask"])):
        model = onnx.load(str(exported / name), load_external_data=False)
        assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer)
        assert max(op.version for op in model.opset_import if op.domain in ("", "ai.onnx")) >= 17
        assert [i.name for i in model.graph.input] == inputs
        for tensor in list(model.graph.input) + list(model.graph.output):
            batch = tensor.type.tensor_type.shape.dim[0]
            assert batch.dim_param and not batch.dim_value, f"{name}:{tensor.name} batch axis is fixed"
        if name == "text.onnx":
            assert model.graph.input[0].type.tensor_type.shape.dim[1].dim_param  # dynamic sequence
        assert [o.name for o in model.graph.output] == ["weights"]


def test_manifest_describes_the_model(exported: Path, model_dir: Path) -> None:
    manifest = Manifest.read(exported)
    config = json.loads((model_dir / "config.json").read_text())
    pre = json.loads((model_dir / "preprocessor_config.json").read_text())
    assert manifest.vocab_size == config["vocab_size"]
    assert manifest.zeroed_token_ids == config["zeroed_token_ids"]
    assert manifest.max_text_length == pre["max_text_length"]
    assert manifest.image.size == (pre["crop_size"], pre["crop_size"])
    assert list(manifest.image.mean) == pre["mean"] and manifest.image.interpolation == pre["interpolation"]
    assert manifest.output_kind == "dense" and manifest.graphs == {
        "fp32": {"image": "image.onnx", "text": "text.onnx"}
    }
    for tower in ("image", "text"):
        report = manifest.parity["fp32"][tower]
        assert (
            report["passed"] is True and report["max_abs_diff"] < 1e-3 and report["top10_agreement"] >= 0.99
        )
    assert manifest.exporter["opset"] >= 17 and manifest.exporter["exporter"]["image"] in (
        "dynamo",
        "torchscript",
    )
    assert manifest.model_id == read_model_dir(model_dir).model_id


def test_refuses_to_overwrite_or_clobber(model_dir: Path, exported: Path, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="--overwrite"):
        export_model(model_dir, exported)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(UsageError, match="holds no stair-es export"):
        export_model(model_dir, foreign, overwrite=True)
    assert (foreign / "notes.txt").read_text() == "mine"


class _DivergesWhenExported(torch.nn.Module):
    """A model whose exported graph differs from eager torch: what the parity gate exists for."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = tiny_model()
        self.config = self.inner.config

    def encode_image(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.inner.encode_image(pixel_values)

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        weights = self.inner.encode_text(input_ids, attention_mask)
        if torch.compiler.is_exporting() or torch.jit.is_tracing():
            weights = weights.flip(-1)  # a silently wrong export: same values, wrong tokens
        return weights


def test_parity_failure_writes_nothing(model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "bad"
    with pytest.raises(ModelError, match=r"parity check failed.*fp32 text"):
        export_module(_DivergesWhenExported(), read_model_dir(model_dir), out)
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".stair-export-")]


def test_int8_tolerance_is_enforced(model_dir: Path, tmp_path: Path) -> None:
    impossible = {"int8": Tolerance(max_abs_diff=0.0, min_topk_agreement=1.0)}
    with pytest.raises(ModelError, match="int8"):
        export_model(model_dir, tmp_path / "q", int8=True, tolerances=impossible)
    assert not (tmp_path / "q").exists()


def test_topk_agreement_metric() -> None:
    ref = np.array([[0.0, 3.0, 2.0, 1.0, 0.0]], dtype=np.float32)
    assert topk_agreement(ref, ref, k=2) == 1.0
    assert topk_agreement(ref, np.array([[0.0, 3.0, 0.0, 2.0, 0.0]]), k=2) == 0.5
    assert topk_agreement(np.zeros((1, 5)), np.zeros((1, 5)), k=2) == 1.0


def test_cli_export_then_encode(model_dir: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "cli"
    result = runner.invoke(
        main, ["export", str(model_dir), str(out), "--top-k", "8", "--model-id", "tiny-cli"]
    )
    assert result.exit_code == 0, result.output
    assert "exported tiny-cli" in result.output
    again = runner.invoke(main, ["export", str(model_dir), str(out)])
    assert again.exit_code == 2 and "error:" in again.output and "--overwrite" in again.output

    from stair_es.export.parity import sample_images

    images = tmp_path / "imgs"
    images.mkdir()
    sample_images(2)[0].save(images / "a.jpg")
    (images / "b.jpg").write_bytes(b"not a jpeg")
    failures = tmp_path / "failures.jsonl"
    result = runner.invoke(
        main,
        [
            "encode",
            "--model",
            str(out),
            "--text",
            "a red circle",
            "--images-dir",
            str(images),
            "--failures",
            str(failures),
        ],
    )
    assert result.exit_code == 1  # one image failed, the rest were still encoded
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [line["id"] for line in lines] == ["text-0", "a.jpg"]
    assert all(0 < len(line["tokens"]) <= 8 for line in lines)
    assert all(w > 0 for line in lines for w in line["tokens"].values())
    assert json.loads(failures.read_text())["id"] == "b.jpg"

    texts = tmp_path / "texts.jsonl"
    texts.write_text('{"id": "q1", "text": "blue square"}\nplain line\n')
    result = runner.invoke(
        main, ["encode", "--model", str(out), "--texts-file", str(texts), "--top-k", "3", "--escape"]
    )
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [r["id"] for r in rows] == ["q1", "text-1"] and all(len(r["tokens"]) == 3 for r in rows)
    empty = runner.invoke(main, ["encode", "--model", str(out)])
    assert empty.exit_code == 2 and "nothing to encode" in empty.output


def test_conv_stem_model_exports_within_tolerance(tmp_path: Path) -> None:
    """The demo recipe's early-convolution stem goes through the same export and parity gate."""
    model_dir = save_tiny_model(tmp_path / "conv", vision_stem="conv")
    manifest = export_model(model_dir, tmp_path / "onnx")
    image = manifest.parity["fp32"]["image"]
    assert image["passed"] and image["max_abs_diff"] < 1e-3


def test_export_fuses_the_graphs_unless_told_not_to(model_dir: Path, exported: Path, tmp_path: Path) -> None:
    def ops(path: Path) -> set[str]:
        return {n.op_type for n in onnx.load(str(path), load_external_data=False).graph.node}

    manifest = Manifest.read(exported)
    for tower in ("image", "text"):
        assert {"MultiHeadAttention", "BiasGelu"} <= ops(exported / f"{tower}.onnx")
        assert manifest.optimization["fusions"][tower]["multi_head_attention"] >= 1
    plain = export_model(model_dir, tmp_path / "plain", optimize=False)
    for tower in ("image", "text"):
        graph = onnx.load(str(plain.graph_path("fp32", tower)), load_external_data=False)
        assert not [op for op in graph.opset_import if op.domain == "com.microsoft"]
    assert plain.optimization["fusions"] == {} and plain.parity["fp32"]["image"]["passed"]
