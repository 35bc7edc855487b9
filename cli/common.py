"""Options and helpers shared by the commands: connection flags (each with its env var), the
model, and the embedded default engine. Library imports stay inside functions (fast --help)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from stair_es.engine.config import INDEX, LOCAL_PORT, MODEL, Setting

if TYPE_CHECKING:
    from stair_es.engine import Backend, ConnectionConfig


def echo_err(message: str) -> None:
    click.echo(message, err=True)


@dataclass(frozen=True)
class EngineOptions:
    """What the connection flags (or their variables) asked for. ``values`` holds only what was
    set, by ConnectionConfig field, so the library's defaults apply to the rest; without a URL the
    command falls back to the local engine unless ``use_local`` is off."""

    values: Mapping[str, Any] = field(default_factory=dict)
    use_local: bool = True

    @property
    def url_given(self) -> bool:
        return bool(self.values.get("urls"))

    def config(self, urls: str | None = None) -> ConnectionConfig:
        """The typed configuration, at ``urls`` when given (the local engine's)."""
        from stair_es.engine.config import ConnectionConfig

        return ConnectionConfig(**{**self.values, **({"urls": urls} if urls else {})})


def local_port() -> int:
    """The local engine's port (STAIR_ES_PORT; read when it is needed, as a bad value is an error)."""
    from stair_es.engine.config import LOCAL_PORT

    port: int = LOCAL_PORT.read()
    return port


def _connection_option(setting: Setting) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A click option for one row of the library's table: its flag, variable and help."""
    kinds: dict[str, Any] = {
        "int": int,
        "float": float,
        "file": click.Path(exists=True, dir_okay=False),
        "choice": click.Choice(setting.choices),
    }
    flag = f"{setting.flag}/--no-{setting.flag[2:]}" if setting.kind == "bool" else setting.flag
    return click.option(
        flag,
        setting.name,
        envvar=setting.env,
        type=kinds.get(setting.kind),
        default=None,
        help=f"{setting.help} [env {setting.env}]",
    )


def connection_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """The connection flags, one per row of stair_es.engine.config.CONNECTION_SETTINGS (each also
    read from its variable), plus ``--local/--no-local``; the command gets ``connection``, an
    :class:`EngineOptions`.

    Without --url and STAIR_ES_URL the command uses (and if needed starts) the local engine on
    127.0.0.1:$STAIR_ES_PORT (9200): the embedded default. ``--no-local`` turns that off.
    """
    from stair_es.engine.config import CONNECTION_SETTINGS

    options = [_connection_option(s) for s in CONNECTION_SETTINGS]
    options.append(
        click.option(
            "--local/--no-local",
            "use_local",
            default=True,
            show_default=True,
            help="Without a URL, use (and start) the local engine on 127.0.0.1:$STAIR_ES_PORT.",
        )
    )
    for option in reversed(options):
        func = option(func)

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        values = {s.name: kwargs.pop(s.name) for s in CONNECTION_SETTINGS}
        given = {name: value for name, value in values.items() if value is not None}
        kwargs["connection"] = EngineOptions(given, use_local=kwargs.pop("use_local"))
        return func(*args, **kwargs)

    return wrapper


def resolve_connection(connection: EngineOptions, cloud_id_is_url: bool = True) -> ConnectionConfig:
    """The configuration to use, without connecting; starts the local engine when no URL (nor cloud
    id) is given. ``cloud_id_is_url=False`` is how ``serve`` has always decided (it starts the local
    engine beside a --cloud-id, which then wins): kept, to change with a test of its own."""
    from stair_es.errors import UsageError

    if connection.url_given or (cloud_id_is_url and connection.values.get("cloud_id")):
        return connection.config()
    if not connection.use_local:
        raise UsageError("no engine URL: pass --url or set STAIR_ES_URL (or drop --no-local)")
    from stair_es.local import ensure_running

    port = local_port()
    echo_err(f"no --url/STAIR_ES_URL: using the local engine on 127.0.0.1:{port}")
    return connection.config(urls=ensure_running(port=port, log=echo_err))


def connect_backend(connection: EngineOptions) -> Backend:
    """A connected Backend; starts the local engine when no URL is configured."""
    from stair_es.engine import connect

    return connect(resolve_connection(connection))


def model_option(
    required: bool = True, default_help: str = "the demo model if built"
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """--model DIR: an exported model (manifest + ONNX graphs) [env STAIR_ES_MODEL]."""
    return click.option(
        "--model",
        "model_path",
        envvar=MODEL.env,
        default=None,
        type=click.Path(file_okay=False, path_type=Path),
        help=f"{MODEL.help[:-1]} [env {MODEL.env}; default: {default_help}].",
    )


def index_option(
    help_text: str, default_help: str = ""
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """--index NAME [env STAIR_ES_INDEX]."""
    default = f"; default: {default_help}" if default_help else ""
    return click.option(
        "--index",
        "index_name",
        envvar=INDEX.env,
        default=None,
        help=f"{help_text} [env {INDEX.env}{default}].",
    )


def local_port_option(help_text: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """--port of the local engine [env STAIR_ES_PORT]: where commands without a URL look."""
    return click.option(
        "--port",
        type=int,
        default=LOCAL_PORT.default,
        envvar=LOCAL_PORT.env,
        show_default=True,
        help=f"{help_text} [env {LOCAL_PORT.env}].",
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
