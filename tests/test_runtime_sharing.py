"""One encoder shared by a service's threads: one onnxruntime session per tower, and the library
log says where it runs (CPU or CUDA)."""

from __future__ import annotations

import logging
import threading

import pytest

from stair_es.demo import shipped_demo_model
from stair_es.runtime import encoder as encoder_module
from stair_es.runtime import load_encoder


def test_eight_threads_share_one_session_per_tower(monkeypatch: pytest.MonkeyPatch) -> None:
    created: list[str] = []
    real = encoder_module.create_session

    def counting(path, *args, **kwargs):  # noqa: ANN001, ANN202 - the real function, counted
        created.append(str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(encoder_module, "create_session", counting)
    encoder = load_encoder(shipped_demo_model(), provider="cpu")
    start = threading.Barrier(8)
    results: list[object] = []
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            start.wait()
            results.append(encoder.encode_texts([f"{i} red circles"])[0])
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(results) == 8
    assert [p.endswith("text.onnx") for p in created] == [True], created  # one text session, not eight


def test_library_log_says_where_the_tower_runs(caplog: pytest.LogCaptureFixture) -> None:
    encoder = load_encoder(shipped_demo_model(), provider="cpu")
    with caplog.at_level(logging.INFO, logger="stair_es"):
        encoder.encode_texts(["a red circle"])
    lines = [r.getMessage() for r in caplog.records if r.name == "stair_es.runtime.encoder"]
    assert any("text tower" in line and "CPUExecutionProvider" in line for line in lines), lines
