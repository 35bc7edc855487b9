"""Faster graphs from an exported fp32 graph: transformer fusions, static int8 (QDQ), fp16 for CUDA.

Why these and in this order: the dynamo exporter writes attention as a dozen small ops (reshape,
transpose, two MatMuls, softmax) and GELU as five, which onnxruntime's own online optimizer does not
recognise; onnxscript's onnxruntime fusions (the successor of ``onnxruntime.transformers.optimizer``
for dynamo graphs, which finds nothing in them) rewrite them to the contrib ops ``Attention``,
``Gelu``/``BiasGelu`` and ``SkipLayerNormalization``. Which fusions pay off depends on the provider:
on CPU (onnxruntime 1.31, AVX-512) ``SkipLayerNormalization`` took 4.7x the CPU time of the
``Add`` + ``LayerNormalization`` it replaces (8.8 vs 1.9 ms on 8x197x768), so the CPU graph keeps
those apart; on CUDA all of them are fused (attention runs in fp16 flash/memory-efficient kernels).

int8 comes in two flavours, both measured at export: dynamic (weights int8, activations quantized per
batch; attention becomes ``QAttention``) and static QDQ (activation ranges calibrated on sample
inputs, so no per-batch min/max pass). Everything here works on ONNX files only, so an existing
export (e.g. the shipped demo model, which has no torch checkpoint) can be optimized too.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from stair_es.errors import ModelError

# Fusions per target provider (see the module docstring for why CPU leaves SkipLayerNorm out). On
# CPU the Q/K/V projections stay three weight GEMMs and only the attention core is fused
# (MultiHeadAttention): int8 then quantizes all of them, dynamic or static, and fp32 loses nothing.
FUSIONS = {
    "cpu": ("gelu", "multi_head_attention"),
    "cuda": ("gelu", "attention", "skip_layer_norm"),
}
LOG = logging.getLogger(__name__)


def fuse_transformer(src: str | os.PathLike, dst: str | os.PathLike, target: str = "cpu") -> dict[str, int]:
    """Rewrite ``src`` with the fusions for ``target`` ("cpu" or "cuda") into ``dst``; returns how
    many of each were applied. Numerically the same graph (parity is checked by the caller)."""
    import onnx_ir as ir
    from onnxscript.optimizer import optimize
    from onnxscript.rewriter.ort_fusions import attention, bias_gelu, erfgelu, gelu, mha, mha_bias, sdpa
    from onnxscript.rewriter.ort_fusions import skip_normalization as skip
    from onnxscript.rewriter.ort_fusions._core import _pre_optimize

    wanted = FUSIONS[target]
    model = ir.load(str(src))
    counts: dict[str, int] = {}
    with _quiet():
        model = _pre_optimize(model)
        if "gelu" in wanted:
            counts["gelu"] = erfgelu.fuse_erfgelu(model) + gelu.fuse_gelu(model)
        if "skip_layer_norm" in wanted:
            counts["skip_layer_norm"] = skip.fuse_skip_layer_normalization(model)
        if "attention" in wanted or "multi_head_attention" in wanted:
            counts["sdpa"] = sdpa.fuse_sdpa(model, apply_shape_inference=True)
            counts["multi_head_attention"] = mha.fuse_mha1(model) + mha.fuse_mha2(model)
            if counts["multi_head_attention"] and "attention" in wanted:
                mha_bias.fuse_mha_bias(model)
                counts["attention"] = attention.fuse_attention(model)
        if "gelu" in wanted:
            counts["bias_gelu"] = bias_gelu.fuse_bias_gelu(model)
        optimize(model)
        ir.save(model, str(dst))
    _fold_packed_qkv(dst)
    return counts


def _fold_packed_qkv(path: str | os.PathLike) -> None:
    """The attention fusion packs Q/K/V weights with a ``Concat`` of initializers (folded only when
    a session loads) and marks equal head sizes with ``qkv_hidden_sizes``; both keep the int8
    quantizer from producing ``QAttention``. Fold the weights into one initializer and drop the
    attribute when the three sizes are equal (its default meaning)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    nodes = []
    changed = False
    for node in graph.node:
        if node.op_type == "Concat" and node.input and all(i in inits for i in node.input):
            axis = next(a.i for a in node.attribute if a.name == "axis")
            arrays = [numpy_helper.to_array(inits[i]) for i in node.input]
            graph.initializer.append(
                numpy_helper.from_array(np.concatenate(arrays, axis=axis), node.output[0])
            )
            changed = True
            continue
        if node.op_type == "Attention":
            sizes = [a for a in node.attribute if a.name == "qkv_hidden_sizes"]
            if sizes and len(set(sizes[0].ints)) == 1:
                node.attribute.remove(sizes[0])
                changed = True
        nodes.append(node)
    if not changed:
        return
    del graph.node[:]
    graph.node.extend(nodes)
    used = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
    kept = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    onnx.save(model, str(path))


