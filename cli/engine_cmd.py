"""``stair-es engine``: the local node that serves as the embedded default and as the test engine."""

from __future__ import annotations

import json
import time

import click

from stair_es_cli.common import local_port_option


def stop_hint(port: int) -> str:
    """How to stop exactly this node (a bare `engine down` stops every node of the cache)."""
    return f"stair-es engine down --port {port}"


@click.group()
def engine() -> None:
    """Start, stop and inspect a local OpenSearch node (downloaded from Maven Central, cached)."""


@engine.command()
@local_port_option("HTTP port on 127.0.0.1")
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
    help="Engine version [default: the tested pin, OpenSearch 3.8.0 or Elasticsearch 9.1.0; "
    "also tested: OpenSearch 2.19.6, Elasticsearch 8.15.0 and 7.17.29].",
)
@click.option(
    "--java-home",
    envvar="STAIR_ES_JAVA_HOME",
    default=None,
    help="Java to run the node with [env STAIR_ES_JAVA_HOME; default: JAVA_HOME, PATH, /usr/lib/jvm].",
)
@click.option("--timeout", type=float, default=240.0, show_default=True, help="Seconds to wait for health.")
@click.option(
    "--nodes",
    type=click.IntRange(min=1, max=9),
    default=1,
    show_default=True,
    help="2 or more: one cluster of that many nodes on ports PORT, PORT+1, ... (data in DATA_DIR/node-PORT).",
)
@click.option(
    "--secure",
    is_flag=True,
    help="Elasticsearch 8.x/9.x only: security on, HTTPS with a generated CA (certificate for "
    "localhost), a superuser whose password is written to a 0600 file; prints how to connect.",
)
def up(
    port: int,
    heap: str,
    data_dir: str | None,
    engine_name: str,
    version: str | None,
    java_home: str | None,
    timeout: float,
    nodes: int,
    secure: bool,
) -> None:
    """Download (first time), start and wait for a healthy node (or cluster) on 127.0.0.1."""
    from stair_es.local import start, start_cluster

    t0 = time.monotonic()
    if nodes > 1 and secure:
        from stair_es.errors import UsageError

        raise UsageError("--secure starts one node; drop --nodes")
    if nodes > 1:
        states = start_cluster(
            nodes, engine_name, version, port, heap, data_dir, java_home, max(timeout, 300.0),
            log=lambda m: click.echo(m, err=True),
        )  # fmt: skip
        urls = ",".join(s.url for s in states)
        for s in states:
            click.echo(
                f"  node {s.port}: {s.url} (transport {s.transport_port}, pid {s.pid}, log {s.log_file})"
            )
        click.echo(
            f"cluster {states[0].cluster} of {len(states)} {states[0].engine} {states[0].version} nodes is up "
            f"({time.monotonic() - t0:.1f}s): STAIR_ES_URL={urls}; stop with: "
            f"stair-es engine down --cluster {states[0].cluster}"
        )
        return
    state = start(
        engine=engine_name,
        version=version,
        port=port,
        heap=heap,
        data_dir=data_dir,
        java_home=java_home,
        timeout=timeout,
        log=lambda m: click.echo(m, err=True),
        secure=secure,
    )
    click.echo(
        f"{state.engine} {state.version} is up at {state.url} "
        f"(pid {state.pid}, {time.monotonic() - t0:.1f}s; stop with: {stop_hint(state.port)})"
    )
    if state.password_file and state.ca_certs and state.username:
        from stair_es.local.secure import connect_hint

        click.echo(
            "connect with (TLS verified against its CA; user and password file): "
            + connect_hint(state.url, state.ca_certs, state.username, state.password_file)
        )


_CLUSTER_OPTION = click.option("--cluster", default=None, help="Only this cluster's nodes (its name).")


@engine.command()
@click.option("--port", type=int, default=None, help="Stop only the node on this port [default: all].")
@_CLUSTER_OPTION
def down(port: int | None, cluster: str | None) -> None:
    """Stop local nodes cleanly (SIGTERM, then SIGKILL after 60 s)."""
    from stair_es.local import stop

    stopped = stop(port=port, cluster=cluster, log=lambda m: click.echo(m, err=True))
    click.echo(f"stopped {len(stopped)} node(s)" if stopped else "no local node was running")


@engine.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--port", type=int, default=None, help="Only the node on this port.")
@_CLUSTER_OPTION
def status(as_json: bool, port: int | None, cluster: str | None) -> None:
    """Show local nodes: running or not, health, URL, log file (cluster nodes by cluster)."""
    from stair_es.local import instances, node_status, records

    chosen = [
        s
        for s in instances()
        if (port is None or s.port == port) and (cluster is None or s.cluster == cluster)
    ]
    rows = [node_status(s) for s in sorted(chosen, key=lambda s: (s.cluster or "", s.port))]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no local node (start one: stair-es engine up)")
        return
    members = {name: record.get("ports") or [] for name, record in records().items()}
    shown = None
    for r in rows:
        if r["cluster"] and r["cluster"] != shown:
            ports = members.get(r["cluster"]) or [x["port"] for x in rows if x["cluster"] == r["cluster"]]
            up = sum(x["running"] for x in rows if x["cluster"] == r["cluster"])
            click.echo(f"cluster {r['cluster']}: {up} of {len(ports)} nodes running")
            known = {x["port"] for x in rows if x["cluster"] == r["cluster"]}
            for missing in sorted(set(ports) - known):
                click.echo(
                    f"  node {missing}: stopped (stair-es engine up --nodes {len(ports)} --port {min(ports)} starts it again)"
                )
        shown = r["cluster"]
        state = f"running, health {r.get('health')}" if r["running"] else "not running (stale state)"
        lead = "  " if r["cluster"] else ""
        click.echo(f"{lead}{r['engine']} {r['version']} {r['url']} pid {r['pid']}: {state}; log {r['log']}")
    if not any(r["running"] for r in rows):
        raise SystemExit(1)


@engine.command()
@click.option("--port", type=int, default=None, help="Node port [default: the only/first node].")
@_CLUSTER_OPTION
@click.option("-n", "--lines", type=int, default=50, show_default=True, help="Lines from the end.")
def logs(port: int | None, cluster: str | None, lines: int) -> None:
    """Print the end of a local node's log (with --cluster: of each node of the cluster)."""
    from pathlib import Path

    from stair_es.errors import UsageError
    from stair_es.local import cache_root, instances, records, tail_log

    chosen = [
        s
        for s in instances()
        if (port is None or s.port == port) and (cluster is None or s.cluster == cluster)
    ]
    if cluster is None:
        if not chosen:
            raise UsageError(
                "no local node found" + (f" on port {port}" if port else "") + ": stair-es engine up"
            )
        click.echo(tail_log(chosen[0], lines))
        return
    record = records().get(cluster) or {}
    logs_by_port = {n.port: Path(n.log_file) for n in chosen}
    for member in record.get("ports") or []:  # a stopped member's log stays in its instance folder
        logs_by_port.setdefault(
            member, cache_root() / "instances" / f"{record.get('engine')}-{member}" / "console.log"
        )
    if not logs_by_port:
        raise UsageError(f"no local node found in cluster {cluster}: stair-es engine up --nodes N")
    for member, log_file in sorted(logs_by_port.items()):
        click.echo(f"==> node {member} ({log_file}) <==")
        text = log_file.read_text(errors="replace").splitlines()[-lines:] if log_file.exists() else []
        click.echo("\n".join(text))
