"""Sparse encoders on onnxruntime: texts and images in, :class:`SparseVector` out. No torch.

The graphs already contain the whole STAIR computation (tower, token head, max-pool, log1p(ReLU),
zeroed special tokens, optionally top-k), so this module only feeds inputs and turns the output
rows into token->weight vectors. Image decoding runs in a thread pool while the previous batch is
in the session, so the two overlap.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from stair_es.errors import ModelError, UsageError
from stair_es.runtime.cuda_io import HostBuffers, run_bound
from stair_es.runtime.images import (
    DEFAULT_MAX_PIXELS,
    ImageDecodeError,
    ImageSource,
    default_workers,
    iter_decoded,
)
from stair_es.runtime.manifest import Manifest
from stair_es.runtime.results import ImageResult, StreamStats
from stair_es.runtime.sessions import (
    ProviderInfo,
    create_session,
    cuda_unavailable_reason,
    import_onnxruntime,
)
from stair_es.runtime.tokenizer import TextTokenizer, file_sha256, read_vocab_file, vocabulary_hash
from stair_es.sparse import SparseVector

logger = logging.getLogger(__name__)
_DEFAULT: Any = object()  # "use the manifest's pruning default"
PRECISION_CHOICES = ("auto", "fp32", "fp16", "int8")


class Encoder:
    """Text and image encoders of one exported model; sessions are created on first use.

    Thread-safe: one onnxruntime session per tower, created once and shared by every thread
    (``InferenceSession.run`` may be called concurrently), so N threads never load N copies.
    """

    def __init__(
        self,
        manifest: Manifest,
        provider: str = "auto",
        precision: str = "auto",
        intra_op_threads: int | None = None,
        decode_workers: int | None = None,
        max_image_pixels: int | None = DEFAULT_MAX_PIXELS,
        spin: bool | None = None,
    ) -> None:
        if precision not in PRECISION_CHOICES:
            raise UsageError(f"unknown precision {precision!r}; expected one of {PRECISION_CHOICES}")
        self.manifest = manifest
        self.provider = provider
        self.precision = precision
        self.intra_op_threads = intra_op_threads
        self.decode_workers = decode_workers or default_workers()
        self.max_image_pixels = max_image_pixels
        self.spin = spin
        self.tokenizer = self._load_tokenizer(manifest)
        # the names of the output dimensions: the output vocabulary, or the tokenizer's own
        self.tokens: list[str] = self._load_output_vocab(manifest) or self.tokenizer.tokens
        self._sessions: dict[str, tuple[Any, ProviderInfo, str]] = {}
        self._sessions_lock = threading.Lock()

    # identity ------------------------------------------------------------------------------
    @property
    def model_id(self) -> str:
        return self.manifest.model_id

    @property
    def vocab_hash(self) -> str:
        return self.manifest.vocab_hash

    def provider_info(self, tower: str = "text") -> ProviderInfo:
        """The provider a tower runs on (creates its session if needed)."""
        return self._session(tower)[1]

    def active_precision(self, tower: str = "text") -> str:
        return self._session(tower)[2]

    # text ----------------------------------------------------------------------------------
    def encode_texts(
        self,
        texts: Sequence[str],
        *,
        batch_size: int = 64,
        top_k: int | None = _DEFAULT,
        min_weight: float = _DEFAULT,
    ) -> list[SparseVector]:
        """One vector per text, in input order. Texts are length-bucketed so padding stays small."""
        if isinstance(texts, str):
            raise UsageError("encode_texts takes a list of strings, not one string")
        texts = list(texts)
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise UsageError(f"text #{i} is {type(text).__name__}, not str")
        if not texts:
            return []
        ids = self.tokenizer.encode_ids(texts)
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        out: list[SparseVector | None] = [None] * len(texts)
        for start in range(0, len(order), max(1, batch_size)):
            chunk = order[start : start + batch_size]
            input_ids, mask = self.tokenizer.pad([ids[i] for i in chunk])
            raw = self.run_text(input_ids, mask)
            for i, vec in zip(chunk, self.to_vectors(raw, top_k, min_weight)):
                out[i] = vec
        return out  # type: ignore[return-value]

    def run_text(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> tuple[np.ndarray, ...]:
        """Raw graph output for a padded batch: (weights,) or (indices, values)."""
        session, info, _ = self._session("text")
        feed = {"input_ids": input_ids, "attention_mask": attention_mask}
        if info.is_cuda:
            return run_bound(session, feed)
        return tuple(session.run(None, feed))

    # images --------------------------------------------------------------------------------
    def encode_images(
        self,
        images: Iterable[ImageSource],
        *,
        batch_size: int = 32,
        top_k: int | None = _DEFAULT,
        min_weight: float = _DEFAULT,
    ) -> list[SparseVector]:
        """One vector per image (paths, bytes or PIL images). Raises on the first undecodable image;
        use :meth:`iter_encode_images` to get per-item failures instead."""
        vectors: list[SparseVector] = []
        for result in self.iter_encode_images(
            images, batch_size=batch_size, top_k=top_k, min_weight=min_weight
        ):
            if result.error is not None:
                raise ImageDecodeError(result.error, result.kind or "decode")
            vectors.append(result.vector)  # type: ignore[arg-type]
        return vectors

    def iter_encode_images(
        self,
        sources: Iterable[ImageSource],
        *,
        batch_size: int = 32,
        workers: int | None = None,
        top_k: int | None = _DEFAULT,
        min_weight: float = _DEFAULT,
        stats: StreamStats | None = None,
        overlap: bool | None = None,
    ) -> Iterator[ImageResult]:
        """Stream many images: decode in ``workers`` threads while the session runs the previous
        batch; yields results in input order, with a one-line error for each image that failed.

        ``overlap`` (default: on CUDA) also runs the session in its own thread, so the next batch
        is assembled (in a page-locked buffer on CUDA) while the current one is on the device."""
        stats = stats if stats is not None else StreamStats()
        info = self._session("image")[1]  # fail fast on a broken model, before decoding
        depth = 2 if (info.is_cuda if overlap is None else overlap) else 1
        # page-locked buffers per stream (several threads may stream through one encoder)
        host = HostBuffers((3, *self.manifest.image.size), batch_size) if info.is_cuda else None
        pool = ThreadPoolExecutor(1, thread_name_prefix="stair-infer") if depth > 1 else None
        wall_start = time.perf_counter()
        batch: list[Any] = []
        failed: list[ImageResult] = []
        in_flight: deque[tuple[Any, list[Any], list[ImageResult]]] = deque()
        submitted = [0]

        def infer(pixels: np.ndarray) -> tuple[tuple[np.ndarray, ...], float]:
            start = time.perf_counter()
            raw = self.run_images(pixels)
            return raw, time.perf_counter() - start

        def submit() -> None:
            job: Any = None
            if batch:
                if host is not None:
                    pixels = host.slot(submitted[0], len(batch))
                    for row, item in enumerate(batch):
                        pixels[row] = item.pixels
                else:
                    pixels = np.stack([item.pixels for item in batch])
                submitted[0] += 1
                job = pool.submit(infer, pixels) if pool is not None else infer(pixels)
            in_flight.append((job, list(batch), list(failed)))
            batch.clear()
            failed.clear()

        def complete_oldest() -> Iterator[ImageResult]:
            job, items, fails = in_flight.popleft()
            results: dict[int, ImageResult] = {}
            if job is not None:
                raw, seconds = job.result() if pool is not None else job
                stats.inference_seconds += seconds
                stats.batches += 1
                for item, vec in zip(items, self.to_vectors(raw, top_k, min_weight)):
                    results[item.index] = ImageResult(item.index, item.source, vec)
            for fail in fails:
                results[fail.index] = fail
            for index in sorted(results):
                stats.items += 1
                yield results[index]

        decoded = iter_decoded(
            sources,
            self.manifest.image,
            workers=workers or self.decode_workers,
            prefetch=max(2 * batch_size, 8),
            max_pixels=self.max_image_pixels,
        )
        try:
            while True:
                wait_start = time.perf_counter()
                item = next(decoded, None)
                stats.waiting_for_decode_seconds += time.perf_counter() - wait_start
                if item is None:
                    break
                stats.decode_seconds += item.seconds
                if item.error is not None:
                    stats.failures += 1
                    failed.append(ImageResult(item.index, item.source, None, item.error, item.kind))
                else:
                    batch.append(item)
                if len(batch) >= batch_size:
                    submit()
                    while len(in_flight) >= depth:
                        yield from complete_oldest()
            submit()
            while in_flight:
                yield from complete_oldest()
        finally:
            if pool is not None:
                pool.shutdown(wait=True)
            if host is not None:
                host.close()
        stats.wall_seconds += time.perf_counter() - wall_start

    def run_images(self, pixel_values: np.ndarray) -> tuple[np.ndarray, ...]:
        """Raw graph output for preprocessed pixels ``[B, 3, H, W]`` float32."""
        session, info, _ = self._session("image")
        feed = {"pixel_values": np.ascontiguousarray(pixel_values, dtype=np.float32)}
        if info.is_cuda:
            return run_bound(session, feed)
        return tuple(session.run(None, feed))

    def tune_batch_size(
        self,
        tower: str = "image",
        candidates: Sequence[int] | None = None,
        budget_seconds: float = 30.0,
        text_tokens: int = 24,
    ) -> dict[str, Any]:
        """Measure items/s of the model alone at growing batch sizes on this machine and provider;
        returns the smallest batch within 3% of the best rate, and every rate measured.

        Stops early when the budget is spent, when a larger batch is clearly slower, or when the
        device runs out of memory (that batch is reported as failed)."""
        info = self.provider_info(tower)
        if candidates is None:
            candidates = (32, 64, 128, 256, 512, 1024) if info.is_cuda else (4, 8, 16, 32, 64)
        rng = np.random.default_rng(0)
        height, width = self.manifest.image.size
        rates: dict[int, float] = {}
        errors: dict[int, str] = {}
        deadline = time.perf_counter() + budget_seconds
        for size in sorted(set(int(c) for c in candidates if int(c) > 0)):
            run: Callable[[], Any]
            if tower == "image":
                pixels = rng.standard_normal((size, 3, height, width)).astype(np.float32)

                def run_images(pixels: np.ndarray = pixels) -> Any:
                    return self.run_images(pixels)

                run = run_images
            else:
                length = min(text_tokens, self.manifest.max_text_length)
                ids = rng.integers(len(self.tokens) // 2, len(self.tokens), (size, length))
                mask = np.ones_like(ids)

                def run_text(ids: np.ndarray = ids, mask: np.ndarray = mask) -> Any:
                    return self.run_text(ids.astype(np.int64), mask.astype(np.int64))

                run = run_text

            try:
                run()
                best = float("inf")
                for _ in range(3):
                    start = time.perf_counter()
                    run()
                    best = min(best, time.perf_counter() - start)
                    if time.perf_counter() > deadline:
                        break
            except Exception as exc:  # noqa: BLE001 - out of device memory ends the search
                errors[size] = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
                break
            rates[size] = size / best
            top = max(rates.values())
            if time.perf_counter() > deadline or (len(rates) >= 3 and rates[size] < 0.9 * top):
                break
        if not rates:
            raise ModelError(f"batch-size tuning failed: {errors}")
        top = max(rates.values())
        chosen = min(size for size, rate in rates.items() if rate >= 0.97 * top)
        return {
            "tower": tower,
            "provider": info.active,
            "batch_size": chosen,
            "items_per_s": {str(k): round(v, 2) for k, v in rates.items()},
            "errors": {str(k): v for k, v in errors.items()},
        }

    # output --------------------------------------------------------------------------------
    def to_vectors(
        self, raw: tuple[np.ndarray, ...], top_k: int | None = _DEFAULT, min_weight: float = _DEFAULT
    ) -> list[SparseVector]:
        """Graph output rows -> pruned sparse vectors with token strings."""
        pruning = self.manifest.pruning
        top_k = pruning.get("top_k") if top_k is _DEFAULT else top_k
        min_weight = float(pruning.get("min_weight") or 0.0) if min_weight is _DEFAULT else float(min_weight)
        vectors = []
        if len(raw) == 2:  # in-graph top-k: (indices, values)
            for idx_row, val_row in zip(*raw):
                keep = val_row > 0
                vectors.append(self._vector(idx_row[keep], val_row[keep], top_k, min_weight))
        else:
            for row in raw[0]:
                ids = np.flatnonzero(row > max(min_weight, 0.0))
                if top_k is not None and len(ids) > top_k:
                    ids = ids[np.argpartition(-row[ids], top_k - 1)[:top_k]]
                vectors.append(self._vector(ids, row[ids], top_k, min_weight))
        return vectors

    def _vector(
        self, ids: np.ndarray, weights: np.ndarray, top_k: int | None, min_weight: float
    ) -> SparseVector:
        tokens = [self.tokens[i] for i in ids.tolist()]
        vec = SparseVector.from_arrays(tokens, weights.astype(np.float32), ids.astype(np.int64))
        return vec.prune(top_k=top_k, min_weight=min_weight)

    # sessions ------------------------------------------------------------------------------
    def _session(self, tower: str) -> tuple[Any, ProviderInfo, str]:
        found = self._sessions.get(tower)
        if found is None:
            with self._sessions_lock:  # the first callers wait for one session instead of each making one
                found = self._sessions.get(tower)
                if found is None:
                    found = self._sessions[tower] = self._open(tower)
                    logger.info(
                        "%s tower of %s [%s] on %s", tower, self.model_id, found[2], found[1].describe()
                    )
        return found

    def _open(self, tower: str) -> tuple[Any, ProviderInfo, str]:
        graphs = self.manifest.graphs
        precision = self.precision
        if precision == "auto":
            ort = import_onnxruntime()
            want_cuda = self.provider != "cpu" and cuda_unavailable_reason(ort) is None
            precision = self.manifest.auto_precision(tower, want_cuda)
        # Idle onnxruntime threads spin for a while after each run; that steals the cores image
        # decoding needs, so image sessions do not spin unless asked to.
        spin = self.spin if self.spin is not None else (False if tower == "image" else None)
        # onnxruntime 1.31's level-3 (CPU layout) optimizer crashes on fp16 graphs, and does
        # nothing for CUDA, so fp16 graphs are always optimized at the extended level.
        optimization = "extended" if precision == "fp16" else "all"
        session, info = create_session(
            self.manifest.graph_path(precision, tower),
            self.provider,
            self.intra_op_threads,
            spin,
            optimization=optimization,
        )
        if precision == "fp16" and not info.is_cuda and self.precision == "auto" and "fp32" in graphs:
            # fp16 graphs are a GPU format; on CPU they are slower than fp32, so switch to CPU's choice.
            precision = self.manifest.auto_precision(tower, cuda=False)
            path = self.manifest.graph_path(precision, tower)
            session, info = create_session(path, "cpu", self.intra_op_threads, spin)
        self._check_graph_vocab(session, tower)
        return session, info, precision

    def _check_graph_vocab(self, session: Any, tower: str) -> None:
        """A graph stamped at export names the vocabularies it was built for; refuse a swapped file
        (older exports carry no stamp and are not checked)."""
        meta = session.get_modelmeta().custom_metadata_map or {}
        expected = {"stair_es.vocab_hash": self.manifest.vocab_hash}
        if tower == "text":
            expected["stair_es.input_tokenizer_sha256"] = self.manifest.tokenizer_sha256
        for key, value in expected.items():
            if key in meta and meta[key] != value:
                raise ModelError(
                    f"{self.manifest.root}: the {tower} graph was exported for another "
                    f"{'vocabulary' if 'vocab' in key else 'tokenizer'} than the manifest's (files mixed up?)"
                )

    @staticmethod
    def _load_tokenizer(manifest: Manifest) -> TextTokenizer:
        path = manifest.tokenizer_path
        if not path.is_file():
            raise ModelError(f"{path}: tokenizer file listed in the manifest is missing")
        if file_sha256(path) != manifest.tokenizer_sha256:
            raise ModelError(f"{path}: tokenizer.json does not match the manifest hash (file replaced?)")
        tokenizer = TextTokenizer.from_file(path, manifest.max_text_length)
        if manifest.output_vocab_file:  # the input has its own vocabulary; the outputs are named apart
            return tokenizer
        if tokenizer.vocab_size != manifest.vocab_size:
            raise ModelError(
                f"{path}: tokenizer has {tokenizer.vocab_size} tokens but the graphs output {manifest.vocab_size}"
            )
        if tokenizer.vocab_hash != manifest.vocab_hash:
            raise ModelError(f"{path}: tokenizer vocabulary hash does not match the manifest")
        return tokenizer

    @staticmethod
    def _load_output_vocab(manifest: Manifest) -> list[str] | None:
        """The output vocabulary's tokens, checked against the manifest (None when there is none)."""
        path = manifest.output_vocab_path
        if path is None:
            return None
        if not path.is_file():
            raise ModelError(f"{path}: output vocabulary listed in the manifest is missing")
        if file_sha256(path) != manifest.output_vocab_sha256:
            raise ModelError(f"{path}: output vocabulary does not match the manifest hash (file replaced?)")
        tokens = read_vocab_file(path)
        if len(tokens) != manifest.vocab_size:
            raise ModelError(
                f"{path}: {len(tokens)} output tokens but the graphs output {manifest.vocab_size}"
            )
        if vocabulary_hash(tokens) != manifest.vocab_hash:
            raise ModelError(f"{path}: output vocabulary hash does not match the manifest")
        return tokens


def load_encoder(
    path: str | os.PathLike,
    provider: str = "auto",
    precision: str = "auto",
    intra_op_threads: int | None = None,
    decode_workers: int | None = None,
    max_image_pixels: int | None = DEFAULT_MAX_PIXELS,
    spin: bool | None = None,
) -> Encoder:
    """Open an exported model directory (or its manifest.json) for encoding.

    ``provider``: "auto" (CUDA when it works, else CPU, with the reason), "cuda" (no fallback) or
    "cpu". ``precision``: "auto" (per tower, the fastest graph the export measured for this
    provider, recorded in the manifest; else fp16 on CUDA when exported, else fp32), "fp32",
    "fp16", "int8".
    ``spin``: let idle onnxruntime threads busy-wait (default: only for the text session).
    """
    return Encoder(
        Manifest.read(path),
        provider=provider,
        precision=precision,
        intra_op_threads=intra_op_threads,
        decode_workers=decode_workers,
        max_image_pixels=max_image_pixels,
        spin=spin,
    )
