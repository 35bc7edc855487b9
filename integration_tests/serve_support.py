"""A small indexed image collection for the `stair-es serve` tests, built with the shipped demo model.

The tests check that results come back and how the API and page behave, never which images the
demo model ranks first (it is retrained from time to time); exact assertions use token queries.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from click.testing import CliRunner


@dataclass
class ServedCollection:
    url: str
    index: str
    root: Path  # the folder that was indexed (thumbnails come only from below it)
    model: Path
    images: list[Path]


def build_served_collection(engine_url: str, workdir: Path, num_images: int) -> ServedCollection:
    from stair_es.demo import build_collection, shipped_demo_model
    from stair_es_cli.main import main

    collection = build_collection(workdir / "collection", num_images=num_images, seed=77)
    root = collection / "images"
    for broken in ("broken-truncated.jpg", "not-really-an-image.png"):
        (root / broken).unlink()  # the demo's bad-input files are not what these tests are about
    index = f"stair-serve-test-{uuid.uuid4().hex[:8]}"
    model = shipped_demo_model()
    args = ["index", "images", str(root), "--index", index, "--model", str(model), "--no-progress"]
    result = CliRunner().invoke(main, [*args, "--url", engine_url, "--provider", "cpu"])
    assert result.exit_code == 0, result.output
    images = sorted(root.glob("*.jpg"))
    assert len(images) == num_images
    return ServedCollection(engine_url, index, root, model, images)


def free_port(offset: int = 0) -> int:
    """STAIR_ES_SERVE_TEST_PORT + offset when set (a fixed block on shared machines), else a free port."""
    import os
    import socket

    wanted = os.environ.get("STAIR_ES_SERVE_TEST_PORT")
    if wanted:
        return int(wanted) + offset
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve_process(args: list[str], env: dict[str, str], port: int, healthy: bool = True) -> Iterator[str]:
    """`stair-es serve ARGS` in its own process, as a user starts it; yields its base URL once
    /api/health answers (and says ok, unless ``healthy`` is False), and stops it (by its pid)
    afterwards. A traceback in its log fails the test."""
    import json
    import os
    import subprocess
    import sys
    import tempfile
    import time
    import urllib.error
    import urllib.request

    import pytest

    log = tempfile.NamedTemporaryFile("w+", suffix=".log", delete=False)  # noqa: SIM115 - read at the end
    cmd = [sys.executable, "-m", "stair_es_cli.main", *args]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **env})
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(base + "/api/health", timeout=5) as resp:
                    if json.loads(resp.read())["ok"]:
                        break
            except urllib.error.HTTPError as exc:
                if not healthy and exc.code == 503:
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                pytest.fail(f"stair-es serve did not come up:\n{log.read()[-3000:]}", pytrace=False)
            time.sleep(0.3)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.seek(0)
        server_log = log.read()
        log.close()
        os.unlink(log.name)
    assert "Traceback" not in server_log, server_log[-3000:]
