"""A root ``engine up`` hands files to the unprivileged node user without ever following a link
(issue 12, defect 1): links planted in the instance folder, hard links and foreign data folders."""

from __future__ import annotations

import os
import pwd
from pathlib import Path

import pytest

from stair_es.errors import UsageError
from stair_es.local import node, ownership

ROOT = os.geteuid() == 0


def _nobody() -> tuple[int, int]:
    entry = pwd.getpwnam("nobody")
    return entry.pw_uid, entry.pw_gid


@pytest.fixture()
def chowned(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Real paths whose owner the code changed (recorded for any user; done for real as root)."""
    seen: list[str] = []
    real_chown, real_fchown = os.chown, os.fchown

    def chown(path, uid, gid, *, dir_fd=None, follow_symlinks=True):
        target = path if dir_fd is None else os.path.join(os.readlink(f"/proc/self/fd/{dir_fd}"), path)
        seen.append(os.path.realpath(target) if follow_symlinks else os.path.abspath(target))
        if ROOT:
            real_chown(path, uid, gid, dir_fd=dir_fd, follow_symlinks=follow_symlinks)

    def fchown(fd, uid, gid):
        seen.append(os.readlink(f"/proc/self/fd/{fd}"))
        if ROOT:
            real_fchown(fd, uid, gid)

    monkeypatch.setattr(os, "chown", chown)
    monkeypatch.setattr(os, "fchown", fchown)
    if not ROOT:  # a non-root test run cannot chown: pretend it is root so every check runs
        monkeypatch.setattr(os, "geteuid", lambda: os.getuid())
    return seen


def test_chown_tree_never_follows_links(tmp_path: Path, chowned: list[str]) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    victim, victim_dir, linked = outside / "victim", outside / "dir", outside / "hard"
    victim.write_text("s")
    victim.chmod(0o600)
    victim_dir.mkdir()
    (victim_dir / "inner").write_text("x")
    linked.write_text("h")
    instance = tmp_path / "instance"
    (instance / "tmp").mkdir(parents=True)
    (instance / "logs").mkdir()
    (instance / "logs" / "node.log").write_text("log")
    (instance / "tmp" / "l").symlink_to(victim)  # what the node user could plant
    (instance / "tmp" / "d").symlink_to(victim_dir, target_is_directory=True)
    os.link(linked, instance / "tmp" / "hard")  # a hard link to a file that is not the node's
    os.mkfifo(instance / "tmp" / "fifo")

    uid, gid = _nobody()
    ownership._chown_tree(instance, uid, gid)

    outside_paths = {str(p) for p in (victim, victim_dir, victim_dir / "inner", linked)}
    assert not outside_paths & set(chowned), chowned
    assert {str(instance), str(instance / "logs" / "node.log"), str(instance / "tmp")} <= set(chowned)
    if ROOT:
        assert all(p.stat().st_uid == 0 for p in (victim, victim_dir, victim_dir / "inner", linked))
        assert (instance / "logs" / "node.log").stat().st_uid == uid
        assert os.lstat(instance / "tmp" / "l").st_uid == 0  # not even the link itself


def test_data_dir_policy(tmp_path: Path) -> None:
    uid, _gid = _nobody()
    new = tmp_path / "new" / "data"
    ownership.prepare_data_dir(new, uid)  # created
    assert new.is_dir()
    ownership.prepare_data_dir(new, uid)  # empty: fine
    full = tmp_path / "full"
    full.mkdir()
    (full / "victim").write_text("s")
    (full / "l").symlink_to(full / "victim")
    with pytest.raises(UsageError, match="not empty"):
        ownership.prepare_data_dir(full, uid)
    link = tmp_path / "link"
    link.symlink_to(new)
    with pytest.raises(UsageError, match="symbolic link"):
        ownership.prepare_data_dir(link, uid)
    (tmp_path / "file").write_text("x")
    with pytest.raises(UsageError, match="not a folder"):
        ownership.prepare_data_dir(tmp_path / "file", uid)
    ownership.prepare_data_dir(full, full.stat().st_uid)  # already the node user's: handed over before


@pytest.mark.skipif(not ROOT, reason="the data-dir policy applies when root starts a node")
def test_root_engine_up_refuses_a_foreign_data_dir_before_touching_it(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("s")
    victim.chmod(0o600)
    data = tmp_path / "d"
    data.mkdir()
    (data / "l").symlink_to(victim)
    with pytest.raises(UsageError, match="not empty"):
        node.start(port=9519, data_dir=data, root=tmp_path / "cache", log=lambda m: None)
    assert victim.stat().st_uid == 0 and oct(victim.stat().st_mode)[-3:] == "600"
