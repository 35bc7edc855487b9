"""mappings/ on the real node: the schema file the library picks for this engine, PUT over plain
HTTP as curl would (no client library), is an index stair-es indexes into and searches, and the
engine reports the same mapping for it as for an index the library created itself."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from stair_es.engine import ConnectionConfig, Document, Indexer, ModelMeta, Searcher, connect
from stair_es.errors import ModelError
from stair_es.mappings_data import load
from stair_es.sparse import SparseVector

MODEL = ModelMeta("schema-model", "d" * 64)


def _put(url: str, index: str, body: dict[str, Any]) -> None:
    request = urllib.request.Request(
        f"{url}/{index}",
        data=json.dumps(body).encode(),
        method="PUT",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as resp:
        assert json.load(resp)["acknowledged"] is True


@pytest.fixture()
def names(engine_url: str) -> Iterator[list[str]]:
    created: list[str] = []
    yield created
    with connect(ConnectionConfig(urls=engine_url)) as backend:
        for name in created:
            backend.delete_index(name)


def _as_a_user_would(backend: Any, model: ModelMeta | None) -> dict[str, Any]:
    """The template for this node, with the model's values set (``None``: as shipped); the
    analyzer swap is the one the README asks for on nodes without analysis-common."""
    body = load(backend.token_template(backend.token_field_type()))
    if model is not None:
        body["mappings"]["_meta"]["stair_es"].update(model_id=model.model_id, vocab_hash=model.vocab_hash)
    if "analysis-common" not in backend.plugins():
        body["mappings"]["properties"]["caption"]["analyzer"] = "standard"
        body["mappings"]["_meta"]["stair_es"]["caption_analyzer"] = "standard"
    return body


def test_schema_file_put_over_http_is_a_stair_es_index(engine_url: str, names: list[str]) -> None:
    url = engine_url.split(",")[0]
    by_hand, by_library = (f"stair-test-schema-{uuid.uuid4().hex[:8]}-{k}" for k in ("curl", "lib"))
    names += [by_hand, by_library]
    with connect(ConnectionConfig(urls=engine_url)) as backend:
        _put(url, by_hand, _as_a_user_would(backend, MODEL))
        backend.create_index(by_library, MODEL)
        mappings = {
            name: backend.client.indices.get_mapping(index=name)[name]["mappings"]
            for name in (by_hand, by_library)
        }
        for mapping in mappings.values():
            mapping["_meta"]["stair_es"].pop("library_version", None)  # only the library knows it
        assert mappings[by_hand] == mappings[by_library]

        assert backend.check_model(by_hand, MODEL.model_id, MODEL.vocab_hash).model == MODEL
        docs = [
            Document(text_tokens={"red": 1.0, f"n{i}": 0.5 + i / 10}, caption=f"red {i}", id=f"d{i}")
            for i in range(5)
        ]
        report = Indexer(backend, by_hand).index_documents(docs)
        assert (report.indexed, report.failed) == (5, 0)
        backend.refresh(by_hand)
        result = Searcher(backend, by_hand).search(
            tokens=SparseVector.from_dict({"red": 1.0, "n4": 1.0}), target="text", k=3
        )
        assert [h.id for h in result.hits][0] == "d4"


def test_schema_file_as_shipped_is_refused_in_one_line(engine_url: str, names: list[str]) -> None:
    url = engine_url.split(",")[0]
    name = f"stair-test-schema-{uuid.uuid4().hex[:8]}-unset"
    names.append(name)
    with connect(ConnectionConfig(urls=engine_url)) as backend:
        _put(url, name, _as_a_user_would(backend, None))
        with pytest.raises(ModelError, match="created from a mappings/ template without its model"):
            backend.check_model(name, MODEL.model_id, MODEL.vocab_hash)
