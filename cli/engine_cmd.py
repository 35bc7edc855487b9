"""``stair-es engine``: the local node that serves as the embedded default and as the test engine."""

from __future__ import annotations

import json
import time

import click

DEFAULT_PORT = 9200  # mirrored from stair_es.local.node without importing it at --help time


def stop_hint(port: int) -> str:
    """How to stop exactly this node (a bare `engine down` stops every node of the cache)."""
    return f"stair-es engine down --port {port}"


@click.group()
def engine() -> None:
    """Start, stop and inspect a local OpenSearch node (downloaded from Maven Central, cached)."""


@engine.command()
@click.option(
    "--port",
    type=int,
    default=DEFAULT_PORT,
    envvar="STAIR_ES_PORT",
    show_default=True,
    help="HTTP port on 127.0.0.1 [env STAIR_ES_PORT].",
)
@click.option("--heap", default="512m", show_default=True, help="JVM heap (-Xms/-Xmx).")
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Where the index data lives [default: inside the instance folder of the cache].",
)
@click.option(
    "--engine",
    "engine_name",
    type=click.Choice(["opensearch", "elasticsearch"]),
    default="opensearch",
    show_default=True,
    help="Engine distribution.",
)
@click.option(
    "--version",
    "version",
    default=None,
    help="Engine version [default: the tested pin, OpenSearch 3.8.0 or Elasticsearch 7.17.29].",
)
@click.option(
    "--java-home",
    envvar="STAIR_ES_JAVA_HOME",
    default=None,
    help="Java to run the node with [env STAIR_ES_JAVA_HOME; default: JAVA_HOME, PATH, /usr/lib/jvm].",
)
@click.option("--timeout", type=float, default=240.0, show_default=True, help="Seconds to wait for health.")
def up(
    port: int,
    heap: str,
    data_dir: str | None,
    engine_name: str,
    version: str | None,
    java_home: str | None,
    timeout: float,
) -> None:
    """Download (first time), start and wait for a healthy node on 127.0.0.1."""
    from stair_es.local import start

    t0 = time.monotonic()
    state = start(
        engine=engine_name,
        version=version,
        port=port,
        heap=heap,
        data_dir=data_dir,
        java_home=java_home,
        timeout=timeout,
        log=lambda m: click.echo(m, err=True),
    )
    click.echo(
        f"{state.engine} {state.version} is up at {state.url} "
        f"(pid {state.pid}, {time.monotonic() - t0:.1f}s; stop with: {stop_hint(state.port)})"
    )


@engine.command()
@click.option("--port", type=int, default=None, help="Stop only the node on this port [default: all].")
def down(port: int | None) -> None:
    """Stop local nodes cleanly (SIGTERM, then SIGKILL after 60 s)."""
    from stair_es.local import stop

    stopped = stop(port=port, log=lambda m: click.echo(m, err=True))
    click.echo(f"stopped {len(stopped)} node(s)" if stopped else "no local node was running")


@engine.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status(as_json: bool) -> None:
    """Show local nodes: running or not, health, URL, log file."""
    from stair_es.local import instances, node_status

    rows = [node_status(s) for s in instances()]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no local node (start one: stair-es engine up)")
        return
    for r in rows:
        state = f"running, health {r.get('health')}" if r["running"] else "not running (stale state)"
        click.echo(f"{r['engine']} {r['version']} {r['url']} pid {r['pid']}: {state}; log {r['log']}")
    if not any(r["running"] for r in rows):
        raise SystemExit(1)


@engine.command()
@click.option("--port", type=int, default=None, help="Node port [default: the only/first node].")
@click.option("-n", "--lines", type=int, default=50, show_default=True, help="Lines from the end.")
def logs(port: int | None, lines: int) -> None:
    """Print the end of a local node's log."""
    from stair_es.errors import UsageError
    from stair_es.local import instances, tail_log

    nodes = [s for s in instances() if port is None or s.port == port]
    if not nodes:
        raise UsageError(
            "no local node found" + (f" on port {port}" if port else "") + ": stair-es engine up"
        )
    click.echo(tail_log(nodes[0], lines))
