"""The engine facts the whole product rests on, checked on a real node.

Scores of ``bool.should`` + ``rank_feature`` (linear, boost = query weight) must equal the dot
product of the query with the *9-bit truncated* document weights; a dotted feature name cannot
be addressed by a ``rank_feature`` query, which is why stair_es escapes names.
"""

from __future__ import annotations

import uuid

import numpy as np
import pytest

from stair_es.mappings_data import load as load_mapping
from stair_es.sparse import SparseVector, encode_feature_name, truncate_9bit


def _client(engine_url: str, distribution: str):
    """The engine's own client library; on Elasticsearch through stair-es's adapter, which speaks
    the server's major (a 9.x elasticsearch-py against an 8.x node is refused otherwise)."""
    if distribution == "opensearch":
        from opensearchpy import OpenSearch

        return OpenSearch(engine_url.split(","), timeout=60)
    from stair_es.engine import connect

    return connect(urls=engine_url, timeout=60).client


@pytest.fixture(scope="module")
def field_type(engine_url: str) -> str:
    """The token field type stair-es picks for this node (rank_features where mapper-extras is)."""
    from stair_es.engine import connect

    with connect(urls=engine_url) as backend:
        return backend.token_field_type()


@pytest.fixture()
def index(engine_url: str, engine_distribution: str, field_type: str):
    client = _client(engine_url, engine_distribution)
    name = f"stair-foundation-{uuid.uuid4().hex[:8]}"
    # only the token field of the schema file (mappings/) the library picks for this node: the
    # full template's caption analyzer depends on the node's modules (test_mappings_schema.py)
    template = load_mapping(_template(engine_url, field_type))
    field = dict(template["mappings"]["properties"]["image_tokens"])
    assert field["type"] == field_type
    client.indices.create(index=name, body={"mappings": {"properties": {"image_tokens": field}}})
    yield client, name
    client.indices.delete(index=name)


def _template(engine_url: str, field_type: str) -> str:
    from stair_es.engine import connect

    with connect(urls=engine_url) as backend:
        return backend.token_template(field_type)


def _clause(field: str, name: str, weight: float, field_type: str) -> dict:
    if field_type == "sparse_vector":  # term on sparse_vector: stored value x boost
        return {"term": {field: {"value": name, "boost": float(weight)}}}
    return {"rank_feature": {"field": f"{field}.{name}", "linear": {}, "boost": float(weight)}}


def _linear_query(field: str, query: SparseVector, field_type: str = "rank_features") -> dict:
    return {
        "size": 10,
        "track_total_hits": False,
        "query": {
            "bool": {"should": [_clause(field, n, w, field_type) for n, w in query.to_features().items()]}
        },
    }


def test_node_answers_as_expected_distribution(engine_info: dict) -> None:
    assert engine_info["version"]["number"]
    # ES 8.x/9.x from Maven have no rest-root module (GET / is 405): no tagline to read there
    assert engine_info.get("rest_root") is False or engine_info["tagline"]


def test_linear_rank_feature_scores_equal_truncated_dot_product(index, field_type: str) -> None:
    client, name = index
    rng = np.random.default_rng(7)
    vocab = [f"tok{i}" for i in range(60)]
    docs = []
    for i in range(8):
        chosen = rng.choice(len(vocab), size=20, replace=False)
        weights = rng.uniform(0.01, 3.0, size=20).astype(np.float32)
        docs.append(SparseVector.from_arrays([vocab[j] for j in chosen], weights))
        client.index(index=name, id=str(i), body={"image_tokens": docs[-1].to_features()})
    client.indices.refresh(index=name)
    chosen = rng.choice(len(vocab), size=15, replace=False)
    query = SparseVector.from_arrays([vocab[j] for j in chosen], rng.uniform(0.05, 2.0, size=15))

    hits = client.search(index=name, body=_linear_query("image_tokens", query, field_type))["hits"]["hits"]
    assert hits, "the query matched nothing"
    for hit in hits:
        expected = query.dot(docs[int(hit["_id"])], truncate_other=True)
        assert hit["_score"] == pytest.approx(expected, rel=1e-5)
    # and truncation is real: the untruncated dot product differs for at least one document
    exact = [query.dot(docs[int(h["_id"])]) for h in hits]
    assert any(abs(e - h["_score"]) / e > 1e-5 for e, h in zip(exact, hits))
    # ranking equals the brute-force ranking
    brute = sorted(range(len(docs)), key=lambda i: -query.dot(docs[i], truncate_other=True))
    brute = [i for i in brute if query.dot(docs[i], truncate_other=True) > 0]
    assert [int(h["_id"]) for h in hits] == brute[: len(hits)]


