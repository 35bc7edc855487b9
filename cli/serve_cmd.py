"""``stair-es serve``: the JSON search API and the search page (FastAPI + uvicorn, the serve extra)."""

from __future__ import annotations

from pathlib import Path

import click

from stair_es_cli.common import EngineOptions, connection_options, echo_err, model_option, provider_option

DEFAULT_SERVE_PORT = 8080


@click.command()
@click.option(
    "--index",
    "indexes",
    multiple=True,
    help="Index to serve (repeat for several; the page picks one) [default: the demo index, stair-demo].",
)
@click.option(
    "--root",
    "roots",
    multiple=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Folder the indexed images live under (repeatable). Thumbnails are served only for files "
    "below a root; without one, only for the demo index (its sample collection).",
)
@click.option(
    "--host",
    default="127.0.0.1",
    envvar="STAIR_ES_SERVE_HOST",
    show_default=True,
    help="Address to bind (loopback by default) [env STAIR_ES_SERVE_HOST].",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=DEFAULT_SERVE_PORT,
    envvar="STAIR_ES_SERVE_PORT",
    show_default=True,
    help="[env STAIR_ES_SERVE_PORT]",
)
@click.option(
    "--max-upload-mb",
    type=click.FloatRange(min=0.01),
    default=10.0,
    show_default=True,
    help="Largest image upload accepted (bigger ones get HTTP 413).",
)
@click.option(
    "--encode-threads",
    type=click.IntRange(min=1),
    default=2,
    show_default=True,
    help="Threads that encode queries (off the event loop).",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
)
@model_option()
@provider_option()
@connection_options
def serve(
    indexes: tuple[str, ...],
    roots: tuple[Path, ...],
    host: str,
    port: int,
    max_upload_mb: float,
    encode_threads: int,
    log_level: str,
    model_path: Path | None,
    provider: str,
    connection: EngineOptions,
) -> None:
    """Serve a search page and JSON API for one or more indexes.

    \b
    Examples:
      stair-es serve                                   # the demo index, after `stair-es demo`
      stair-es serve --index photos --root ~/photos --model models/stair-onnx
    \b
    API: GET /api/search?q=...&mode=exact|two-phase|hybrid&k=20&page=1&filter=FIELD=VALUE
         POST /api/search (body: image bytes), GET|POST /api/explain, GET /api/health,
         GET /api/thumb/{id}?index=..., OpenAPI at /api/openapi.json.
    """
    import logging

    from stair_es.demo import DEMO_INDEX, demo_root
    from stair_es.errors import require
    from stair_es_cli.common import resolve_connection, resolve_model_path

    uvicorn = require("uvicorn", "serve", "stair-es serve")
    require("fastapi", "serve", "stair-es serve")
    require("aiohttp", "serve", "stair-es serve")
    from stair_es.serve import SearchService, ServeConfig, create_app

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("opensearch", "elastic_transport", "elasticsearch"):  # a line per engine request
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
    indexes = indexes or (DEMO_INDEX,)
    root_list = [str(r) for r in roots]
    if not root_list and DEMO_INDEX in indexes:
        demo_images = demo_root() / "collection" / "images"  # where `stair-es demo` writes it
        if demo_images.is_dir():
            root_list.append(str(demo_images))
    if not root_list:
        echo_err("no --root: thumbnails are off (pass --root DIR, the folder you indexed)")
    config = ServeConfig(
        indexes=list(indexes),
        connection=resolve_connection(connection, cloud_id_is_url=False),
        model_path=resolve_model_path(model_path),
        roots=root_list,
        provider=provider,
        max_upload_bytes=int(max_upload_mb * 1024 * 1024),
        encode_threads=encode_threads,
    )
    service = SearchService(config)
    service.load_encoder()  # a broken model fails here, with its one-line error and exit code
    if host not in ("127.0.0.1", "localhost", "::1"):
        echo_err(f"warning: binding {host}: the page and API have no authentication")
    echo_err(f"serving {', '.join(indexes)} on http://{host}:{port}/ (Ctrl-C stops)")
    uvicorn.run(create_app(service), host=host, port=port, log_level=log_level, access_log=False)
