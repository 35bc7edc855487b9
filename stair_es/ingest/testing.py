"""A messy image folder for tests, benchmarks and demos: good synthetic images with sidecar captions
in nested folders (mixed-case extensions), plus every kind of bad file a real collection has.

The expected outcome per file is returned, so callers check counts without re-deriving them.
"""

from __future__ import annotations

import os
import shutil
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class MessyFolder:
    root: Path
    good: list[Path] = field(default_factory=list)  # distinct images that must be indexed
    duplicates: list[Path] = field(default_factory=list)  # same bytes + caption as a good one
    bad: dict[Path, str] = field(default_factory=dict)  # path -> expected failure kind

    @property
    def discovered(self) -> int:
        return len(self.good) + len(self.duplicates) + len(self.bad)


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width x height`` with almost no data: a decompression bomb probe."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 16))
        + chunk(b"IEND", b"")
    )


def make_messy_folder(root: str | os.PathLike[str], num_images: int = 16, seed: int = 0) -> MessyFolder:
    """Write the folder under ``root`` (created) and return what each file should become."""
    from stair_es.data import SyntheticConfig, generate_synthetic

    root = Path(root)
    staging = root.parent / f".{root.name}-synthetic"
    generate_synthetic(staging, SyntheticConfig(num_images=num_images, seed=seed, test_fraction=0.0))
    import json

    rows = [json.loads(line) for line in (staging / "train.jsonl").read_text().splitlines() if line]
    out = MessyFolder(root)
    for i, row in enumerate(sorted(rows, key=lambda r: r["image"])):
        sub = root / ("a" if i % 2 else "b/c")
        sub.mkdir(parents=True, exist_ok=True)
        name = Path(row["image"]).stem + (".PNG" if i % 3 == 0 else ".png")  # any-case extensions
        target = sub / name
        shutil.copyfile(staging / row["image"], target)
        target.with_suffix(".txt").write_text(row["caption"] + "\n", encoding="utf-8")
        out.good.append(target)
    shutil.rmtree(staging)

    first = out.good[0]
    dup = root / "copies" / first.name
    dup.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(first, dup)
    shutil.copyfile(first.with_suffix(".txt"), dup.with_suffix(".txt"))
    out.duplicates.append(dup)

    bad = root / "bad"
    bad.mkdir(parents=True, exist_ok=True)
    data = first.read_bytes()
    (bad / "truncated.png").write_bytes(data[: len(data) // 2])
    out.bad[bad / "truncated.png"] = "corrupt"
    (bad / "empty.jpg").write_bytes(b"")
    out.bad[bad / "empty.jpg"] = "empty"
    (bad / "notes.JPEG").write_text("this is a text file with an image extension\n", encoding="utf-8")
    out.bad[bad / "notes.JPEG"] = "not_an_image"
    (bad / "bomb.png").write_bytes(png_header_only(30_000, 30_000))
    out.bad[bad / "bomb.png"] = "bomb"
    (bad / "too-many-pixels.png").write_bytes(
        png_header_only(10_000, 10_000)
    )  # over our limit, under Pillow's
    out.bad[bad / "too-many-pixels.png"] = "bomb"
    os.symlink(root / "no-such-file.png", bad / "dangling.png")
    out.bad[bad / "dangling.png"] = "missing"
    os.symlink("..", bad / "loop")  # bad/loop -> root: must not be walked twice
    (bad / "readme.md").write_text("not an image extension: ignored\n", encoding="utf-8")
    return out
