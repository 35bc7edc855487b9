"""onnxruntime encoders against the torch model they were exported from (tiny models, CPU)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from stair_es.errors import ModelError  # noqa: E402
from stair_es.export import export_model  # noqa: E402
from stair_es.export.parity import sample_images  # noqa: E402
from stair_es.model import StairModel  # noqa: E402
from stair_es.model.testing import save_tiny_model  # noqa: E402
from stair_es.runtime import ImageDecodeError, Manifest, StreamStats, load_encoder, load_pixels  # noqa: E402
from stair_es.sparse import SparseVector  # noqa: E402

TEXTS = ["a red circle", "two blue squares near a green triangle", "", "dog " * 40]


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("runtime")
    model_dir = save_tiny_model(root / "model")
    out = export_model(model_dir, root / "onnx", fp16=True, int8=True).root
    return model_dir, out


@pytest.fixture(scope="module")
def torch_model(exported: tuple[Path, Path]) -> StairModel:
    return StairModel.from_pretrained(exported[0])


def _dense(vec: SparseVector, size: int) -> np.ndarray:
    out = np.zeros(size, dtype=np.float32)
    out[vec.ids] = vec.weights
    return out


def test_texts_match_torch(exported: tuple[Path, Path], torch_model: StairModel) -> None:
    enc = load_encoder(exported[1], provider="cpu", precision="fp32")  # parity with torch: fp32
    vectors = enc.encode_texts(TEXTS, batch_size=3)
    ids, mask = torch_model.tokenize(TEXTS)
    with torch.no_grad():
        ref = torch_model.encode_text(ids, mask).numpy()
    got = np.stack([_dense(v, torch_model.config.vocab_size) for v in vectors])
    np.testing.assert_allclose(got, ref, atol=1e-4)
    assert all(np.all(np.diff(v.weights) <= 0) for v in vectors)  # heaviest first
    assert vectors[0].tokens[0] == enc.tokens[int(vectors[0].ids[0])]
    zeroed = set(torch_model.config.zeroed_token_ids)
    assert not any(int(i) in zeroed for v in vectors for i in v.ids)


def test_images_match_torch(exported: tuple[Path, Path], torch_model: StairModel) -> None:
    enc = load_encoder(exported[1], provider="cpu", precision="fp32")
    images = sample_images(5)
    vectors = enc.encode_images(images, batch_size=2)
    pixels = np.stack([load_pixels(img, enc.manifest.image) for img in images])
    with torch.no_grad():
        ref = torch_model.encode_image(torch.from_numpy(pixels)).numpy()
    got = np.stack([_dense(v, torch_model.config.vocab_size) for v in vectors])
    np.testing.assert_allclose(got, ref, atol=1e-4)


def test_pruning_and_identity(exported: tuple[Path, Path]) -> None:
    enc = load_encoder(exported[1], provider="cpu", precision="fp32")
    full = enc.encode_texts(["a red circle"])[0]
    top = enc.encode_texts(["a red circle"], top_k=5)[0]
    assert len(top) == 5 and top.tokens == full.tokens[:5]
    threshold = float(full.weights[len(full) // 2])
    light = enc.encode_texts(["a red circle"], min_weight=threshold)[0]
    assert len(light) < len(full) and float(light.weights.min()) >= threshold
    assert enc.model_id == enc.manifest.model_id and enc.model_id.startswith("model-")
    assert len(enc.vocab_hash) == 64
    assert enc.encode_texts([]) == []
    with pytest.raises(Exception, match="list of strings"):
        enc.encode_texts("one string")  # type: ignore[arg-type]


def test_int8_and_fp16_variants_agree_with_fp32(exported: tuple[Path, Path]) -> None:
    fp32 = load_encoder(exported[1], provider="cpu", precision="fp32").encode_texts(TEXTS[:2], top_k=10)
    for precision in ("int8", "fp16"):
        enc = load_encoder(exported[1], provider="cpu", precision=precision)
        assert enc.active_precision("text") == precision
        other = enc.encode_texts(TEXTS[:2], top_k=10)
        overlap = np.mean([len(set(a.tokens) & set(b.tokens)) / 10 for a, b in zip(fp32, other)])
        assert overlap >= 0.8, precision


def test_provider_reporting(exported: tuple[Path, Path]) -> None:
    enc = load_encoder(exported[1])  # auto
    info = enc.provider_info("text")
    assert info.active in ("CPUExecutionProvider", "CUDAExecutionProvider")
    if not info.is_cuda:
        assert "CUDA unavailable" in info.reason
        # fp16 graphs are not used on CPU: auto runs the export's measured choice for CPU
        assert enc.active_precision("text") == enc.manifest.auto["cpu"]["text"] != "fp16"
        with pytest.raises(ModelError, match="CUDA requested"):
            load_encoder(exported[1], provider="cuda").encode_texts(["x"])
    assert load_encoder(exported[1], provider="cpu").provider_info("image").reason == "requested"


def test_streaming_reports_failures_and_keeps_order(exported: tuple[Path, Path], tmp_path: Path) -> None:
    enc = load_encoder(exported[1], provider="cpu", precision="fp32", decode_workers=2)
    paths = []
    for i, img in enumerate(sample_images(5)):
        paths.append(tmp_path / f"{i}.jpg")
        img.save(paths[-1])
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    sources = [paths[0], tmp_path / "broken.png", *paths[1:], tmp_path / "missing.jpg"]
    stats = StreamStats()
    results = list(enc.iter_encode_images(sources, batch_size=2, stats=stats))
    assert [r.index for r in results] == list(range(len(sources)))
    assert [r.ok for r in results] == [True, False, True, True, True, True, False]
    assert "broken.png" in (results[1].error or "") and "not found" in (results[-1].error or "")
    assert stats.items == 7 and stats.failures == 2 and stats.batches == 3
    assert stats.inference_seconds > 0 and stats.decode_seconds > 0
    direct = enc.encode_images(paths)
    assert [v.tokens for v in direct] == [r.vector.tokens for r in results if r.ok]
    with pytest.raises(ImageDecodeError, match="broken.png"):
        enc.encode_images(sources)


def test_in_graph_top_k(exported: tuple[Path, Path], tmp_path: Path) -> None:
    out = export_model(exported[0], tmp_path / "topk", top_k=16).root
    manifest = Manifest.read(out)
    assert manifest.output_kind == "topk" and manifest.output_top_k == 16
    topk = load_encoder(out, provider="cpu").encode_texts(TEXTS)
    dense = load_encoder(exported[1], provider="cpu", precision="fp32").encode_texts(TEXTS, top_k=16)
    for a, b in zip(topk, dense):
        assert set(a.tokens) == set(b.tokens)
        np.testing.assert_allclose(np.sort(a.weights), np.sort(b.weights), atol=1e-5)


def test_bad_model_directories_fail_with_one_line(exported: tuple[Path, Path], tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="no manifest.json"):
        load_encoder(tmp_path)
    copy = tmp_path / "copy"
    shutil.copytree(exported[1], copy)
    data = json.loads((copy / "manifest.json").read_text())
    (copy / "manifest.json").write_text(json.dumps({**data, "format_version": 99}))
    with pytest.raises(ModelError, match="newer than this stair-es"):
        load_encoder(copy)
    (copy / "manifest.json").write_text(json.dumps(data))
    tok = json.loads((copy / "tokenizer.json").read_text())
    tok["model"]["vocab"]["zzz-new"] = len(tok["model"]["vocab"])
    (copy / "tokenizer.json").write_text(json.dumps(tok))
    with pytest.raises(ModelError, match="does not match the manifest"):
        load_encoder(copy)
    shutil.copyfile(exported[1] / "tokenizer.json", copy / "tokenizer.json")
    (copy / "text.onnx").unlink()
    with pytest.raises(ModelError, match="missing"):
        load_encoder(copy, provider="cpu", precision="fp32").encode_texts(["x"])


def test_runtime_never_imports_torch(exported: tuple[Path, Path], tmp_path: Path) -> None:
    """Load and run both encoders in a fresh interpreter where importing torch would fail loudly."""
    sample_images(1)[0].save(tmp_path / "a.png")
    code = f"""
