"""onnxruntime session creation: CUDA when it really works, CPU otherwise, and say which and why.

"The GPU is not used" is the most common onnxruntime complaint; it happens silently when the CUDA
provider fails to load its libraries and onnxruntime falls back to CPU. So the provider actually
active after session creation is checked and reported with the reason for any fallback. CUDA and
cuDNN libraries shipped as pip wheels (``nvidia-*``) are preloaded with
``onnxruntime.preload_dlls`` when this onnxruntime has it (1.21+).
"""

from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stair_es.errors import MissingDependencyError, ModelError, UsageError

PROVIDER_CHOICES = ("auto", "cuda", "cpu")
_PRELOAD_DONE: dict[str, str] = {}


@dataclass(frozen=True)
class ProviderInfo:
    """What a session runs on, and why (e.g. why CUDA was not used)."""

    requested: str
    active: str  # "CUDAExecutionProvider" or "CPUExecutionProvider"
    reason: str
    intra_op_threads: int | None

    @property
    def is_cuda(self) -> bool:
        return self.active == "CUDAExecutionProvider"

    def describe(self) -> str:
        threads = f", {self.intra_op_threads} intra-op threads" if self.intra_op_threads else ""
        return f"{self.active} ({self.reason}{threads})"


def import_onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError as exc:
        raise MissingDependencyError(
            f"encoding needs onnxruntime: pip install onnxruntime-gpu (or onnxruntime on CPU-only hosts) ({exc})"
        ) from exc
    return onnxruntime


def _driver_present() -> bool:
    """An NVIDIA driver is installed (libcuda loads); without it the CUDA provider can only fail."""
    try:
        ctypes.CDLL("libcuda.so.1")
        return True
    except OSError:
        return False


def _preload_cuda_libraries(ort: Any) -> str:
    """Load CUDA/cuDNN from pip wheels so the CUDA provider finds them; returns what happened."""
    if "result" in _PRELOAD_DONE:
        return _PRELOAD_DONE["result"]
    if not hasattr(ort, "preload_dlls"):
        result = "onnxruntime has no preload_dlls (< 1.21): relying on the system library path"
    else:
        try:
            ort.preload_dlls(cuda=True, cudnn=True, msvc=False)
            result = "CUDA/cuDNN preloaded from pip packages"
        except Exception as exc:  # noqa: BLE001 - a failed preload is a diagnosis, not a crash
            result = f"preload_dlls failed: {exc}"
    _PRELOAD_DONE["result"] = result
    return result


def cuda_unavailable_reason(ort: Any | None = None) -> str | None:
    """None when the CUDA provider can be tried here, else a one-line reason."""
    ort = ort or import_onnxruntime()
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return "this onnxruntime build has no CUDA provider (pip install onnxruntime-gpu)"
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return "CUDA_VISIBLE_DEVICES hides all GPUs"
    if not _driver_present():
        return "no NVIDIA driver on this machine (libcuda.so.1 not found)"
    return None


def session_options(
    ort: Any, intra_op_threads: int | None, spin: bool | None = None, optimization: str = "all"
) -> Any:
    opts = ort.SessionOptions()
    level = {"all": "ORT_ENABLE_ALL", "extended": "ORT_ENABLE_EXTENDED", "basic": "ORT_ENABLE_BASIC"}[
        optimization
    ]
    opts.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if intra_op_threads:
        opts.intra_op_num_threads = int(intra_op_threads)
    opts.inter_op_num_threads = 1
    if spin is not None:
        # Spinning threads burn cores that image decoding needs; callers that decode turn it off.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    opts.log_severity_level = 3  # errors only; the fallback reason is reported by us
    return opts


def create_session(
    path: str | os.PathLike,
    provider: str = "auto",
    intra_op_threads: int | None = None,
    spin: bool | None = None,
    cuda_options: dict[str, Any] | None = None,
    optimization: str = "all",
) -> tuple[Any, ProviderInfo]:
    """An InferenceSession for ``path`` on the best available provider, plus what is active and why.

    ``provider="cuda"`` fails with a one-line error instead of falling back; ``"auto"`` tries CUDA
    and falls back to CPU with the reason recorded; ``"cpu"`` never touches CUDA. ``optimization``
    "extended" skips the CPU layout transformers (onnxruntime 1.31 crashes on them for fp16 graphs).
    """
    if provider not in PROVIDER_CHOICES:
        raise UsageError(f"unknown provider {provider!r}; expected one of {PROVIDER_CHOICES}")
    ort = import_onnxruntime()
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: ONNX graph not found")
    opts = session_options(ort, intra_op_threads, spin, optimization)
    reason = "requested" if provider == "cpu" else ""
    if provider in ("auto", "cuda"):
        blocker = cuda_unavailable_reason(ort)
        if blocker is None:
            preload = _preload_cuda_libraries(ort)
            options = {
                "device_id": 0,
                # EXHAUSTIVE re-benchmarks convolutions for every new batch shape (seconds each).
                "cudnn_conv_algo_search": "HEURISTIC",
                "arena_extend_strategy": "kSameAsRequested",
            }
            options.update(cuda_options or {})
            try:
                session = ort.InferenceSession(
                    str(path), opts, providers=[("CUDAExecutionProvider", options), "CPUExecutionProvider"]
                )
            except Exception as exc:  # noqa: BLE001
                session, blocker = None, f"CUDA session failed ({str(exc).splitlines()[0][:200]}); {preload}"
            if session is not None:
                if session.get_providers()[0] == "CUDAExecutionProvider":
                    info = ProviderInfo(provider, "CUDAExecutionProvider", preload, intra_op_threads)
                    return session, info
                blocker = f"CUDA provider did not load (missing CUDA/cuDNN libraries?); {preload}"
        if provider == "cuda":
            raise ModelError(f"CUDA requested but unavailable: {blocker}")
        reason = f"CUDA unavailable: {blocker}"
    try:
        session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
        raise ModelError(
            f"{path}: onnxruntime cannot load this graph ({str(exc).splitlines()[0][:300]})"
        ) from exc
    return session, ProviderInfo(provider, "CPUExecutionProvider", reason, intra_op_threads)