def op_counts(path: str | os.PathLike) -> dict[str, int]:
    """Node count per op type (for the manifest: what a graph is made of)."""
    import onnx

    counts: dict[str, int] = {}
    for node in onnx.load(str(path), load_external_data=False).graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


def weight_matmuls(path: str | os.PathLike) -> list[str]:
    """Names of the MatMul/Gemm nodes whose second input is a weight (an initializer): the GEMMs
    static int8 quantizes. Attention's activation x activation products stay in float."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    inits = {t.name for t in model.graph.initializer}
    return [
        node.name
        for node in model.graph.node
        if node.op_type in ("MatMul", "Gemm") and len(node.input) > 1 and node.input[1] in inits
    ]


def quantize_dynamic_int8(
    src: str | os.PathLike, dst: str | os.PathLike, keep_fp32_nodes: Sequence[str] = ()
) -> None:
    """Weights int8, activations quantized per batch; fused attention becomes ``QAttention``.

    Convolutions (the ViT patch embedding) stay fp32: onnxruntime's ConvInteger is slower than its
    fp32 convolution on CPU and the patch embedding is a tiny share of the FLOPs. Weights use 7 bits
    (``reduce_range``, in static int8 too): on x86 CPUs without AVX-512 VNNI onnxruntime's u8 x s8
    kernel sums pairs into saturating int16, which 8-bit weights overflow (a tiny model's top-10
    agreement fell to 0.68-0.84 on an AVX2 EPYC; 0.94-0.99 with 7 bits).
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with _quiet():
        quantize_dynamic(
            _without_weight_value_info(src),
            str(dst),
            weight_type=QuantType.QInt8,
            reduce_range=True,
            op_types_to_quantize=["MatMul", "Gemm", "Attention"],
            per_channel=False,
            nodes_to_exclude=list(keep_fp32_nodes),
            extra_options={"MatMulConstBOnly": True},
        )


def quantize_static_int8(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    calibration: Iterable[dict[str, np.ndarray]],
    keep_fp32_nodes: Sequence[str] = (),
) -> dict[str, Any]:
    """Static QDQ int8 of the weight GEMMs, activation ranges from ``calibration`` feeds.

    Activations uint8 asymmetric and weights int8 symmetric per output channel (what the CPU
    kernels run fastest, u8s8); only GEMM inputs are quantized, so each GEMM's output stays float
    and onnxruntime runs ``DQ -> MatMul`` as one ``MatMulIntegerToFloat``. Returns what was done.
    """
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    feeds = list(calibration)
    if not feeds:
        raise ModelError("static int8 needs at least one calibration batch")

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(feeds)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._it, None)

    skip = set(keep_fp32_nodes)
    nodes = [name for name in weight_matmuls(src) if name not in skip]
    with _quiet():
        quantize_static(
            _without_weight_value_info(src),
            str(dst),
            Reader(),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            reduce_range=True,
            op_types_to_quantize=["MatMul", "Gemm"],
            nodes_to_quantize=nodes,
            per_channel=True,
            calibrate_method=CalibrationMethod.MinMax,
            extra_options={
                "MatMulConstBOnly": True,
                "WeightSymmetric": True,
                "ActivationSymmetric": False,
                "OpTypesToExcludeOutputQuantization": ["MatMul", "Gemm"],
            },
        )
    fused = _fuse_qdq_gemms(dst)
    return {
        "method": "static-qdq",
        "gemms_with_fused_bias": fused,
        "calibration_batches": len(feeds),
        "calibration_items": int(sum(next(iter(f.values())).shape[0] for f in feeds)),
        "quantized_gemms": len(nodes),
    }


