"""The yardstick for an encoder on this machine: onnxruntime's own throughput on the model's GEMMs.

``profile_gemms`` runs an fp32 graph once with onnxruntime's profiler (graph optimizations off, so
every MatMul/Gemm/Conv keeps its name and reports its real input shapes) and lists the model's
GEMMs with their FLOPs. ``gemm_time`` then times single-MatMul graphs of exactly those shapes
(weights as initializers, as in the model, so onnxruntime prepacks them), in fp32 and in the int8
form the model's int8 graph uses (dynamic or static QDQ); activation x activation products
(attention) stay fp32 there, as they do in the int8 model. The sum over the model's GEMMs of those
times is the time the model would take if it did nothing but its GEMMs at onnxruntime's speed:
``fraction_of_gemm_peak = that time / the model's time`` (= achieved FLOP/s / GEMM FLOP/s).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np


def _session(model_or_path: Any, threads: int, optimize: bool = True) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.log_severity_level = 3
    if not optimize:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    source = (
        model_or_path.SerializeToString()
        if hasattr(model_or_path, "SerializeToString")
        else str(model_or_path)
    )
    return ort.InferenceSession(source, opts, providers=["CPUExecutionProvider"])


def profile_gemms(path: str | os.PathLike, feed: dict[str, np.ndarray], threads: int) -> dict[str, Any]:
    """The GEMMs (and convolutions) one run of ``path`` on ``feed`` performs, with FLOPs."""
    import onnx
    import onnxruntime as ort

    graph = onnx.load(str(path), load_external_data=False).graph
    inits = {t.name: list(t.dims) for t in graph.initializer}
    nodes = {n.name: n for n in graph.node}
    with tempfile.TemporaryDirectory(prefix="stair-gemm-") as tmp:
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        opts.intra_op_num_threads = threads
        opts.enable_profiling = True
        opts.profile_file_prefix = str(Path(tmp) / "profile")
        opts.log_severity_level = 3
        session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        session.run(None, feed)
        events = json.loads(Path(session.end_profiling()).read_text())
    gemms: list[dict[str, Any]] = []
    conv_flops = 0
    for event in events:
        args = event.get("args", {})
        if event.get("cat") != "Node" or not event["name"].endswith("_kernel_time"):
            continue
        op = args.get("op_name")
        out = [next(iter(s.values())) for s in args.get("output_type_shape", [])]
        name = event["name"][: -len("_kernel_time")]
        node = nodes.get(name)
        if node is None:
            continue
        # the profiler lists the shapes of computed inputs only; initializers come from the graph
        computed = iter(next(iter(s.values())) for s in args.get("input_type_shape", []))
        shapes = [inits[i] if i in inits else next(computed, None) for i in node.input if i]
        if op in ("MatMul", "Gemm") and len(shapes) >= 2:
            a, b = shapes[0], shapes[1]
            if op == "Gemm" and any(x.name == "transB" and x.i for x in nodes[name].attribute):
                b = b[::-1]
            batch = int(np.prod(out[0][:-2])) if len(out[0]) > 2 else 1
            m, k, n = a[-2] if len(a) > 1 else 1, a[-1], b[-1]
            weight = node.input[1] in inits
            gemms.append({"a": a, "b": b, "weight": weight, "flops": 2 * batch * m * k * n})
        elif op == "Conv" and len(shapes) >= 2:
            w = shapes[1]  # [out_ch, in_ch/groups, kh, kw]
            conv_flops += 2 * int(np.prod(out[0])) * int(np.prod(w[1:]))
    gemm_flops = sum(g["flops"] for g in gemms)
    return {
        "gemms": gemms,
        "gemm_flops": gemm_flops,
        "conv_flops": conv_flops,
        "flops": gemm_flops + conv_flops,
    }


def _matmul_graph(a: list[int], b: list[int], weight: bool) -> Any:
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inputs = [helper.make_tensor_value_info("a", TensorProto.FLOAT, a)]
    inits = []
    if weight:
        inits.append(numpy_helper.from_array((rng.standard_normal(b) * 0.02).astype(np.float32), "w"))
    else:
        inputs.append(helper.make_tensor_value_info("w", TensorProto.FLOAT, b))
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    node = helper.make_node("MatMul", ["a", "w"], ["y"], name="gemm")
    graph = helper.make_graph([node], "gemm", inputs, [out], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=10)


def _best_seconds(session: Any, feed: dict[str, np.ndarray], rounds: int) -> tuple[float, float]:
    """(min wall, min CPU) seconds of ``rounds`` runs after one warm-up."""
    session.run(None, feed)
    wall = cpu = float("inf")
    for _ in range(rounds):
        w, c = time.perf_counter(), time.process_time()
        session.run(None, feed)
        wall, cpu = min(wall, time.perf_counter() - w), min(cpu, time.process_time() - c)
    return wall, cpu


def gemm_time(
    profile: dict[str, Any], threads: int, int8: str | None = None, rounds: int = 3
) -> dict[str, Any]:
    """Seconds the model's GEMMs take as single MatMuls on onnxruntime: fp32 (``int8=None``) or with
    the weight GEMMs quantized like the model's int8 graph (``"dynamic"`` or ``"static-qdq"``)."""
    import onnx

    rng = np.random.default_rng(1)
    shapes = Counter((tuple(g["a"]), tuple(g["b"]), g["weight"]) for g in profile["gemms"])
    flops = {(tuple(g["a"]), tuple(g["b"]), g["weight"]): g["flops"] for g in profile["gemms"]}
    wall = cpu = 0.0
    per_shape = []
    with tempfile.TemporaryDirectory(prefix="stair-gemm-") as tmp:
        for (a, b, weight), count in shapes.items():
            model = _matmul_graph(list(a), list(b), weight)
            feed = {"a": rng.standard_normal(a).astype(np.float32)}
            if not weight:
                feed["w"] = rng.standard_normal(b).astype(np.float32)
            kind = "fp32"
            source: Any = model
            if int8 and weight:
                src, dst = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
                onnx.save(model, str(src))
                _quantize(src, dst, int8, feed)
                source, kind = dst, int8
            seconds, cpu_seconds = _best_seconds(_session(source, threads), feed, rounds)
            wall += count * seconds
            cpu += count * cpu_seconds
            per_shape.append(
                {
                    "a": list(a),
                    "b": list(b),
                    "count": count,
                    "kind": kind,
                    "gflops_per_s": round(flops[(a, b, weight)] / seconds / 1e9, 1),
                }
            )
    total = profile["gemm_flops"]
    return {
        "seconds": wall,
        "cpu_seconds": cpu,
        "gflops_per_s": round(total / wall / 1e9, 1),
        "per_shape": per_shape,
    }


