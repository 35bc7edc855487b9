"""The encoder benchmarks run end to end on a tiny model (their figures come from full-size runs; this
keeps the scripts working and their JSON keys stable; no speed is asserted here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def _run(script: str, *args: str) -> dict:
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *args], capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stderr[-3000:] + done.stdout[-3000:]
    return json.loads(done.stdout)


def test_encode_throughput_reports_gemm_fractions_and_targets() -> None:
    result = _run("encode_throughput.py", "--quick", "--json", "--jpegs", "4")
    for precision in ("fp32", "int8"):
        fractions = result[f"{precision}_fraction_of_gemm_peak"]
        assert set(fractions) == {"image", "text"} and all(v > 0 for v in fractions.values())
    image = result["gemm_peak"]["image"]
    assert image["gflop_per_item"] > 0 and 0 < image["gemm_share_of_flops"] <= 1
    shapes = image["gemm_fp32"]["per_shape"]
    assert any(s["kind"] == "fp32" and s["b"][-1] == result["config"]["vocab_size"] for s in shapes)
    assert {s["kind"] for s in image["gemm_int8"]["per_shape"]} >= {"fp32", image["gemm_int8"]["method"]}
    for key in ("torch", "ort_fp32", "ort_int8", "ort_fp32_plain", "ort_int8_plain"):
        assert result[key]["image_per_s"] > 0 and result[key]["text_per_cpu_s"] > 0
    assert "ort_vs_torch_image" in result and "int8_vs_torch_text_plain" in result
    trained = result["int8_top10_agreement_trained"]
    assert (
        trained["image_static-qdq_top10_agreement"] >= 0.9
        and trained["text_static-qdq_top10_agreement"] >= 0.9
    )
    assert all(isinstance(v, bool) for v in result["targets"].values())
    assert set(result["auto"]) == {"cpu", "cuda"}


def test_gpu_check_runs_on_cpu() -> None:
    result = _run("gpu_check.py", "--provider", "cpu", "--quick")
    assert "error" not in result
    assert result["model"]["precision"] == "fp16" and "CPUExecutionProvider" in result["model"]["provider"]
    only = result["model_only"]
    assert only["batch_size"] in (2, 4, 8) and only["images_per_s_from_host"] > 0
    assert only["host_memory"] in ("pageable", "pinned (cudaHostAlloc)")
    e2e = result["end_to_end_jpeg"]
    assert e2e["ok"] == e2e["files"] == 16 and e2e["items_per_s"] > 0 and e2e["bound_by"]
    assert result["machine"]["cuda_unavailable_reason"] or result["machine"].get("gpus")