def _without_weight_value_info(src: str | os.PathLike) -> Any:
    """The graph without the value_info the dynamo exporter records for weights: the quantizer
    transposes a Gemm's weight (a Linear on 2-D input, e.g. a pooled head) in place and then trips
    over the stale shape."""
    import onnx

    model = onnx.load(str(src))
    weights = {t.name for t in model.graph.initializer}
    kept = [v for v in model.graph.value_info if v.name not in weights]
    del model.graph.value_info[:]
    model.graph.value_info.extend(kept)
    return model


def _fuse_qdq_gemms(path: str | os.PathLike) -> int:
    """``DQ(x_q) x DQ(W_q) -> MatMul -> Add(bias)`` as one ``MatMulIntegerToFloat`` with its bias.

    onnxruntime turns the QDQ pattern into ``MatMulIntegerToFloat`` itself but leaves the bias
    ``Add`` as a separate pass over the output (about 15% of the ViT-B int8 time); dynamic int8
    gets it fused. Written here directly, the static graph runs the bias inside the GEMM. Returns
    how many GEMMs were rewritten (those with a bias; the others are left to onnxruntime)."""
    import onnx
    from onnx import helper

    model = onnx.load(str(path))
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    producer = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    replace: dict[int, Any] = {}
    drop: set[int] = set()
    for node in graph.node:
        if node.op_type != "MatMul" or len(consumers.get(node.output[0], [])) != 1:
            continue
        a_dq, w_dq = producer.get(node.input[0]), producer.get(node.input[1])
        add = consumers[node.output[0]][0]
        if not (
            a_dq and w_dq and a_dq.op_type == w_dq.op_type == "DequantizeLinear" and add.op_type == "Add"
        ):
            continue
        bias = next((i for i in add.input if i != node.output[0]), None)
        if (
            bias is None
            or bias not in inits
            or len(inits[bias].dims) != 1
            or not all(i in inits for i in w_dq.input)
        ):
            continue
        if (
            len(a_dq.input) < 3
            or len(w_dq.input) < 3
            or inits[w_dq.input[0]].data_type != onnx.TensorProto.INT8
        ):
            continue
        fused = helper.make_node(
            "MatMulIntegerToFloat",
            [a_dq.input[0], w_dq.input[0], a_dq.input[1], w_dq.input[1], a_dq.input[2], w_dq.input[2], bias],
            [add.output[0]],
            name=f"{node.name}_int8_bias",
            domain="com.microsoft",
        )
        replace[id(node)] = fused
        drop.add(id(add))
    if not replace:
        return 0
    nodes = [replace.get(id(n), n) for n in graph.node if id(n) not in drop]
    used = {name for n in nodes for name in n.input} | {o.name for o in graph.output}
    while True:  # DequantizeLinear nodes nobody reads any more
        dead = [n for n in nodes if n.op_type == "DequantizeLinear" and n.output[0] not in used]
        if not dead:
            break
        nodes = [n for n in nodes if n not in dead]
        used = {name for n in nodes for name in n.input} | {o.name for o in graph.output}
    del graph.node[:]
    graph.node.extend(nodes)
    kept = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    if not any(op.domain == "com.microsoft" for op in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    onnx.save(model, str(path))
    return len(replace)


@contextlib.contextmanager
def _quiet():
    """The quantizer and rewriter log advice and warnings per graph; keep export output to ours."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        try:
            yield
        finally:
            root.setLevel(level)


def graph_file(directory: Path, tower: str, precision: str) -> Path:
    return directory / (f"{tower}.onnx" if precision == "fp32" else f"{tower}.{precision}.onnx")