def test_default_saturation_is_not_a_dot_product(index, field_type: str, engine_url: str) -> None:
    client, name = index
    if field_type == "sparse_vector":
        # no rank_feature query here at all: the capability check that picked sparse_vector is right
        with pytest.raises(Exception, match="rank_features|no handler|mapper"):
            client.indices.create(
                index=name + "-rf", body={"mappings": {"properties": {"t": {"type": "rank_features"}}}}
            )
        return
    doc = SparseVector.from_dict({"a": 2.0, "b": 0.5})
    client.index(index=name, id="x", body={"image_tokens": doc.to_features()}, refresh=True)
    body = {
        "query": {
            "bool": {
                "should": [
                    {"rank_feature": {"field": "image_tokens.a", "boost": 1.0}},
                    {"rank_feature": {"field": "image_tokens.b", "boost": 1.0}},
                ]
            }
        }
    }
    score = client.search(index=name, body=body)["hits"]["hits"][0]["_score"]
    assert score != pytest.approx(2.5, rel=1e-3)


def test_dotted_feature_names_need_escaping(index, field_type: str) -> None:
    client, name = index
    raw = {"u.s.": 1.5, "dog": 0.25}
    query_dotted = {"query": _clause("image_tokens", "u.s.", 1.0, "rank_features")}
    try:  # OpenSearch and ES 7 accept the dotted key at index time; ES 8.7+ refuses it
        client.index(index=name, id="raw", body={"image_tokens": raw}, refresh=True)
        accepted = True
    except Exception:  # noqa: BLE001 - a refusal is the other documented outcome
        accepted = False
    if accepted:
        # ... but the query splits "image_tokens.u.s." at the last dot: the feature is unreachable
        try:
            hits = client.search(index=name, body=query_dotted)["hits"]["hits"]
        except Exception:  # noqa: BLE001 - an error is also "unreachable"
            hits = []
        assert hits == []
        client.delete(index=name, id="raw", refresh=True)
    # the escaped name round-trips and is addressable on every engine
    escaped = SparseVector.from_dict(raw).to_features()
    assert encode_feature_name("u.s.") in escaped and all("." not in k for k in escaped)
    client.index(index=name, id="escaped", body={"image_tokens": escaped}, refresh=True)
    body = {"query": _clause("image_tokens", encode_feature_name("u.s."), 1.0, field_type)}
    hits = client.search(index=name, body=body)["hits"]["hits"]
    assert [h["_id"] for h in hits] == ["escaped"]
    assert hits[0]["_score"] == pytest.approx(float(truncate_9bit(1.5)), rel=1e-6)


def test_non_positive_weights_are_refused_by_the_engine(index) -> None:
    client, name = index
    from opensearchpy.exceptions import RequestError as OSRequestError

    errors: tuple[type[BaseException], ...] = (OSRequestError,)
    try:
        from elasticsearch import BadRequestError

        errors += (BadRequestError,)
    except ImportError:  # pragma: no cover
        pass
    with pytest.raises(errors):
        client.index(index=name, id="zero", body={"image_tokens": {"a": 0.0}})
    # the client-side filter drops exactly what the engine refuses
    assert SparseVector.from_dict({"a": 0.0, "b": -1.0, "c": float("nan"), "d": 0.5}).to_features() == {
        "d": 0.5
    }
