"""One table of settings (stair_es.engine.config): the library and every CLI command read the same
environment variables, with the same defaults."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from stair_es.engine.config import ConnectionConfig
from stair_es_cli.main import main


class _Stop(Exception):
    """Raised by the fake connect once it has seen the configuration."""


@pytest.fixture
def seen(monkeypatch: pytest.MonkeyPatch) -> list[ConnectionConfig]:
    import stair_es.engine

    configs: list[ConnectionConfig] = []

    def fake_connect(config: ConnectionConfig | None = None, **_: Any) -> Any:
        assert config is not None
        configs.append(config)
        raise _Stop

    monkeypatch.setattr(stair_es.engine, "connect", fake_connect)
    return configs


ENV = {
    "STAIR_ES_URL": "http://127.0.0.1:1",
    "STAIR_ES_DISTRIBUTION": "elasticsearch",
    "STAIR_ES_MAX_RETRIES": "9",
    "STAIR_ES_TIMEOUT": "4.5",
}


def _commands(tmp_path: Path) -> list[list[str]]:
    texts = tmp_path / "texts.jsonl"
    texts.write_text('{"id": "a", "text": "a red bicycle"}\n')
    return [
        ["search", "a red bicycle"],
        ["alias"],
        ["index", "texts", str(texts)],
        ["index", "images", str(tmp_path)],
    ]


def test_every_command_reads_the_environment_as_the_library_does(
    tmp_path: Path, seen: list[ConnectionConfig]
) -> None:
    library = ConnectionConfig.from_env(ENV)
    assert (library.distribution, library.max_retries, library.timeout) == ("elasticsearch", 9, 4.5)
    for args in _commands(tmp_path):
        result = CliRunner().invoke(main, args, env=ENV)
        assert isinstance(result.exception, _Stop), (args, result.output)
        assert seen[-1] == library, args


def test_flags_win_over_the_environment(tmp_path: Path, seen: list[ConnectionConfig]) -> None:
    args = [
        "search",
        "q",
        "--url",
        "http://127.0.0.1:2",
        "--max-retries",
        "1",
        "--distribution",
        "opensearch",
    ]
    result = CliRunner().invoke(main, args, env=ENV)
    assert isinstance(result.exception, _Stop), result.output
    assert (seen[-1].urls, seen[-1].max_retries, seen[-1].distribution) == (
        ("http://127.0.0.1:2",),
        1,
        "opensearch",
    )


def test_the_table_feeds_flags_help_and_readme() -> None:
    from stair_es.engine.config import (
        CONNECTION_SETTINGS,
        DEFAULT_IMAGE_INDEX,
        DEFAULT_TEXT_INDEX,
        OTHER_SETTINGS,
    )

    help_text = CliRunner().invoke(main, ["search", "--help"], terminal_width=200).output
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    for setting in CONNECTION_SETTINGS:
        assert setting.flag in help_text and f"env {setting.env}" in help_text, setting
    for setting in CONNECTION_SETTINGS + OTHER_SETTINGS:
        assert f"`{setting.env}`" in readme, setting.env
    assert f"`{DEFAULT_IMAGE_INDEX}`" in readme and f"`{DEFAULT_TEXT_INDEX}`" in readme


def test_local_port_default_is_the_local_engines() -> None:
    from stair_es.engine.config import LOCAL_PORT
    from stair_es.local.node import DEFAULT_PORT

    assert LOCAL_PORT.default == DEFAULT_PORT


def test_bad_port_variable_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STAIR_ES_URL", raising=False)
    result = CliRunner().invoke(main, ["alias"], env={"STAIR_ES_URL": None, "STAIR_ES_PORT": "nine"})
    assert result.exit_code == 2 and "STAIR_ES_PORT='nine' is not a number" in result.output, result.output
