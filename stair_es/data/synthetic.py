"""Seeded synthetic captioned images: coloured shapes with sizes, positions, counts and backgrounds.

Why: tests, benchmarks and the demo need image/caption pairs whose words are visibly *in* the image
(so grounding can be measured) without downloading a dataset. Everything is a pure function of the seed:
the same seed writes byte-identical files. numpy + pillow only.

Caption grammar (one canonical caption per scene, so "identical caption" means "same scene content"):
    scene   := group ["and" group] "on a" BACKGROUND "background"
    group   := COUNT SIZE COLOUR SHAPE[s] ("on"|"at"|"in") "the" POSITION
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from stair_es.errors import DataError, InvalidArgument

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 170, 40),
    "blue": (30, 60, 220),
    "yellow": (240, 220, 30),
    "purple": (140, 40, 180),
    "orange": (245, 140, 20),
    "pink": (245, 120, 190),
    "cyan": (40, 210, 220),
}
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "white": (235, 235, 235),
    "black": (20, 20, 20),
    "gray": (128, 128, 128),
}
SHAPES: dict[str, str] = {
    "circle": "circles",
    "square": "squares",
    "triangle": "triangles",
    "diamond": "diamonds",
    "star": "stars",
    "cross": "crosses",
}
SIZES: dict[str, float] = {"small": 0.09, "big": 0.14}  # radius as a fraction of the image side
COUNTS: dict[int, str] = {1: "one", 2: "two", 3: "three"}
# Region (x0, y0, x1, y1) in unit coordinates where a group's object centres may fall.
POSITIONS: dict[str, tuple[float, float, float, float]] = {
    "left": (0.0, 0.0, 0.45, 1.0),
    "right": (0.55, 0.0, 1.0, 1.0),
    "top": (0.0, 0.0, 1.0, 0.45),
    "bottom": (0.0, 0.55, 1.0, 1.0),
    "center": (0.25, 0.25, 0.75, 0.75),
}
PREPOSITIONS = {"left": "on", "right": "on", "top": "at", "bottom": "at", "center": "in"}
PAIRED_POSITIONS = (("left", "right"), ("top", "bottom"))
FUNCTION_WORDS = frozenset({"a", "and", "on", "at", "in", "the", "of"})


@dataclass(frozen=True)
class ObjectGroup:
    count: int
    size: str
    colour: str
    shape: str
    position: str

    def phrase(self) -> str:
        noun = self.shape if self.count == 1 else SHAPES[self.shape]
        return f"{COUNTS[self.count]} {self.size} {self.colour} {noun} {PREPOSITIONS[self.position]} the {self.position}"


@dataclass(frozen=True)
class Scene:
    groups: tuple[ObjectGroup, ...]
    background: str

    def caption(self) -> str:
        return " and ".join(g.phrase() for g in self.groups) + f" on a {self.background} background"

    def colour_words(self) -> list[str]:
        return sorted({g.colour for g in self.groups})

    def shape_words(self) -> list[str]:
        return sorted({g.shape if g.count == 1 else SHAPES[g.shape] for g in self.groups})


def content_words(caption: str) -> list[str]:
    """Caption words that carry content (the grammar's function words removed), in order."""
    return [w for w in caption.lower().split() if w not in FUNCTION_WORDS]


def parse_caption(caption: str) -> Scene:
    """The scene a canonical caption describes (inverse of ``Scene.caption``); ValueError otherwise.

    Why: held-out collections keep only image files and captions, and short-query relevance
    ("red circles": any image holding red circles) is decided on the scene, not on caption text.
    """
    words = caption.lower().split()
    if len(words) < 4 or words[-4:-2] != ["on", "a"] or words[-1] != "background":
        raise DataError(f"not a synthetic caption: {caption!r}")
    background = words[-2]
    plural_to_shape = {plural: shape for shape, plural in SHAPES.items()}
    count_of = {word: n for n, word in COUNTS.items()}
    groups = []
    for phrase in " ".join(words[:-4]).split(" and "):
        parts = phrase.split()
        if len(parts) != 7 or parts[5] != "the":
            raise DataError(f"not a synthetic caption: {caption!r}")
        count, size, colour, noun, _prep, _the, position = parts
        shape = noun if noun in SHAPES else plural_to_shape.get(noun, "")
        if count not in count_of or size not in SIZES or colour not in COLOURS or not shape:
            raise DataError(f"not a synthetic caption: {caption!r}")
        if position not in POSITIONS or background not in BACKGROUNDS:
            raise DataError(f"not a synthetic caption: {caption!r}")
        groups.append(ObjectGroup(count_of[count], size, colour, shape, position))
    return Scene(tuple(groups), background)


@dataclass
class SyntheticConfig:
    """What to generate. ``two_group_fraction`` of scenes hold two groups in opposite regions."""

    num_images: int = 2000
    seed: int = 0
    image_size: int = 64
    image_format: str = "png"  # png or jpeg
    test_fraction: float = 0.1
    val_fraction: float = 0.0
    two_group_fraction: float = 0.0
    colours: list[str] = field(default_factory=lambda: list(COLOURS))
    shapes: list[str] = field(default_factory=lambda: list(SHAPES))


def sample_scene(rng: np.random.Generator, config: SyntheticConfig) -> Scene:
    background = str(rng.choice(list(BACKGROUNDS)))
    colours = [c for c in config.colours if c in COLOURS]
    shapes = [s for s in config.shapes if s in SHAPES]

    def group(position: str, avoid: tuple[str, str] | None = None) -> ObjectGroup:
        while True:
            colour, shape = str(rng.choice(colours)), str(rng.choice(shapes))
            if avoid is None or (colour, shape) != avoid:
                break
        return ObjectGroup(int(rng.integers(1, 4)), str(rng.choice(list(SIZES))), colour, shape, position)

    if rng.random() < config.two_group_fraction:
        first_pos, second_pos = PAIRED_POSITIONS[int(rng.integers(len(PAIRED_POSITIONS)))]
        first = group(first_pos)
        return Scene((first, group(second_pos, avoid=(first.colour, first.shape))), background)
    return Scene((group(str(rng.choice(list(POSITIONS)))),), background)


def _shape_points(shape: str, cx: float, cy: float, r: float, angle: float) -> list[tuple[float, float]]:
    def polar(radius: float, theta: float) -> tuple[float, float]:
        return cx + radius * math.cos(theta + angle), cy + radius * math.sin(theta + angle)

    if shape == "square":
        return [polar(r * 1.2, math.pi / 4 + k * math.pi / 2) for k in range(4)]
    if shape == "diamond":
        return [polar(r * (1.35 if k % 2 == 0 else 0.6), k * math.pi / 2) for k in range(4)]
    if shape == "triangle":
        return [polar(r * 1.25, -math.pi / 2 + k * 2 * math.pi / 3) for k in range(3)]
    if shape == "star":
        return [polar(r * (1.3 if k % 2 == 0 else 0.55), -math.pi / 2 + k * math.pi / 5) for k in range(10)]
    if shape == "cross":
        w = 0.38
        pts = [(w, 1), (-w, 1), (-w, w), (-1, w), (-1, -w), (-w, -w), (-w, -1), (w, -1), (w, -w), (1, -w)]
        pts += [(1, w), (w, w)]
        cos, sin = math.cos(angle), math.sin(angle)
        return [(cx + r * 1.2 * (x * cos - y * sin), cy + r * 1.2 * (x * sin + y * cos)) for x, y in pts]
    raise InvalidArgument(f"unknown shape {shape!r}")


def render_scene(
    scene: Scene,
    rng: np.random.Generator,
    image_size: int = 64,
    placements: list[tuple[int, float, float, float]] | None = None,
) -> Image.Image:
    """Draw the scene; jitter in shade, placement, rotation and background noise keeps images distinct.

    ``placements`` (when given) receives ``(group index, x, y, radius)`` of every object drawn, in
    unit image coordinates: where "at the top" really is, since position regions overlap (an object
    at the top left may be captioned "on the left" or "at the top")."""
    supersample = 4
    side = image_size * supersample
    bg = np.array(BACKGROUNDS[scene.background], dtype=np.float32)
    noise = rng.normal(0.0, 6.0, size=(image_size, image_size, 1)).astype(np.float32)
    base = np.clip(bg[None, None, :] + noise, 0, 255).astype(np.uint8)
    canvas = Image.fromarray(base).resize((side, side), Image.Resampling.NEAREST)
    draw = ImageDraw.Draw(canvas)
    placed: list[tuple[float, float, float]] = []
    for group_index, group in enumerate(scene.groups):
        radius = SIZES[group.size] * side * float(rng.uniform(0.9, 1.1))
        x0, y0, x1, y1 = POSITIONS[group.position]
        colour = np.clip(np.array(COLOURS[group.colour]) + rng.integers(-15, 16, size=3), 0, 255)
        fill = tuple(int(v) for v in colour)
        for _ in range(group.count):
            cx = cy = 0.0
            r = radius
            for attempt in range(200):  # rejection sampling: non-overlapping, fully visible objects
                if attempt and attempt % 25 == 0:
                    r *= 0.9  # crowded region: shrink a little rather than hide an object
                cx = float(rng.uniform(max(x0 * side, r * 1.3), max(min(x1 * side, side - r * 1.3), r * 1.3)))
                cy = float(rng.uniform(max(y0 * side, r * 1.3), max(min(y1 * side, side - r * 1.3), r * 1.3)))
                if all(math.hypot(cx - px, cy - py) > (r + pr) * 1.1 for px, py, pr in placed):
                    break
            placed.append((cx, cy, r))
            if placements is not None:
                placements.append((group_index, cx / side, cy / side, r / side))
            angle = float(rng.uniform(-0.25, 0.25))
            if group.shape == "circle":
                draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
            else:
                draw.polygon(_shape_points(group.shape, cx, cy, r, angle), fill=fill)
    return canvas.resize((image_size, image_size), Image.Resampling.LANCZOS)


def generate_synthetic(out_dir: str | Path, config: SyntheticConfig | None = None) -> dict[str, Path]:
    """Write images under ``out_dir/images`` and one JSONL manifest per split; return the manifests.

    Each manifest line is ``{"image": "images/000001.png", "caption": ..., "split": ..., "colours": [...],
    "shapes": [...], "objects": [[group, x, y, radius], ...]}`` with the image path relative to the
    manifest's folder (object centres in unit image coordinates, see :func:`render_scene`).
    """
    config = config or SyntheticConfig()
    if config.image_format not in ("png", "jpeg"):
        raise InvalidArgument(f"image_format must be png or jpeg, got {config.image_format!r}")
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(config.seed)
    n_test = int(round(config.num_images * config.test_fraction))
    n_val = int(round(config.num_images * config.val_fraction))
    splits = ["test"] * n_test + ["val"] * n_val + ["train"] * (config.num_images - n_test - n_val)
    split_order = rng.permutation(len(splits))
    records: dict[str, list[dict]] = {"train": [], "val": [], "test": []}
    suffix = "png" if config.image_format == "png" else "jpg"
    for index in range(config.num_images):
        scene = sample_scene(rng, config)
        objects: list[tuple[int, float, float, float]] = []
        image = render_scene(scene, rng, config.image_size, objects)
        name = f"images/{index:06d}.{suffix}"
        if config.image_format == "png":
            image.save(out / name, format="PNG", optimize=False)
        else:
            image.save(out / name, format="JPEG", quality=95)
        split = splits[int(split_order[index])]
        records[split].append(
            {
                "image": name,
                "caption": scene.caption(),
                "split": split,
                "colours": scene.colour_words(),
                "shapes": scene.shape_words(),
                "objects": [[g, round(x, 4), round(y, 4), round(r, 4)] for g, x, y, r in objects],
            }
        )
    manifests: dict[str, Path] = {}
    for split, rows in records.items():
        if not rows:
            continue
        path = out / f"{split}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        manifests[split] = path
    (out / "synthetic_config.json").write_text(json.dumps(asdict(config), indent=2) + "\n", encoding="utf-8")
    return manifests


def grammar_words() -> list[str]:
    """Every word the caption grammar can produce (so a vocabulary can hold them as whole tokens)."""
    words = set(COLOURS) | set(BACKGROUNDS) | set(SHAPES) | set(SHAPES.values()) | set(SIZES)
    words |= set(COUNTS.values()) | set(POSITIONS) | FUNCTION_WORDS | {"background"}
    return sorted(words)
