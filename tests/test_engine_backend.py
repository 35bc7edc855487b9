"""Connection config, cluster detection, mappings/_meta, and the ES compat-header rewrite.

The header test runs the real elasticsearch-py client against a tiny local HTTP server that records
what arrives: that is how we know a 9.x client sends ``compatible-with=8`` to an 8.x server."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from stair_es.engine import ConnectionConfig, ModelMeta, connect, index_body
from stair_es.engine.backend import Backend, ClusterInfo, parse_root
from stair_es.engine.elasticsearch_backend import compat_mimetype
from stair_es.engine.mappings import parse_meta
from stair_es.errors import EngineError, ModelError, UsageError


def test_config_from_env_and_overrides() -> None:
    env = {
        "STAIR_ES_URL": "https://a:9200, https://b:9200/",
        "STAIR_ES_USER": "u",
        "STAIR_ES_PASSWORD": "p",
        "STAIR_ES_VERIFY_CERTS": "false",
        "STAIR_ES_TIMEOUT": "5",
    }
    cfg = ConnectionConfig.from_env(env, timeout=7.5, api_key=None)
    assert cfg.urls == ("https://a:9200", "https://b:9200")
    assert (cfg.username, cfg.password, cfg.verify_certs, cfg.timeout) == ("u", "p", False, 7.5)
    assert cfg.auth_headers()["Authorization"].startswith("Basic ")
    keyed = ConnectionConfig(api_key="id:secret")
    assert keyed.auth_headers()["Authorization"] == "ApiKey aWQ6c2VjcmV0"
    assert ConnectionConfig.from_env({}).urls == ("http://127.0.0.1:9200",)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"urls": "localhost:9200"}, "http://"),
        ({"urls": ""}, "no engine URL"),
        ({"username": "u"}, "both a user and a password"),
        ({"distribution": "solr"}, "distribution"),
    ],
)
def test_config_rejects_bad_values(kwargs: dict, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        ConnectionConfig(**kwargs)
    with pytest.raises(UsageError, match="boolean"):
        ConnectionConfig.from_env({"STAIR_ES_VERIFY_CERTS": "maybe"})


def test_parse_root_detects_distribution_and_capabilities() -> None:
    os_info = parse_root({"version": {"distribution": "opensearch", "number": "2.19.6"}, "tagline": "x"})
    assert os_info.distribution == "opensearch" and os_info.version == (2, 19, 6)
    assert os_info.supports_linear and not os_info.supports_sparse_vector_query
    es7 = parse_root({"version": {"number": "7.11.2"}, "tagline": "You Know, for Search"})
    assert es7.distribution == "elasticsearch" and not es7.supports_linear
    es9 = parse_root({"version": {"number": "9.1.0-SNAPSHOT"}})
    assert es9.supports_sparse_vector_query and es9.major == 9
    with pytest.raises(EngineError, match="without a version"):
        parse_root({"name": "x"})


def test_index_body_and_meta_round_trip() -> None:
    model = ModelMeta("stair-tiny", "ab12" * 16, 30522)
    body = index_body("opensearch", model, shards=2, replicas=1)
    props = body["mappings"]["properties"]
    assert props["image_tokens"] == {"type": "rank_features"} == props["text_tokens"]
    assert props["caption"]["analyzer"] == "english"
    assert body["settings"]["index"]["number_of_shards"] == 2
    meta = parse_meta("idx", body["mappings"])
    assert meta.model == model and meta.token_field_type == "rank_features"
    meta.check("idx", "stair-tiny", "ab12" * 16)
    with pytest.raises(ModelError, match="built with model 'stair-tiny'.*re-index"):
        meta.check("idx", "other-model", "ff" * 32)
    with pytest.raises(ModelError, match="no stair-es model metadata"):
        parse_meta("idx", {"properties": {}})
    es = index_body("elasticsearch", model, token_field_type="sparse_vector")
    assert es["mappings"]["properties"]["image_tokens"] == {"type": "sparse_vector"}
    with pytest.raises(UsageError, match="Elasticsearch"):
        index_body("opensearch", model, token_field_type="sparse_vector")


def test_compact_indexes_record_their_weight_shift() -> None:
    from stair_es.engine.mappings import COMPACT_WEIGHT_SHIFT

    model = ModelMeta("stair-tiny", "ab12" * 16)
    # tokens in _source: weights stay readable there, so no shift; out of _source: compact
    assert parse_meta("i", index_body("opensearch", model)["mappings"]).weight_shift == 0
    compact = parse_meta("i", index_body("opensearch", model, tokens_in_source=False)["mappings"])
    assert compact.weight_shift == COMPACT_WEIGHT_SHIFT
    off = index_body("opensearch", model, tokens_in_source=False, weight_shift=0)
    assert parse_meta("i", off["mappings"]).weight_shift == 0
    # indexes made before the shift existed have no key: plain weights
    old = index_body("opensearch", model, tokens_in_source=False)["mappings"]
    del old["_meta"]["stair_es"]["weight_shift"]
    assert parse_meta("i", old).weight_shift == 0
    # sparse_vector (ES 8.x/9.x without mapper-extras) stores FeatureField terms too: same shift
    es = index_body("elasticsearch", model, token_field_type="sparse_vector", tokens_in_source=False)
    assert parse_meta("i", es["mappings"]).weight_shift == COMPACT_WEIGHT_SHIFT
    with pytest.raises(UsageError, match="weight_shift"):
        index_body("opensearch", model, weight_shift=121)


def test_compat_mimetype_rewrite() -> None:
    v9 = "application/vnd.elasticsearch+json; compatible-with=9"
    assert compat_mimetype(v9, 8) == "application/vnd.elasticsearch+json; compatible-with=8"
    assert compat_mimetype(v9, 7) == "application/json"
    nd = "application/vnd.elasticsearch+x-ndjson; compatible-with=9"
    assert compat_mimetype(nd, 7) == "application/x-ndjson"


class _Recorder(BaseHTTPRequestHandler):
    server_version_number = "8.15.3"
    seen: list[dict[str, Any]] = []

    def _reply(self, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Elastic-Product", "Elasticsearch")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 - http.server API
        self.seen.append({"path": self.path, **{k.lower(): v for k, v in self.headers.items()}})
        self._reply({"version": {"number": self.server_version_number}, "tagline": "You Know, for Search"})

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length", 0))
        self.rfile.read(length)
        self.seen.append({"path": self.path, **{k.lower(): v for k, v in self.headers.items()}})
        self._reply({"hits": {"hits": []}, "count": 0})

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def fake_es() -> Iterator[str]:
    _Recorder.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(("server_version", "expected"), [("8.15.3", "compatible-with=8"), ("7.17.25", None)])
def test_es_client_sends_media_types_the_server_major_understands(
    fake_es: str, server_version: str, expected: str | None
) -> None:
    _Recorder.server_version_number = server_version
    backend = connect(ConnectionConfig(urls=fake_es, max_retries=0))
    assert backend.distribution == "elasticsearch"
    backend.search("idx", {"query": {"match_all": {}}})
    backend.count("idx")
    sent = [r for r in _Recorder.seen if r["path"].startswith("/idx/")]
    assert len(sent) == 2
    for request in sent:
        if expected:
            assert request["accept"].endswith(expected) and request["content-type"].endswith(expected)
        else:
            assert request["accept"] == "application/json"
    backend.close()


def test_unreachable_engine_is_one_clear_line() -> None:
    with pytest.raises(EngineError, match="cannot reach a search engine.*stair-es engine up"):
        connect(ConnectionConfig(urls="http://127.0.0.1:9", timeout=2))


def test_caption_analyzer_is_configurable_for_core_only_nodes() -> None:
    body = index_body("elasticsearch", ModelMeta("m", "h"), caption_analyzer="standard")
    assert body["mappings"]["properties"]["caption"]["analyzer"] == "standard"
    assert body["mappings"]["_meta"]["stair_es"]["caption_analyzer"] == "standard"
    hidden = index_body("opensearch", ModelMeta("m", "h"), tokens_in_source=False)
    assert hidden["mappings"]["_source"] == {"excludes": ["image_tokens", "text_tokens"]}
    assert parse_meta("i", hidden["mappings"]).tokens_in_source is False


def test_comma_separated_urls_are_several_nodes_in_a_string_or_a_tuple_entry() -> None:
    from stair_es.engine.config import ConnectionConfig

    expected = ("http://127.0.0.1:9250", "http://127.0.0.1:9251")
    assert ConnectionConfig(urls="http://127.0.0.1:9250,http://127.0.0.1:9251").urls == expected
    assert ConnectionConfig(urls=("http://127.0.0.1:9250,http://127.0.0.1:9251",)).urls == expected
    assert ConnectionConfig(urls=("http://127.0.0.1:9250", " http://127.0.0.1:9251/")).urls == expected


class _FakeBackend(Backend):
    """Only the node facts the field-type decision reads: modules and version."""

    def __init__(self, number: str, modules: set[str]) -> None:
        from stair_es.engine.config import ConnectionConfig

        super().__init__(ConnectionConfig(urls=("http://x:9200",)), ClusterInfo("elasticsearch", number))
        self._plugins = modules


@pytest.mark.parametrize(
    ("number", "modules", "field", "template"),
    [
        ("7.17.29", {"mapper-extras"}, "rank_features", "rank_features"),
        ("9.1.0", {"mapper-extras", "x-pack-core"}, "rank_features", "rank_features"),  # a full ES build
        ("8.15.0", {"x-pack-core"}, "sparse_vector", "sparse_vector-8.11"),
        ("9.0.3", {"x-pack-core"}, "sparse_vector", "sparse_vector-8.11"),
        ("8.19.2", {"x-pack-core"}, "sparse_vector", "sparse_vector"),
        ("9.1.0", {"x-pack-core"}, "sparse_vector", "sparse_vector"),
    ],
)
def test_token_field_type_follows_the_node_modules(
    number: str, modules: set, field: str, template: str
) -> None:
    backend = _FakeBackend(number, modules)
    assert backend.token_field_type() == field
    assert backend.token_template(field) == template


def test_no_token_field_type_is_one_line() -> None:
    from stair_es.errors import EngineError

    with pytest.raises(EngineError, match="no mapper-extras module .* no sparse_vector"):
        _FakeBackend("8.10.4", {"x-pack-core"}).token_field_type()


def test_sparse_vector_query_needs_9x_or_the_ml_plugin() -> None:
    assert _FakeBackend("9.1.0", {"x-pack-core"}).has_sparse_vector_query
    assert not _FakeBackend("8.15.0", {"x-pack-core"}).has_sparse_vector_query
    assert _FakeBackend("8.15.0", {"x-pack-core", "x-pack-ml"}).has_sparse_vector_query
