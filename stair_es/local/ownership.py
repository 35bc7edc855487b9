"""Handing files to the unprivileged node user when root starts a node, without ever following a link.

The node user can plant symlinks (or hard links) in its own instance folder; a later root
``engine up`` that chowned recursively with ``os.chown`` would hand the link targets, any file on
the machine, to that user. So the walk uses directory descriptors, opens every entry with
``O_NOFOLLOW`` and decides on the open descriptor; and a ``--data-dir`` is taken over only when it
is new, empty or already the node user's.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from stair_es.errors import UsageError


def _give(name: str, dir_fd: int | None, uid: int, gid: int) -> bool:
    """chown one directory or singly-linked regular file to the node user, never through a link.

    The entry is opened with O_NOFOLLOW and checked on the open descriptor, so a symlink (or one
    swapped in meanwhile) is never followed and a hard link to someone else's file (st_nlink > 1)
    is left alone; only what root itself owns is given away.
    """
    try:
        before = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except OSError:
        return False
    if before.st_uid == uid or not (stat.S_ISDIR(before.st_mode) or stat.S_ISREG(before.st_mode)):
        return False  # already the node's, or a link, FIFO, socket or device: nothing to give
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(name, flags, dir_fd=dir_fd)
    except OSError:
        return False
    try:
        st = os.fstat(fd)
        plain = stat.S_ISDIR(st.st_mode) or (stat.S_ISREG(st.st_mode) and st.st_nlink == 1)
        if not plain or st.st_uid != os.geteuid() or (st.st_dev, st.st_ino) != (before.st_dev, before.st_ino):
            return False
        os.fchown(fd, uid, gid)
        return True
    finally:
        os.close(fd)


def _chown_tree(path: Path, uid: int, gid: int) -> int:
    """Give ``path`` and what root owns below it to the node user; returns how many entries changed.

    Walks with directory descriptors (``os.fwalk``) without following symlinks: the node user can
    plant links in its own instance folder, and a root ``engine up`` must never chown their targets.
    """
    changed = int(_give(str(path), None, uid, gid))
    for _dirpath, dirnames, filenames, dirfd in os.fwalk(path, follow_symlinks=False):
        for name in dirnames + filenames:
            changed += _give(name, dirfd, uid, gid)
    return changed


def prepare_data_dir(path: Path, uid: int) -> None:
    """As root, a ``--data-dir`` is handed to the node user only when that is safe.

    Safe: a folder that does not exist yet (created), an empty one, or one the node user already owns
    (an earlier run handed it over). Anything else, e.g. ``/`` or a home folder with files in it,
    is refused with one line, so that no file is taken from its owner.
    """
    if path.is_symlink():
        raise UsageError(f"--data-dir {path} is a symbolic link: pass the folder it points to")
    if not path.exists():
        path.mkdir(parents=True)
        return
    if not path.is_dir():
        raise UsageError(f"--data-dir {path} is not a folder")
    st = path.stat()
    if st.st_uid == uid or not any(path.iterdir()):
        return
    raise UsageError(
        f"--data-dir {path} is not empty and not the node user's: as root, stair-es hands the data "
        "folder to the unprivileged node user, and only does so for a new or empty folder (or one "
        "an earlier `engine up` handed over); pass such a folder"
    )
