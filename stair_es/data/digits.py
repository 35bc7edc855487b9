"""Real handwritten images with captions a person would write: scikit-learn's 1,797 digits (8x8 scans,
shipped inside the package, no download) as PNG files with JSONL manifests.

Why: the synthetic set is ours; this one is not, and it has what people's own data has: several
captions per image, words and numerals for the same thing ("a handwritten seven", "the number 7").
Needs ``scikit-learn`` (the ``dev`` extra); used by tests and by the README's worked example.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
TEMPLATES = (
    "a handwritten {word}",
    "the number {digit}",
    "the digit {word}",
    "a {word} written by hand",
    "the numeral {digit}",
)


def write_digits(
    out: str | Path, captions_per_image: int = 2, test_fraction: float = 0.2, size: int = 32, seed: int = 0
) -> dict[str, Path]:
    """PNG files (dark ink on white, ``size`` px) and ``train.jsonl``/``test.jsonl`` manifests with
    ``captions_per_image`` captions each (templates taken in turn, so with one caption some images say
    "seven" and others "7"); images are split, not captions."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    order = np.random.default_rng(seed).permutation(len(digits.target))
    test = set(order[: int(round(test_fraction * len(order)))].tolist())
    rows: dict[str, list[str]] = {"train": [], "test": []}
    for index, (pixels, label) in enumerate(zip(digits.images, digits.target, strict=True)):
        ink = (255 - pixels * (255 / 16)).clip(0, 255).astype(np.uint8)
        name = f"images/{index:04d}.png"
        Image.fromarray(ink, "L").resize((size, size), Image.Resampling.NEAREST).convert("RGB").save(
            out / name
        )
        picked = [TEMPLATES[(index + j) % len(TEMPLATES)] for j in range(captions_per_image)]
        captions = [t.format(word=WORDS[label], digit=int(label)) for t in picked]
        row = {"image": name, "caption": captions, "id": f"digit-{index}", "label": WORDS[label]}
        rows["test" if index in test else "train"].append(json.dumps(row))
    manifests = {}
    for split, lines in rows.items():
        manifests[split] = out / f"{split}.jsonl"
        manifests[split].write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return manifests
