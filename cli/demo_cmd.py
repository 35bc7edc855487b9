"""``stair-es demo``: the README's first command.

Today it provisions and starts the local engine and shows that it answers; the full demo (model,
sample images, indexing, queries) grows on top of this as the pipeline lands.
"""

from __future__ import annotations

import json

import click


@click.command()
@click.option(
    "--port",
    type=int,
    default=9200,
    envvar="STAIR_ES_PORT",
    show_default=True,
    help="Port of the local engine [env STAIR_ES_PORT].",
)
def demo(port: int) -> None:
    """Start the local engine (downloading it the first time) and show that it answers."""
    from stair_es.local import ensure_running
    from stair_es.local.node import http_get_json

    url = ensure_running(port=port, log=lambda m: click.echo(m, err=True))
    info = http_get_json(url)
    click.echo(json.dumps(info, indent=2))
    click.echo(f"the local engine answers at {url}; stop it with: stair-es engine down")
