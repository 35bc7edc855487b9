"""Several local nodes on loopback that form one cluster: ``stair-es engine up --nodes N``.

The no-Docker twin of a multi-node deployment, for replica and failover tests and the demo cluster:
node ``i`` listens on HTTP port ``port + i`` (transport ports are picked free near ``port + 100``),
every node lists every other as a seed host, and all are named as initial cluster-manager (master)
nodes so the first start bootstraps one cluster. Each node keeps its own instance folder, so
``status``/``down``/``logs`` work per node (``--port``) and per cluster (``--cluster``).
"""

from __future__ import annotations

import json
import time
import urllib.error
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from stair_es.errors import ProvisionError, UsageError
from stair_es.local.distributions import get_distribution
from stair_es.local.heartbeat import heartbeat
from stair_es.local.node import (
    DEFAULT_PORT,
    NodeState,
    _free_port_near,
    _last_error_line,
    _port_in_use,
    _terminate,
    cache_root,
    http_get_json,
    instances,
    pid_alive,
    start,
)

MAX_NODES = 9


def cluster_name(port: int) -> str:
    """The cluster's name, from its first HTTP port (unique per cache and machine)."""
    return f"stair-es-cluster-{port}"


def start_cluster(
    nodes: int = 2,
    engine: str = "opensearch",
    version: str | None = None,
    port: int = DEFAULT_PORT,
    heap: str = "512m",
    data_dir: str | Path | None = None,
    java_home: str | None = None,
    timeout: float = 300.0,
    root: Path | None = None,
    log=print,
    settings: Mapping[str, Any] | None = None,
) -> list[NodeState]:
    """Start (or complete) a cluster of ``nodes`` nodes on ports ``port .. port+nodes-1`` and wait
    until all have joined; returns their states in port order.

    Nodes already running are kept (a stopped one is started again and rejoins). ``data_dir``:
    each node gets ``<data_dir>/node-<port>``. ``settings``: extra settings for every node.
    """
    if not 2 <= nodes <= MAX_NODES:
        raise UsageError(f"a local cluster has 2 to {MAX_NODES} nodes, not {nodes}")
    root = root or cache_root()
    dist = get_distribution(engine, version)
    name = cluster_name(port)
    record = records(root).get(name) or {}
    if data_dir is None and record.get("data_dir"):
        data_dir = record["data_dir"]  # a stopped member starts again on its own data
    ports = [port + i for i in range(nodes)]
    known = {s.port: s for s in instances(root) if s.port in ports and pid_alive(s.pid, s.home)}
    for p, state in known.items():
        if state.cluster != name or state.engine != dist.engine or state.version != dist.version:
            raise ProvisionError(
                f"port {p} already runs {state.engine} {state.version}"
                + (f" of cluster {state.cluster}" if state.cluster else " as a single node")
                + f": stop it first: stair-es engine down --port {p}"
            )
    taken = {s.transport_port for s in known.values()}
    tports = {}
    for p in ports:
        if p in known:
            tports[p] = known[p].transport_port
            continue
        if _port_in_use(p):
            raise ProvisionError(f"port {p} is taken by another process: choose another --port")
        tports[p] = _free_port(p, taken)
        taken.add(tports[p])
    node_settings = {
        "cluster.name": name,
        "discovery.seed_hosts": [f"127.0.0.1:{tports[p]}" for p in ports],
        _bootstrap_key(dist.engine, dist.version): [f"stair-es-{p}" for p in ports],
        **(settings or {}),
    }
    log(
        f"cluster {name}: {nodes} nodes on ports {ports[0]}-{ports[-1]} (transport {sorted(tports.values())})"
    )
    states = []
    for p in ports:
        if p in known:
            states.append(known[p])
            continue
        node_data = Path(data_dir).expanduser() / f"node-{p}" if data_dir else None
        states.append(
            start(
                engine,
                dist.version,
                p,
                heap,
                node_data,
                java_home,
                timeout,
                root,
                log,
                settings=node_settings,
                transport_port=tports[p],
                wait=False,
            )  # fmt: skip
        )
    with heartbeat(log, f"waiting for the {nodes} nodes to form cluster {name}"):
        _wait_formed(states, timeout, log)
    path = root / "clusters" / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"name": name, "ports": ports, "data_dir": str(data_dir) if data_dir else None,
                                "engine": dist.engine, "version": dist.version}, indent=2))  # fmt: skip
    return states


def _bootstrap_key(engine: str, version: str) -> str:
    """OpenSearch 2+ says cluster manager; Elasticsearch and OpenSearch 1.x say master."""
    if engine == "opensearch" and int(version.split(".")[0]) >= 2:
        return "cluster.initial_cluster_manager_nodes"
    return "cluster.initial_master_nodes"


def _free_port(http_port: int, taken: set[int]) -> int:
    for candidate in range(http_port + 100, http_port + 200):
        if candidate not in taken and not _port_in_use(candidate):
            return candidate
    return _free_port_near(http_port)  # raises the usual error


def _wait_formed(states: list[NodeState], timeout: float, log) -> None:
    """Until every node runs and the cluster counts them all (yellow or green)."""
    deadline = time.monotonic() + timeout
    url = f"{states[0].url}/_cluster/health?wait_for_nodes={len(states)}&wait_for_status=yellow&timeout=2s"
    while time.monotonic() < deadline:
        for state in states:
            if not pid_alive(state.pid, state.home):
                stop_states(states)
                detail = _last_error_line(Path(state.log_file))
                raise ProvisionError(
                    f"node {state.port} exited during start-up (log: {state.log_file}): {detail}"
                )
        try:
            health = http_get_json(url, timeout=5)
            if not health.get("timed_out") and health.get("number_of_nodes", 0) >= len(states):
                log(
                    f"cluster {states[0].cluster}: {health['number_of_nodes']} nodes, health {health.get('status')}"
                )
                return
        except (urllib.error.URLError, OSError, ValueError):
            pass
        time.sleep(1.0)
    stop_states(states)
    raise ProvisionError(
        f"the {len(states)} nodes did not form one cluster within {timeout:.0f}s; stopped them "
        f"(logs: {', '.join(s.log_file for s in states)})"
    )


def stop_states(states: list[NodeState]) -> None:
    for state in states:
        if pid_alive(state.pid, state.home):
            _terminate(state.pid)
        Path(state.instance_dir, "state.json").unlink(missing_ok=True)


def clusters(root: Path | None = None) -> dict[str, list[NodeState]]:
    """Recorded cluster nodes by cluster name (single nodes are not listed)."""
    found: dict[str, list[NodeState]] = {}
    for state in instances(root):
        if state.cluster:
            found.setdefault(state.cluster, []).append(state)
    return found


def records(root: Path | None = None) -> dict[str, dict[str, Any]]:
    """What each cluster was started with (ports, data folder), kept while any member may return."""
    found = {}
    for path in sorted(((root or cache_root()) / "clusters").glob("*.json")):
        try:
            record = json.loads(path.read_text())
            found[str(record["name"])] = record
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return found


def forget_stopped(root: Path | None = None) -> None:
    """Drop the records of clusters none of whose nodes runs any more (after ``down``)."""
    root = root or cache_root()
    running = {s.port for s in instances(root) if pid_alive(s.pid, s.home)}
    for name, record in records(root).items():
        if not running.intersection(record.get("ports") or []):
            (root / "clusters" / f"{name}.json").unlink(missing_ok=True)
