"""Counts that add up, the failures file, and the live progress line.

Every discovered item ends in exactly one bucket: indexed, skipped (already in the index, or the same
content seen earlier in this run) or failed (with a kind and a one-line reason, written to the failures
JSONL). :meth:`RunReport.balanced` checks ``indexed + skipped + failed == discovered``.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

# Where an item stopped, by what went wrong (keys of ``failed_by_kind``).
FAILURE_KINDS = {
    "missing": "file not found",
    "unreadable": "cannot read the file or folder",
    "empty": "zero-byte file",
    "too_large": "file over the size limit",
    "not_an_image": "not a recognised image format",
    "corrupt": "corrupt or truncated image",
    "bomb": "refused as a decompression bomb",
    "manifest": "bad manifest/corpus line",
    "sidecar": "unreadable sidecar caption/metadata",
    "no_tokens": "the encoder produced no token with a positive weight",
    "engine": "the engine rejected the document",
    "decode": "could not decode",
}
STAGES = ("read", "lookup", "decode_wait", "inference", "index")


def classify_decode_error(reason: str) -> str:
    """Failure kind of a runtime decode message (stair_es.runtime.images.decode_image wording)."""
    text = reason.lower()
    if "decompression" in text:
        return "bomb"
    if "not a recognised image format" in text:
        return "not_an_image"
    if "file not found" in text:
        return "missing"
    if "cannot decode" in text or "truncated" in text:
        return "corrupt"
    return "decode"


@dataclass
class RunReport:
    """The result of one ``index images``/``index texts`` run (also what ``--json`` prints)."""

    index: str
    kind: str = "images"
    discovered: int = 0
    indexed: int = 0
    skipped_existing: int = 0
    skipped_duplicate: int = 0
    failed: int = 0
    failed_by_kind: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    stage_seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    decode_cpu_seconds: float = 0.0
    failures_path: str | None = None
    shard: str | None = None
    provider: str | None = None
    dry_run: bool = False
    interrupted: bool = False
    encoded: int = 0  # handed to the index so far (becomes indexed or failed when the load ends)

    @property
    def skipped(self) -> int:
        return self.skipped_existing + self.skipped_duplicate

    @property
    def processed(self) -> int:
        return self.indexed + self.skipped + self.failed

    @property
    def balanced(self) -> bool:
        return self.processed == self.discovered

    @property
    def ok(self) -> bool:
        return self.failed == 0 and not self.interrupted

    @property
    def items_per_second(self) -> float:
        """Indexed (new) items per second of the run."""
        return self.indexed / self.seconds if self.seconds > 0 else 0.0

    @property
    def processed_per_second(self) -> float:
        return self.processed / self.seconds if self.seconds > 0 else 0.0

    def stage_shares(self) -> dict[str, float]:
        """Fraction of the wall time in each stage (the rest: discovery, start-up, bookkeeping)."""
        if self.seconds <= 0:
            return dict.fromkeys(STAGES, 0.0)
        return {k: max(0.0, v) / self.seconds for k, v in self.stage_seconds.items()}

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "kind": self.kind,
            "discovered": self.discovered,
            "indexed": self.indexed,
            "skipped": self.skipped,
            "skipped_existing": self.skipped_existing,
            "skipped_duplicate": self.skipped_duplicate,
            "failed": self.failed,
            "failed_by_kind": dict(sorted(self.failed_by_kind.items())),
            "balanced": self.balanced,
            "seconds": round(self.seconds, 3),
            "items_per_second": round(self.items_per_second, 2),
            "processed_per_second": round(self.processed_per_second, 2),
            "stage_seconds": {k: round(v, 3) for k, v in self.stage_seconds.items()},
            "decode_cpu_seconds": round(self.decode_cpu_seconds, 3),
            "failures_path": self.failures_path,
            "shard": self.shard,
            "provider": self.provider,
            "dry_run": self.dry_run,
            "interrupted": self.interrupted,
        }

    def summary_lines(self) -> list[str]:
        unit = "images" if self.kind == "images" else "texts"
        verb = "encoded (dry run, nothing written)" if self.dry_run else "indexed"
        lines = [
            f"{self.indexed} {verb}, {self.skipped} skipped "
            f"({self.skipped_existing} already indexed, {self.skipped_duplicate} duplicate content), "
            f"{self.failed} failed, of {self.discovered} {unit} discovered"
            + (f" in shard {self.shard}" if self.shard else "")
        ]
        shares = self.stage_shares()
        lines.append(
            f"{self.seconds:.1f}s, {self.items_per_second:.1f} {unit}/s indexed "
            f"({self.processed_per_second:.1f}/s processed); time: "
            + ", ".join(f"{k.replace('_', ' ')} {shares[k]:.0%}" for k in STAGES)
            + (f"; decode CPU {self.decode_cpu_seconds:.1f}s over workers" if self.kind == "images" else "")
        )
        if self.failed:
            kinds = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in self.failed_by_kind.most_common())
            where = f"; one line each in {self.failures_path}" if self.failures_path else ""
            lines.append(f"failed: {kinds}{where}")
        if self.interrupted:
            lines.append(
                f"interrupted with {self.discovered - self.processed} not reached: run the same command "
                "again to resume (indexed items are skipped)"
            )
        elif not self.balanced:
            lines.append(f"warning: counts do not add up ({self.processed} accounted of {self.discovered})")
        return lines


class Ledger:
    """Records failures: counts them in the report, writes them to the failures JSONL (truncated at
    the start of each run, so it always describes the last run) and passes them to ``on_failure``."""

    def __init__(
        self,
        report: RunReport,
        failures_path: str | Path | None = None,
        on_failure: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.report = report
        self.on_failure = on_failure
        self._handle: IO[str] | None = None
        if failures_path is not None:
            path = Path(failures_path)
            path.parent.mkdir(parents=True, exist_ok=True)
            self._handle = path.open("w", encoding="utf-8")
            report.failures_path = str(path)

    def fail(self, where: str, kind: str, reason: str, stage: str, **extra: Any) -> None:
        self.report.failed += 1
        self.report.failed_by_kind[kind] += 1
        entry = {"path": where, "kind": kind, "stage": stage, "reason": reason, **extra}
        if self._handle is not None:
            self._handle.write(json.dumps(entry, ensure_ascii=False, default=str) + "\n")
            self._handle.flush()
        if self.on_failure is not None:
            self.on_failure(entry)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


class Progress:
    """One updating line on a terminal (every ``interval`` s), plain periodic lines otherwise."""

    def __init__(
        self,
        report: RunReport,
        total: int,
        stream: IO[str] | None,
        *,
        tty: bool = False,
        interval: float | None = None,
    ) -> None:
        self.report = report
        self.total = total
        self.stream = stream
        self.tty = tty
        self.interval = interval if interval is not None else (0.5 if tty else 10.0)
        self.start = time.perf_counter()
        self._last = self.start
        self._width = 0

    def update(self, force: bool = False) -> None:
        if self.stream is None:
            return
        now = time.perf_counter()
        if not force and now - self._last < self.interval:
            return
        self._last = now
        line = self.line(now - self.start)
        if self.tty:
            self.stream.write("\r" + line.ljust(self._width))
            self._width = max(self._width, len(line))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def line(self, elapsed: float) -> str:
        r = self.report
        done = r.encoded + r.skipped + r.failed
        rate = r.encoded / elapsed if elapsed > 0 else 0.0
        busy = sum(max(0.0, v) for v in r.stage_seconds.values()) or 1.0
        split = " ".join(f"{k.split('_')[0]} {max(0.0, v) / busy:.0%}" for k, v in r.stage_seconds.items())
        pct = f" ({done / self.total:.0%})" if self.total else ""
        unit = "img" if r.kind == "images" else "texts"
        return (
            f"{done}/{self.total}{pct} | {rate:.1f} {unit}/s | encoded {r.encoded} "
            f"skipped {r.skipped} failed {r.failed} | {split}"
        )

    def close(self) -> None:
        if self.stream is not None and self.tty and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()
