"""mappings/ is the one schema: the library's index bodies are those files with values filled in."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from stair_es.engine import mappings as m
from stair_es.errors import ModelError
from stair_es.mappings_data import TEMPLATES, load

FOLDER = Path(__file__).resolve().parents[1] / "mappings"
FILLED = ("model_id", "vocab_hash", "library_version")  # the values only the library knows


def test_every_template_is_a_file_and_every_file_a_template() -> None:
    assert {p.stem for p in FOLDER.glob("*.json")} == set(TEMPLATES)
    readme = (FOLDER / "README.md").read_text(encoding="utf-8")
    for name in TEMPLATES:
        assert f"`{name}.json`" in readme


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_library_body_with_defaults_is_the_file(name: str) -> None:
    """Defaults fill in nothing the file does not already say; only the model's values differ."""
    shipped = json.loads((FOLDER / f"{name}.json").read_text(encoding="utf-8"))
    field_type = shipped["mappings"]["properties"][m.IMAGE_FIELD]["type"]
    body = m.index_body(
        "elasticsearch", m.ModelMeta("mine", "hash"), token_field_type=field_type, template=name
    )
    meta = body["mappings"]["_meta"]["stair_es"]
    assert (meta["model_id"], meta["vocab_hash"], meta["library_version"]) == ("mine", "hash", m.__version__)
    expected = copy.deepcopy(shipped)
    for key in FILLED:
        expected["mappings"]["_meta"]["stair_es"].pop(key, None)
        meta.pop(key)
    assert body == expected


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_the_files_agree_with_the_code_that_reads_them(name: str) -> None:
    body = load(name)
    props = body["mappings"]["properties"]
    meta = body["mappings"]["_meta"]["stair_es"]
    assert meta["template"] == name
    assert meta["schema_version"] == m.SCHEMA_VERSION
    assert meta["feature_names"] == m.FEATURE_NAME_ENCODING
    assert props[m.IMAGE_FIELD]["type"] == props[m.TEXT_FIELD]["type"] == meta["token_field_type"]
    assert meta["token_field_type"] in m.TOKEN_FIELD_TYPES
    assert props[m.CAPTION_FIELD]["analyzer"] == meta["caption_analyzer"]
    assert (meta["tokens_in_source"], meta["weight_shift"]) == (True, 0)  # index_body's defaults


def test_filled_values_go_into_the_loaded_template() -> None:
    body = m.index_body(
        "elasticsearch",
        m.ModelMeta("mine", "hash", 9, "/models/x"),
        token_field_type="sparse_vector",
        template="sparse_vector",
        shards=3,
        replicas=1,
        tokens_in_source=False,
        caption_analyzer="standard",
    )
    assert body["settings"]["index"]["number_of_shards"] == 3
    assert body["mappings"]["properties"][m.CAPTION_FIELD]["analyzer"] == "standard"
    assert body["mappings"]["_source"] == {"excludes": [m.IMAGE_FIELD, m.TEXT_FIELD]}
    meta = m.parse_meta("i", body["mappings"])
    assert (meta.model.model_id, meta.model.vocab_size, meta.weight_shift) == (
        "mine",
        9,
        m.COMPACT_WEIGHT_SHIFT,
    )
    assert body["mappings"]["properties"][m.TEXT_FIELD]["index_options"] == {"prune": False}
    assert load("sparse_vector") != body  # loading hands out a copy: the file's data is untouched
    assert load("sparse_vector")["settings"]["index"]["number_of_shards"] == 1


def test_template_and_field_type_must_agree() -> None:
    from stair_es.errors import UsageError

    with pytest.raises(UsageError, match="stores sparse_vector token fields, not rank_features"):
        m.index_body("elasticsearch", m.ModelMeta("a", "b"), template="sparse_vector")
    with pytest.raises(UsageError, match="unknown index template"):
        m.index_body("opensearch", m.ModelMeta("a", "b"), template="nope")


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_an_index_created_from_the_file_as_shipped_is_refused_in_one_line(name: str) -> None:
    with pytest.raises(ModelError, match="created from a mappings/ template without its model"):
        m.parse_meta("photos", load(name)["mappings"])
