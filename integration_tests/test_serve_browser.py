"""The search page in a real browser: headless Chromium (Debian's package) driven by Playwright,
against a real `stair-es serve` process on the real engine.

It types a short query, sees result images and token chips, switches the scoring mode, pages,
uploads an image (file chooser and drag and drop) and sees similar images, and sees bad input as
a message on the page. Screenshots are written to ``$STAIR_ES_TEST_ARTIFACTS`` (default
``test-artifacts/`` in the repository). In CI a missing Chromium fails the test: `scripts/run.sh
test` installs it (apt) when it runs as root.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from serve_support import ServedCollection, build_served_collection, free_port, serve_process

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[1]
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",  # as root in a container: the sandbox needs user namespaces we may not have
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 30_000


def _required() -> bool:
    return os.environ.get("STAIR_ES_REQUIRE_INTEGRATION") == "1" or os.environ.get("CI") == "true"


def chromium_path() -> str:
    for candidate in (os.environ.get("STAIR_ES_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    message = "Chromium is not installed: apt-get install -y chromium (scripts/run.sh test does it as root)"
    if _required():
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def artifacts_dir() -> Path:
    path = Path(os.environ.get("STAIR_ES_TEST_ARTIFACTS") or REPO / "test-artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def served(engine_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedCollection]:
    from stair_es.engine import connect

    coll = build_served_collection(engine_url, tmp_path_factory.mktemp("serve-browser"), num_images=48)
    try:
        yield coll
    finally:
        with connect(urls=engine_url) as backend:
            backend.delete_index(coll.index)


@pytest.fixture(scope="module")
def server(served: ServedCollection) -> Iterator[str]:
    port = free_port()
    args = ["serve", "--index", served.index, "--root", str(served.root), "--model", str(served.model)]
    args += ["--provider", "cpu", "--port", str(port), "--max-upload-mb", "1"]
    with serve_process(args, {"STAIR_ES_URL": served.url}, port) as base:
        yield base


@pytest.fixture(scope="module")
def playwright():
    sync_api = pytest.importorskip("playwright.sync_api")
    chromium_path()  # fail (CI) or skip before starting anything
    with sync_api.sync_playwright() as pw:
        yield pw


@contextlib.contextmanager
def browser_tab(pw, url: str):
    """A fresh headless Chromium profile on ``url``; fails on any JavaScript exception."""
    with tempfile.TemporaryDirectory() as profile:
        context = pw.chromium.launch_persistent_context(
            profile,  # a fresh --user-data-dir
            executable_path=chromium_path(),
            headless=True,
            args=CHROMIUM_FLAGS,
            viewport={"width": 1280, "height": 1000},
        )
        context.set_default_timeout(TIMEOUT_MS)
        tab = context.new_page()
        errors: list[str] = []
        tab.on("pageerror", lambda exc: errors.append(str(exc)))
        tab.goto(url)
        yield tab
        context.close()
        assert not errors, errors  # no JavaScript exception on the page


@pytest.fixture(scope="module")
def page(playwright, server: str):
    with browser_tab(playwright, server + "/") as tab:
        yield tab


def _wait_for_results(page, summary_words: str) -> list[str]:
    page.wait_for_function(
        """(words) => {
            const s = document.getElementById('summary').textContent;
            const imgs = [...document.querySelectorAll('[data-testid=hit] img')];
            return s.includes(words) && imgs.length > 0 && !document.body.hasAttribute('aria-busy')
                && imgs.every((img) => img.complete && img.naturalWidth > 0);
        }""",
        arg=summary_words,
    )
    return page.eval_on_selector_all("[data-testid=hit]", "cards => cards.map((c) => c.dataset.id)")


def test_search_page_end_to_end(page, served: ServedCollection):
    page.wait_for_function("() => document.getElementById('status').textContent.includes('documents')")
    assert page.is_hidden("#pager") and page.is_hidden("#query-panel")  # nothing searched yet

    # bad input is a message on the page, not a broken page
    page.click("#go")
    assert "type a query" in page.inner_text("[data-testid=error]")

    # a short text query: images, token chips, and the query's own tokens
    page.fill("#q", "pink")
    page.press("#q", "Enter")
    first = _wait_for_results(page, "mode exact")
    assert len(first) == 20
    assert page.locator("[data-testid=hit-tokens] .chip").count() >= len(first)
    assert page.locator("[data-testid=query-tokens] .chip").count() >= 1
    assert page.is_hidden("[data-testid=error]")
    page.screenshot(path=str(artifacts_dir() / "serve-text-query.png"), full_page=True)

    # switch the scoring mode: same query, two-phase
    page.check("input[value=two-phase]")
    assert _wait_for_results(page, "mode two-phase")

    # next page: ranks continue, no hit repeats
    page.click("#next")
    second = _wait_for_results(page, "hits 21-")
    assert page.inner_text("[data-testid=page-label]") == "page 2"
    assert not set(first) & set(second)
    page.click("#prev")
    assert len(_wait_for_results(page, "hits 1-20")) == 20
    page.check("input[value=exact]")
    _wait_for_results(page, "mode exact")

    # upload an image through the file chooser: similar images come back
    query_image = served.images[5]
    page.set_input_files("#file", str(query_image))
    similar = _wait_for_results(page, "image query")
    assert similar and page.is_visible("#query-image")
    page.screenshot(path=str(artifacts_dir() / "serve-image-query.png"), full_page=True)

    # drag and drop another image onto the drop zone
    page.evaluate(
        """(bytes) => {
            const dt = new DataTransfer();
            dt.items.add(new File([new Uint8Array(bytes)], 'dropped.jpg', { type: 'image/jpeg' }));
            document.getElementById('drop').dispatchEvent(new DragEvent('drop', { dataTransfer: dt, bubbles: true }));
        }""",
        list(served.images[9].read_bytes()),
    )
    assert _wait_for_results(page, "image query")

    # a file that is not an image: the server's message is shown, the page keeps working
    not_image = Path(tempfile.mkdtemp()) / "notes.png"
    not_image.write_text("not an image")
    page.set_input_files("#file", str(not_image))
    page.wait_for_function("() => !document.querySelector('[data-testid=error]').hidden")
    assert "not an image" in page.inner_text("[data-testid=error]")
    page.fill("#q", "pink")
    page.press("#q", "Enter")
    assert _wait_for_results(page, "mode exact") == first


def test_engine_down_is_a_message_on_the_page(playwright, served: ServedCollection):
    """The engine goes away: the page says so, searches answer with the reason, nothing breaks."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    port = free_port(offset=1)  # the other page is still being served
    args = ["serve", "--index", served.index, "--model", str(served.model), "--provider", "cpu"]
    args += ["--port", str(port), "--timeout", "3"]
    with serve_process(args, {"STAIR_ES_URL": f"http://127.0.0.1:{closed}"}, port, healthy=False) as base:
        with browser_tab(playwright, base + "/") as tab:
            tab.wait_for_function(
                "() => document.getElementById('status').textContent.includes('unreachable')"
            )
            assert "cannot reach a search engine" in tab.inner_text("[data-testid=error]")
            assert tab.eval_on_selector("#index", "s => s.options.length") == 1
            tab.fill("#q", "pink")
            tab.press("#q", "Enter")
            tab.wait_for_function("() => !document.body.hasAttribute('aria-busy')")
            assert "cannot reach a search engine" in tab.inner_text("[data-testid=error]")
            assert tab.locator("[data-testid=hit]").count() == 0 and tab.is_hidden("#pager")
            tab.screenshot(path=str(artifacts_dir() / "serve-engine-down.png"))
