"""Image files on disk: the one extension set and the one folder walker every command uses
(``index images``, ``encode --images-dir``, training readers, eval folders, export calibration)."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

from stair_es.errors import UsageError

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".jfif", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})


def is_image_file_name(name: str | os.PathLike[str]) -> bool:
    """True for a name with an image extension, in any case (``PHOTO.JPG``)."""
    return os.path.splitext(os.fspath(name))[1].lower() in IMAGE_EXTENSIONS


def walk_image_files(root: str | os.PathLike[str]) -> Iterator[tuple[Path, str | None]]:
    """``(path, error)`` for every image-extension file under ``root``, sorted, following symlinked
    folders but visiting each real folder once (so a link to an ancestor cannot loop forever).
    Folders that cannot be listed come back as ``(folder, reason)``."""
    root = Path(root)
    visited: set[tuple[int, int]] = set()
    errors: list[OSError] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True, onerror=errors.append):
        while errors:
            exc = errors.pop()
            yield Path(exc.filename or dirpath), f"cannot list folder ({exc.strerror or exc})"
        try:
            st = os.stat(dirpath)
        except OSError as exc:
            yield Path(dirpath), f"cannot list folder ({exc.strerror or exc})"
            dirnames[:] = []
            continue
        identity = (st.st_dev, st.st_ino)
        if identity in visited:
            dirnames[:] = []  # a symlink back to a folder already walked
            continue
        visited.add(identity)
        # real folders before symlinked ones, so a folder reachable both ways keeps its real name
        dirnames.sort(key=lambda d: (os.path.islink(os.path.join(dirpath, d)), d))
        for name in sorted(filenames):
            if is_image_file_name(name):
                yield Path(dirpath) / name, None
    while errors:
        error = errors.pop()
        yield Path(error.filename or root), f"cannot list folder ({error.strerror or error})"


def relative_key(path: Path, root: Path) -> str:
    """``path`` below ``root`` in posix form (an id that does not depend on the mount point), or
    the whole path when it is not below it (a symlinked folder elsewhere)."""
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def list_image_files(folder: str | os.PathLike[str], recursive: bool = True) -> list[Path]:
    """Image files under a folder (:func:`walk_image_files`), sorted by path for reproducible ids.

    Folders that cannot be listed are logged and left out; callers that must account for every
    entry (``index images``, ``encode``) use :func:`walk_image_files` and report them.
    """
    root = Path(folder)
    if not root.is_dir():
        raise UsageError(f"{root}: not a directory")
    if not recursive:
        return sorted(p for p in root.iterdir() if is_image_file_name(p.name) and p.is_file())
    found = []
    for path, error in walk_image_files(root):
        if error is not None:
            logger.warning("%s: %s", path, error)
        elif path.is_file():
            found.append(path)
    return sorted(found)