import sys
class NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('torch', 'transformers'):
            raise ImportError('runtime imported ' + name)
sys.meta_path.insert(0, NoTorch())
from stair_es.runtime import load_encoder
enc = load_encoder({str(exported[1])!r}, provider='auto')
assert len(enc.encode_texts(['a red circle'])[0]) > 0
assert len(enc.encode_images([{str(tmp_path / "a.png")!r}])[0]) > 0
bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers')]
assert not bad, bad
print('ok')
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "ok"


def test_overlapped_streaming_matches_sequential(exported: tuple[Path, Path], tmp_path: Path) -> None:
    """The CUDA path runs inference in its own thread; on CPU it can be forced and must change nothing:
    same vectors, same order, failures in place."""
    enc = load_encoder(exported[1], provider="cpu", precision="fp32", decode_workers=2)
    sources: list[object] = []
    for i, img in enumerate(sample_images(7)):
        sources.append(tmp_path / f"{i}.png")
        img.save(sources[-1])
    sources.insert(3, b"not an image")
    sources.append(tmp_path / "missing.jpg")
    plain, overlapped = StreamStats(), StreamStats()
    a = list(enc.iter_encode_images(sources, batch_size=3, stats=plain, overlap=False))
    b = list(enc.iter_encode_images(sources, batch_size=3, stats=overlapped, overlap=True))
    assert [r.index for r in b] == list(range(len(sources))) == [r.index for r in a]
    assert [r.error for r in b] == [r.error for r in a] and sum(not r.ok for r in b) == 2
    for x, y in zip(a, b):
        if x.ok:
            assert x.vector.tokens == y.vector.tokens
            np.testing.assert_array_equal(x.vector.weights, y.vector.weights)
    assert overlapped.batches == plain.batches == 3 and overlapped.items == len(sources)


