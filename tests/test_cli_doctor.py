"""stair-es doctor without an engine: one line per check, hints, exit codes, JSON, tampered models."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from stair_es_cli.doctor_cmd import FAIL, OK, WARN, Report, render
from stair_es_cli.main import main


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No local nodes and no demo model: a cache folder of our own."""
    monkeypatch.setenv("STAIR_ES_CACHE", str(tmp_path / "cache"))
    return tmp_path


def doctor(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(
        main, ["doctor", *args], env={"STAIR_ES_URL": None, "STAIR_ES_MODEL": None, **(env or {})}
    )


def checks(output: str) -> dict[str, dict]:
    return {c["name"]: c for c in json.loads(output)["checks"]}


def test_healthy_model_no_engine_configured(isolated: Path, tiny_onnx_model: Path) -> None:
    result = doctor("--model", str(tiny_onnx_model), "--json")
    assert result.exit_code == 0, result.output
    found = checks(result.stdout)
    for name in (
        "stair-es",
        "numpy",
        "onnxruntime",
        "model",
        "model files",
        "model hashes",
        "model parity",
        "provider",
        "model encode",
    ):
        assert found[name]["status"] == OK, found[name]
    assert "Execution" in found["provider"]["detail"]
    assert found["model hashes"]["detail"] == "3 files match the manifest's sha256"
    assert found["engine"]["status"] == WARN and "stair-es engine up" in found["engine"]["hint"]
    assert found["local nodes"]["status"] == OK
    assert doctor("--model", str(tiny_onnx_model), "--strict").exit_code == 1  # the engine warning


def test_unreachable_engine_fails_with_a_hint(isolated: Path, tiny_onnx_model: Path) -> None:
    result = doctor("--model", str(tiny_onnx_model), "--url", "http://127.0.0.1:9", "--timeout", "2")
    assert result.exit_code == 1
    line = next(x for x in result.output.splitlines() if x.split()[1:2] == ["engine"])
    assert line.startswith("fail") and "cannot reach" in line and "->" in line
    assert result.output.splitlines()[-1].endswith("1 fail")


def test_tampered_graph_and_failed_parity(isolated: Path, tiny_onnx_model: Path) -> None:
    copy = isolated / "model"
    shutil.copytree(tiny_onnx_model, copy)
    with (copy / "text.onnx").open("ab") as handle:
        handle.write(b"\0")
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["parity"]["fp32"]["image"]["passed"] = False
    (copy / "manifest.json").write_text(json.dumps(manifest))
    result = doctor("--model", str(copy), "--json")
    assert result.exit_code == 1
    found = checks(result.stdout)
    assert found["model hashes"]["status"] == FAIL and "text.onnx" in found["model hashes"]["detail"]
    assert found["model parity"]["status"] == FAIL and "fp32/image" in found["model parity"]["detail"]
    assert "model encode" not in found  # no test encode on a model that failed its checks
    assert doctor("--model", str(copy), "--no-hashes", "--json").stdout.count('"model hashes"') == 0


def test_missing_graph_and_missing_model(isolated: Path, tiny_onnx_model: Path) -> None:
    copy = isolated / "model"
    shutil.copytree(tiny_onnx_model, copy)
    (copy / "image.onnx").unlink()
    found = checks(doctor("--model", str(copy), "--json").stdout)
    assert (
        found["model files"]["status"] == FAIL
        and "image graph image.onnx missing" in found["model files"]["detail"]
    )
    found = checks(doctor("--model", str(isolated / "nope"), "--json").stdout)
    assert found["model"]["status"] == FAIL and "stair-es export" in found["model"]["hint"]
    found = checks(doctor("--json").stdout)  # no --model: the demo model shipped with the package
    assert found["model"]["status"] == WARN and "stair-demo-synthetic" in found["model"]["detail"]
    assert "pass --model" in found["model"]["hint"]


def test_report_survives_a_crashing_check_and_renders_one_line_each() -> None:
    report = Report()
    report.add("a", OK, "fine", "ignored hint")
    report.run("boom", lambda: 1 / 0)
    text = render(report)
    assert text.splitlines() == [
        "ok    a     fine",
        "fail  boom  ZeroDivisionError: division by zero",
        "1 ok, 0 warn, 1 fail",
    ]
