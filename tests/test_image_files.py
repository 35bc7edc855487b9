"""One extension set and one folder walker: index, encode, training readers and eval folders find
the same files; one mode table feeds the CLI, the web page and eval."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from stair_es.data.readers import read_sidecar_folder
from stair_es.engine.modes import EVAL_MODES, MODES, TEXT_ONLY_MODES, USER_MODES, user_mode_name
from stair_es.ingest import discover_images
from stair_es.runtime.files import IMAGE_EXTENSIONS, list_image_files


def _tree(root: Path) -> None:
    for rel in ("a/one.png", "a/deep/two.JPG", "three.jfif", "b/four.TIFF", "a/notes.txt", "a/one.json"):
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    os.symlink("..", root / "a" / "up")  # a loop back to the root
    os.symlink(root / "a", root / "again")  # a second name for a/


def test_every_command_finds_the_same_files(tmp_path: Path) -> None:
    _tree(tmp_path)
    expected = ["a/deep/two.JPG", "a/one.png", "b/four.TIFF", "three.jfif"]
    listed = [p.relative_to(tmp_path).as_posix() for p in list_image_files(tmp_path)]  # encode, eval, export
    assert listed == expected  # sorted; no a/up/... or again/... second names
    assert sorted(i.key for i in discover_images([tmp_path])) == expected  # index images
    for rel in expected:
        (tmp_path / rel).with_suffix(".txt").write_text("a caption\n", encoding="utf-8")
    assert sorted(p.image_id for p in read_sidecar_folder(tmp_path)) == expected  # training readers


def test_flat_listing_and_not_a_folder(tmp_path: Path) -> None:
    from stair_es.errors import UsageError

    _tree(tmp_path)
    assert [p.name for p in list_image_files(tmp_path, recursive=False)] == ["three.jfif"]
    with pytest.raises(UsageError, match="not a directory"):
        list_image_files(tmp_path / "three.jfif")
    assert {".jpg", ".jpeg", ".jfif", ".png", ".webp"} <= IMAGE_EXTENSIONS


def test_one_mode_table() -> None:
    from stair_es.serve.service import PAGE_MODES
    from stair_es_cli.eval_cmd import eval_cmd
    from stair_es_cli.search_cmd import MODE_CHOICES

    assert {planner for planner, _ in USER_MODES.values()} == set(MODES)
    assert all(USER_MODES[user_mode_name(m)] == (m, False) for m in MODES)
    assert set(MODE_CHOICES) | {"hybrid"} == set(USER_MODES)
    assert set(PAGE_MODES.values()) <= set(MODES) and TEXT_ONLY_MODES <= set(MODES)
    eval_choices = next(p for p in eval_cmd.params if p.name == "mode").type.choices  # type: ignore[attr-defined]
    assert [USER_MODES[c][0] for c in eval_choices] == list(EVAL_MODES)
