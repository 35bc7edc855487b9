"""What the sync :class:`~stair_es.engine.backend.Backend` and the async
:class:`~stair_es.engine.aio.AsyncBackend` share, without I/O: turning a client failure into one
:class:`EngineError` line, reading answers (plugins, clause limit, shards, mappings, settings) and
building request bodies. The two shells only send requests, plain or awaited, and call these.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from stair_es.engine.mappings import IndexMeta, field_paths, parse_meta
from stair_es.errors import EngineError, EngineRejectedInput, ModelError

CLAUSE_LIMIT_SETTING = "indices.query.bool.max_clause_count"
CLAUSE_LIMIT_FILTER = "**.max_clause_count"  # filter_path of the cluster-settings request


# errors -------------------------------------------------------------------------------------
def error_status(exc: BaseException) -> int | None:
    """The HTTP status of an opensearch-py (``status_code``) or elasticsearch-py (``meta.status``) error."""
    status = getattr(getattr(exc, "meta", None), "status", None) or getattr(exc, "status_code", None)
    return status if isinstance(status, int) else None


def error_reason(exc: BaseException) -> str:
    """The engine's own first root cause (``type: reason``), else the exception's first line."""
    body = getattr(exc, "body", None) or getattr(exc, "info", None)
    if isinstance(body, Mapping):
        err = body.get("error")
        if isinstance(err, Mapping):
            causes = err.get("root_cause") or []
            first = causes[0] if causes and isinstance(causes[0], Mapping) else err
            return f"{first.get('type', 'error')}: {first.get('reason', '')}".strip()
        if err:
            return str(err)
    return f"{type(exc).__name__}: {exc}".splitlines()[0][:300]


def engine_error(
    what: str, exc: BaseException, where: str, *, status: int | None = None, user_input: bool = False
) -> EngineError:
    """One line for a failed request (an HTTP 400 to a request built from user input is an
    :class:`EngineRejectedInput`); ``status`` defaults to :func:`error_status` of ``exc``."""
    status = status if status is not None else error_status(exc)
    reason = error_reason(exc)
    http = f" (HTTP {status})" if status else ""
    kind = EngineRejectedInput if user_input and status == 400 else EngineError
    return kind(f"{what} failed on {where}{http}: {reason}", status=status, reason=reason)


def body_of(resp: Any) -> Any:
    """elasticsearch-py 8+ wraps answers in ``ObjectApiResponse``; opensearch-py returns the dict."""
    return getattr(resp, "body", resp)


# answers ------------------------------------------------------------------------------------
def dig(tree: Mapping[str, Any], dotted: str) -> Any:
    """Look up ``a.b.c`` in either nested or flat settings."""
    if dotted in tree:
        return tree[dotted]
    node: Any = tree
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def plugin_names(nodes_info: Mapping[str, Any]) -> set[str]:
    """Modules and plugins of every node in a ``GET _nodes/plugins`` answer."""
    names: set[str] = set()
    for node in (nodes_info.get("nodes") or {}).values():
        for kind in ("modules", "plugins"):
            names.update(str(p.get("name", "")) for p in node.get(kind) or [])
    return names


def clause_limit(cluster_settings: Mapping[str, Any]) -> int | None:
    """``indices.query.bool.max_clause_count`` from a cluster-settings answer (None: not set)."""
    for scope in ("transient", "persistent", "defaults"):
        value = dig(cluster_settings.get(scope) or {}, CLAUSE_LIMIT_SETTING)
        if value is not None:
            return int(value)
    return None


def reads_clause_limit(distribution: str, major: int) -> bool:
    """Elasticsearch 8.1+ sizes the limit itself (at least 1024) and ignores the setting."""
    return distribution == "opensearch" or major < 8


def index_aliases(get_alias: Mapping[str, Any]) -> dict[str, list[str]]:
    """Index -> its aliases, from ``GET */_alias``, without hidden (dot) indexes."""
    return {k: sorted((v or {}).get("aliases") or {}) for k, v in get_alias.items() if not k.startswith(".")}


def mapping_fields(get_mapping: Mapping[str, Any]) -> set[str]:
    """Every field of every index in a ``GET <index>/_mapping`` answer."""
    return set().union(*(field_paths(entry.get("mappings") or {}) for entry in get_mapping.values()))


def mapping_meta(get_mapping: Mapping[str, Any]) -> dict[str, Any]:
    """``_meta`` of the (first) index in a ``GET <index>/_mapping`` answer."""
    return dict((next(iter(get_mapping.values())).get("mappings") or {}).get("_meta") or {})


def index_settings(get_settings: Mapping[str, Any]) -> dict[str, Any]:
    """``settings.index`` of the (first) index in a ``GET <index>/_settings`` answer."""
    return dict(next(iter(get_settings.values()))["settings"]["index"])


def msearch_body(index: str, bodies: Iterable[Mapping[str, Any]]) -> list[Any]:
    """``_msearch`` lines: a header naming the index, then the query, per body."""
    lines: list[Any] = []
    for body in bodies:
        lines += [{"index": index}, dict(body)]
    return lines


def check_shards(index: str, resp: Mapping[str, Any]) -> None:
    """Refuse a partial answer: the engine answers 200 with the shards it could reach, and a shard
    without an active copy (its only node is down) is simply missing from the hits."""
    shards = resp.get("_shards") or {}
    total = int(shards.get("total") or 0)
    answered = int(shards.get("successful") or 0) + int(shards.get("skipped") or 0)
    if answered >= total:
        return
    failures = shards.get("failures") or []
    if failures:
        first = failures[0].get("reason") or {}
        why = (
            f"{first.get('type', 'error')}: {first.get('reason', '')}"
            if isinstance(first, Mapping)
            else str(first)
        )
        raise EngineError(
            f"index '{index}': {total - answered} of {total} shards failed ({why}): the results would miss documents",
            status=503,
        )
    raise EngineError(
        f"index '{index}': shard unavailable: {answered} of {total} shards answered; a node holding the "
        "only copy of the others is down, or they are starting, and the results would miss documents: "
        "bring the node back, or give the index replicas so that it survives the loss of a node",
        status=503,
    )


def combined_meta(index: str, mappings: Mapping[str, Any]) -> IndexMeta:
    """The model metadata of every index that ``index`` names (a pattern, ``_all``, an alias or a
    list names several): each must carry stair-es metadata and all must agree, else one line says
    which one differs; a search across them would otherwise mix models or storage silently."""
    metas: dict[str, IndexMeta] = {}
    for name, entry in sorted(mappings.items()):
        try:
            metas[name] = parse_meta(name, entry.get("mappings") or {})
        except ModelError as exc:
            raise ModelError(str(exc) if name == index else f"{exc} ('{index}' matches it)") from None
    if not metas:
        raise EngineError(f"no index matches '{index}'")
    (first_name, first), *rest = metas.items()
    for name, meta in rest:
        if not meta.matches(first.model.model_id, first.model.vocab_hash) or (
            meta.token_field_type,
            meta.weight_shift,
            meta.tokens_in_source,
        ) != (first.token_field_type, first.weight_shift, first.tokens_in_source):
            raise ModelError(
                f"'{index}' matches indexes built differently: '{first_name}' (model {first.model.model_id}, "
                f"{_storage(first)}) and '{name}' (model {meta.model.model_id}, {_storage(meta)}): "
                "search them one at a time"
            )
    return first


def _storage(meta: IndexMeta) -> str:
    return f"{meta.token_field_type}, weight shift {meta.weight_shift}, tokens in _source {meta.tokens_in_source}"