def _quantize(src: Path, dst: Path, method: str, feed: dict[str, np.ndarray]) -> None:
    from stair_es.export import optimize

    if method == "dynamic":
        optimize.quantize_dynamic_int8(src, dst)
    else:
        optimize.quantize_static_int8(src, dst, [feed])


def limits(
    graph: Path,
    feed: dict[str, np.ndarray],
    int8_method: str,
    times: dict[str, Any],
    threads: int,
    rounds: int = 3,
) -> dict[str, Any]:
    """FLOPs of one batch of ``feed`` and the fractions of onnxruntime's GEMM throughput that the
    model's fp32 and int8 graphs reach; ``times[f"ort_{precision}"]`` holds their min wall and CPU
    seconds on that batch."""
    profile = profile_gemms(graph, feed, threads)
    batch = len(next(iter(feed.values())))
    fp32 = gemm_time(profile, threads, None, rounds=rounds)
    int8 = gemm_time(profile, threads, int8_method, rounds=rounds)
    out: dict[str, Any] = {
        "gflop_per_item": round(profile["flops"] / batch / 1e9, 3),
        "gemm_share_of_flops": round(profile["gemm_flops"] / profile["flops"], 4),
        "gemm_fp32": {k: v for k, v in fp32.items() if k != "seconds"},
        "gemm_int8": {"method": int8_method, **{k: v for k, v in int8.items() if k != "seconds"}},
    }
    for precision, gemm in (("fp32", fp32), ("int8", int8)):
        model = times[f"ort_{precision}"]
        out[f"{precision}_model_gflops_per_s"] = round(profile["gemm_flops"] / model["wall_min"] / 1e9, 1)
        out[f"{precision}_fraction_of_gemm_peak"] = round(gemm["seconds"] / model["wall_min"], 3)
        out[f"{precision}_fraction_of_gemm_peak_cpu_time"] = round(gemm["cpu_seconds"] / model["cpu_min"], 3)
    return out
