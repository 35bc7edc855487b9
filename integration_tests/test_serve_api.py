"""The `stair-es serve` JSON API on a real engine with the real (shipped demo) encoder, in process.

Covers each query kind, the three page modes, paging, filters, explain, thumbnails (only for
documents of a served index whose file is under a served root) and bad input.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image
from serve_support import ServedCollection, build_served_collection

fastapi = pytest.importorskip("fastapi")


@pytest.fixture(scope="module")
def served(engine_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedCollection]:
    from stair_es.engine import Document, Indexer, ModelMeta, connect
    from stair_es.runtime import Manifest

    work = tmp_path_factory.mktemp("serve-api")
    coll = build_served_collection(engine_url, work, num_images=30)
    secret = work / "secret" / "secret.jpg"
    secret.parent.mkdir()
    Image.new("RGB", (32, 32), (250, 0, 0)).save(secret)
    (coll.root / "link-out.jpg").symlink_to(secret)
    backend = connect(urls=engine_url)
    manifest = Manifest.read(coll.model)
    other = coll.index.replace("test", "other")
    backend.create_index(other, ModelMeta(manifest.model_id, manifest.vocab_hash))
    tokens = {"red": 1.0}
    sneaky = [
        Document(image_tokens=tokens, path=str(secret), id="outside-absolute"),
        Document(image_tokens=tokens, path=f"{coll.root}/../secret/secret.jpg", id="outside-dotdot"),
        Document(image_tokens=tokens, path=str(coll.root / "link-out.jpg"), id="outside-symlink"),
    ]
    assert Indexer(backend, coll.index).index_documents(sneaky).indexed == 3
    inside = Document(image_tokens=tokens, path=str(coll.images[0]), id="other-index-doc")
    assert Indexer(backend, other).index_documents([inside]).indexed == 1
    coll.other_index = other  # type: ignore[attr-defined]
    try:
        yield coll
    finally:
        for name in (coll.index, other):
            backend.delete_index(name)
        backend.close()


@pytest.fixture(scope="module")
def client(served: ServedCollection):
    from fastapi.testclient import TestClient

    from stair_es.engine import ConnectionConfig
    from stair_es.serve import SearchService, ServeConfig, create_app

    config = ServeConfig(
        indexes=[served.index],
        connection=ConnectionConfig(urls=(served.url,)),
        model_path=served.model,
        roots=[served.root],
        provider="cpu",
        max_upload_bytes=256 * 1024,
    )
    with TestClient(create_app(SearchService(config)), raise_server_exceptions=False) as test_client:
        yield test_client


def _ok(response) -> dict:
    assert response.status_code == 200, response.text
    return response.json()


def test_health(client, served):
    health = _ok(client.get("/api/health"))
    assert health["ok"] and health["thumbnails"]
    assert health["indexes"][served.index]["docs"] == len(served.images) + 3


def test_text_search_returns_hits_with_thumbnails_and_matched_tokens(client, served):
    data = _ok(client.get("/api/search", params={"q": "pink", "k": 5}))
    assert data["query"]["kind"] == "text" and data["query"]["tokens"]
    assert 1 <= len(data["hits"]) <= 5
    for hit in data["hits"]:
        assert hit["matched"], hit
        assert hit["explained_score"] == pytest.approx(hit["score"], rel=1e-3)
        assert sum(m["share"] for m in hit["matched"]) == pytest.approx(1.0)
        assert "path" not in hit["source"]  # no server paths leave the server
        if hit["id"].startswith("outside-"):
            continue
        thumb = client.get(hit["thumb"])
        assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
        Image.open(io.BytesIO(thumb.content)).verify()


def test_token_query_is_exact_and_modes_agree(client):
    token = _ok(client.get("/api/explain", params={"q": "pink"}))["query"]["tokens"][0]["token"]
    params = {"tokens": f'{{"{token}": 2.0}}', "k": 8}
    exact = _ok(client.get("/api/search", params=params))
    assert exact["hits"]
    for hit in exact["hits"]:
        assert [m["token"] for m in hit["matched"]] == [token]
        assert hit["score"] == pytest.approx(2.0 * hit["matched"][0]["doc_weight"], rel=1e-6)
    two_phase = _ok(client.get("/api/search", params={**params, "mode": "two-phase"}))
    assert [h["score"] for h in two_phase["hits"]] == pytest.approx([h["score"] for h in exact["hits"]])
    hybrid = _ok(client.get("/api/search", params={"q": "pink squares", "mode": "hybrid", "k": 5}))
    assert hybrid["mode"] == "hybrid" and hybrid["hits"]
    refused = client.get("/api/search", params={**params, "mode": "hybrid"})
    assert refused.status_code == 400 and "needs a text query" in refused.json()["error"]


def test_paging_is_disjoint_and_says_when_it_ends(client, served):
    seen: list[str] = []
    page = 1
    while True:
        data = _ok(
            client.get(
                "/api/search", params={"tokens": '{"one": 1, "two": 1, "three": 1}', "k": 7, "page": page}
            )
        )
        assert [h["rank"] for h in data["hits"]] == list(
            range((page - 1) * 7 + 1, (page - 1) * 7 + 1 + len(data["hits"]))
        )
        seen += [h["id"] for h in data["hits"]]
        if not data["has_more"]:
            break
        page += 1
    assert page >= 2 and len(seen) == len(set(seen))


def test_image_upload_finds_similar_images(client, served):
    data = _ok(client.post("/api/search", params={"k": 5}, content=served.images[3].read_bytes()))
    assert data["query"]["kind"] == "image" and data["query"]["token_count"] > 0
    assert data["hits"] and all(hit["matched"] for hit in data["hits"])
    explained = _ok(client.post("/api/explain", params={"top": 5}, content=served.images[3].read_bytes()))
    assert len(explained["query"]["tokens"]) <= 5


def test_filters(client):
    params = {"tokens": '{"one": 1, "two": 1}', "k": 5}
    assert _ok(client.get("/api/search", params={**params, "filter": "modality=image+text"}))["hits"]
    assert _ok(client.get("/api/search", params={**params, "filter": "modality=nothing"}))["hits"] == []
    bad = client.get("/api/search", params={**params, "filter": "width=not-a-number"})
    assert bad.status_code == 400 and "Traceback" not in bad.text


def test_explain_a_document(client):
    hit = _ok(client.get("/api/search", params={"q": "pink", "k": 1}))["hits"][0]
    data = _ok(client.get("/api/explain", params={"q": "pink", "id": hit["id"], "top": 10}))
    assert data["document"]["fields"]["image_tokens"]
    assert data["match"]["score"] > 0
    assert client.get("/api/explain", params={"id": "no-such-doc"}).status_code == 404


@pytest.mark.parametrize("doc_id", ["outside-absolute", "outside-dotdot", "outside-symlink"])
def test_thumbnails_never_leave_the_roots(client, doc_id):
    response = client.get(f"/api/thumb/{doc_id}")
    assert response.status_code == 403, response.text
    assert response.headers["content-type"].startswith("application/json")


def test_thumbnail_ids_cannot_name_files_or_other_indexes(client, served):
    other = served.other_index  # type: ignore[attr-defined]
    assert client.get("/api/thumb/other-index-doc", params={"index": other}).status_code == 404
    assert client.get("/api/thumb/other-index-doc").status_code == 404  # not in the served index
    secret_path = os.path.abspath(served.images[0])
    for raw in ("..%2F..%2Fetc%2Fpasswd", "%2Fetc%2Fpasswd", "..", "%2E%2E", secret_path.replace("/", "%2F")):
        response = client.get(f"/api/thumb/{raw}")
        assert response.status_code == 404, (raw, response.status_code)
        assert not response.headers["content-type"].startswith("image/")


def test_bad_input_gets_one_clear_json_error(client, served, tmp_path: Path):
    cases = [
        (client.get("/api/search", params={"q": ""}), 400, "type a query"),
        (client.get("/api/search"), 400, "type a query"),
        (client.get("/api/search", params={"q": "x", "index": "nope"}), 404, "unknown index"),
        (client.get("/api/search", params={"q": "x", "mode": "fast"}), 400, "mode must be one of"),
        (client.get("/api/search", params={"q": "x", "page": 2000}), 400, "paging stops"),
        (client.post("/api/search", content=b"x" * (256 * 1024 + 1)), 413, "larger than"),
        (client.post("/api/search", content=b"this is text"), 400, "not an image"),
        (client.post("/api/search", content=b""), 400, "empty"),
        (client.post("/api/search", files={"image": ("a.jpg", b"x")}), 415, "request body"),
        (client.get("/api/search", params={"tokens": "{oops"}), 400, "not valid JSON"),
    ]
    for response, status, words in cases:
        assert response.status_code == status, (words, response.text)
        body = response.json()
        assert words in body["error"] and "Traceback" not in response.text
    assert _ok(client.get("/api/health"))["ok"]  # still serving
