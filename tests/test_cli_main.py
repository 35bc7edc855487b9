from __future__ import annotations

import subprocess
import sys

from click.testing import CliRunner

from stair_es_cli.main import COMMANDS, main


def test_help_lists_available_commands() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    assert "engine" in result.output


def test_help_is_lazy() -> None:
    """--help must not import torch, onnxruntime or the engine clients (nor must the group's own
    callback, which runs before a sub-command's --help)."""
    code = (
        "import sys; from click.testing import CliRunner; from stair_es_cli.main import main;"
        "CliRunner().invoke(main, ['--help']); CliRunner().invoke(main, ['engine', '--help']);"
        "heavy=[m for m in ('torch','onnxruntime','opensearchpy','elasticsearch','transformers') if m in sys.modules];"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_every_registered_command_resolves_to_a_click_command() -> None:
    import importlib
    import importlib.util

    import click

    for name, (module, attr, _help) in COMMANDS.items():
        if importlib.util.find_spec(f"stair_es_cli.{module}") is None:
            continue
        assert isinstance(getattr(importlib.import_module(f"stair_es_cli.{module}"), attr), click.Command), (
            name
        )


def test_library_errors_become_one_line_and_exit_code(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("STAIR_ES_CACHE", str(tmp_path))
    result = CliRunner().invoke(main, ["engine", "logs"])
    assert result.exit_code == 2
    assert result.output.strip().startswith("error: no local node found")
    assert len(result.output.strip().splitlines()) == 1


def test_engine_status_without_nodes(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("STAIR_ES_CACHE", str(tmp_path))
    result = CliRunner().invoke(main, ["engine", "status"])
    assert result.exit_code == 0
    assert "no local node" in result.output


def test_cli_bomb_guard_default_matches_the_runtime() -> None:
    from stair_es.runtime.images import DEFAULT_MAX_PIXELS
    from stair_es_cli.common import DEFAULT_MAX_IMAGE_PIXELS

    assert DEFAULT_MAX_IMAGE_PIXELS == DEFAULT_MAX_PIXELS


def _python(code: str) -> str:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()


def test_importing_the_library_leaves_warning_filters_alone() -> None:
    """Only the CLI (a process stair-es owns) hides Pillow's decompression-bomb warning."""
    library = _python(
        "import warnings; import stair_es.runtime.images; from PIL import Image;"
        "print(sum(f[2] is Image.DecompressionBombWarning or (f[1] is not None and 'Image size' in f[1].pattern)"
        " for f in warnings.filters))"
    )
    assert library == "0"
    cli = _python(
        "import warnings; from click.testing import CliRunner; from stair_es_cli.main import main;"
        "CliRunner().invoke(main, ['engine', '--help']); import stair_es.process as p;"
        "print(sum(f[1] is not None and f[1].pattern == p.BOMB_WARNING for f in warnings.filters))"
    )
    assert cli == "1"
