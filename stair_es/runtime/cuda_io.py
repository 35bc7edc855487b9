"""Host<->GPU transfers for CUDA sessions: page-locked batch buffers and IO binding.

A batch of 256 preprocessed 224x224 images is 154 MB; copied from ordinary (pageable) memory the
driver stages it through a small pinned bounce buffer at a fraction of the bus speed, which on a
fast GPU costs as much as the encoder itself. Batches are therefore assembled directly in
page-locked buffers (two, so one fills while the other is on the GPU), and sessions run through
IO binding: the input is copied from that buffer by DMA and the outputs are allocated on the
device and copied back once. Nothing here is used on CPU sessions.
"""

from __future__ import annotations

import ctypes
import logging
from typing import Any

import numpy as np

LOG = logging.getLogger(__name__)
_CUDART_NAMES = ("libcudart.so.13", "libcudart.so.12", "libcudart.so")


class HostBuffers:
    """``count`` reusable batch buffers of ``[max_batch, *item_shape]``, page-locked when possible.

    ``kind`` says what was obtained: ``"pinned (cudaHostAlloc)"`` or ``"pageable"`` (with the
    reason in ``note``), so benchmarks can report it.
    """

    def __init__(
        self, item_shape: tuple[int, ...], max_batch: int, count: int = 2, dtype: Any = np.float32
    ) -> None:
        self.item_shape = tuple(item_shape)
        self.max_batch = int(max_batch)
        self.dtype = np.dtype(dtype)
        self.kind = "pageable"
        self.note = ""
        self._cudart: Any = None
        self._pointers: list[int] = []
        nbytes = self.max_batch * int(np.prod(self.item_shape)) * self.dtype.itemsize
        self._arrays = [self._allocate(nbytes) for _ in range(count)]

    def _allocate(self, nbytes: int) -> np.ndarray:
        shape = (self.max_batch, *self.item_shape)
        cudart = self._cudart if self._cudart is not None else _load_cudart()
        if isinstance(cudart, str):
            self.note = cudart
            return np.empty(shape, self.dtype)
        self._cudart = cudart
        pointer = ctypes.c_void_p()
        status = cudart.cudaHostAlloc(ctypes.byref(pointer), ctypes.c_size_t(nbytes), 0)
        if status != 0 or not pointer.value:
            self.kind, self.note = "pageable", f"cudaHostAlloc failed with status {status}"
            return np.empty(shape, self.dtype)
        self._pointers.append(pointer.value)
        self.kind = "pinned (cudaHostAlloc)"
        raw = (ctypes.c_byte * nbytes).from_address(pointer.value)
        return np.frombuffer(raw, dtype=self.dtype).reshape(shape)  # type: ignore[call-overload]  # ctypes arrays are buffers

    def slot(self, index: int, batch: int) -> np.ndarray:
        """The first ``batch`` rows of buffer ``index % count`` (grown to pageable if too small)."""
        array = self._arrays[index % len(self._arrays)]
        if batch > self.max_batch:
            return np.empty((batch, *self.item_shape), self.dtype)
        return array[:batch]

    def close(self) -> None:
        self._arrays = []
        if self._cudart is not None:
            for pointer in self._pointers:
                self._cudart.cudaFreeHost(ctypes.c_void_p(pointer))
        self._pointers = []

    def __del__(self) -> None:  # pragma: no cover - best effort at interpreter exit
        try:
            self.close()
        except Exception:  # noqa: BLE001
            pass


def _load_cudart() -> Any:
    """The CUDA runtime library onnxruntime-gpu uses (loaded by its preload), or why not."""
    errors = []
    for name in _CUDART_NAMES:
        try:
            lib = ctypes.CDLL(name)
        except OSError as exc:
            errors.append(str(exc).split(":")[-1].strip())
            continue
        lib.cudaHostAlloc.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_size_t, ctypes.c_uint]
        lib.cudaHostAlloc.restype = ctypes.c_int
        lib.cudaFreeHost.argtypes = [ctypes.c_void_p]
        lib.cudaFreeHost.restype = ctypes.c_int
        return lib
    return f"no CUDA runtime library to pin memory with ({errors[-1] if errors else 'not found'})"


def run_bound(
    session: Any, feed: dict[str, np.ndarray], device_type: str = "cuda", device_id: int = 0
) -> tuple[np.ndarray, ...]:
    """One run through IO binding: inputs copied from host memory (pinned: by DMA), outputs
    allocated on the device and copied back together."""
    binding = session.io_binding()
    for name, array in feed.items():
        binding.bind_cpu_input(name, np.ascontiguousarray(array))
    for output in session.get_outputs():
        binding.bind_output(output.name, device_type, device_id)
    session.run_with_iobinding(binding)
    return tuple(binding.copy_outputs_to_cpu())
