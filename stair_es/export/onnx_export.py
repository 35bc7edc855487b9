"""torch -> ONNX for the two towers, plus the fp16 (CUDA) and int8 (CPU) variants.

Exporter choice (checked on torch 2.15): the dynamo exporter (``torch.export``) handles the fused
transformer fast paths the legacy TorchScript exporter rejects, and writes opset 18 natively, so it
is tried first; the legacy exporter is the fallback. Weights always stay inside the one ``.onnx``
file (models here are far below protobuf's 2 GB limit), so a graph is a single file to copy.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings
from pathlib import Path
from typing import Any

import torch

from stair_es.errors import ModelError

DEFAULT_OPSET = 18
# Ops kept in fp32 in the fp16 graph: normalisation and softmax overflow in fp16 (LayerNorm
# variance, exp), and the activation tail after the max-pool decides which tokens survive.
FP16_KEEP_FP32_OPS = [
    "LayerNormalization",
    "SkipLayerNormalization",
    "Softmax",
    "ReduceMean",
    "Pow",
    "Sqrt",
    "Relu",
    "Log",
    "TopK",
]


def export_graph(
    module: torch.nn.Module,
    example_inputs: tuple[torch.Tensor, ...],
    path: str | os.PathLike,
    input_names: list[str],
    output_names: list[str],
    dynamic: dict[str, dict[int, str]],
    opset: int = DEFAULT_OPSET,
    max_seq: int | None = None,
) -> str:
    """Export ``module`` to one self-contained ``.onnx`` file; returns which exporter worked."""
    path = Path(path)
    module.eval()
    errors: list[str] = []
    for exporter in ("dynamo", "torchscript"):
        try:
            with torch.no_grad(), _quiet():
                if exporter == "dynamo":
                    shapes = _dynamic_shapes(input_names, dynamic, max_seq)
                    program = torch.onnx.export(
                        module,
                        example_inputs,
                        input_names=input_names,
                        output_names=output_names,
                        opset_version=opset,
                        dynamo=True,
                        dynamic_shapes=shapes,
                        external_data=False,
                        optimize=True,
                    )
                    program.save(str(path), external_data=False)
                else:
                    axes = {name: dict(ax) for name, ax in dynamic.items()}
                    torch.onnx.export(
                        module,
                        example_inputs,
                        str(path),
                        input_names=input_names,
                        output_names=output_names,
                        opset_version=max(opset, 17),
                        dynamo=False,
                        dynamic_axes=axes,
                        do_constant_folding=True,
                    )
            _check_single_file(path)
            return exporter
        except Exception as exc:  # noqa: BLE001 - try the next exporter, report both if all fail
            errors.append(
                f"{exporter}: {type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"
            )
            for leftover in (path, Path(str(path) + ".data")):
                if leftover.exists():
                    leftover.unlink()
    raise ModelError(f"ONNX export of {path.name} failed with every exporter ({'; '.join(errors)})")


def _dynamic_shapes(
    input_names: list[str], dynamic: dict[str, dict[int, str]], max_seq: int | None
) -> dict[str, dict[int, Any]]:
    dims: dict[str, Any] = {}
    shapes: dict[str, dict[int, Any]] = {}
    for name in input_names:
        shapes[name] = {}
        for axis, label in dynamic.get(name, {}).items():
            if label not in dims:
                limit = max_seq if label == "sequence" and max_seq else None
                dims[label] = (
                    torch.export.Dim(label, min=1, max=limit) if limit else torch.export.Dim(label, min=1)
                )
            shapes[name][axis] = dims[label]
    return shapes


def _check_single_file(path: Path) -> None:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    external = [t.name for t in model.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
    if external:
        raise ModelError(f"{path.name}: exporter wrote {len(external)} tensors as external data")


@contextlib.contextmanager
def _quiet():
    """The exporters print progress and warnings per graph; keep export output to our own lines."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        try:
            yield
        finally:
            for logger, level in zip(loggers, levels):
                logger.setLevel(level)


def tail_node_names(model: Any) -> list[str]:
    """Nodes after the max-pool over positions (or, without one, after the token head's last
    MatMul/Gemm) up to the outputs: activation, zeroing, top-k. The fp16 graph keeps them in fp32.

    The max-pool itself runs in fp16: the max of fp16 logits is exact, and casting the whole
    ``[batch, positions, vocabulary]`` logits tensor to fp32 first would cost more memory traffic
    than the projection that made it."""
    producers = {out: node for node in model.graph.node for out in node.output}
    names: list[str] = []
    seen: set[str] = set()
    stack = [o.name for o in model.graph.output]
    while stack:
        node = producers.get(stack.pop())
        if node is None or node.name in seen:
            continue
        seen.add(node.name)
        if node.op_type in ("MatMul", "Gemm", "MatMulInteger", "MatMulNBits", "ReduceMax"):
            continue
        names.append(node.name)
        stack.extend(node.input)
    return names


def convert_fp16(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """fp16 weights and math for CUDA, fp32 inputs/outputs, fp32 norm/softmax/tail."""
    import onnx
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

    model = onnx.load(str(src))
    for i, node in enumerate(model.graph.node):
        if not node.name:
            node.name = f"{node.op_type}_{i}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fp16 = convert_float_to_float16(
            model,
            keep_io_types=True,
            op_block_list=list(DEFAULT_OP_BLOCK_LIST) + FP16_KEEP_FP32_OPS,
            node_block_list=tail_node_names(model),
        )
    _drop_duplicate_nodes(fp16)
    onnx.save(fp16, str(dst))


def _drop_duplicate_nodes(model: Any) -> None:
    """The fp16 converter adds one identical Cast per consumer of a shared fp32 initializer (the
    exporter deduplicates equal tensors, e.g. untrained LayerNorm weights); keep the first."""
    seen: set[tuple[str, tuple[str, ...], tuple[str, ...]]] = set()
    keep = []
    for node in model.graph.node:
        key = (node.op_type, tuple(node.input), tuple(node.output))
        if node.output and key in seen:
            continue
        seen.add(key)
        keep.append(node)
    del model.graph.node[:]
    model.graph.node.extend(_topological(keep, model))


def _topological(nodes: list[Any], model: Any) -> list[Any]:
    """Order nodes so every input is produced before use (the converter appends Casts at the end)."""
    available = {i.name for i in model.graph.input} | {t.name for t in model.graph.initializer} | {""}
    pending = list(nodes)
    ordered: list[Any] = []
    while pending:
        rest = []
        for node in pending:
            if all(name in available for name in node.input):
                ordered.append(node)
                available.update(node.output)
            else:
                rest.append(node)
        if len(rest) == len(pending):  # a cycle or a dangling input: leave the rest as they were
            ordered.extend(rest)
            break
        pending = rest
    return ordered
