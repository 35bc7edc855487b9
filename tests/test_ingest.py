"""Discovery, manifests, sidecars, sharding, hashing and failure classification (no model, no engine)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from PIL import Image

from stair_es.errors import UsageError
from stair_es.ingest import (
    Ledger,
    Progress,
    RunReport,
    classify_decode_error,
    content_hash,
    discover_images,
    file_content_hash,
    load_file,
    read_text_corpus,
    select_shard,
    shard_of,
    walk_image_files,
)
from stair_es.ingest.discover import ImageItem
from stair_es.ingest.testing import png_header_only


def _png(path: Path, colour: tuple[int, int, int] = (200, 10, 10), size: int = 8) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size, size), colour).save(path, format="PNG")
    return path


def test_folder_walk_is_recursive_any_case_sorted_and_ignores_other_files(tmp_path: Path) -> None:
    for rel in ("b/x.PNG", "a/y.jpg", "a/deep/z.JpEg", "top.webp", "a/notes.txt", "a/y.json"):
        target = tmp_path / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(b"x")
    found = [p.relative_to(tmp_path).as_posix() for p, err in walk_image_files(tmp_path) if err is None]
    assert sorted(found) == ["a/deep/z.JpEg", "a/y.jpg", "b/x.PNG", "top.webp"]
    assert found == ["top.webp", "a/y.jpg", "a/deep/z.JpEg", "b/x.PNG"]  # folder by folder, sorted


def test_symlink_loops_are_walked_once(tmp_path: Path) -> None:
    _png(tmp_path / "sub" / "one.png")
    os.symlink("..", tmp_path / "sub" / "up")  # sub/up -> tmp_path (an ancestor)
    os.symlink(tmp_path / "sub", tmp_path / "again")  # a second name for sub
    items = discover_images([tmp_path])
    assert [i.key for i in items] == ["sub/one.png"]  # not again/one.png, not sub/up/sub/one.png


def test_sidecar_caption_and_metadata(tmp_path: Path) -> None:
    _png(tmp_path / "p.png")
    (tmp_path / "p.txt").write_text("a red\nsquare  \n", encoding="utf-8")
    (tmp_path / "p.json").write_text('{"photographer": "ann", "year": 2020}', encoding="utf-8")
    _png(tmp_path / "q.png")
    (tmp_path / "q.txt").write_bytes(b"\xff\xfe not utf-8 \x80")
    by_key = {i.key: i for i in discover_images([tmp_path])}
    assert by_key["p.png"].caption == "a red square"
    assert by_key["p.png"].metadata == {"photographer": "ann", "year": 2020}
    assert by_key["q.png"].kind == "sidecar" and "q.txt" in (by_key["q.png"].error or "")
    assert discover_images([tmp_path], caption_from="none")[0].caption is None


def test_jsonl_manifest_paths_captions_metadata_and_bad_lines(tmp_path: Path) -> None:
    _png(tmp_path / "imgs" / "a.png")
    lines = [
        json.dumps(
            {"image": "imgs/a.png", "caption": ["one", "two  words"], "split": "test", "url": "http://x/a"}
        ),
        "",
        "{not json",
        json.dumps({"caption": "no path"}),
        json.dumps({"path": str(tmp_path / "imgs" / "missing.png"), "id": 7}),
        json.dumps(["a", "list"]),
    ]
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("\n".join(lines) + "\n", encoding="utf-8")
    items = discover_images([manifest])
    assert len(items) == 5  # the blank line is not an item
    good = items[0]
    assert good.path == tmp_path / "imgs" / "a.png" and good.key == "imgs/a.png"
    assert (
        good.caption == "one\ntwo words" and good.url == "http://x/a" and good.metadata == {"split": "test"}
    )
    assert [i.kind for i in items[1:]] == ["manifest", "manifest", None, "manifest"]
    assert items[1].display == "m.jsonl:3" and items[1].error.startswith("invalid JSON")
    assert "no image path" in items[2].error
    assert items[3].id == "7" and items[3].error is None  # a missing file fails later, when read
    assert "expected a JSON object" in items[4].error


def test_csv_manifest(tmp_path: Path) -> None:
    _png(tmp_path / "a.png")
    manifest = tmp_path / "m.csv"
    manifest.write_text('file,caption,label\na.png,"a, red square",cat\nb.png,,dog,extra\n', encoding="utf-8")
    items = discover_images([manifest])
    assert items[0].caption == "a, red square" and items[0].metadata == {"label": "cat"}
    assert items[1].kind == "manifest" and "more fields" in items[1].error


def test_inputs_named_twice_are_one_item_and_typos_are_usage_errors(tmp_path: Path) -> None:
    photo = _png(tmp_path / "a.png")
    assert len(discover_images([tmp_path, photo])) == 1
    with pytest.raises(UsageError, match="no such file"):
        discover_images([tmp_path / "nope"])
    (tmp_path / "doc.pdf").write_bytes(b"%PDF")
    with pytest.raises(UsageError, match="expected a folder"):
        discover_images([tmp_path / "doc.pdf"])
    with pytest.raises(UsageError, match="caption-from"):
        discover_images([tmp_path], caption_from="exif")


def test_shards_partition_the_items_stably() -> None:
    items = [ImageItem(key=f"dir/{i:04d}.jpg", path=None) for i in range(400)]
    shards = [list(select_shard(items, s, 3)) for s in range(3)]
    keys = [i.key for shard in shards for i in shard]
    assert sorted(keys) == sorted(i.key for i in items)  # every item in exactly one shard
    assert all(80 < len(s) < 190 for s in shards)  # roughly even
    assert shard_of("dir/0001.jpg", 3) == shard_of("dir/0001.jpg", 3)
    assert list(select_shard(items, 0, 1)) == items
    with pytest.raises(UsageError, match="shard-id"):
        list(select_shard(items, 3, 3))


def test_load_file_hashes_bytes_and_names_each_problem(tmp_path: Path) -> None:
    photo = _png(tmp_path / "a.png", size=12)
    loaded = load_file(ImageItem("a.png", photo))
    assert loaded.error is None and loaded.content_hash == content_hash(photo.read_bytes())
    assert loaded.content_hash == file_content_hash(photo)
    assert (loaded.width, loaded.height, loaded.mime) == (12, 12, "image/png")

    empty = tmp_path / "e.jpg"
    empty.write_bytes(b"")
    os.symlink(tmp_path / "gone.png", tmp_path / "link.png")
    (tmp_path / "dir.png").mkdir()
    cases = {
        empty: "empty",
        tmp_path / "link.png": "missing",
        tmp_path / "absent.png": "missing",
        tmp_path / "dir.png": "unreadable",
    }
    for path, kind in cases.items():
        result = load_file(ImageItem(path.name, path))
        assert result.kind == kind and result.data is None, (path, result)
    big = load_file(ImageItem("a.png", photo), max_bytes=10)
    assert big.kind == "too_large"


def test_decode_errors_are_classified() -> None:
    assert classify_decode_error("x: refused as a decompression bomb (...)") == "bomb"
    assert classify_decode_error("x: not a recognised image format") == "not_an_image"
    assert classify_decode_error("x: cannot decode (image file is truncated)") == "corrupt"
    assert classify_decode_error("something new") == "decode"
    assert len(png_header_only(50_000, 50_000)) < 200


def test_text_corpus_lines(tmp_path: Path) -> None:
    corpus = tmp_path / "c.jsonl"
    corpus.write_bytes(
        b'{"id": "a", "text": " hello world ", "lang": "en"}\n'
        b'{"text": ""}\n'
        b'{"body": "x"}\n'
        b"\xff\xfe\n"
        b'{"text": "second", "url": "http://t"}\n'
    )
    items = list(read_text_corpus(corpus))
    assert [i.kind for i in items] == [None, "manifest", "manifest", "manifest", None]
    assert items[0].text == "hello world" and items[0].id == "a" and items[0].metadata == {"lang": "en"}
    assert "empty text" in items[1].error and "no string 'text'" in items[2].error
    assert "not UTF-8" in items[3].error and items[4].url == "http://t"


def test_ledger_writes_every_failure_and_counts_them(tmp_path: Path) -> None:
    report = RunReport(index="i", discovered=3, indexed=1)
    seen: list[dict] = []
    ledger = Ledger(report, tmp_path / "f" / "fails.jsonl", seen.append)
    ledger.fail("a.png", "corrupt", "cannot decode", "decode")
    ledger.fail("b.png", "empty", "empty file (0 bytes)", "read")
    ledger.close()
    rows = [json.loads(line) for line in (tmp_path / "f" / "fails.jsonl").read_text().splitlines()]
    assert [r["path"] for r in rows] == ["a.png", "b.png"] == [s["path"] for s in seen]
    assert report.failed == 2 and report.balanced and not report.ok
    assert "1 corrupt, 1 empty" in "\n".join(report.summary_lines())
    # a run without failures truncates the file: it always describes the last run
    Ledger(RunReport(index="i"), tmp_path / "f" / "fails.jsonl").close()
    assert (tmp_path / "f" / "fails.jsonl").read_text() == ""


def test_progress_lines(tmp_path: Path) -> None:
    """Logs get a plain line per interval with rate, ETA and the time split; a terminal gets one tqdm
    line that fits its width (80 columns: no wrapping) with the same facts."""
    import io
    import re

    report = RunReport(index="i", discovered=10, encoded=4, skipped_existing=2, failed=1)
    report.stage_seconds.update(read=1.0, decode_wait=1.0, inference=2.0)
    stream = io.StringIO()
    progress = Progress(report, 10, stream, tty=False, interval=0)
    progress.start -= 7.0  # 7 items in 7 s: 1/s, 3 to go
    progress.update()
    line = stream.getvalue()
    assert line.startswith("7/10 (70%) 1.0 img/s, ETA 3s") and "skipped 2 failed 1" in line, line
    assert "read 25% decode 25% infer 50% index 0%" in line and line.count("\n") == 1
    tty = io.StringIO()
    progress = Progress(report, 10, tty, tty=True, interval=0, width=80)
    progress.start -= 2.0
    for _ in range(3):
        report.encoded += 1
        progress.update()
    progress.close()
    frames = [f for f in re.split(r"[\r\n]", tty.getvalue()) if f.strip()]
    assert frames and all(len(f) <= 80 for f in frames), frames
    assert "\n" not in tty.getvalue().rstrip("\n")
    last = frames[-1]
    assert last.startswith("10/10 100%|") and "ETA" in last and "img/s" in last, last
    assert re.search(r"ETA 00:0\d, rd 25% dec 25% inf 50% idx 0% fail 1$", last), last
    assert float(re.search(r"([\d.]+)img/s", last).group(1)) < 10  # counted from the run's start
