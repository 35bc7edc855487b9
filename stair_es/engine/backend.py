"""One small interface over opensearch-py and elasticsearch-py.

``connect`` (:mod:`stair_es.engine.connection`) asks the cluster what it is (``GET /`` over plain
urllib3, because elasticsearch-py refuses OpenSearch servers) and returns the matching adapter.
Everything above this module (indexer, query builder, searcher) talks only to :class:`Backend`,
with request bodies as plain dicts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from stair_es.engine import core
from stair_es.engine.cluster_info import ClusterInfo, detect, parse_root  # noqa: F401 - re-exported
from stair_es.engine.config import ConnectionConfig
from stair_es.engine.core import check_shards, combined_meta
from stair_es.engine.mappings import DEFAULT_TEMPLATES, IndexMeta, ModelMeta, index_body
from stair_es.errors import EngineError

DEFAULT_MAX_CLAUSES = 1024  # OpenSearch and ES 7 default; the ES 8.1+ auto-sized limit is never lower


class Backend:
    """Operations stair-es needs, the same on both engines. Adapters set ``client`` and ``helpers``."""

    client: Any
    helpers: Any

    def __init__(self, config: ConnectionConfig, info: ClusterInfo) -> None:
        self.config = config
        self.info = info
        self._max_clauses: int | None = None
        self._plugins: set[str] | None = None
        self._owns_client = True  # a client handed in by the caller is theirs to close

    def _adopt(self, client: Any) -> None:  # pragma: no cover - adapters override
        self.client = client

    # error handling ---------------------------------------------------------------------------
    def _error_status(self, exc: BaseException) -> int | None:
        return core.error_status(exc)

    def _call(
        self, what: str, fn: Callable[..., Any], *args: Any, _user_input: bool = False, **kwargs: Any
    ) -> Any:
        """Run a client call; any failure becomes one :class:`EngineError` line (an HTTP 400 to a
        request built from user input, ``_user_input``, an :class:`EngineRejectedInput`)."""
        try:
            resp = fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - translated, chained
            status = self._error_status(exc)
            raise core.engine_error(
                what, exc, self.info.describe(), status=status, user_input=_user_input
            ) from exc
        return core.body_of(resp)

    def is_not_found(self, exc: BaseException) -> bool:
        cause = exc.__cause__ or exc
        return self._error_status(cause) == 404

    # cluster ----------------------------------------------------------------------------------
    @property
    def distribution(self) -> str:
        return self.info.distribution

    @property
    def version(self) -> tuple[int, int, int]:
        return self.info.version

    def plugins(self) -> set[str]:
        """Names of installed modules and plugins on every node (``analysis-common``, ``opensearch-neural-search``)."""
        if self._plugins is None:
            resp = self._call("listing plugins", self.client.nodes.info, metric="plugins")
            self._plugins = core.plugin_names(resp)
        return self._plugins

    @property
    def has_neural_sparse(self) -> bool:
        """OpenSearch neural-search plugin (2.14+ for raw ``query_tokens``)."""
        return (
            self.distribution == "opensearch"
            and self.version >= (2, 14, 0)
            and any("neural-search" in p for p in self.plugins())
        )

    def token_field_type(self) -> str:
        """``rank_features`` where mapper-extras is installed (OpenSearch, ES 7.x, full ES builds),
        else ES's core ``sparse_vector`` (8.11+: same FeatureField storage, ``term`` clauses score
        the same linear dot product); one line when the cluster has neither."""
        if "mapper-extras" in self.plugins():
            return "rank_features"
        if self.info.supports_sparse_vector_field:
            return "sparse_vector"
        raise EngineError(
            f"{self.info.describe()} has no mapper-extras module (rank_features) and no sparse_vector "
            "field (Elasticsearch 8.11+): install mapper-extras, or use a newer engine"
        )

    def token_template(self, token_field_type: str) -> str:
        """The ``mappings/`` template for this cluster: ES 8.19+/9.1+ prune the stored tokens of a
        new ``sparse_vector`` field by default (approximate scores), so their template says
        ``index_options.prune: false``; older versions refuse that option and never prune."""
        if token_field_type == "sparse_vector" and self.info.supports_sparse_vector_index_options:
            return "sparse_vector"
        return DEFAULT_TEMPLATES.get(token_field_type, token_field_type)  # index_body checks it

    @property
    def has_sparse_vector_query(self) -> bool:
        """ES's ``sparse_vector`` query: x-pack core registers it on 9.x; on 8.15-8.x only the
        machine-learning plugin does (Maven's core-only 8.x builds answer "unknown query")."""
        if not self.info.supports_sparse_vector_query:
            return False
        return self.info.major >= 9 or any(p in ("x-pack-ml", "ml") for p in self.plugins())

    def max_clause_count(self) -> int:
        """The engine's bool clause limit (ES 8.1+: at least 1024, auto-sized, setting ignored)."""
        if self._max_clauses is None:
            limit = None
            if core.reads_clause_limit(self.distribution, self.info.major):
                resp = self._call(
                    "reading cluster settings",
                    self.client.cluster.get_settings,
                    include_defaults=True,
                    filter_path=core.CLAUSE_LIMIT_FILTER,
                )
                limit = core.clause_limit(resp)
            self._max_clauses = limit or DEFAULT_MAX_CLAUSES
        return self._max_clauses

    # indices ----------------------------------------------------------------------------------
    def index_exists(self, index: str) -> bool:
        return bool(self._call(f"checking index '{index}'", self.client.indices.exists, index=index))

    def create_index(
        self,
        index: str,
        model: ModelMeta,
        *,
        shards: int = 1,
        replicas: int = 0,
        refresh_interval: str = "1s",
        token_field_type: str | None = None,
        tokens_in_source: bool = True,
        extra_settings: Mapping[str, Any] | None = None,
        exist_ok: bool = False,
        weight_shift: int | None = None,
    ) -> dict[str, Any]:
        """Create ``index`` for ``model``; with ``exist_ok`` an existing index must match the model.

        ``token_field_type`` None: what this cluster can store (:meth:`token_field_type`); the
        choice is recorded in ``_meta`` so that every later query is built for it.
        """
        if self.index_exists(index):
            if not exist_ok:
                raise EngineError(
                    f"index '{index}' already exists: pass exist_ok=True to add to it (its model must "
                    "match), or delete it first"
                )
            self.check_model(index, model.model_id, model.vocab_hash)
            return {"acknowledged": True, "existing": True}
        # core-only Elasticsearch builds (e.g. assembled from Maven Central) lack analysis-common,
        # which provides the "english" analyzer: fall back to "standard" rather than fail
        analyzer = "english" if "analysis-common" in self.plugins() else "standard"
        token_field_type = token_field_type or self.token_field_type()
        body = index_body(
            self.distribution,
            model,
            caption_analyzer=analyzer,
            shards=shards,
            replicas=replicas,
            refresh_interval=refresh_interval,
            token_field_type=token_field_type,
            tokens_in_source=tokens_in_source,
            extra_settings=extra_settings,
            weight_shift=weight_shift,
            template=self.token_template(token_field_type),
        )
        return self._call(f"creating index '{index}'", self.client.indices.create, index=index, body=body)

    def delete_index(self, index: str, missing_ok: bool = True) -> bool:
        if missing_ok and not self.index_exists(index):
            return False
        self._call(f"deleting index '{index}'", self.client.indices.delete, index=index)
        return True

    def index_meta(self, index: str) -> IndexMeta:
        """``_meta.stair_es`` of ``index`` (or of the index an alias points at)."""
        if not self.index_exists(index):
            from stair_es.engine.aliases import index_names, not_found

            raise not_found(index, index_names(self), self.info.describe())
        resp = self._call(f"reading mapping of '{index}'", self.client.indices.get_mapping, index=index)
        return combined_meta(index, resp)

    def field_names(self, index: str) -> set[str]:
        """Every field the mapping of ``index`` (all indexes behind an alias) defines."""
        resp = self._call(f"reading mapping of '{index}'", self.client.indices.get_mapping, index=index)
        return core.mapping_fields(resp)

    def check_model(self, index: str, model_id: str, vocab_hash: str) -> IndexMeta:
        """The index's metadata, or :class:`~stair_es.errors.ModelError` when the model differs."""
        meta = self.index_meta(index)
        meta.check(index, model_id, vocab_hash)
        return meta

    def get_settings(self, index: str) -> dict[str, Any]:
        resp = self._call(f"reading settings of '{index}'", self.client.indices.get_settings, index=index)
        return core.index_settings(resp)

    def put_settings(self, index: str, settings: Mapping[str, Any]) -> None:
        self._call(
            f"updating settings of '{index}'",
            self.client.indices.put_settings,
            index=index,
            body={"index": settings},
        )

    def mapping_meta(self, index: str) -> dict[str, Any]:
        """The whole ``_meta`` of one index's mapping (stair-es keeps its bookkeeping there)."""
        resp = self._call(f"reading mapping of '{index}'", self.client.indices.get_mapping, index=index)
        return core.mapping_meta(resp)

    def put_mapping_meta(self, index: str, meta: Mapping[str, Any]) -> None:
        """Replace ``_meta`` (the engines replace it as a whole: pass every key to keep)."""
        self._call(
            f"updating the mapping of '{index}'",
            self.client.indices.put_mapping,
            index=index,
            body={"_meta": dict(meta)},
        )

    def refresh(self, index: str) -> None:
        self._call(f"refreshing '{index}'", self.client.indices.refresh, index=index)

    def store_size_bytes(self, index: str) -> int:
        """Primary store size (after a flush), for bytes-per-document figures."""
        resp = self._call(
            f"reading stats of '{index}'", self.client.indices.stats, index=index, metric="store"
        )
        return int(resp["indices"][index]["primaries"]["store"]["size_in_bytes"])

    def force_merge(self, index: str, max_segments: int = 1) -> None:
        self._call(
            f"force-merging '{index}'",
            self.client.indices.forcemerge,
            index=index,
            max_num_segments=max_segments,
            request_timeout=max(600.0, self.config.timeout),
        )

    # documents --------------------------------------------------------------------------------
    def streaming_bulk(self, actions: Iterable[dict[str, Any]], **kwargs: Any) -> Iterator[tuple[bool, Any]]:
        """The client's own ``helpers.streaming_bulk`` (429 retries with backoff live there)."""
        return self.helpers.streaming_bulk(self.client, actions, **kwargs)

    def bulk_lines(self, lines: list[str]) -> dict[str, Any]:
        """One bulk request from NDJSON pieces (each newline-terminated); the answer as a dict."""
        return self._call("bulk request", self.client.bulk, body="".join(lines))

    def index_document(
        self, index: str, doc_id: str, source: Mapping[str, Any], refresh: bool = False
    ) -> None:
        """One document per request: what the bulk benchmark compares against."""
        self._call(
            f"indexing '{doc_id}'",
            self.client.index,
            index=index,
            id=doc_id,
            body=dict(source),
            refresh="true" if refresh else "false",
        )

    def delete_documents(self, index: str, ids: Iterable[str]) -> int:
        actions = ({"_op_type": "delete", "_index": index, "_id": i} for i in ids)
        deleted = 0
        for ok, _item in self.streaming_bulk(actions, raise_on_error=False, raise_on_exception=False):
            deleted += int(ok)
        return deleted

    def count(self, index: str, query: Mapping[str, Any] | None = None) -> int:
        body = {"query": dict(query)} if query else None
        resp = self._call(f"counting '{index}'", self.client.count, index=index, body=body, _user_input=True)
        return int(resp["count"])

    def search(self, index: str, body: Mapping[str, Any], **params: Any) -> dict[str, Any]:
        """The engine's answer; one line instead of a partial answer or of the last retried error
        (a dead node's ConnectionError) when a shard has no active copy."""
        try:
            resp = self._call(
                f"searching '{index}'",
                self.client.search,
                index=index,
                body=dict(body),
                _user_input=True,
                **params,
            )
        except EngineError as exc:
            if exc.status in (None, 503):
                problem = self._unavailable_shards(index)
                if problem is not None:
                    raise problem from exc
            raise
        check_shards(index, resp)
        return resp

    def _unavailable_shards(self, index: str) -> EngineError | None:
        """Ask a live node whether ``index`` is red; None when it is not (or nobody answers)."""
        try:
            health = self._call("reading index health", self.client.cluster.health, index=index)
        except EngineError:
            return None
        if health.get("status") != "red":
            return None
        return EngineError(
            f"index '{index}': shard unavailable (health red, {health.get('unassigned_shards')} shard(s) "
            "without an active copy): a node holding the only copy is down, or it is starting; bring "
            "the node back, or give the index replicas so that it survives the loss of a node",
            status=503,
        )

    def msearch(self, index: str, bodies: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
        lines = core.msearch_body(index, bodies)
        resp = self._call(f"multi-searching '{index}'", self.client.msearch, body=lines, _user_input=True)
        return list(resp["responses"])

    def close(self) -> None:
        if self._owns_client:
            self.client.close()

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
