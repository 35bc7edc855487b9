"""`stair-es serve` without an engine: thumbnail path safety, parameter parsing, error mapping, the
missing-extra hint, and a server whose engine is down (it answers JSON errors and keeps serving)."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from stair_es.errors import EngineError, ModelError, UsageError
from stair_es.serve.service import http_status, parse_filters, parse_token_map
from stair_es.serve.thumbs import THUMB_SIDE, ThumbError, ThumbnailStore, under_root
from stair_es_cli.main import main


@pytest.fixture()
def tree(tmp_path: Path) -> dict[str, Path]:
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    outside = tmp_path / "secret"
    outside.mkdir()
    Image.new("RGB", (600, 300), (10, 200, 30)).save(root / "sub" / "a.jpg")
    Image.new("RGB", (40, 40), (200, 0, 0)).save(outside / "secret.jpg")
    (root / "notes.jpg").write_text("not an image\n")
    (root / "link-out.jpg").symlink_to(outside / "secret.jpg")
    (root / "link-in.jpg").symlink_to(root / "sub" / "a.jpg")
    # a sibling whose name starts like the root: prefix checks would wrongly accept it
    (tmp_path / "root-evil").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "root-evil" / "x.jpg")
    return {"root": root, "outside": outside, "tmp": tmp_path}


def test_thumbnail_of_a_file_under_the_root(tree):
    store = ThumbnailStore([tree["root"]])
    data = store.thumbnail("k", str(tree["root"] / "sub" / "a.jpg"))
    img = Image.open(__import__("io").BytesIO(data))
    assert img.format == "JPEG" and max(img.size) == THUMB_SIDE
    # a symlink that stays inside the root is fine
    assert store.thumbnail("k2", str(tree["root"] / "link-in.jpg"))


@pytest.mark.parametrize(
    "stored",
    [
        "{root}/../secret/secret.jpg",  # ../ in the stored path
        "{root}/sub/../../secret/secret.jpg",
        "{outside}/secret.jpg",  # an absolute path elsewhere
        "/etc/passwd",
        "{root}/link-out.jpg",  # a symlink inside the root pointing out of it
        "{tmp}/root-evil/x.jpg",  # same prefix, other folder
    ],
)
def test_files_outside_the_roots_are_refused(tree, stored):
    store = ThumbnailStore([tree["root"]])
    path = stored.format(root=tree["root"], outside=tree["outside"], tmp=tree["tmp"])
    with pytest.raises(ThumbError) as err:
        store.thumbnail("k", path)
    assert err.value.status == 403, err.value


def test_missing_non_image_and_unset_paths(tree):
    store = ThumbnailStore([tree["root"]])
    for stored, status in [
        (str(tree["root"] / "gone.jpg"), 404),
        (str(tree["root"] / "notes.jpg"), 415),
        (None, 404),
        ("", 404),
        (str(tree["root"] / "sub"), 404),  # a folder, not a file
    ]:
        with pytest.raises(ThumbError) as err:
            store.thumbnail("k", stored)
        assert err.value.status == status, (stored, err.value)
    with pytest.raises(ThumbError) as err:
        ThumbnailStore([]).thumbnail("k", str(tree["root"] / "sub" / "a.jpg"))
    assert err.value.status == 404 and "--root" in str(err.value)


def test_under_root_is_component_wise(tmp_path):
    root = os.path.realpath(tmp_path / "a")
    assert under_root(root, [root]) and under_root(os.path.join(root, "x"), [root])
    assert not under_root(root + "b", [root]) and not under_root(os.path.dirname(root), [root])


def test_filters_and_token_maps():
    assert parse_filters(["modality=image", "modality=text", "lang!=de"], None) == [
        {"terms": {"modality": ["image", "text"]}},
        {"bool": {"must_not": [{"term": {"lang": "de"}}]}},
    ]
    assert parse_filters([], '{"range": {"width": {"gte": 10}}}') == [{"range": {"width": {"gte": 10}}}]
    for bad in (["novalue"], ["=x"]):
        with pytest.raises(UsageError):
            parse_filters(bad, None)
    for raw in ("{", '"x"'):
        with pytest.raises(UsageError):
            parse_filters([], raw)
    assert parse_token_map('{"red": 1.5, "zero": 0}').to_dict() == {"red": 1.5}
    for raw in ("[1]", '{"a": "x"}', '{"a": true}', '{"a": 0}', "nope"):
        with pytest.raises(UsageError):
            parse_token_map(raw)


def test_errors_map_to_http_statuses():
    assert http_status(UsageError("x")) == 400
    assert http_status(ModelError("x")) == 409
    assert http_status(EngineError("cannot reach a search engine at http://x")) == 503
    assert http_status(EngineError("index 'a' does not exist on OpenSearch")) == 404
    assert http_status(EngineError("searching 'a' failed on OpenSearch 3.8.0 (HTTP 400): bad")) == 400
    assert http_status(EngineError("searching 'a' failed on OpenSearch 3.8.0 (HTTP 404): gone")) == 404
    assert http_status(EngineError("searching 'a' failed on OpenSearch 3.8.0 (HTTP 429): busy")) == 503
    assert http_status(RuntimeError("bug")) == 500


def test_missing_serve_extra_names_the_pip_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # import uvicorn -> ImportError
    result = CliRunner().invoke(main, ["serve", "--url", "http://127.0.0.1:1"])
    assert result.exit_code == 6, result.output
    assert 'pip install "stair-es[serve]"' in result.output
    assert "Traceback" not in result.output


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_engine_down_gives_json_errors_and_the_server_keeps_serving():
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from stair_es.demo import shipped_demo_model
    from stair_es.engine import ConnectionConfig
    from stair_es.serve import SearchService, ServeConfig, create_app

    config = ServeConfig(
        indexes=["photos"],
        connection=ConnectionConfig(urls=(f"http://127.0.0.1:{_closed_port()}",), max_retries=0, timeout=2),
        model_path=shipped_demo_model(),
        provider="cpu",
        max_upload_bytes=1000,
    )
    with TestClient(create_app(SearchService(config)), raise_server_exceptions=False) as client:
        for _ in range(2):  # and again: nothing is cached from a failed attempt
            health = client.get("/api/health")
            assert health.status_code == 503 and "cannot reach a search engine" in health.json()["error"]
            assert list(health.json()["indexes"]) == ["photos"]  # the page still lists what it serves
            search = client.get("/api/search", params={"q": "red circles"})
            assert search.status_code == 503, search.text
            assert "cannot reach" in search.json()["error"] and "Traceback" not in search.text
        # what needs no engine still answers: the page, query explanations, input checks
        page = client.get("/")
        assert page.status_code == 200 and 'id="results"' in page.text
        assert page.headers["x-content-type-options"] == "nosniff"
        assert client.get("/static/app.js").status_code == 200
        assert "/api/search" in client.get("/api/openapi.json").json()["paths"]
        explained = client.get("/api/explain", params={"q": "red circles"}).json()
        assert explained["query"]["tokens"], explained
        assert client.get("/api/search", params={"q": "  "}).json()["error"].startswith("type a query")
        assert client.get("/api/search", params={"q": "x", "index": "other"}).status_code == 404
        assert client.get("/api/search", params={"q": "x", "k": 0}).status_code == 400
        assert client.post("/api/search", content=b"x" * 1001).status_code == 413
        not_image = client.post("/api/explain", content=b"GIF89a but not really")
        assert not_image.status_code == 400 and "not an image" in not_image.json()["error"]
        off = client.get("/api/thumb/abc")  # no --root: thumbnails are off, and it says how to turn them on
        assert off.status_code == 404 and "--root" in off.json()["error"]
        assert client.get("/api/nothing-here").json() == {"error": "Not Found"}


class _SlowEncoder:
    """The real demo encoder, made slow: shows whether encoding blocks the event loop."""

    def __init__(self, encoder, delay: float) -> None:
        self._encoder, self._delay = encoder, delay
        self.model_id, self.vocab_hash = encoder.model_id, encoder.vocab_hash

    def encode_texts(self, texts):
        import time

        time.sleep(self._delay)
        return self._encoder.encode_texts(texts)


def test_queries_are_encoded_off_the_event_loop():
    pytest.importorskip("fastapi")
    import asyncio
    import time

    import httpx

    from stair_es.demo import shipped_demo_model
    from stair_es.engine import ConnectionConfig
    from stair_es.runtime import load_encoder
    from stair_es.serve import SearchService, ServeConfig, create_app

    config = ServeConfig(
        indexes=["photos"],
        connection=ConnectionConfig(urls=(f"http://127.0.0.1:{_closed_port()}",), max_retries=0, timeout=2),
        model_path=None,
    )
    encoder = _SlowEncoder(load_encoder(shipped_demo_model(), provider="cpu"), delay=1.5)
    app = create_app(SearchService(config, encoder=encoder))

    async def scenario() -> tuple[float, int]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://serve") as client:
            start = time.perf_counter()
            slow = asyncio.create_task(client.get("/api/search", params={"q": "red circles"}))
            await asyncio.sleep(0.2)  # the search is now encoding
            page = await client.get("/")
            waited = time.perf_counter() - start
            assert page.status_code == 200
            return waited, (await slow).status_code

    waited, status = asyncio.run(scenario())
    assert waited < 1.0, f"the page waited {waited:.2f}s for an encoding in progress"
    assert status == 503  # encoded, then the engine was not there


def test_the_api_and_the_cli_speak_one_filter_language():
    """The API split on the first '=': ``width>=100`` became a term on a field named 'width>'
    (nothing matched, silently); it now parses like the CLI's --filter."""
    from stair_es_cli.search_cmd import parse_filters as cli_parse_filters

    expressions = ["modality=image", "user.year=2020", "width>=100", "height<50", "mime!=image/gif"]
    api = parse_filters(expressions, '{"exists": {"field": "caption"}}')
    assert api == cli_parse_filters(tuple(expressions), '{"exists": {"field": "caption"}}')
    assert {"range": {"width": {"gte": 100}}} in api and {"term": {"user.year": 2020}} in api
    with pytest.raises(UsageError, match="^filter 'novalue': expected"):
        parse_filters(["novalue"], None)
