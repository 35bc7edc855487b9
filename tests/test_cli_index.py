"""``stair-es index images|texts`` through click's CliRunner with the tiny model: --dry-run (no engine),
exit codes, --json, the failures file, shards, and one clear line when the engine is unreachable.
Indexing into a real engine is in integration_tests/test_cli_index.py."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

from stair_es.ingest.testing import MessyFolder, make_messy_folder
from stair_es_cli.index_cmd import EXIT_SOME_FAILED, SHOWN_FAILURES
from stair_es_cli.main import main


@pytest.fixture(scope="module")
def messy(tmp_path_factory: pytest.TempPathFactory) -> MessyFolder:
    return make_messy_folder(tmp_path_factory.mktemp("cli-index") / "photos", num_images=8)


def _invoke(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_help_lists_subcommands_and_exit_codes() -> None:
    result = _invoke("index", "--help")
    assert result.exit_code == 0 and "images" in result.output and "texts" in result.output
    images_help = _invoke("index", "images", "--help").output
    for flag in (
        "--index",
        "--failures",
        "--batch-size",
        "--decode-workers",
        "--bulk-docs",
        "--bulk-bytes",
        "--provider",
        "--shard-id",
        "--num-shards",
        "--caption-from",
        "--recreate",
        "--json",
    ):
        assert flag in images_help, flag
    assert f"{EXIT_SOME_FAILED}   the run finished but some items failed" in images_help
    assert "STAIR_ES_URL" in images_help


def test_images_dry_run_json_summary_and_failures(
    tiny_onnx_model: Path, messy: MessyFolder, tmp_path: Path
) -> None:
    failures = tmp_path / "failures.jsonl"
    result = _invoke(
        "index", "images", str(messy.root), "--model", str(tiny_onnx_model), "--dry-run", "--json",
        "--failures", str(failures), "--provider", "cpu", "--batch-size", "4", "--decode-workers", "2",
    )  # fmt: skip
    assert result.exit_code == EXIT_SOME_FAILED, result.output
    summary = json.loads(result.stdout)
    assert summary["discovered"] == messy.discovered and summary["balanced"]
    assert (summary["indexed"], summary["skipped"], summary["failed"]) == (
        len(messy.good),
        len(messy.duplicates),
        len(messy.bad),
    )
    assert summary["failed_by_kind"] == dict(Counter(messy.bad.values()))
    assert summary["dry_run"] and summary["provider"] == "CPUExecutionProvider"
    assert len(failures.read_text().splitlines()) == len(messy.bad)
    # one stderr line per failure, then the summary with a pointer to the file
    failed_lines = [line for line in result.stderr.splitlines() if line.startswith(f"failed: {messy.root}")]
    assert len(failed_lines) == len(messy.bad)
    assert f"one line each in {failures}" in result.stderr


def test_all_good_exits_zero_and_shards(tiny_onnx_model: Path, messy: MessyFolder) -> None:
    good_dir = messy.root / "a"
    counts = []
    for shard in range(2):
        result = _invoke(
            "index", "images", str(good_dir), "--model", str(tiny_onnx_model), "--dry-run", "--json",
            "--shard-id", str(shard), "--num-shards", "2", "--no-progress",
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        summary = json.loads(result.stdout)
        assert summary["failed"] == 0 and summary["shard"] == f"{shard}/2"
        counts.append(summary["discovered"])
    assert sum(counts) == len([p for p in messy.good if p.parent == good_dir])
    bad_shard = _invoke("index", "images", str(good_dir), "--model", str(tiny_onnx_model), "--dry-run",
                        "--shard-id", "2", "--num-shards", "2")  # fmt: skip
    assert bad_shard.exit_code == 2 and "--shard-id must be in [0, 1]" in bad_shard.stderr


def test_texts_dry_run(tiny_onnx_model: Path, tmp_path: Path) -> None:
    corpus = tmp_path / "c.jsonl"
    corpus.write_text('{"text": "a red circle"}\n{"id": 5, "text": "a blue square"}\n{"nope": 1}\n')
    result = _invoke("index", "texts", str(corpus), "--model", str(tiny_onnx_model), "--dry-run", "--json")
    assert result.exit_code == EXIT_SOME_FAILED
    summary = json.loads(result.stdout)
    assert (summary["indexed"], summary["failed"], summary["kind"]) == (2, 1, "texts")
    assert "c.jsonl:3: no string 'text'" in result.stderr


def test_unreachable_engine_is_one_line_and_exit_3(tiny_onnx_model: Path, messy: MessyFolder) -> None:
    result = _invoke(
        "index", "images", str(messy.root / "a"), "--model", str(tiny_onnx_model),
        "--url", "http://127.0.0.1:9", "--timeout", "2",
    )  # fmt: skip
    assert result.exit_code == 3
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "cannot reach a search engine" in errors[0]


def test_missing_path_is_a_usage_error(tiny_onnx_model: Path, tmp_path: Path) -> None:
    result = _invoke("index", "images", str(tmp_path / "nope"), "--model", str(tiny_onnx_model), "--dry-run")
    assert result.exit_code == 2 and "no such file or folder" in result.stderr


def test_many_failures_are_counted_on_stderr_and_all_written(tiny_onnx_model: Path, tmp_path: Path) -> None:
    folder = tmp_path / "broken"
    folder.mkdir()
    for i in range(25):
        (folder / f"{i:02d}.jpg").write_bytes(b"")
    failures = tmp_path / "f.jsonl"
    result = _invoke("index", "images", str(folder), "--model", str(tiny_onnx_model), "--dry-run",
                     "--failures", str(failures))  # fmt: skip
    assert result.exit_code == EXIT_SOME_FAILED
    shown = [line for line in result.stderr.splitlines() if line.startswith(f"failed: {folder}")]
    assert len(shown) == SHOWN_FAILURES
    assert f"more failures are not shown here; all are in {failures}" in result.stderr
    assert "25 failed, of 25 images" in result.stderr
    assert len(failures.read_text().splitlines()) == 25


def test_recreate_with_shards_is_refused(tiny_onnx_model: Path, tmp_path: Path) -> None:
    result = _invoke("index", "images", str(tmp_path), "--model", str(tiny_onnx_model), "--dry-run",
                     "--recreate", "--num-shards", "2")  # fmt: skip
    assert result.exit_code == 2 and "--recreate with --num-shards" in result.stderr


def test_batch_size_auto_is_measured_and_bad_values_refused(
    tiny_onnx_model: Path, messy: MessyFolder
) -> None:
    result = _invoke(
        "index", "images", str(messy.root / "a"), "--model", str(tiny_onnx_model), "--dry-run", "--json",
        "--provider", "cpu", "--batch-size", "auto", "--no-progress",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    tuned = [line for line in result.stderr.splitlines() if line.startswith("batch size ")]
    assert len(tuned) == 1 and "(measured " in tuned[0] and "/s" in tuned[0]
    for bad in ("0", "big", "-3"):
        refused = _invoke("index", "images", str(messy.root), "--batch-size", bad, "--dry-run")
        assert refused.exit_code == 2 and "neither a positive integer nor 'auto'" in refused.stderr


def test_ray_option_refuses_a_path_as_the_address(tiny_onnx_model: Path, messy: MessyFolder) -> None:
    """`--ray photos/` would read the folder as a cluster address: one line that says how to write it."""
    result = _invoke("index", "images", "--ray", str(messy.root), str(messy.root / "a"), "--dry-run",
                     "--model", str(tiny_onnx_model))  # fmt: skip
    assert result.exit_code == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "--ray=ADDRESS" in errors[0] and "Traceback" not in result.output


def test_ray_without_the_extra_is_exit_6(tiny_onnx_model: Path, messy: MessyFolder) -> None:
    """Where Ray is not installed (simulated by blocking its import in a fresh interpreter)."""
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['ray'] = None; from stair_es_cli.main import main; "
        f"main(['index', 'images', {str(messy.root / 'a')!r}, '--model', {str(tiny_onnx_model)!r}, "
        "'--dry-run', '--ray=127.0.0.1:1', '--no-progress'])"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 6, done.stderr
    assert 'pip install "stair-es[ray]"' in done.stderr and "Traceback" not in done.stderr
