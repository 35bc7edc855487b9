"""What the web API does, without the web framework: search, explain, health and thumbnails.

One :class:`SearchService` per server: the encoder is loaded once and shared; text and image
queries are encoded in a small thread pool so the event loop keeps answering while onnxruntime
works; the engine is reached through the async backend, connected lazily so the server starts
(and reports a clear error) while the engine is still down, and reconnects once it is back.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from stair_es.engine import filters as engine_filters
from stair_es.engine.config import ConnectionConfig
from stair_es.engine.mappings import IMAGE_FIELD, TEXT_FIELD, IndexMeta
from stair_es.engine.modes import TEXT_ONLY_MODES, USER_MODES
from stair_es.engine.query import QueryOptions
from stair_es.errors import EngineError, ModelError, StairError, UsageError
from stair_es.serve.thumbs import ThumbnailStore
from stair_es.sparse import SparseVector, decode_feature_name, unshift_weight

logger = logging.getLogger(__name__)
T = TypeVar("T")

# the page's toggle, spelled as on the CLI (stair_es.engine.query.USER_MODES)
PAGE_MODES = {name: USER_MODES[name][0] for name in ("exact", "two-phase", "hybrid", "bm25")}
MAX_K = 100
MAX_WINDOW = 10_000  # the engines' default index.max_result_window
MAX_QUERY_CHARS = 2_000
QUERY_TOKENS_SHOWN = 40
_ID_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,512}$")
_HTTP_STATUS_RE = re.compile(r"\(HTTP (\d{3})\)")


class ApiError(StairError):
    """An error with the HTTP status the API answers with (the message is what the page shows)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def http_status(exc: BaseException) -> int:
    """The HTTP status for a library error: 4xx for the caller's mistakes, 503 when the engine is away."""
    status = getattr(exc, "status", None)
    if isinstance(status, int):
        return status
    if isinstance(exc, ModelError):
        return 409
    if isinstance(exc, UsageError):
        return 400
    if isinstance(exc, EngineError):
        text = str(exc)
        if "does not exist" in text:
            return 404
        match = _HTTP_STATUS_RE.search(text)
        if match and match.group(1) == "404":
            return 404
        if match and 400 <= int(match.group(1)) < 500 and match.group(1) not in ("401", "403", "408", "429"):
            return 400  # the engine refused the request (a filter on a field of the wrong type, say)
        return 503
    return 500


@dataclass
class ServeConfig:
    """What ``stair-es serve`` was started with."""

    indexes: Sequence[str]
    connection: ConnectionConfig
    model_path: Path | None
    roots: Sequence[str | os.PathLike[str]] = ()
    provider: str = "auto"
    max_upload_bytes: int = 10 * 1024 * 1024
    encode_threads: int = 2
    options: QueryOptions = field(default_factory=QueryOptions)


