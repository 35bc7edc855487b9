"""Thumbnails without an arbitrary-file-read hole.

A thumbnail is served only for a document found in one of the served indexes, and only when the
``path`` stored in it resolves (symlinks followed) to a regular file under one of the roots the
operator named. Nothing in the request becomes a path: the id selects a document, the document
selects the file. The opened file descriptor is checked again through ``/proc/self/fd``, so a
symlink swapped in between the check and the open cannot redirect the read.
"""

from __future__ import annotations

import io
import logging
import os
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path
from threading import Lock

from stair_es.errors import StairError

logger = logging.getLogger(__name__)

THUMB_SIDE = 256
MAX_SOURCE_BYTES = 64 * 1024 * 1024  # refuse to thumbnail larger files (a path that is not an image)


class ThumbError(StairError):
    """Why a thumbnail is not served; ``status`` is the HTTP status the API answers with."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def _real_roots(roots: Iterable[str | os.PathLike[str]]) -> list[str]:
    return [os.path.realpath(r) for r in roots]


def under_root(path: str, roots: list[str]) -> bool:
    """True when the real path ``path`` is one of ``roots`` or below it."""
    for root in roots:
        try:
            if os.path.commonpath([root, path]) == root:
                return True
        except ValueError:  # different drives (Windows)
            continue
    return False


class ThumbnailStore:
    """Resolves stored paths against the allowed roots and makes small JPEGs (LRU-cached)."""

    def __init__(self, roots: Iterable[str | os.PathLike[str]], cache_items: int = 512) -> None:
        self.roots = _real_roots(roots)
        self._cache: OrderedDict[str, bytes] = OrderedDict()
        self._cache_items = cache_items
        self._lock = Lock()

    @property
    def enabled(self) -> bool:
        return bool(self.roots)

    def resolve(self, stored_path: object) -> str:
        """The real path of an indexed file, or :class:`ThumbError` when it may not be served."""
        if not self.enabled:
            raise ThumbError("thumbnails are off: start `stair-es serve` with --root DIR", 404)
        if not isinstance(stored_path, str) or not stored_path:
            raise ThumbError("this document has no stored file path", 404)
        real = os.path.realpath(stored_path)
        if not under_root(real, self.roots):
            raise ThumbError("the document's file is outside the served roots", 403)
        if not os.path.isfile(real):
            raise ThumbError("the document's file is missing", 404)
        return real

    def _read(self, real: str) -> bytes:
        flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)
        try:
            fd = os.open(real, flags)
        except OSError as exc:
            raise ThumbError(f"the document's file cannot be opened ({exc.strerror})", 404) from exc
        with os.fdopen(fd, "rb") as handle:
            proc = Path(f"/proc/self/fd/{fd}")
            if proc.exists() and not under_root(os.path.realpath(proc), self.roots):
                raise ThumbError("the document's file is outside the served roots", 403)
            data = handle.read(MAX_SOURCE_BYTES + 1)
        if len(data) > MAX_SOURCE_BYTES:
            raise ThumbError("the document's file is too large for a thumbnail", 413)
        return data

    def thumbnail(self, key: str, stored_path: object) -> bytes:
        """JPEG bytes, at most ``THUMB_SIDE`` pixels a side (blocking: call it off the event loop)."""
        real = self.resolve(stored_path)
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None:
                self._cache.move_to_end(key)
                return cached
        from PIL import Image

        from stair_es.runtime.images import ImageDecodeError, decode_image

        try:
            img = decode_image(self._read(real), draft_size=(THUMB_SIDE, THUMB_SIDE))
        except ImageDecodeError as exc:
            raise ThumbError("the document's file is not a readable image", 415) from exc
        img.thumbnail((THUMB_SIDE, THUMB_SIDE), Image.Resampling.BILINEAR)
        out = io.BytesIO()
        img.save(out, format="JPEG", quality=85)
        data = out.getvalue()
        with self._lock:
            self._cache[key] = data
            while len(self._cache) > self._cache_items:
                self._cache.popitem(last=False)
        return data
