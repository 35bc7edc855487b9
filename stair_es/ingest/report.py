"""Counts that add up, the failures file, and the live progress line.

Every discovered item ends in exactly one bucket: indexed, skipped (already in the index, or the same
content seen earlier in this run) or failed (with a kind and a one-line reason, written to the failures
JSONL). :meth:`RunReport.balanced` checks ``indexed + skipped + failed == discovered``.
"""

from __future__ import annotations

import json
import threading
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
# not a failure: a document sent when the load stopped, never acknowledged (noted in the file)
NOT_REACHED = "not_reached"
STAGES = ("read", "lookup", "decode_wait", "inference", "index")


def classify_decode_error(reason: str) -> str:
    """Failure kind of a decode message given only as text (an encoder that is not stair-es's own):
    stair-es's decoder says the kind itself (``ImageDecodeError.kind``, ``ImageResult.kind``)."""
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
    stopped: str | None = None  # why the load stopped early (the engine refused or went away)
    encoded: int = 0  # handed to the index so far (becomes indexed or failed when the load ends)
    caption_only: int = 0  # images with an empty token map, indexed for their caption (BM25) alone
    ray: dict[str, Any] | None = None  # --ray: the cluster layout used (stage times then sum over workers)

    @property
    def skipped(self) -> int:
        return self.skipped_existing + self.skipped_duplicate

    @property
    def processed(self) -> int:
        return self.indexed + self.skipped + self.failed

    @property
    def not_reached(self) -> int:
        """Items an interrupted or stopped run did not settle (a rerun picks them up)."""
        return max(0, self.discovered - self.processed) if self.interrupted or self.stopped else 0

    @property
    def balanced(self) -> bool:
        return self.processed + self.not_reached == self.discovered

    @property
    def ok(self) -> bool:
        return self.failed == 0 and not self.interrupted and not self.stopped

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
            "not_reached": self.not_reached,
            "caption_only": self.caption_only,
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
            "stopped": self.stopped,
            **({"ray": self.ray} if self.ray is not None else {}),
        }

    def summary_lines(self) -> list[str]:
        unit = {"images": "images", "texts": "texts"}.get(self.kind, "documents")
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
        if self.caption_only:
            lines.append(
                f"{self.caption_only} {unit} had no token with a positive weight: indexed by their caption "
                "only (found by BM25/hybrid search, not by sparse queries)"
            )
        if self.ray is not None:
            lines.append(
                f"ray: {self.ray.get('encoders')} encoder actor(s) ({self.ray.get('gpus_per_encoder')} GPU, "
                f"{self.ray.get('cpus_per_encoder')} CPU each) on {self.ray.get('nodes')} node(s); "
                f"stage times above are summed over workers"
            )
        if self.failed:
            kinds = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in self.failed_by_kind.most_common())
            where = f"; one line each in {self.failures_path}" if self.failures_path else ""
            lines.append(f"failed: {kinds}{where}")
        if self.interrupted or self.stopped:
            where = (
                f" (those sent but unacknowledged are listed in {self.failures_path})"
                if self.failures_path
                else ""
            )
            lines.append(
                f"{'interrupted' if self.interrupted else 'stopped early'} with {self.not_reached} not "
                f"reached{where}: run the same command again to resume (indexed items are skipped)"
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
        self._lock = threading.Lock()  # the reading and the indexing threads both record
        if failures_path is not None:
            path = Path(failures_path)
            path.parent.mkdir(parents=True, exist_ok=True)
            self._handle = path.open("w", encoding="utf-8")
            report.failures_path = str(path)

    def fail(self, where: str, kind: str, reason: str, stage: str, **extra: Any) -> None:
        with self._lock:
            self.report.failed += 1
            self.report.failed_by_kind[kind] += 1
            entry = {"path": where, "kind": kind, "stage": stage, "reason": reason, **extra}
            self._write(entry)
            if self.on_failure is not None:
                self.on_failure(entry)

    def note(self, where: str, kind: str, reason: str, stage: str, **extra: Any) -> None:
        """A line in the failures file that is not a failure (e.g. sent but not acknowledged)."""
        with self._lock:
            self._write({"path": where, "kind": kind, "stage": stage, "reason": reason, **extra})

    def _write(self, entry: dict[str, Any]) -> None:
        if self._handle is not None:
            self._handle.write(json.dumps(entry, ensure_ascii=False, default=str) + "\n")
            self._handle.flush()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class Progress:
    """Where a run stands: rate, ETA and where the time goes (read/decode/infer/index).

    On a terminal: one tqdm line sized to the terminal (it never wraps, so an 80-column window
    keeps one line), redrawn every ``interval`` s. Otherwise (a log, a pipe): one plain line
    every ``interval`` s (10 by default), never carriage returns.
    """

    def __init__(
        self,
        report: RunReport,
        total: int,
        stream: IO[str] | None,
        *,
        tty: bool = False,
        interval: float | None = None,
        width: int | None = None,
    ) -> None:
        self.report = report
        self.total = total
        self.stream = stream
        self.tty = tty
        self.interval = interval if interval is not None else (0.5 if tty else 10.0)
        self.width = width  # None: the terminal's width, followed as it changes
        self.start = time.perf_counter()
        self._started_at = time.time()  # tqdm's clock: rates count from the start of the run
        self._last = self.start
        self._bar: Any = None

    @property
    def unit(self) -> str:
        return {"images": "img", "texts": "text"}.get(self.report.kind, "doc")

    def done(self) -> int:
        r = self.report
        return r.encoded + r.indexed + r.skipped + r.failed

    def split(self, short: bool = False) -> str:
        """Share of the busy time per stage; lookups count as reading."""
        stages = {k: max(0.0, v) for k, v in self.report.stage_seconds.items()}
        parts = {
            "read": stages.get("read", 0.0) + stages.get("lookup", 0.0),
            "decode": stages.get("decode_wait", 0.0),
            "infer": stages.get("inference", 0.0),
            "index": stages.get("index", 0.0),
        }
        if self.report.kind != "images":
            parts.pop("decode")
        busy = sum(parts.values()) or 1.0
        names = {"read": "rd", "decode": "dec", "infer": "inf", "index": "idx"} if short else {}
        return " ".join(f"{names.get(k, k)} {v / busy:.0%}" for k, v in parts.items())

    def update(self, force: bool = False) -> None:
        if self.stream is None:
            return
        now = time.perf_counter()
        if not force and now - self._last < self.interval:
            return
        self._last = now
        if self.tty:
            self._draw()
        else:
            self.stream.write(self.line(now - self.start) + "\n")
            self.stream.flush()

    def _draw(self) -> None:
        r = self.report
        if self._bar is None:
            from tqdm import tqdm

            self._bar = tqdm(
                total=self.total or None,
                initial=0,
                file=self.stream,
                unit=self.unit,
                ncols=self.width,
                dynamic_ncols=self.width is None,
                mininterval=0,
                smoothing=0.05,
                leave=False,
                bar_format="{n_fmt}/{total_fmt} {percentage:3.0f}%|{bar}| {rate_fmt} ETA {remaining}{postfix}",
            )
            self._bar.start_t = self._bar.last_print_t = self._started_at - (time.perf_counter() - self.start)
        fails = f" fail {r.failed}" if r.failed else ""
        self._bar.set_postfix_str(f"{self.split(short=True)}{fails}", refresh=False)
        self._bar.update(self.done() - self._bar.n)
        self._bar.refresh()  # drawn at our interval, not tqdm's adaptive one

    def line(self, elapsed: float) -> str:
        """The plain line (logs and pipes): counts, rate, ETA, time split."""
        r = self.report
        done = self.done()
        rate = done / elapsed if elapsed > 0 else 0.0
        pct = f" ({done / self.total:.0%})" if self.total else ""
        eta = f", ETA {_duration((self.total - done) / rate)}" if self.total and rate > 0 else ""
        return (
            f"{done}/{self.total or '?'}{pct} {rate:.1f} {self.unit}/s{eta} | "
            f"skipped {r.skipped} failed {r.failed} | {self.split()}"
        )

    def clear(self) -> None:
        """Make room for a message line (the bar is redrawn on the next update)."""
        if self._bar is not None:
            self._bar.clear()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
