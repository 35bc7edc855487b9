"""torch -> ONNX export of both STAIR towers with a manifest and a parity report (needs torch).

``pip install "stair-es[train]"`` provides torch/onnx; the exported directory is then used by
:mod:`stair_es.runtime`, which needs neither.
"""

from stair_es.export.exporter import ModelSources, export_model, export_module, read_model_dir
from stair_es.export.parity import DEFAULT_TOLERANCES, Tolerance, topk_agreement

__all__ = [
    "DEFAULT_TOLERANCES",
    "ModelSources",
    "Tolerance",
    "export_model",
    "export_module",
    "read_model_dir",
    "topk_agreement",
]
