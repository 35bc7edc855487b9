"""The FastAPI application: the JSON API the page and scripts share, and the page itself.

Every error leaves as ``{"error": "<one line>"}`` with a 4xx status for the caller's mistakes and
5xx when the engine is away; a stack trace never reaches the client (it goes to the log), and the
server keeps serving. Image uploads are the raw request body (``curl --data-binary @photo.jpg``),
read in chunks and refused past the size cap without holding more than the cap in memory.
"""

# no ``from __future__ import annotations``: FastAPI reads the route signatures at run time, and
# Request / Query are imported inside create_app (the serve extra is optional)
import logging
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any

from stair_es import __version__
from stair_es.engine.filters import FILTER_HELP
from stair_es.errors import StairError, require
from stair_es.serve.service import PAGE_MODES, ApiError, SearchService, http_status

logger = logging.getLogger(__name__)

# bodies past the cap are read and dropped up to this many times the cap (so the client sees the
# 413 instead of a reset connection), then the connection is closed
_DRAIN_FACTOR = 8
_SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; object-src 'none'",
}


def static_dir() -> str:
    return str(resources.files("stair_es.serve") / "static")


def create_app(service: SearchService) -> Any:
    """The ASGI app for one :class:`SearchService` (needs the ``serve`` extra)."""
    require("fastapi", "serve", "stair-es serve")
    from fastapi import FastAPI, Query, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import FileResponse, JSONResponse, Response
    from fastapi.staticfiles import StaticFiles
    from starlette.exceptions import HTTPException as StarletteHTTPException

    @asynccontextmanager
    async def lifespan(app: Any):
        if service.encoder is None:
            await service.run_blocking(service.load_encoder)
        try:
            await service.backend()
        except StairError as exc:  # the page says so; requests retry the connection
            logger.warning("engine not reachable yet: %s", exc)
        yield
        await service.close()

    # no Swagger/ReDoc pages: they load scripts from a CDN (offline machines, and the CSP forbids it)
    app = FastAPI(
        title="stair-es",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url="/api/openapi.json",
    )
    app.state.service = service

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    @app.exception_handler(StairError)
    async def stair_error(request: Request, exc: StairError) -> JSONResponse:
        status = http_status(exc)
        logger.log(
            logging.WARNING if status >= 500 else logging.INFO, "%s %s: %s", request.url.path, status, exc
        )
        return error(status, str(exc))

    @app.exception_handler(RequestValidationError)
    async def bad_params(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for item in exc.errors():
            where = ".".join(str(p) for p in item.get("loc", ()) if p not in ("query", "path", "body"))
            problems.append(f"{where}: {item.get('msg', 'invalid')}" if where else str(item.get("msg")))
        return error(400, "bad parameter: " + "; ".join(problems))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error(exc.status_code, str(exc.detail))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unexpected error on %s", request.url.path)
        return error(500, f"internal error ({type(exc).__name__}); the server log has the details")

    @app.middleware("http")
    async def security_headers(request: Request, call_next: Any) -> Any:
        response = await call_next(request)
        for name, value in _SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    async def read_upload(request: Request) -> bytes:
        cap = service.config.max_upload_bytes
        content_type = request.headers.get("content-type", "")
        if content_type.startswith("multipart/"):
            raise ApiError(
                "send the image itself as the request body (curl --data-binary @photo.jpg), not a form", 415
            )
        too_large = ApiError(f"the upload is larger than the {cap / 2**20:.3g} MiB limit", 413)
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > cap * _DRAIN_FACTOR:
            raise too_large
        chunks: list[bytes] = []
        total = 0
        async for chunk in request.stream():
            total += len(chunk)
            if total > cap * _DRAIN_FACTOR:
                break
            if total <= cap:
                chunks.append(chunk)
        if total > cap:
            raise too_large
        return b"".join(chunks)

    @app.get("/api/health")
    async def health() -> Any:
        try:
            return await service.health()
        except StairError as exc:
            status = http_status(exc)
            body = {
                "ok": False,
                "error": str(exc),
                "model": getattr(service.encoder, "model_id", None),
                "indexes": {name: {"error": str(exc)} for name in service.config.indexes},
            }
            return JSONResponse(body, status_code=status if status >= 500 else 503)

    search_params: dict[str, Any] = {
        "index": Query(None, description="one of the served indexes (default: the first)"),
        "mode": Query("exact", description=" | ".join(PAGE_MODES)),
        "k": Query(20, ge=1, le=100, description="hits per page"),
        "page": Query(1, ge=1),
        "filter": Query([], description=FILTER_HELP + ", repeatable"),
        "filter_json": Query(None, description="raw query-DSL filter clause(s)"),
        "target": Query("image", description="image | text | both"),
        "explain": Query(True),
    }

    @app.get("/api/search")
    async def search_get(
        q: str | None = Query(None, description="text query"),
        tokens: str | None = Query(None, description='token map JSON, e.g. {"red": 1.5}'),
        index: str | None = search_params["index"],
        mode: str = search_params["mode"],
        k: int = search_params["k"],
        page: int = search_params["page"],
        filter: list[str] = search_params["filter"],  # noqa: A002 - the API's name
        filter_json: str | None = search_params["filter_json"],
        target: str = search_params["target"],
        explain: bool = search_params["explain"],
    ) -> Any:
        if q is None and tokens is None:
            raise ApiError("type a query (the search box is empty)", 400)
        return await service.search(
            index=index,
            text=q,
            tokens=tokens,
            mode=mode,
            k=k,
            page=page,
            filters=filter,
            filter_json=filter_json,
            target=target,
            explain=explain,
        )

    @app.post("/api/search")
    async def search_image(
        request: Request,
        index: str | None = search_params["index"],
        mode: str = search_params["mode"],
        k: int = search_params["k"],
        page: int = search_params["page"],
        filter: list[str] = search_params["filter"],  # noqa: A002
        filter_json: str | None = search_params["filter_json"],
        target: str = search_params["target"],
        explain: bool = search_params["explain"],
    ) -> Any:
        service.check_index(index)
        image = await read_upload(request)
        return await service.search(
            index=index,
            image=image,
            mode=mode,
            k=k,
            page=page,
            filters=filter,
            filter_json=filter_json,
            target=target,
            explain=explain,
        )

    @app.get("/api/explain")
    async def explain_get(
        q: str | None = Query(None),
        tokens: str | None = Query(None),
        id: str | None = Query(None, description="a document id: its stored token map"),  # noqa: A002
        index: str | None = Query(None),
        top: int = Query(40, ge=1, le=1000),
    ) -> Any:
        return await service.explain(index=index, text=q, tokens=tokens, doc_id=id, top=top)

    @app.post("/api/explain")
    async def explain_image(
        request: Request,
        id: str | None = Query(None),  # noqa: A002
        index: str | None = Query(None),
        top: int = Query(40, ge=1, le=1000),
    ) -> Any:
        image = await read_upload(request)
        return await service.explain(index=index, image=image, doc_id=id, top=top)

    @app.get("/api/thumb/{doc_id}")
    async def thumb(doc_id: str, index: str | None = Query(None)) -> Response:
        data = await service.thumbnail(index, doc_id)
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(f"{static_dir()}/index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=static_dir()), name="static")
    return app