class SearchService:
    """Shared state of one server: encoder, engine connection, per-index metadata, thumbnails."""

    def __init__(self, config: ServeConfig, encoder: Any | None = None) -> None:
        if not config.indexes:
            raise UsageError("serve needs at least one --index")
        self.config = config
        self.encoder = encoder
        self.thumbs = ThumbnailStore(config.roots)
        self._pool = ThreadPoolExecutor(max_workers=config.encode_threads, thread_name_prefix="stair-encode")
        self._backend: Any = None
        self._connect_lock: asyncio.Lock | None = None
        self._meta: dict[str, IndexMeta] = {}

    # plumbing ---------------------------------------------------------------------------------
    async def run_blocking(self, fn: Callable[..., T], *args: Any) -> T:
        """Run CPU or blocking work (encoding, decoding, detection) in the pool, off the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def load_encoder(self) -> None:
        """Load the model once and open both sessions (so the first query pays no start-up)."""
        if self.encoder is None:
            from stair_es.runtime import load_encoder

            if self.config.model_path is None:
                raise UsageError("no model: pass --model DIR")
            self.encoder = load_encoder(self.config.model_path, provider=self.config.provider)
        from PIL import Image

        self.encoder.encode_texts(["warm up"])
        self.encoder.encode_images([Image.new("RGB", (32, 32), (200, 30, 30))])

    async def backend(self) -> Any:
        """The async backend, connecting on first use and again after a failed attempt."""
        if self._backend is not None:
            return self._backend
        if self._connect_lock is None:
            self._connect_lock = asyncio.Lock()
        async with self._connect_lock:
            if self._backend is None:
                from stair_es.engine.aio import AsyncBackend
                from stair_es.engine.backend import ClusterInfo, detect

                config = self.config.connection
                info = await self.run_blocking(detect, config)
                if config.distribution != "auto":
                    info = ClusterInfo(
                        config.distribution, info.number, info.cluster_name, info.lucene_version
                    )
                backend = AsyncBackend(config, info)
                try:
                    await backend.load_capabilities()
                except BaseException:
                    await backend.close()
                    raise
                self._backend = backend
        return self._backend

    async def close(self) -> None:
        if self._backend is not None:
            await self._backend.close()
            self._backend = None
        self._pool.shutdown(wait=False, cancel_futures=True)

    def check_index(self, index: str | None) -> str:
        name = index or self.config.indexes[0]
        if name not in self.config.indexes:
            served = ", ".join(self.config.indexes)
            raise ApiError(f"unknown index '{name}'; this server serves: {served}", 404)
        return name

    async def index_meta(self, index: str) -> IndexMeta:
        meta = self._meta.get(index)
        if meta is None:
            backend = await self.backend()
            if self.encoder is not None:
                meta = await backend.check_model(index, self.encoder.model_id, self.encoder.vocab_hash)
            else:
                meta = await backend.index_meta(index)
            self._meta[index] = meta
        return meta

    async def searcher(self, index: str, encoder: Any) -> Any:
        from stair_es.engine.aio import AsyncSearcher

        meta = await self.index_meta(index)
        return AsyncSearcher(await self.backend(), index, meta, encoder, self.config.options)

    # health -----------------------------------------------------------------------------------
    async def health(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "ok": True,
            "model": getattr(self.encoder, "model_id", None),
            "provider": self._provider(),
            "thumbnails": self.thumbs.enabled,
            "modes": list(PAGE_MODES),
            "max_upload_bytes": self.config.max_upload_bytes,
            "indexes": {},
        }
        backend = await self.backend()
        out["engine"] = backend.info.describe()
        for index in self.config.indexes:
            entry: dict[str, Any] = {}
            try:
                meta = await self.index_meta(index)
                entry.update(docs=await backend.count(index), compact=bool(meta.weight_shift))
            except StairError as exc:
                entry["error"] = str(exc)
                out["ok"] = False
            out["indexes"][index] = entry
        return out

    def _provider(self) -> str | None:
        try:
            return self.encoder.provider_info("text").describe() if self.encoder is not None else None
        except Exception:  # noqa: BLE001 - informational only
            return None

    # queries ----------------------------------------------------------------------------------
    async def encode_query(
        self, text: str | None, tokens: str | None, image: bytes | None
    ) -> tuple[str, SparseVector | None]:
        """(kind, vector) for exactly one of a text, a token-map JSON or image bytes."""
        given = [x for x in (text, tokens, image) if x is not None]
        if len(given) != 1:
            raise UsageError("give exactly one query: a text (q), a token map (tokens) or an image")
        if tokens is not None:
            return "tokens", parse_token_map(tokens)
        if self.encoder is None:
            raise UsageError("this server has no model: only token-map queries work")
        if image is not None:
            if not image:
                raise UsageError("the uploaded image is empty")
            from stair_es.runtime.images import ImageDecodeError

            try:
                vector = (await self.run_blocking(self.encoder.encode_images, [image]))[0]
            except ImageDecodeError as exc:  # "<N bytes>: reason" names no file: say what it was
                reason = str(exc).split(": ", 1)[-1]
                raise UsageError(
                    f"the uploaded file is not an image this server can read ({reason})"
                ) from exc
            return "image", vector
        assert text is not None
        text = text.strip()
        if not text:
            raise UsageError("type a query (the search box is empty)")
        if len(text) > MAX_QUERY_CHARS:
            raise UsageError(f"the query is longer than {MAX_QUERY_CHARS} characters")
        return "text", (await self.run_blocking(self.encoder.encode_texts, [text]))[0]

    async def search(
        self,
        *,
        index: str | None = None,
        text: str | None = None,
        tokens: str | None = None,
        image: bytes | None = None,
        mode: str = "exact",
        k: int = 20,
        page: int = 1,
        filters: Sequence[str] = (),
        filter_json: str | None = None,
        target: str = "image",
        explain: bool = True,
    ) -> dict[str, Any]:
        index = self.check_index(index)
        if mode not in PAGE_MODES:
            raise UsageError(f"mode must be one of {', '.join(PAGE_MODES)}, got {mode!r}")
        engine_mode = PAGE_MODES[mode]
        if not 1 <= k <= MAX_K:
            raise UsageError(f"k must be between 1 and {MAX_K}")
        if page < 1:
            raise UsageError("page starts at 1")
        offset = (page - 1) * k
        if offset + k + 1 > MAX_WINDOW:
            raise UsageError(f"paging stops at {MAX_WINDOW} hits (the engine's result window)")
        if engine_mode in TEXT_ONLY_MODES and (text is None or not text.strip()):
            raise UsageError(
                f"mode '{mode}' needs a text query (BM25 runs on captions); use exact or two-phase"
            )
        filter_clauses = parse_filters(filters, filter_json) or None
        if engine_mode == "bm25":
            kind, vector = "text", None
            if not text or not text.strip():
                raise UsageError("type a query (the search box is empty)")
        else:
            kind, vector = await self.encode_query(text, tokens, image)
        try:
            searcher = await self.searcher(index, _Precomputed(self.encoder, vector))
        except StairError:
            self._meta.pop(index, None)  # recreated or deleted since: read it again next time
            raise
        inputs: dict[str, Any] = {"text": text.strip()} if kind == "text" and text else {"tokens": vector}
        if kind == "image":
            inputs = {"image": b"precomputed"}  # _Precomputed returns the vector encoded above
        try:
            result = await searcher.search(
                **inputs,
                k=k + 1,  # one more than shown: is there a next page?
                offset=offset,
                filter=filter_clauses,
                mode=engine_mode,
                target=target,
                explain=explain,
            )
        except EngineError:
            self._meta.pop(index, None)
            raise
        hits = result.hits[:k]
        used = result.query_tokens
        return {
            "index": index,
            "mode": mode,
            "query": {
                "kind": kind,
                "text": text.strip() if kind == "text" and text else None,
                "token_count": len(used) if vector is not None else 0,
                "tokens": _token_rows(used, QUERY_TOKENS_SHOWN) if vector is not None else [],
            },
            "page": page,
            "k": k,
            "offset": offset,
            "has_more": len(result.hits) > k,
            "took_ms": round(result.took_ms, 2),
            "notes": result.plan.notes,
            "hits": [self._hit_json(index, hit, offset + i + 1) for i, hit in enumerate(hits)],
        }

    def _hit_json(self, index: str, hit: Any, rank: int) -> dict[str, Any]:
        source = dict(hit.source)
        path = source.pop("path", None)
        total = sum(max(c.contribution, 0.0) for c in hit.explanation) or 1.0
        return {
            "rank": rank,
            "id": hit.id,
            "score": hit.score,
            "field": hit.field,
            "caption": source.get("caption"),
            "file": os.path.basename(path) if isinstance(path, str) else None,
            "thumb": f"/api/thumb/{hit.id}?index={index}" if path and self.thumbs.enabled else None,
            "explained_score": hit.explained_score,
            "matched": [
                {
                    "token": c.token,
                    "query_weight": c.query_weight,
                    "doc_weight": c.doc_weight,
                    "contribution": c.contribution,
                    "share": c.contribution / total,
                }
                for c in hit.explanation
            ],
            "source": {k: v for k, v in source.items() if k not in ("content_hash",)},
        }

    # explain ----------------------------------------------------------------------------------
    async def explain(
        self,
        *,
        index: str | None = None,
        text: str | None = None,
        tokens: str | None = None,
        image: bytes | None = None,
        doc_id: str | None = None,
        top: int = 40,
    ) -> dict[str, Any]:
        """A query's token map; with ``doc_id`` also that document's map and what they share."""
        if not 1 <= top <= 1000:
            raise UsageError("top must be between 1 and 1000")
        out: dict[str, Any] = {"model": getattr(self.encoder, "model_id", None)}
        vector: SparseVector | None = None
        if any(x is not None for x in (text, tokens, image)):
            kind, vector = await self.encode_query(text, tokens, image)
            assert vector is not None
            out["query"] = {"kind": kind, "token_count": len(vector), "tokens": _token_rows(vector, top)}
        if doc_id is None:
            if vector is None:
                raise UsageError("give a query (q, tokens or an image) and/or a document id")
            return out
        index = self.check_index(index)
        doc = await self.document(index, doc_id)
        meta = await self.index_meta(index)
        maps = {
            name: _stored_map(doc.get(name), meta.weight_shift)
            for name in (IMAGE_FIELD, TEXT_FIELD)
            if doc.get(name)
        }
        out["document"] = {
            "id": doc_id,
            "index": index,
            "caption": doc.get("caption"),
            "tokens_stored": meta.tokens_in_source,
            "fields": {name: _token_rows(vec, top) for name, vec in maps.items()},
        }
        if vector is not None and maps:
            name, vec = max(maps.items(), key=lambda kv: vector.dot(kv[1]))
            rows = vector.contributions(vec)
            out["match"] = {
                "field": name,
                "score": float(sum(r[3] for r in rows)),
                "contributions": [
                    {"token": t, "query_weight": a, "doc_weight": b, "contribution": c}
                    for t, a, b, c in rows[:top]
                ],
            }
        return out

    async def document(self, index: str, doc_id: str) -> dict[str, Any]:
        """The stored ``_source`` of one document of a served index (404 when it is not there)."""
        if not _ID_RE.match(doc_id):
            raise ApiError("no such document", 404)
        backend = await self.backend()
        resp = await backend.search(index, {"query": {"ids": {"values": [doc_id]}}, "size": 1})
        hits = resp.get("hits", {}).get("hits", [])
        if not hits:
            raise ApiError(f"no document '{doc_id}' in index '{index}'", 404)
        return dict(hits[0].get("_source") or {})

    async def thumbnail(self, index: str | None, doc_id: str) -> bytes:
        index = self.check_index(index)
        if not self.thumbs.enabled:
            raise ApiError("thumbnails are off: start `stair-es serve` with --root DIR", 404)
        if not _ID_RE.match(doc_id):
            raise ApiError("no such document", 404)
        backend = await self.backend()
        body = {"query": {"ids": {"values": [doc_id]}}, "size": 1, "_source": ["path"]}
        hits = (await backend.search(index, body)).get("hits", {}).get("hits", [])
        if not hits:
            raise ApiError(f"no document '{doc_id}' in index '{index}'", 404)
        path = (hits[0].get("_source") or {}).get("path")
        return await self.run_blocking(self.thumbs.thumbnail, f"{index}\x1f{doc_id}", path)


class _Precomputed:
    """An encoder stand-in that returns the vector already encoded in the pool.

    The searcher plans hybrid queries from the text (BM25) and the vector together; handing it this
    keeps the encoding itself off the event loop.
    """

    def __init__(self, encoder: Any, vector: SparseVector | None) -> None:
        self.model_id = getattr(encoder, "model_id", "")
        self.vocab_hash = getattr(encoder, "vocab_hash", "")
        self._vector = vector

    def encode_texts(self, texts: list[str]) -> list[SparseVector]:
        assert self._vector is not None
        return [self._vector]

    def encode_images(self, images: list[Any]) -> list[SparseVector]:
        assert self._vector is not None
        return [self._vector]


def _token_rows(vec: SparseVector, top: int) -> list[dict[str, Any]]:
    return [{"token": t, "weight": float(w)} for t, w in zip(vec.tokens[:top], vec.weights[:top].tolist())]


def _stored_map(features: Any, weight_shift: int) -> SparseVector:
    if not isinstance(features, dict):
        return SparseVector.from_dict({})
    return SparseVector.from_dict(
        {decode_feature_name(k): unshift_weight(float(v), weight_shift) for k, v in features.items()}
    )


def parse_token_map(text: str) -> SparseVector:
    import json

    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"tokens is not valid JSON ({exc.msg})") from exc
    if not isinstance(data, dict) or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in data.values()
    ):
        raise UsageError('tokens must be a JSON object of token -> number, e.g. {"red": 1.5}')
    vec = SparseVector.from_dict({str(t): float(w) for t, w in data.items()})
    if len(vec) == 0:
        raise UsageError("tokens has no token with a positive weight")
    return vec


def parse_filters(expressions: Sequence[str], raw_json: str | None) -> list[dict[str, Any]]:
    """The API's ``filter`` / ``filter_json``: the CLI's language (:mod:`stair_es.engine.filters`)."""
    return engine_filters.parse_filters(expressions, raw_json, flag="filter", json_flag="filter_json")
