"""A two-node local cluster (``stair-es engine up --nodes 2``) this module starts itself, on ports
``STAIR_ES_FAULT_PORTS + 2`` and ``+ 3``: an index with a replica keeps answering with every
document while one node is stopped; an index whose only copy was on that node gives one clear
"shard unavailable" line, not a ConnectionError to the dead node; status/logs/down per cluster."""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from stair_es.engine import Backend, ConnectionConfig, Document, Indexer, ModelMeta, connect
from stair_es.local import NodeState, cluster_name, start_cluster, stop
from stair_es_cli.main import main

pytestmark = [pytest.mark.faults, pytest.mark.timeout(900)]

PORT = int(os.environ.get("STAIR_ES_FAULT_PORTS", "9270")) + 2
DOCS = 300
MODEL = ModelMeta("multinode-test", "vocab")


@pytest.fixture(scope="module")
def data_dir() -> Path:
    data = Path(tempfile.mkdtemp(prefix="stair-es-cluster-data-"))
    data.chmod(0o755)  # the nodes may run as the unprivileged stair-es user
    return data


@pytest.fixture(scope="module")
def cluster(data_dir: Path) -> Iterator[list[NodeState]]:
    data = data_dir
    result = CliRunner().invoke(
        main, ["engine", "up", "--nodes", "2", "--port", str(PORT), "--data-dir", str(data)]
    )
    assert result.exit_code == 0, result.output
    assert f"STAIR_ES_URL=http://127.0.0.1:{PORT},http://127.0.0.1:{PORT + 1}" in result.output
    states = start_cluster(
        2, port=PORT, data_dir=data, log=lambda m: None
    )  # both running: returned as they are
    assert [s.port for s in states] == [PORT, PORT + 1] and {s.cluster for s in states} == {
        cluster_name(PORT)
    }
    yield states
    stop(cluster=cluster_name(PORT), log=lambda m: None)


@pytest.fixture(scope="module")
def urls(cluster: list[NodeState]) -> str:
    return ",".join(s.url for s in cluster)


@pytest.fixture(scope="module")
def backend(urls: str) -> Iterator[Backend]:
    with connect(ConnectionConfig(urls=urls, timeout=60)) as b:
        yield b


def cli(urls: str, *args: str):
    return CliRunner().invoke(main, list(args), env={"STAIR_ES_URL": urls})


def test_replicas_keep_every_document_answering_and_the_only_copy_gives_one_clear_line(
    cluster: list[NodeState], urls: str, backend: Backend, data_dir: Path
) -> None:
    health = backend.client.cluster.health(wait_for_nodes=2)
    assert health["number_of_nodes"] == 2
    manager = _manager_node(backend)
    other = next(s for s in cluster if f"stair-es-{s.port}" != manager)  # keeps the cluster's quorum
    docs = [
        Document(id=f"d{i}", image_tokens={"common": 1.0, f"own{i}": 2.0}, caption=f"doc {i}")
        for i in range(DOCS)
    ]
    backend.create_index("replicated", MODEL, shards=2, replicas=1)
    backend.create_index("one-copy", MODEL, shards=1, replicas=0,
                         extra_settings={"routing.allocation.require._name": f"stair-es-{other.port}"})  # fmt: skip
    for index in ("replicated", "one-copy"):
        assert Indexer(backend, index).index_documents(docs).indexed == DOCS
    wait_green(backend, "replicated,one-copy")

    stop(port=other.port, log=lambda m: None)
    query = ["search", "--tokens", '{"common": 1}', "-k", "1000", "--json"]
    replicated = cli(urls, *query, "--index", "replicated")
    assert replicated.exit_code == 0, replicated.output
    assert {h["id"] for h in json.loads(replicated.stdout)["hits"]} == {d.id for d in docs}  # every document

    lost = cli(urls, *query, "--index", "one-copy")
    assert lost.exit_code == 3, lost.output
    line = lost.output.strip().splitlines()[-1]
    assert line.startswith("error: ") and "shard unavailable" in line, line
    assert "ConnectionError" not in lost.output and "Traceback" not in lost.output

    status = CliRunner().invoke(main, ["engine", "status", "--cluster", cluster_name(PORT)])
    assert f"cluster {cluster_name(PORT)}: 1 of 2 nodes running" in status.output, status.output
    logs = CliRunner().invoke(main, ["engine", "logs", "--cluster", cluster_name(PORT), "-n", "3"])
    assert (
        logs.exit_code == 0 and f"==> node {PORT} " in logs.output and f"==> node {PORT + 1} " in logs.output
    )

    # the same `up` starts the stopped node again, on its own data (remembered), and it rejoins
    again = CliRunner().invoke(main, ["engine", "up", "--nodes", "2", "--port", str(PORT)])
    assert again.exit_code == 0, again.output
    assert (data_dir / f"node-{other.port}").is_dir() and other.data_dir.startswith(str(data_dir))
    wait_green(backend, "one-copy")
    back = cli(urls, *query, "--index", "one-copy")
    assert back.exit_code == 0 and len(json.loads(back.stdout)["hits"]) == DOCS


def _manager_node(backend: Backend) -> str:
    """The elected cluster manager: with two nodes only it votes, so the other one may be stopped."""
    key = "cluster_manager_node" if backend.distribution == "opensearch" else "master_node"
    state = backend.client.cluster.state(metric=f"{key},nodes")
    return state["nodes"][state[key]]["name"]


def wait_green(backend: Backend, index: str, seconds: float = 180) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if backend.client.cluster.health(index=index, wait_for_status="green").get("status") == "green":
            return
    raise AssertionError(f"{index} did not turn green within {seconds:.0f}s")
