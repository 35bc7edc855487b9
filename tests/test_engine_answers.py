"""How engine answers are judged before anyone sees hits: partial answers (a shard without an active
copy) are refused, and an index pattern must name indexes built alike (issue 12, item 7)."""

from __future__ import annotations

import pytest

from stair_es.engine.backend import check_shards, combined_meta
from stair_es.engine.mappings import ModelMeta, index_body
from stair_es.errors import EngineError, ModelError


def test_a_partial_answer_is_refused_with_one_clear_line() -> None:
    check_shards("i", {"_shards": {"total": 2, "successful": 2, "skipped": 0, "failed": 0}})
    check_shards("i", {"_shards": {"total": 3, "successful": 1, "skipped": 2, "failed": 0}})
    with pytest.raises(EngineError, match="shard unavailable: 1 of 2 shards answered"):
        # what OpenSearch 3.8 answers (200) when the node with a shard's only copy is gone
        check_shards("i", {"_shards": {"total": 2, "successful": 1, "skipped": 0, "failed": 0}})
    failure = {"reason": {"type": "query_shard_exception", "reason": "failed to create query"}}
    with pytest.raises(EngineError, match="1 of 2 shards failed .*query_shard_exception"):
        check_shards("i", {"_shards": {"total": 2, "successful": 1, "failed": 1, "failures": [failure]}})


def _mapping(model: str, **kwargs) -> dict:
    return {"mappings": index_body("opensearch", ModelMeta(model, "v"), **kwargs)["mappings"]}


def test_index_patterns_must_name_indexes_built_alike() -> None:
    same = combined_meta("p*", {"p1": _mapping("m"), "p2": _mapping("m")})
    assert same.model.model_id == "m"
    with pytest.raises(ModelError, match="built differently: 'p1' .*'p2'"):
        combined_meta("p*", {"p1": _mapping("m"), "p2": _mapping("other")})
    with pytest.raises(ModelError, match="built differently"):
        combined_meta("p*", {"p1": _mapping("m"), "p2": _mapping("m", tokens_in_source=False)})
    with pytest.raises(ModelError, match="no stair-es model metadata.*'_all' matches it"):
        combined_meta("_all", {"p1": _mapping("m"), "logs": {"mappings": {}}})