def test_io_binding_gives_the_same_outputs(exported: tuple[Path, Path]) -> None:
    from stair_es.runtime.cuda_io import HostBuffers, run_bound

    enc = load_encoder(exported[1], provider="cpu", precision="fp32")
    session = enc._session("image")[0]
    spec = enc.manifest.image
    buffers = HostBuffers((3, *spec.size), max_batch=4)
    pixels = buffers.slot(0, 3)
    pixels[:] = np.stack([load_pixels(img, spec) for img in sample_images(3)])
    assert buffers.slot(0, 3).__array_interface__["data"] == pixels.__array_interface__["data"]
    assert buffers.slot(1, 3).__array_interface__["data"] != pixels.__array_interface__["data"]
    if buffers.kind == "pageable":  # no GPU here: says why the memory is not page-locked
        assert buffers.note
    bound = run_bound(session, {"pixel_values": pixels}, device_type="cpu")
    plain = session.run(None, {"pixel_values": np.array(pixels)})
    np.testing.assert_array_equal(bound[0], plain[0])
    buffers.close()


def test_auto_precision_follows_the_manifest(exported: tuple[Path, Path], tmp_path: Path) -> None:
    manifest = Manifest.read(exported[1])
    assert set(manifest.auto) == {"cpu", "cuda"} and manifest.auto["cuda"]["image"] == "fp16"
    timing = manifest.optimization["timing"]["image"]
    assert manifest.auto["cpu"]["image"] == max(("fp32", "int8"), key=lambda p: timing[f"{p}_items_per_s"])
    copy = tmp_path / "copy"
    shutil.copytree(exported[1], copy)
    data = json.loads((copy / "manifest.json").read_text())
    data["auto"]["cpu"] = {"image": "int8", "text": "fp16"}  # fp16 is never run on CPU
    (copy / "manifest.json").write_text(json.dumps(data))
    enc = load_encoder(copy, provider="cpu")
    assert enc.active_precision("image") == "int8"
    assert enc.active_precision("text") == "fp32"  # fp16 is never auto on CPU
    del data["auto"]
    (copy / "manifest.json").write_text(json.dumps(data))
    assert load_encoder(copy, provider="cpu").active_precision("image") == "fp32"  # older exports


def test_batch_size_tuning_measures_candidates(exported: tuple[Path, Path]) -> None:
    enc = load_encoder(exported[1], provider="cpu", precision="fp32")
    for tower in ("image", "text"):
        result = enc.tune_batch_size(tower, candidates=(1, 4, 16), budget_seconds=20)
        assert result["batch_size"] in (1, 4, 16) and result["provider"] == "CPUExecutionProvider"
        rates = {int(k): v for k, v in result["items_per_s"].items()}
        assert rates and all(v > 0 for v in rates.values())
        assert rates[result["batch_size"]] >= 0.97 * max(rates.values())


def test_export_kept_the_faster_int8_and_recorded_both(exported: tuple[Path, Path]) -> None:
    manifest = Manifest.read(exported[1])
    for tower in ("image", "text"):
        record = manifest.optimization["int8"][tower]
        candidates = record["candidates"]
        assert set(candidates) == {"dynamic", "static-qdq"}
        assert candidates["dynamic"]["batch_dependent"] and not candidates["static-qdq"]["batch_dependent"]
        passing = {m: c for m, c in candidates.items() if c["report"]["passed"]}
        assert record["chosen"] in passing and manifest.parity["int8"][tower]["method"] == record["chosen"]
        fastest = max(passing, key=lambda m: passing[m]["items_per_s"])
        if record["chosen"] != fastest:  # static wins ties within 5%: it is per item, not per batch
            assert record["chosen"] == "static-qdq"
            assert passing["static-qdq"]["items_per_s"] >= 0.95 * passing["dynamic"]["items_per_s"]
        assert candidates["static-qdq"]["calibration_items"] > 0
