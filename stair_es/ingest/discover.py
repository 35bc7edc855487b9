"""What to index: image folders (recursive, any-case extensions, symlink loops safe), JSONL/CSV
manifests of files with captions and metadata, sidecar caption files, and JSONL text corpora.

Discovery never raises for one bad entry: a manifest line without a path, an unreadable folder or a
sidecar that is not UTF-8 becomes an item that carries its error, so it is counted and written to the
failures file like any other file that could not be indexed. Only a command-line argument that does
not exist (a typo) is a :class:`UsageError`.

Every item has a ``key`` that does not depend on where the collection is mounted (the path relative to
the folder given, or ``manifest:line``): ``--shard-id/--num-shards`` split on it, so two machines with
the same files at different mount points split the work identically.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stair_es.errors import UsageError
from stair_es.runtime.files import IMAGE_EXTENSIONS, relative_key, walk_image_files

MANIFEST_SUFFIXES = frozenset({".jsonl", ".ndjson", ".csv"})
PATH_KEYS = ("image", "path", "file", "filepath", "image_path", "filename")
CAPTION_KEYS = ("caption", "text", "captions")
CAPTION_SOURCES = ("auto", "sidecar", "manifest", "none")


@dataclass
class ImageItem:
    """One file to index, or one entry that already failed during discovery (``error`` set)."""

    key: str
    path: Path | None
    caption: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    url: str | None = None
    id: str | None = None
    error: str | None = None
    kind: str | None = None  # failure kind when error is set

    @property
    def display(self) -> str:
        return str(self.path) if self.path is not None else self.key


@dataclass
class TextItem:
    """One line of a text corpus, or the reason the line cannot be indexed."""

    key: str  # "file:line"
    text: str | None
    id: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    url: str | None = None
    error: str | None = None
    kind: str | None = None


def shard_of(key: str, num_shards: int) -> int:
    """Stable shard of an item key (sha1, not Python's salted hash)."""
    if num_shards <= 1:
        return 0
    return int.from_bytes(hashlib.sha1(key.encode("utf-8")).digest()[:8], "big") % num_shards


def check_shard(shard_id: int, num_shards: int) -> None:
    if num_shards < 1 or not 0 <= shard_id < num_shards:
        raise UsageError(f"--shard-id must be in [0, {num_shards - 1}] for --num-shards {num_shards}")


def select_shard(items: Iterable[Any], shard_id: int, num_shards: int) -> Iterator[Any]:
    check_shard(shard_id, num_shards)
    for item in items:
        if num_shards == 1 or shard_of(item.key, num_shards) == shard_id:
            yield item


# images ------------------------------------------------------------------------------------------
def discover_images(inputs: Iterable[str | os.PathLike[str]], caption_from: str = "auto") -> list[ImageItem]:
    """All items under ``inputs`` (folders, image files, .jsonl/.csv manifests), each file once.

    ``caption_from``: ``auto`` (manifest captions for manifests, sidecar ``.txt`` for folders),
    ``sidecar``, ``manifest`` or ``none``.
    """
    if caption_from not in CAPTION_SOURCES:
        raise UsageError(f"--caption-from must be one of {', '.join(CAPTION_SOURCES)}, got {caption_from!r}")
    roots = [Path(p) for p in inputs]
    if not roots:
        raise UsageError("nothing to index: give one or more folders, image files or manifests")
    for root in roots:
        if not root.exists() and not root.is_symlink():
            raise UsageError(f"{root}: no such file or folder")
        if root.is_file() and root.suffix.lower() not in IMAGE_EXTENSIONS | MANIFEST_SUFFIXES:
            raise UsageError(
                f"{root}: expected a folder, an image file or a .jsonl/.csv manifest "
                f"(image extensions: {' '.join(sorted(IMAGE_EXTENSIONS))})"
            )
    items: list[ImageItem] = []
    seen: set[str] = set()
    for root in roots:
        if root.is_dir():
            found: Iterable[ImageItem] = _folder_items(root, caption_from)
        elif root.suffix.lower() in MANIFEST_SUFFIXES:
            found = _manifest_items(root, caption_from)
        else:
            found = [_with_sidecar(ImageItem(key=root.name, path=root), caption_from == "sidecar")]
        for item in found:
            identity = os.path.abspath(item.path) if item.path is not None else item.key
            if identity in seen:
                continue  # the same file named twice (a folder and a file in it, a manifest repeat)
            seen.add(identity)
            items.append(item)
    return items


def _folder_items(root: Path, caption_from: str) -> Iterator[ImageItem]:
    use_sidecar = caption_from in ("auto", "sidecar")
    for path, error in walk_image_files(root):
        key = relative_key(path, root)
        if error is not None:
            yield ImageItem(key=key, path=path, error=error, kind="unreadable")
        else:
            yield _with_sidecar(ImageItem(key=key, path=path), use_sidecar)


def _with_sidecar(item: ImageItem, use_caption: bool) -> ImageItem:
    """Attach ``photo.txt`` (caption) and ``photo.json`` (metadata) found next to ``photo.jpg``."""
    assert item.path is not None
    if use_caption:
        sidecar = item.path.with_suffix(".txt")
        if sidecar.is_file():
            try:
                text = " ".join(sidecar.read_text(encoding="utf-8").split())
            except (OSError, UnicodeDecodeError) as exc:
                item.error, item.kind = f"sidecar caption {sidecar.name} unreadable ({exc})", "sidecar"
                return item
            item.caption = text or None
    meta = item.path.with_suffix(".json")
    if meta.is_file():
        try:
            data = json.loads(meta.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            item.error, item.kind = f"sidecar metadata {meta.name} unreadable ({exc})", "sidecar"
            return item
        if isinstance(data, dict):
            item.metadata.update(data)
    return item


def _manifest_items(manifest: Path, caption_from: str) -> Iterator[ImageItem]:
    rows = _csv_rows(manifest) if manifest.suffix.lower() == ".csv" else _jsonl_rows(manifest)
    base = manifest.parent
    for line_no, row, error in rows:
        key = f"{manifest.name}:{line_no}"
        if error is not None:
            yield ImageItem(key=key, path=None, error=error, kind="manifest")
            continue
        yield _manifest_item(key, base, row, caption_from)


def _manifest_item(key: str, base: Path, row: dict[str, Any], caption_from: str) -> ImageItem:
    path_key = next((k for k in PATH_KEYS if isinstance(row.get(k), str) and row[k]), None)
    if path_key is None:
        return ImageItem(
            key=key, path=None, error=f"no image path (one of {', '.join(PATH_KEYS)})", kind="manifest"
        )
    raw = Path(row[path_key])
    path = raw if raw.is_absolute() else base / raw
    item = ImageItem(key=raw.as_posix(), path=path)
    caption_key = next((k for k in CAPTION_KEYS if row.get(k) not in (None, "", [])), None)
    if caption_from in ("auto", "manifest") and caption_key is not None:
        value = row[caption_key]
        captions = value if isinstance(value, list) else [value]
        # several captions (COCO style) become one caption field: one document per image
        item.caption = "\n".join(" ".join(str(c).split()) for c in captions if str(c).strip()) or None
    if isinstance(row.get("url"), str) and row["url"]:
        item.url = row["url"]
    if row.get("id") not in (None, ""):
        item.id = str(row["id"])
    used = {path_key, "url", "id", *(CAPTION_KEYS if caption_key else ())}
    item.metadata = {k: v for k, v in row.items() if k not in used and v not in (None, "")}
    if caption_from == "sidecar":
        _with_sidecar(item, True)
    return item


def _jsonl_rows(path: Path) -> Iterator[tuple[int, dict[str, Any], str | None]]:
    for line_no, line, error in _lines(path):
        if error is not None:
            yield line_no, {}, error
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            yield line_no, {}, f"invalid JSON ({exc.msg})"
            continue
        if not isinstance(row, dict):
            yield line_no, {}, f"expected a JSON object, got {type(row).__name__}"
            continue
        yield line_no, row, None


def _csv_rows(path: Path) -> Iterator[tuple[int, dict[str, Any], str | None]]:
    try:
        handle = path.open(encoding="utf-8", newline="")
    except OSError as exc:
        raise UsageError(f"{path}: cannot read manifest ({exc.strerror or exc})") from exc
    with handle:
        reader = csv.DictReader(handle)
        try:
            for row in reader:
                extra = row.pop(None, None)  # type: ignore[call-overload]
                if extra:
                    yield reader.line_num, {}, f"{len(extra)} more fields than the header"
                    continue
                yield reader.line_num, {k: v for k, v in row.items() if k}, None
        except (csv.Error, UnicodeDecodeError) as exc:
            yield reader.line_num, {}, f"unreadable CSV ({exc}); the rest of the file was not read"


def _lines(path: Path) -> Iterator[tuple[int, str, str | None]]:
    """Non-empty lines; a line that is not UTF-8 is an error for that line only."""
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise UsageError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    with handle:
        for line_no, raw in enumerate(handle, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield line_no, "", f"not UTF-8 ({exc.reason} at byte {exc.start})"
                continue
            if line.strip():
                yield line_no, line.lstrip("\ufeff"), None


# texts -------------------------------------------------------------------------------------------
def check_text_field(path: str | os.PathLike[str], text_key: str = "text", sample: int = 20) -> None:
    """Refuse a corpus whose first records lack ``text_key`` (a wrong ``--text-field``) in one line
    naming the fields found, before anything is created; later bad lines are per-item failures."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path}: no such file (expected a JSONL text corpus)")
    seen: dict[str, None] = {}
    rows = 0
    for _, row, error in _jsonl_rows(path):
        if error is not None:
            continue
        if text_key in row:
            return
        seen.update(dict.fromkeys(row))
        rows += 1
        if rows >= sample:
            break
    if rows:
        raise UsageError(
            f"{path}: no {text_key!r} field in the first {rows} records (fields found: "
            f"{', '.join(sorted(seen)) or 'none'}): pass --text-field NAME"
        )


def read_text_corpus(path: str | os.PathLike[str], text_key: str = "text") -> Iterator[TextItem]:
    """``{"id"?, "text", ...metadata}`` per line; bad lines come back as items with an error."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path}: no such file (expected a JSONL text corpus)")
    for line_no, row, error in _jsonl_rows(path):
        key = f"{path.name}:{line_no}"
        if error is not None:
            yield TextItem(key=key, text=None, error=error, kind="manifest")
            continue
        text = row.get(text_key)
        if not isinstance(text, str) or not text.strip():
            reason = "empty text" if isinstance(text, str) else f"no string {text_key!r}"
            yield TextItem(key=key, text=None, error=reason, kind="manifest")
            continue
        item = TextItem(key=key, text=text.strip())
        if row.get("id") not in (None, ""):
            item.id = str(row["id"])
        if isinstance(row.get("url"), str) and row["url"]:
            item.url = row["url"]
        item.metadata = {k: v for k, v in row.items() if k not in (text_key, "id", "url") and v is not None}
        yield item
