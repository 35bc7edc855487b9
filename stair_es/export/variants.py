"""Which graph files an export writes: fused fp32, fp16 for CUDA, the faster int8, and ``auto``.

Every candidate graph is parity-checked against torch on the sample inputs, exactly like the plain
export, and a candidate that misses its tolerance is dropped for the next one (the fused graph for
the plain one, static int8 for dynamic int8), so optimisation can cost speed but never correctness.
The int8 candidates and fp32 are also timed on this machine's CPU: the faster int8 is kept (static
when within 5%: dynamic int8 makes an item's vector depend on its batch), and
the faster of fp32 and int8 becomes the ``auto`` precision for CPU in the manifest. CUDA cannot be
timed on a machine without it, so CUDA's ``auto`` is fp16 when exported (recorded as a default).
"""

from __future__ import annotations

import functools
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from stair_es.export import optimize
from stair_es.export.onnx_export import convert_fp16
from stair_es.export.parity import Tolerance, compare, dense_from_output
from stair_es.runtime.sessions import create_session

TIMING_ROUNDS = 3


@dataclass
class Candidates:
    """Inputs shared by every candidate: sample feeds, torch's outputs, tolerances, where to write."""

    staging: Path
    inputs: dict[str, dict[str, np.ndarray]]
    reference: dict[str, np.ndarray]
    vocab_size: int
    tolerances: dict[str, Tolerance]
    calibration: dict[str, list[dict[str, np.ndarray]]]
    log: Callable[[str], None]
    parity: dict[str, dict[str, Any]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=lambda: {"fusions": {}, "int8": {}, "timing": {}})

    def measure(self, path: Path, tower: str, precision: str) -> dict[str, Any]:
        """Run one graph on onnxruntime CPU and compare it with torch."""
        from stair_es.errors import ModelError

        try:
            session, _ = create_session(
                path, provider="cpu", optimization="extended" if precision == "fp16" else "all"
            )
            outputs = session.run(None, self.inputs[tower])
        except Exception as exc:  # noqa: BLE001
            if precision == "fp16":
                # Some fp16 kernels exist only on CUDA; the graph is still written, the report says why.
                return {
                    "passed": None,
                    "not_measured": f"onnxruntime CPU cannot run this fp16 graph: {str(exc)[:200]}",
                }
            raise ModelError(
                f"{path.name}: onnxruntime cannot run the exported graph ({str(exc)[:300]})"
            ) from exc
        report = compare(
            self.reference[tower], dense_from_output(outputs, self.vocab_size), self.tolerances[precision]
        )
        report["provider"] = "CPUExecutionProvider"
        return report

    def seconds_per_item(self, path: Path, tower: str) -> float:
        """Best of a few timed runs of the sample batch on CPU (the minimum is the least disturbed
        by other processes on a shared machine)."""
        session, _ = create_session(path, provider="cpu", spin=False)
        feed = self.inputs[tower]
        session.run(None, feed)
        best = float("inf")
        for _ in range(TIMING_ROUNDS):
            start = time.perf_counter()
            session.run(None, feed)
            best = min(best, time.perf_counter() - start)
        return best / len(next(iter(feed.values())))


def build_fp32(c: Candidates, raw: dict[str, Path], fuse: bool) -> dict[str, str]:
    """``{tower}.onnx``: the CPU-fused graph when it passes parity, else the plain export."""
    files = {}
    c.parity["fp32"] = {}
    for tower in c.inputs:
        name = f"{tower}.onnx"
        dst = c.staging / name
        report = None
        if fuse:
            counts = _try_fuse(c, raw[tower], dst, "cpu", tower)
            if counts is not None:
                report = c.measure(dst, tower, "fp32")
                if not report["passed"]:
                    c.info["fusions"][tower]["rejected"] = "fused graph missed the fp32 tolerance"
                    report = None
        if report is None:
            shutil.copyfile(raw[tower], dst)
            report = c.measure(dst, tower, "fp32")
        c.parity["fp32"][tower] = report
        c.log(f"parity fp32 {tower}: {summary(report)}")
        if report.get("passed") is False:
            c.failures.append(f"fp32 {tower} ({summary(report)})")
        files[tower] = name
    return files


def build_fp16(c: Candidates, raw: dict[str, Path], fuse: bool) -> dict[str, str]:
    """``{tower}.fp16.onnx`` for CUDA: all fusions (fused attention, SkipLayerNorm), fp16 weights.

    The fused fp32 graph is parity-checked here before conversion (CPU cannot run most fp16
    contrib kernels, so this is what can be checked without a GPU)."""
    files = {}
    c.parity["fp16"] = {}
    for tower in c.inputs:
        src = raw[tower]
        if fuse:
            fused = c.staging / f".{tower}.cuda-fused.onnx"
            if _try_fuse(c, raw[tower], fused, "cuda", f"{tower}_cuda") is not None:
                check = c.measure(fused, tower, "fp32")
                c.info["fusions"][f"{tower}_cuda"]["fp32_parity_before_fp16"] = _brief(check)
                if check["passed"]:
                    src = fused
                else:
                    c.info["fusions"][f"{tower}_cuda"]["rejected"] = "fused graph missed the fp32 tolerance"
        name = f"{tower}.fp16.onnx"
        convert_fp16(src, c.staging / name)
        report = c.measure(c.staging / name, tower, "fp16")
        c.parity["fp16"][tower] = report
        c.log(f"parity fp16 {tower}: {summary(report)}")
        if report.get("passed") is False:
            c.failures.append(f"fp16 {tower} ({summary(report)})")
        files[tower] = name
    return files


