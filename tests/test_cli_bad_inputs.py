"""Hostile or mistaken input to search/explain/engine gets one clear line at once (issue 12):
special files as --image, absurd token weights, a NaN timeout, version strings that are paths."""

from __future__ import annotations

import json
import os
import stat
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from stair_es.errors import UsageError
from stair_es_cli.main import main

REFUSED = "http://127.0.0.1:9"


def invoke(*args: str):
    return CliRunner().invoke(main, list(args), env={"STAIR_ES_URL": REFUSED})


def _unblock_later(fifo: Path, after: float = 8.0) -> None:
    """Open the FIFO's write end after ``after`` s, so code that (wrongly) reads it gets EOF instead
    of hanging the test session forever; correct code never opens it."""

    def work() -> None:
        time.sleep(after)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:  # no reader (yet)
                time.sleep(0.2)

    threading.Thread(target=work, daemon=True).start()


def _special_files(tmp_path: Path) -> dict[str, str]:
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    _unblock_later(fifo)
    folder = tmp_path / "folder.jpg"
    folder.mkdir()
    return {"FIFO": str(fifo), "device": "/dev/null", "folder": str(folder)}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("command", ["search", "explain"])
def test_special_files_as_image_are_refused_at_once(
    command: str, tmp_path: Path, tiny_onnx_model: Path
) -> None:
    for kind, path in _special_files(tmp_path).items():
        start = time.monotonic()
        result = invoke(command, "--image", path, "--model", str(tiny_onnx_model))
        assert time.monotonic() - start < 6, f"{kind}: not refused at once"
        assert result.exit_code == 2, (kind, result.output)
        line = result.output.strip().splitlines()[-1]
        assert "not a regular file" in line or "folder" in line.lower() or "directory" in line.lower(), line
        assert "Traceback" not in result.output


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_image_is_refused(tmp_path: Path, tiny_onnx_model: Path) -> None:
    image = tmp_path / "secret.png"
    image.write_bytes(b"\x89PNG\r\n")
    image.chmod(0)
    result = invoke("explain", "--image", str(image), "--model", str(tiny_onnx_model))
    assert result.exit_code == 2 and "cannot read" in result.output


@pytest.mark.timeout(60)
def test_decoder_refuses_a_fifo_path(tmp_path: Path) -> None:
    from stair_es.runtime.images import ImageDecodeError, decode_image

    fifo = tmp_path / "p.png"
    os.mkfifo(fifo)
    _unblock_later(fifo)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    with pytest.raises(ImageDecodeError, match="not a regular file"):
        decode_image(str(fifo))


@pytest.mark.parametrize(
    ("tokens", "message"),
    [
        ('{"red": 1e39}', "too large"),
        ('{"red": 1, "blue": NaN}', "finite"),
        ('{"red": Infinity}', "finite"),
        ('{"red": -Infinity, "blue": 1}', "finite"),
    ],
)
def test_token_weights_out_of_range_are_refused(tokens: str, message: str) -> None:
    result = invoke("search", "--tokens", tokens)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Warning" not in result.output and "overflow" not in result.output


@pytest.mark.parametrize("value", ["nan", "inf", "-1", "0"])
def test_timeout_must_be_a_positive_finite_number(value: str) -> None:
    result = invoke("search", "--tokens", '{"red": 1}', "--timeout", value)
    assert result.exit_code == 2, result.output
    assert "timeout" in result.output and "cannot reach" not in result.output


@pytest.mark.parametrize("version", ["abc", "3.8.0/../../x", "../3.8.0", "3.8", "3.8.0 ", ""])
def test_engine_version_must_look_like_a_version(version: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("STAIR_ES_CACHE", str(tmp_path / "cache"))
    result = CliRunner().invoke(main, ["engine", "up", "--port", "9519", "--version", version])
    assert result.exit_code == 2, result.output
    assert "version" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "x").exists() and not (tmp_path / "cache" / "homes").exists()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--secure"], "--secure needs Elasticsearch 8.x or 9.x"),
        (
            ["--secure", "--engine", "elasticsearch", "--version", "7.17.29"],
            "--secure needs Elasticsearch 8.x",
        ),
        (["--secure", "--engine", "elasticsearch", "--nodes", "2"], "--secure starts one node"),
        (["--engine", "elasticsearch", "--version", "8.9.0"], "neither rank_features"),
    ],
)
def test_engine_up_refuses_what_it_cannot_start(
    args: list[str], expected: str, tmp_path: Path, monkeypatch
) -> None:
    """One line, exit 2, before anything is downloaded."""
    monkeypatch.setenv("STAIR_ES_CACHE", str(tmp_path / "cache"))
    result = CliRunner().invoke(main, ["engine", "up", "--port", "9519", *args])
    assert result.exit_code == 2, result.output
    assert expected in result.output and "Traceback" not in result.output
    assert not (tmp_path / "cache" / "homes").exists()


def test_get_distribution_validates_versions() -> None:
    from stair_es.local import get_distribution

    for bad in ("abc", "3.8.0/../../x", "7.17.29/../../../etc"):
        for engine in ("opensearch", "elasticsearch"):
            with pytest.raises(UsageError, match="version"):
                get_distribution(engine, bad)


def test_engine_up_hint_names_the_port(tmp_path: Path) -> None:
    from stair_es_cli import engine_cmd

    assert "engine down --port" in engine_cmd.stop_hint(9519)


def test_json_output_is_strict_json() -> None:
    from stair_es_cli.search_cmd import strict_json

    text = strict_json({"score": float("inf"), "x": [float("nan"), 1.5]})
    assert json.loads(text) == {"score": None, "x": [None, 1.5]}
