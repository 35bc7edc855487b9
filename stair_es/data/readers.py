"""Readers that turn the usual captioned-image layouts into one list of (image path, caption) pairs.

Supported: JSONL ``{"image", "caption"}`` manifests (also what the synthetic generator writes), CSV
manifests with a header (the columns ``index images`` reads: image/path/file..., caption/text), COCO
captions JSON + image folder, Karpathy-split JSON (COCO, Flickr30K), and folders with sidecar caption
files (``photo.jpg`` + ``photo.txt``, one caption per line). Paths are resolved once, here, so the
trainer never guesses. Bad lines raise :class:`UsageError` naming the file and line.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stair_es.errors import UsageError
from stair_es.runtime.files import list_image_files

# the column names ``stair-es index images`` accepts in manifests (stair_es.ingest.discover)
PATH_COLUMNS = ("image", "path", "file", "filepath", "image_path", "filename")
CAPTION_COLUMNS = ("caption", "text", "captions")


@dataclass(frozen=True)
class CaptionedImage:
    """One training/eval pair. ``image_id`` groups several captions of the same image."""

    image: Path
    caption: str
    image_id: str
    split: str | None = None


def read_jsonl(
    path: str | Path, image_root: str | Path | None = None, split: str | None = None
) -> list[CaptionedImage]:
    """``{"image": path, "caption": text[, "split", "id"]}`` per line; relative paths are relative to
    ``image_root`` or else the manifest's folder. ``caption`` may also be a list (one pair per caption)."""
    path = Path(path)
    root = Path(image_root) if image_root else path.parent
    pairs: list[CaptionedImage] = []
    with path.open(encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                image, captions = row["image"], row["caption"]
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise UsageError(
                    f"{path}:{line_no}: expected a JSON object with 'image' and 'caption' ({exc})"
                ) from exc
            row_split = row.get("split")
            if split is not None and row_split is not None and row_split != split:
                continue
            for caption in captions if isinstance(captions, list) else [captions]:
                pairs.append(
                    CaptionedImage(_resolve(root, image), str(caption), str(row.get("id", image)), row_split)
                )
    return pairs


def read_csv(
    path: str | Path, image_root: str | Path | None = None, split: str | None = None
) -> list[CaptionedImage]:
    """A CSV manifest with a header: an image column (``image``, ``path``, ``file`` ...), a caption
    column (``caption``/``text``), optional ``id`` and ``split``; paths as in :func:`read_jsonl`."""
    path = Path(path)
    root = Path(image_root) if image_root else path.parent
    pairs: list[CaptionedImage] = []
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            reader = csv.DictReader(handle)
            fields = reader.fieldnames or []
            image_col = next((c for c in PATH_COLUMNS if c in fields), None)
            caption_col = next((c for c in CAPTION_COLUMNS if c in fields), None)
            if image_col is None or caption_col is None:
                raise UsageError(
                    f"{path}: a CSV manifest needs a header with an image column ({', '.join(PATH_COLUMNS)}) "
                    f"and a caption column ({', '.join(CAPTION_COLUMNS)}); found {', '.join(fields) or 'none'}"
                )
            for row in reader:
                image, caption = (row.get(image_col) or "").strip(), (row.get(caption_col) or "").strip()
                if not image or not caption:
                    raise UsageError(
                        f"{path}:{reader.line_num}: empty {image_col if not image else caption_col}"
                    )
                row_split = row.get("split") or None
                if split is not None and row_split is not None and row_split != split:
                    continue
                pairs.append(
                    CaptionedImage(_resolve(root, image), caption, row.get("id") or image, row_split)
                )
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise UsageError(f"{path}: cannot read the CSV manifest ({exc})") from exc
    return pairs


def read_coco_captions(
    annotations: str | Path, image_dir: str | Path, limit_images: int | None = None
) -> list[CaptionedImage]:
    """COCO ``captions_*.json`` (``images`` + ``annotations``) with images in ``image_dir``."""
    data = _load_json(annotations)
    try:
        files = {int(img["id"]): img["file_name"] for img in data["images"]}
        annotations_list = data["annotations"]
    except (KeyError, TypeError) as exc:
        raise UsageError(
            f"{annotations}: not a COCO captions file (needs 'images' and 'annotations': {exc})"
        ) from exc
    keep = set(sorted(files)[:limit_images]) if limit_images else None
    pairs = []
    for ann in annotations_list:
        image_id = int(ann["image_id"])
        if image_id not in files or (keep is not None and image_id not in keep):
            continue
        pairs.append(
            CaptionedImage(Path(image_dir) / files[image_id], str(ann["caption"]).strip(), str(image_id))
        )
    return pairs


def read_karpathy(
    split_json: str | Path, image_root: str | Path, split: str | None = None
) -> list[CaptionedImage]:
    """Karpathy ``dataset_{coco,flickr30k}.json``; ``restval`` counts as ``train``."""
    data = _load_json(split_json)
    try:
        images = data["images"]
    except (KeyError, TypeError) as exc:
        raise UsageError(f"{split_json}: not a Karpathy split file (needs 'images': {exc})") from exc
    pairs = []
    for img in images:
        img_split = "train" if img.get("split") == "restval" else img.get("split")
        if split is not None and img_split != split:
            continue
        rel = Path(img.get("filepath", "")) / img["filename"]
        image_id = str(img.get("cocoid", img.get("imgid", img["filename"])))
        for sentence in img.get("sentences", []):
            caption = sentence.get("raw") or " ".join(sentence.get("tokens", []))
            pairs.append(CaptionedImage(Path(image_root) / rel, caption.strip(), image_id, img_split))
    return pairs


def read_sidecar_folder(folder: str | Path) -> list[CaptionedImage]:
    """Images with a same-stem ``.txt`` (one caption per non-empty line); images without one are skipped."""
    folder = Path(folder)
    pairs = []
    for image in list_image_files(folder):
        sidecar = image.with_suffix(".txt")
        if not sidecar.exists():
            continue
        for caption in sidecar.read_text(encoding="utf-8").splitlines():
            if caption.strip():
                pairs.append(CaptionedImage(image, caption.strip(), str(image.relative_to(folder))))
    return pairs


def read_pairs(
    source: str | Path,
    image_root: str | Path | None = None,
    split: str | None = None,
) -> list[CaptionedImage]:
    """Pick the reader from the source: a folder (sidecar captions), ``.jsonl``, or a JSON file that is
    COCO captions (needs ``image_root``) or a Karpathy split (needs ``image_root``)."""
    source = Path(source)
    if not source.exists():
        raise UsageError(f"data source not found: {source}")
    if source.is_dir():
        pairs = read_sidecar_folder(source)
    elif source.suffix == ".jsonl":
        pairs = read_jsonl(source, image_root, split)
    elif source.suffix.lower() == ".csv":
        pairs = read_csv(source, image_root, split)
    elif source.suffix == ".json":
        data = _load_json(source)
        if image_root is None:
            raise UsageError(f"{source}: COCO/Karpathy JSON needs --image-root (the image folder)")
        if isinstance(data, dict) and "annotations" in data:
            pairs = read_coco_captions(source, image_root)
        elif isinstance(data, dict) and "images" in data:
            pairs = read_karpathy(source, image_root, split)
        else:
            raise UsageError(f"{source}: neither COCO captions nor a Karpathy split file")
    else:
        raise UsageError(
            f"{source}: expected a folder, a .jsonl or .csv manifest, or a COCO/Karpathy .json file"
        )
    if not pairs:
        raise UsageError(
            f"{source}: no image/caption pairs found" + (f" for split {split!r}" if split else "")
        )
    return pairs


def is_karpathy_split_file(path: str | Path) -> bool:
    """A Karpathy ``dataset_*.json``: top-level ``images`` with per-image ``split`` (COCO captions files
    have ``annotations``); read from the head of the file only."""
    path = Path(path)
    if path.suffix != ".json" or not path.is_file():
        return False
    try:
        with path.open(encoding="utf-8") as handle:
            head = handle.read(1 << 16)
    except (OSError, UnicodeDecodeError):
        return False
    return '"images"' in head and '"split"' in head and '"annotations"' not in head


def _resolve(root: Path, image: str) -> Path:
    p = Path(image)
    return p if p.is_absolute() else root / p


def _load_json(path: str | Path) -> Any:
    try:
        with Path(path).open(encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, json.JSONDecodeError) as exc:
        raise UsageError(f"cannot read JSON {path}: {exc}") from exc