def build_int8(c: Candidates, fp32: dict[str, str], static: bool = True) -> dict[str, str]:
    """``{tower}.int8.onnx``: the faster of dynamic and static (QDQ) int8 among those within the
    int8 tolerance; both are recorded in the manifest with their agreement and speed."""
    files = {}
    c.parity["int8"] = {}
    for tower in c.inputs:
        base = c.staging / fp32[tower]
        candidates: dict[str, dict[str, Any]] = {}
        builders: list[tuple[str, Callable[[Path], Any]]] = [
            ("dynamic", functools.partial(optimize.quantize_dynamic_int8, base))
        ]
        if static and c.calibration.get(tower):
            builders.append(
                (
                    "static-qdq",
                    functools.partial(_quantize_static, base, c.calibration[tower]),
                )
            )
        for method, build in builders:
            path = c.staging / f".{tower}.int8-{method}.onnx"
            try:
                details = build(path) or {}
            except Exception as exc:  # noqa: BLE001 - a quantizer failure drops that candidate only
                candidates[method] = {"error": f"{type(exc).__name__}: {str(exc)[:200]}"}
                continue
            report = c.measure(path, tower, "int8")
            entry = {"path": path, "report": report, "batch_dependent": method == "dynamic", **details}
            if report["passed"]:
                entry["items_per_s"] = round(1.0 / c.seconds_per_item(path, tower), 2)
            candidates[method] = entry
        passing = {m: e for m, e in candidates.items() if e.get("report", {}).get("passed")}
        chosen: str | None
        if passing:
            chosen = max(passing, key=lambda m: passing[m]["items_per_s"])
            # Dynamic int8 scales activations per batch, so an item's vector depends on the batch
            # it was in; static int8 is per item. Within 5% speed the deterministic one wins.
            if chosen == "dynamic" and "static-qdq" in passing:
                if passing["static-qdq"]["items_per_s"] >= 0.95 * passing["dynamic"]["items_per_s"]:
                    chosen = "static-qdq"
        else:
            tried = [m for m in candidates if "report" in candidates[m]]
            chosen = tried[0] if tried else None
        name = f"{tower}.int8.onnx"
        if chosen is None:
            errors = "; ".join(f"{m}: {e.get('error')}" for m, e in candidates.items())
            c.failures.append(f"int8 {tower} (no candidate could be built: {errors})")
            continue
        os.replace(candidates[chosen]["path"], c.staging / name)
        report = dict(candidates[chosen]["report"], method=chosen)
        c.parity["int8"][tower] = report
        c.log(f"parity int8 {tower} ({chosen}): {summary(report)}")
        if not report["passed"]:
            c.failures.append(f"int8 {tower} ({summary(report)})")
        c.info["int8"][tower] = {
            "chosen": chosen,
            "candidates": {
                m: {k: (_brief(v) if k == "report" else v) for k, v in e.items() if k != "path"}
                for m, e in candidates.items()
            },
        }
        files[tower] = name
    for leftover in c.staging.glob(".*.int8-*.onnx"):
        leftover.unlink()
    return files


def choose_auto(c: Candidates, graphs: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
    """``auto`` precision per provider and tower: CPU the faster measured graph, CUDA fp16."""
    auto: dict[str, dict[str, str]] = {"cpu": {}, "cuda": {}}
    for tower in c.inputs:
        speeds = {}
        if tower in graphs.get("int8", {}):
            for precision in ("fp32", "int8"):
                path = c.staging / graphs[precision][tower]
                speeds[precision] = round(1.0 / c.seconds_per_item(path, tower), 2)
        c.info["timing"][tower] = {f"{p}_items_per_s": v for p, v in speeds.items()}
        auto["cpu"][tower] = max(speeds, key=lambda p: speeds[p]) if speeds else "fp32"
        auto["cuda"][tower] = "fp16" if tower in graphs.get("fp16", {}) else "fp32"
    c.info["timing"]["measured_on"] = "CPUExecutionProvider, sample batch, best of 3 runs"
    c.info["timing"]["cuda"] = "not measured at export: fp16 is the CUDA default when exported"
    return auto


def _try_fuse(c: Candidates, src: Path, dst: Path, target: str, key: str) -> dict[str, int] | None:
    try:
        counts = optimize.fuse_transformer(src, dst, target)
    except Exception as exc:  # noqa: BLE001 - no fusion is a slower graph, not a failed export
        c.info["fusions"][key] = {"error": f"{type(exc).__name__}: {str(exc)[:200]}"}
        c.log(f"{key}: transformer fusions unavailable ({type(exc).__name__}); keeping the plain graph")
        return None
    c.info["fusions"][key] = {"target": target, **counts}
    return counts


def _brief(report: dict[str, Any]) -> dict[str, Any]:
    keep = ("max_abs_diff", "top10_agreement", "passed", "not_measured")
    return {k: v for k, v in report.items() if k in keep}


def summary(report: dict[str, Any]) -> str:
    if report.get("passed") is None:
        return str(report.get("not_measured"))
    agreement = next((v for k, v in report.items() if k.endswith("_agreement")), None)
    return f"max_abs_diff={report['max_abs_diff']:.2e} topk_agreement={agreement} passed={report['passed']}"


def _quantize_static(base: Path, calibration: Any, dst: Path) -> Any:
    """Static int8 of ``base`` into ``dst`` (a builder takes only ``dst``)."""
    return optimize.quantize_static_int8(base, dst, calibration)
