"""``index images --ray``: the options and the hand-over to :mod:`stair_es.ingest.ray_ingest`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click


def ray_options() -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """--ray [ADDRESS], --ray-encoders, --ray-writers."""
    options = [
        click.option(
            "--ray",
            "ray_address",
            is_flag=False,
            flag_value="",
            default=None,
            metavar="[ADDRESS]",
            help="Run on a Ray cluster (pip install 'stair-es[ray]'): host:port, or no value for "
            "RAY_ADDRESS / the cluster `ray start` made here / a new local one. Files and model must be "
            "at the same path on every node. Write --ray=ADDRESS (or --ray last) so a path is not "
            "taken for the address.",
        ),
        click.option(
            "--ray-encoders",
            type=click.IntRange(min=1),
            default=None,
            help="Encoder actors (one ONNX session each) [default: one per GPU, else one per node].",
        ),
        click.option(
            "--ray-writers",
            type=click.IntRange(min=1),
            default=1,
            show_default=True,
            help="Bulk writer actors.",
        ),
    ]

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed(options):
            func = option(func)
        return func

    return decorate


def ray_options_from(kw: dict[str, Any]) -> Any:
    """RayOptions for --ray (None without it); a path taken for the address is a usage error."""
    address = kw.get("ray_address")
    if address is None:
        return None
    from stair_es.errors import UsageError
    from stair_es.ingest.ray_ingest import RayOptions

    address = address.strip() or None
    if address is not None and not (address in ("auto", "local") or ":" in address):
        raise UsageError(
            f"--ray {address!r} is not a cluster address (host:port, auto or local); "
            "write --ray=ADDRESS, or put --ray after the paths"
        )
    return RayOptions(
        address=address,
        encoders=kw.get("ray_encoders"),
        encoder_cpus=kw.get("threads") or 1,
        writers=kw.get("ray_writers") or 1,
    )


def sink_spec(sink: Any, backend: Any, index: str, kw: dict[str, Any]) -> Any:
    from stair_es.ingest.ray_ingest import SinkSpec

    return SinkSpec(
        connection=None if backend is None else backend.config,
        index=index,
        indexer_options=getattr(sink, "options", None),
        compact=kw["compact"],
        lookup=getattr(sink, "_can_have_docs", False),
    )


def index_on_ray(items: Any, encoder: Any, spec: Any, report: Any, ledger: Any, kw: dict[str, Any],
                  ray_options: Any, pipeline_options: Any, progress: Any) -> None:  # fmt: skip
    from stair_es.ingest.ray_ingest import index_images_ray

    encoder_kwargs = {
        "provider": kw["provider"],
        "precision": kw["precision"],
        "max_image_pixels": kw["max_image_pixels"],
    }
    index_images_ray(
        items,
        encoder.manifest.root,
        spec,
        report,
        ledger,
        options=pipeline_options,
        ray_options=ray_options,
        encoder_kwargs=encoder_kwargs,
        progress=progress,
    )
