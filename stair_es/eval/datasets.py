"""Evaluation sets: captioned images (retrieval) and labelled images (zero-shot classification).

Captioned sets reuse :mod:`stair_es.data.readers` (Karpathy COCO/Flickr30K JSON, COCO captions JSON,
JSONL manifests, sidecar folders). Labelled sets are JSONL ``{"image": path, "label": name}`` (the
label may also be an index into the class list) or a folder with one sub-folder per class.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from stair_es.errors import UsageError

DEFAULT_TEMPLATE = "a photo of a {label}"


@dataclass
class RetrievalSet:
    """Unique images and all captions; ``caption_image[j]`` is the image index of caption ``j``."""

    name: str
    images: list[Path]
    image_ids: list[str]
    captions: list[str]
    caption_image: list[int]
    split: str | None = None

    def relevant_images(self, by: str = "id") -> list[frozenset[int]]:
        """For each caption: the image it describes (the text->image gold).

        ``by="caption"`` also counts every image that has an identical caption (for sets with
        canonical captions, such as the synthetic one, where identical caption = same content).
        """
        if by == "caption":
            images_of: dict[str, set[int]] = {}
            for caption, image in zip(self.captions, self.caption_image, strict=True):
                images_of.setdefault(caption, set()).add(image)
            return [frozenset(images_of[c]) for c in self.captions]
        return [frozenset([i]) for i in self.caption_image]

    def relevant_captions(self, by: str = "id") -> list[frozenset[int]]:
        """For each image: its captions (the image->text gold); ``by="caption"``: every caption
        identical to one of them."""
        out: list[set[int]] = [set() for _ in self.images]
        for caption, image in enumerate(self.caption_image):
            out[image].add(caption)
        if by == "caption":
            same: dict[str, set[int]] = {}
            for index, text in enumerate(self.captions):
                same.setdefault(text, set()).add(index)
            out = [set().union(*(same[self.captions[c]] for c in s)) if s else set() for s in out]
        return [frozenset(s) for s in out]

    def drop_images(self, bad: set[int]) -> RetrievalSet:
        """The set without images ``bad`` (e.g. undecodable) and their captions."""
        if not bad:
            return self
        keep = [i for i in range(len(self.images)) if i not in bad]
        new_index = {old: new for new, old in enumerate(keep)}
        pairs = [(c, new_index[i]) for c, i in zip(self.captions, self.caption_image) if i in new_index]
        return RetrievalSet(
            self.name,
            [self.images[i] for i in keep],
            [self.image_ids[i] for i in keep],
            [c for c, _ in pairs],
            [i for _, i in pairs],
            self.split,
        )


@dataclass
class LabelledSet:
    """Images with a class index each; ``classes`` are the names prompts are built from."""

    name: str
    images: list[Path]
    labels: list[int]
    classes: list[str]
    templates: list[str] = field(default_factory=lambda: [DEFAULT_TEMPLATE])

    def prompts(self) -> list[list[str]]:
        """Per class, one prompt per template."""
        return [[t.format(label=c) for t in self.templates] for c in self.classes]

    def drop_images(self, bad: set[int]) -> LabelledSet:
        keep = [i for i in range(len(self.images)) if i not in bad]
        return LabelledSet(
            self.name,
            [self.images[i] for i in keep],
            [self.labels[i] for i in keep],
            self.classes,
            self.templates,
        )


def load_retrieval_set(
    source: str | Path,
    image_root: str | Path | None = None,
    split: str | None = None,
    max_images: int | None = None,
) -> RetrievalSet:
    """Any captioned layout :func:`stair_es.data.readers.read_pairs` reads; images grouped by id.

    JSON files default ``image_root`` to their own folder. ``max_images`` keeps the first N images
    (all their captions), e.g. the Flickr30K 1k test images.
    """
    from stair_es.data.readers import read_pairs

    source = Path(source)
    if source.suffix == ".json" and image_root is None:
        image_root = source.parent
    pairs = read_pairs(source, image_root=image_root, split=split)
    index: dict[str, int] = {}
    images: list[Path] = []
    image_ids: list[str] = []
    captions: list[str] = []
    caption_image: list[int] = []
    for pair in pairs:
        key = pair.image_id
        if key not in index:
            if max_images is not None and len(images) >= max_images:
                continue
            index[key] = len(images)
            images.append(pair.image)
            image_ids.append(key)
        captions.append(pair.caption)
        caption_image.append(index[key])
    return RetrievalSet(source.name, images, image_ids, captions, caption_image, split)


def read_class_names(value: str | None) -> list[str] | None:
    """Class names from a file (one per line, or a JSON list) or a comma-separated list."""
    if not value:
        return None
    path = Path(value)
    if path.is_file():
        text = path.read_text(encoding="utf-8")
        if text.lstrip().startswith("["):
            try:
                names = [str(n) for n in json.loads(text)]
            except json.JSONDecodeError as exc:
                raise UsageError(f"{path}: invalid JSON class list ({exc.msg})") from exc
        else:
            names = [line.strip() for line in text.splitlines() if line.strip()]
    else:
        names = [n.strip() for n in value.split(",") if n.strip()]
    if len(set(names)) != len(names):
        raise UsageError("class names must be unique")
    if len(names) < 2:
        raise UsageError("zero-shot classification needs at least 2 class names")
    return names


def load_labelled_set(
    source: str | Path,
    classes: Sequence[str] | None = None,
    templates: Sequence[str] = (DEFAULT_TEMPLATE,),
    label_field: str = "label",
    image_root: str | Path | None = None,
    split: str | None = None,
    max_images: int | None = None,
) -> LabelledSet:
    """JSONL ``{"image", label_field}`` or a folder of class sub-folders.

    Without ``classes`` the sorted distinct labels are the classes. Integer labels index ``classes``.
    """
    from stair_es.runtime.files import list_image_files

    source = Path(source)
    for template in templates:
        if "{label}" not in template:
            raise UsageError(f"template {template!r} has no {{label}} placeholder")
    rows: list[tuple[Path, object]] = []
    if source.is_dir():
        for sub in sorted(p for p in source.iterdir() if p.is_dir()):
            rows += [(img, sub.name) for img in list_image_files(sub)]
    elif source.suffix == ".jsonl" and source.is_file():
        root = Path(image_root) if image_root else source.parent
        with source.open(encoding="utf-8") as handle:
            for line_no, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                    image, label = row["image"], row[label_field]
                except (json.JSONDecodeError, KeyError, TypeError) as exc:
                    raise UsageError(
                        f"{source}:{line_no}: expected a JSON object with 'image' and '{label_field}' ({exc})"
                    ) from exc
                if split is not None and row.get("split") not in (None, split):
                    continue
                path = Path(image)
                rows.append((path if path.is_absolute() else root / path, label))
    else:
        raise UsageError(f"{source}: a labelled set is a .jsonl file or a folder of class sub-folders")
    if max_images is not None:
        rows = rows[:max_images]
    if not rows:
        raise UsageError(f"{source}: no labelled images found")
    names = list(classes) if classes else sorted({str(label) for _, label in rows})
    position = {name: i for i, name in enumerate(names)}
    labels = []
    for image, label in rows:
        if isinstance(label, int) and not isinstance(label, bool) and classes:
            if not 0 <= label < len(names):
                raise UsageError(f"{image}: label index {label} is outside the {len(names)} classes")
            labels.append(label)
        elif str(label) in position:
            labels.append(position[str(label)])
        else:
            raise UsageError(f"{image}: label {label!r} is not one of the class names")
    if len(names) < 2:
        raise UsageError(f"{source}: zero-shot classification needs at least 2 classes, found {names}")
    return LabelledSet(source.name, [r[0] for r in rows], labels, names, list(templates))


def looks_labelled(source: str | Path, label_field: str = "label") -> bool:
    """True for a JSONL whose first record has ``label_field`` and no caption."""
    source = Path(source)
    if source.suffix != ".jsonl" or not source.is_file():
        return False
    with source.open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    return False
                return isinstance(row, dict) and label_field in row and "caption" not in row
    return False
