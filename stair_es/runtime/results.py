"""What a streaming encode hands back: one result per image, in input order, and where the time
went (the ingest report and the benchmarks read the same counters)."""

from __future__ import annotations

from dataclasses import dataclass, field

from stair_es.sparse import SparseVector


@dataclass
class ImageResult:
    """One streamed image: a vector, or the one-line reason it failed (never both)."""

    index: int
    source: object
    vector: SparseVector | None
    error: str | None = None
    kind: str | None = None  # why it failed (stair_es.runtime.images.ImageDecodeError.kind)

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class StreamStats:
    """Where the time of a streaming run went (decode seconds are summed over worker threads)."""

    items: int = 0
    failures: int = 0
    batches: int = 0
    decode_seconds: float = 0.0
    inference_seconds: float = 0.0
    waiting_for_decode_seconds: float = 0.0
    wall_seconds: float = 0.0
    extra: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, float]:
        return {
            "items": self.items,
            "failures": self.failures,
            "batches": self.batches,
            "decode_cpu_seconds": round(self.decode_seconds, 4),
            "inference_seconds": round(self.inference_seconds, 4),
            "waiting_for_decode_seconds": round(self.waiting_for_decode_seconds, 4),
            "wall_seconds": round(self.wall_seconds, 4),
            "items_per_s": round(self.items / self.wall_seconds, 2) if self.wall_seconds else 0.0,
        }
