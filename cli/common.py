"""Options and helpers shared by the commands: connection flags (each with its env var), the
model, and the embedded default engine. Library imports stay inside functions (fast --help)."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

LOCAL_PORT_ENV = "STAIR_ES_PORT"
MODEL_ENV = "STAIR_ES_MODEL"


def echo_err(message: str) -> None:
    click.echo(message, err=True)


def connection_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """--url/--user/--password/--api-key/--ca-certs/--verify-certs/--timeout, all from env too.

    Without --url and STAIR_ES_URL the command uses (and if needed starts) the local engine on
    127.0.0.1:$STAIR_ES_PORT (9200): the embedded default. ``--no-local`` turns that off.
    """
    options = [
        click.option(
            "--url",
            "urls",
            envvar="STAIR_ES_URL",
            default=None,
            help="Engine URL(s), comma-separated [env STAIR_ES_URL; default: the local engine].",
        ),
        click.option("--user", "username", envvar="STAIR_ES_USER", default=None, help="[env STAIR_ES_USER]"),
        click.option("--password", envvar="STAIR_ES_PASSWORD", default=None, help="[env STAIR_ES_PASSWORD]"),
        click.option(
            "--api-key",
            envvar="STAIR_ES_API_KEY",
            default=None,
            help="id:key or base64 [env STAIR_ES_API_KEY].",
        ),
        click.option(
            "--ca-certs",
            envvar="STAIR_ES_CA_CERTS",
            default=None,
            type=click.Path(exists=True, dir_okay=False),
            help="CA bundle [env STAIR_ES_CA_CERTS].",
        ),
        click.option(
            "--verify-certs/--no-verify-certs",
            envvar="STAIR_ES_VERIFY_CERTS",
            default=True,
            show_default=True,
            help="[env STAIR_ES_VERIFY_CERTS]",
        ),
        click.option(
            "--timeout",
            envvar="STAIR_ES_TIMEOUT",
            type=float,
            default=30.0,
            show_default=True,
            help="Request timeout in seconds [env STAIR_ES_TIMEOUT].",
        ),
        click.option(
            "--cloud-id",
            envvar="STAIR_ES_CLOUD_ID",
            default=None,
            help="Elastic Cloud id [env STAIR_ES_CLOUD_ID].",
        ),
        click.option(
            "--bearer-token", envvar="STAIR_ES_BEARER_TOKEN", default=None, help="[env STAIR_ES_BEARER_TOKEN]"
        ),
        click.option(
            "--aws-region",
            envvar="STAIR_ES_AWS_REGION",
            default=None,
            help='Sign requests with AWS SigV4 for this region (pip install "stair-es[aws]") [env STAIR_ES_AWS_REGION].',
        ),
        click.option(
            "--aws-service",
            envvar="STAIR_ES_AWS_SERVICE",
            default="es",
            show_default=True,
            help="es: Amazon OpenSearch Service; aoss: Serverless [env STAIR_ES_AWS_SERVICE].",
        ),
        click.option(
            "--local/--no-local",
            "use_local",
            default=True,
            show_default=True,
            help="Without a URL, use (and start) the local engine on 127.0.0.1:$STAIR_ES_PORT.",
        ),
    ]
    for option in reversed(options):
        func = option(func)

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        keys = ("urls", "username", "password", "api_key", "ca_certs", "verify_certs", "timeout", "use_local")
        keys += ("cloud_id", "bearer_token", "aws_region", "aws_service")
        kwargs["connection"] = {k: kwargs.pop(k) for k in keys}
        return func(*args, **kwargs)

    return wrapper


def connect_backend(connection: dict[str, Any]):
    """A connected Backend; starts the local engine when no URL is configured."""
    from stair_es.engine import ConnectionConfig, connect
    from stair_es.errors import UsageError

    settings = dict(connection)
    use_local = settings.pop("use_local", True)
    if not settings.get("urls") and not settings.get("cloud_id"):
        if not use_local:
            raise UsageError("no engine URL: pass --url or set STAIR_ES_URL (or drop --no-local)")
        from stair_es.local import ensure_running

        port = int(os.environ.get(LOCAL_PORT_ENV, "9200"))
        echo_err(f"no --url/STAIR_ES_URL: using the local engine on 127.0.0.1:{port}")
        settings["urls"] = ensure_running(port=port, log=echo_err)
    config = ConnectionConfig.from_env(env={}, **settings)
    return connect(config)


def model_option(
    required: bool = True, default_help: str = "the demo model if built"
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """--model DIR: an exported model (manifest + ONNX graphs) [env STAIR_ES_MODEL]."""
    return click.option(
        "--model",
        "model_path",
        envvar=MODEL_ENV,
        default=None,
        type=click.Path(file_okay=False, path_type=Path),
        help=f"Exported model folder (stair-es export) [env STAIR_ES_MODEL; default: {default_help}].",
    )


def resolve_model_path(model_path: Path | None) -> Path:
    """The model to use: the flag/env value, else the demo model built by ``stair-es demo``."""
    from stair_es.errors import UsageError

    if model_path is not None:
        return model_path
    from stair_es.demo import demo_model_dir

    candidate = demo_model_dir()
    if (candidate / "manifest.json").exists():
        echo_err(f"using the demo model at {candidate} (pass --model for your own)")
        return candidate
    raise UsageError(
        "no model: pass --model DIR (an exported model) or run `stair-es demo` to build the demo model"
    )


def model_for_index(model_path: Path | None, backend: Any, index: str) -> Path:
    """``--model`` when given, else the model ``index`` (or the alias) was built with, found on this
    machine by its id and vocabulary hash (stair_es.runtime.registry); says which it uses."""
    if model_path is not None:
        return model_path
    from stair_es.errors import ModelError
    from stair_es.runtime.registry import find_model, registry_path

    model = backend.index_meta(index).model
    found = find_model(model.model_id, model.vocab_hash, [model.path])
    if found is None:
        raise ModelError(
            f"index '{index}' was built with model '{model.model_id}' (vocab {model.vocab_hash[:12]}), which "
            f"is not at its recorded folder ({model.path or 'none recorded'}) nor in {registry_path()}: "
            "pass --model DIR"
        )
    echo_err(
        f"model {model.model_id} at {found[0]} (index '{index}' was built with it; found via {found[1]})"
    )
    return found[0]


def load_runtime_encoder(model_path: Path | None, provider: str = "auto", **kwargs: Any):
    from stair_es.runtime import load_encoder

    return load_encoder(resolve_model_path(model_path), provider=provider, **kwargs)


def provider_option(
    help_text: str = "onnxruntime execution provider",
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """--provider auto|cuda|cpu [env STAIR_ES_PROVIDER]: where the ONNX graphs run."""
    return click.option(
        "--provider",
        type=click.Choice(["auto", "cuda", "cpu"]),
        default="auto",
        show_default=True,
        envvar="STAIR_ES_PROVIDER",
        help=f"{help_text} [env STAIR_ES_PROVIDER].",
    )


def precision_option() -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """--precision auto|fp32|fp16|int8 [env STAIR_ES_PRECISION]: which exported graph variant."""
    return click.option(
        "--precision",
        type=click.Choice(["auto", "fp32", "fp16", "int8"]),
        default="auto",
        show_default=True,
        envvar="STAIR_ES_PRECISION",
        help="Graph variant: auto = the export's fastest measured for the provider (manifest), else fp16 "
        "on CUDA when exported, else fp32 [env STAIR_ES_PRECISION].",
    )


# Mirrors stair_es.runtime.images.DEFAULT_MAX_PIXELS without importing Pillow at --help time
# (tests/test_cli_main.py checks that the two agree).
DEFAULT_MAX_IMAGE_PIXELS = 89_478_485


def max_image_pixels_option() -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """--max-image-pixels: the decompression-bomb guard of the image decoder."""
    return click.option(
        "--max-image-pixels",
        type=click.IntRange(min=1),
        default=DEFAULT_MAX_IMAGE_PIXELS,
        show_default=True,
        help="Refuse images with more pixels (decompression-bomb guard).",
    )
