"""Repository-wide pytest policy: in CI an integration test that did not run is a failure.

``scripts/run.sh test`` (and so ``.ci/run``) sets ``STAIR_ES_REQUIRE_INTEGRATION=1``: the session
then fails when integration tests were skipped or none ran, so a missing engine can never pass.
"""

from __future__ import annotations

import os

import pytest

_integration = {"passed": 0, "skipped": 0, "failed": 0}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if "integration" not in report.keywords:
        return
    if report.when == "call" and report.passed:
        _integration["passed"] += 1
    elif report.skipped:
        _integration["skipped"] += 1
    elif report.failed:
        _integration["failed"] += 1


def pytest_collectreport(report: pytest.CollectReport) -> None:
    """A module skipped at import (``importorskip``) never reaches logreport: count it here."""
    if report.skipped and "integration_tests" in str(report.nodeid):
        _integration["skipped"] += 1


def _required() -> bool:
    return os.environ.get("STAIR_ES_REQUIRE_INTEGRATION") == "1" or os.environ.get("CI") == "true"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if not _required() or session.config.option.collectonly:
        return
    ran_integration_dir = (
        any("integration_tests" in str(a) for a in session.config.args) or not session.config.args
    )
    problems = []
    if _integration["skipped"]:
        problems.append(f"{_integration['skipped']} integration test(s) were skipped")
    if ran_integration_dir and sum(_integration.values()) == 0 and session.testscollected:
        problems.append("no integration test ran")
    if problems:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter:
            reporter.write_line(f"ERROR: {'; '.join(problems)} (CI requires a real engine)", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter) -> None:
    if sum(_integration.values()):
        terminalreporter.write_line(
            "integration tests against a real engine: "
            f"{_integration['passed']} passed, {_integration['failed']} failed, {_integration['skipped']} skipped"
        )


@pytest.fixture(scope="session")
def tiny_onnx_model(tmp_path_factory: pytest.TempPathFactory):
    """A tiny STAIR model (random weights, local WordPiece vocabulary) exported to ONNX, built once
    per session: what CLI and pipeline tests encode with. Needs the train extra (torch)."""
    pytest.importorskip("torch")
    from stair_es.export import export_model
    from stair_es.model.testing import save_tiny_model

    root = tmp_path_factory.mktemp("tiny-onnx")
    model_dir = save_tiny_model(root / "model")
    return export_model(model_dir, root / "onnx").root
