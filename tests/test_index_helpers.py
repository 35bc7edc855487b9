"""Pure helpers behind the index-management features: close index names, model slugs, the fields a
filter tests, a mapping's fields, the --text-field check, the local model registry, token files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stair_es.engine.aliases import IndexNotFoundError, model_slug, not_found
from stair_es.engine.mappings import field_paths
from stair_es.engine.query import filter_fields
from stair_es.errors import EngineError, UsageError


def test_missing_index_suggests_close_names() -> None:
    names = {"photos-v1": ["photos"], "captions": [], "stair-images": []}
    error = not_found("phtos", names, "OpenSearch 3.8.0")
    assert isinstance(error, UsageError) and isinstance(error, EngineError) and error.exit_code == 2
    assert "did you mean 'photos'" in str(error) and error.status == 404
    assert "indexes here: captions, photos, photos-v1, stair-images" in str(not_found("zzz", names, "x"))
    assert "no indexes yet" in str(not_found("zzz", {}, "x"))
    assert isinstance(error, IndexNotFoundError)


def test_model_slug_is_a_valid_index_suffix() -> None:
    assert model_slug("Stair-Demo 2/ONNX") == "stair-demo-2-onnx"
    assert model_slug("___") == "model"


def test_filter_fields_and_mapping_fields() -> None:
    clauses = [
        {"term": {"modality": "image"}},
        {"bool": {"must_not": [{"range": {"user.year": {"gte": 2000}, "boost": 2}}]}},
        {"exists": {"field": "caption"}},
        {"user.split": ["train", "test"]},  # shorthand
    ]
    assert filter_fields(clauses) == {"modality", "user.year", "caption", "user.split"}
    mapping = {
        "properties": {
            "caption": {"type": "text", "fields": {"keyword": {"type": "keyword"}}},
            "user": {"type": "object", "properties": {"split": {"type": "keyword"}}},
        }
    }
    assert field_paths(mapping) == {"caption", "caption.keyword", "user", "user.split"}


def test_text_field_check_names_the_fields_found(tmp_path: Path) -> None:
    from stair_es.ingest.discover import check_text_field

    corpus = tmp_path / "c.jsonl"
    corpus.write_text('not json\n{"caption": "a", "id": 1}\n{"caption": "b"}\n')
    with pytest.raises(
        UsageError, match=r"no 'text' field in the first 2 records \(fields found: caption, id\)"
    ):
        check_text_field(corpus, "text")
    check_text_field(corpus, "caption")  # fine


def test_registry_finds_a_model_only_by_id_and_vocabulary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    from stair_es.demo import shipped_demo_model
    from stair_es.runtime import Manifest
    from stair_es.runtime.registry import find_model, register_model, registered

    monkeypatch.setenv("STAIR_ES_CACHE", str(tmp_path / "cache"))
    copy = tmp_path / "my-model"
    shutil.copytree(shipped_demo_model(), copy)
    manifest = Manifest.read(copy)
    manifest.model_id = "my-model"
    manifest.write()
    assert find_model("my-model", manifest.vocab_hash) is None
    register_model(Manifest.read(copy))
    register_model(Manifest.read(copy))  # once per folder
    assert [m["path"] for m in registered("my-model")] == [str(copy.resolve())]
    assert find_model("my-model", manifest.vocab_hash) == (
        copy.resolve(),
        f"model registry {tmp_path / 'cache' / 'models.json'}",
    )
    assert find_model("my-model", "0" * 64) is None  # same id, other vocabulary: never used
    assert find_model("my-model", manifest.vocab_hash, [str(copy)])[1] == "recorded in the index"


def test_token_records_from_encode_lines(tmp_path: Path) -> None:
    from stair_es.ingest.tokens import read_token_records

    path = tmp_path / "v.jsonl"
    lines = [
        {"id": "text-0", "kind": "text", "tokens": {"red": 1.0}, "text": "red"},
        {"id": "a.jpg", "kind": "image", "tokens": {"red": 0.5}, "path": "/x/a.jpg"},
        {"id": "q", "tokens": {"red": 1.0}},
        {"image_tokens": {"blue": 1.0}, "caption": "blue", "colour": "blue"},
    ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines) + "[1, 2]\n")
    records = list(read_token_records(path))
    assert records[0].doc.text_tokens == {"red": 1.0} and records[0].doc.caption == "red"
    assert records[1].doc.image_tokens == {"red": 0.5} and records[1].doc.path == "/x/a.jpg"
    assert "kind" in records[2].error
    assert records[3].doc.id and records[3].doc.user == {"colour": "blue"}
    assert records[4].error.startswith("expected a JSON object")
    assert list(read_token_records(path, default_kind="image"))[2].doc.image_tokens == {"red": 1.0}
