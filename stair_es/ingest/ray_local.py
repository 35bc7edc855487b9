"""A throwaway Ray cluster on loopback (a head and worker nodes, each a ``ray start --block``
process) for tests and benchmarks: every port pinned inside a block the caller owns, its own temp
folder, no dashboard, and stopped by killing exactly the processes it started (never ``ray stop``,
which would stop every Ray cluster of the user on the machine).

Port layout for ``base`` B: the head uses B (GCS) .. B+7 and workers B+10..B+39; worker node k uses
B+40k+1 .. B+40k+7 and workers B+40k+10 .. B+40k+39. One head and one worker fit in B..B+79.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from stair_es.errors import ProvisionError

NODE_PORT_SPAN = 40


@dataclass
class LocalRayCluster:
    base_port: int = 6400
    workers: int = 1
    cpus_per_node: int = 2
    object_store_bytes: int = 256 * 1024 * 1024
    temp_dir: Path | None = None
    _processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    _own_temp: bool = False

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.base_port}"

    def _ray(self) -> str:
        found = shutil.which("ray", path=os.path.dirname(sys.executable)) or shutil.which("ray")
        if not found:
            raise ProvisionError('the `ray` command is missing: pip install "stair-es[ray]"')
        return found

    def _node_args(self, k: int) -> list[str]:
        base = self.base_port + NODE_PORT_SPAN * k
        args = [
            "--node-ip-address=127.0.0.1",
            f"--node-manager-port={base + 1}",
            f"--object-manager-port={base + 2}",
            f"--metrics-export-port={base + 4}",
            f"--dashboard-agent-grpc-port={base + 5}",
            f"--dashboard-agent-listen-port={base + 6}",
            f"--runtime-env-agent-port={base + 7}",
            f"--min-worker-port={base + 10}",
            f"--max-worker-port={base + NODE_PORT_SPAN - 1}",
            f"--num-cpus={self.cpus_per_node}",
            "--num-gpus=0",
            f"--object-store-memory={self.object_store_bytes}",
            "--disable-usage-stats",
            "--block",
        ]
        if k == 0:
            args += [
                "--head",
                f"--port={self.base_port}",
                f"--ray-client-server-port={base + 3}",
                "--include-dashboard=false",
                f"--temp-dir={self.temp_dir}",
            ]
        else:
            args.append(f"--address={self.address}")
        return args

    def start(self, timeout: float = 120.0) -> LocalRayCluster:
        """Start the head, then the workers; returns once every node is alive in the cluster."""
        if self.temp_dir is None:
            # short: Ray's unix socket paths must stay under ~107 characters
            self.temp_dir = Path(tempfile.mkdtemp(prefix="sray", dir="/tmp"))
            self._own_temp = True
        env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
        env.pop("RAY_ADDRESS", None)
        ray = self._ray()
        for k in range(self.workers + 1):
            log = open(Path(self.temp_dir) / f"node{k}.log", "wb")  # noqa: SIM115 - closed with the process
            process = subprocess.Popen(
                [ray, "start", *self._node_args(k)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # its own process group: stop() kills it and its children only
            )
            self._processes.append(process)
            self._wait_for_nodes(k + 1, timeout)
        return self

    def _wait_for_nodes(self, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        probe = (
            "import ray,sys;ray.init(address=sys.argv[1],logging_level='ERROR',log_to_driver=False);"
            "print(sum(1 for n in ray.nodes() if n['Alive']))"
        )
        last = ""
        while time.monotonic() < deadline:
            for process in self._processes:
                if process.poll() is not None:
                    raise ProvisionError(f"a Ray node exited at start; see {self.temp_dir}/node*.log")
            result = subprocess.run(
                [sys.executable, "-c", probe, self.address],
                capture_output=True,
                text=True,
                timeout=120,
                env={k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"},
            )
            last = (result.stdout.strip().splitlines() or [""])[-1]
            if last.isdigit() and int(last) >= count:
                return
            time.sleep(1.0)
        raise ProvisionError(
            f"Ray cluster at {self.address} has {last or 0} of {count} nodes after {timeout:.0f}s"
        )

    def stop(self) -> None:
        """Kill the node processes this object started (workers first), and their children."""
        for process in reversed(self._processes):
            if process.poll() is None:
                try:
                    os.killpg(process.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 10  # a `ray start --block` tidies up for ~30 s; not worth waiting
        for process in reversed(self._processes):
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                process.wait(timeout=10)
        _kill_sessions({p.pid for p in self._processes})
        self._processes = []
        if self._own_temp and self.temp_dir is not None:
            shutil.rmtree(self.temp_dir, ignore_errors=True)

    def __enter__(self) -> LocalRayCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _kill_sessions(session_ids: set[int]) -> None:
    """SIGKILL what is left of the sessions our node processes led (Ray workers that outlived
    their raylet): only processes whose session id is one we created."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) in session_ids:  # fields after "(comm)": state ppid pgrp session ...
            try:
                os.kill(int(entry.name), signal.SIGKILL)
            except ProcessLookupError:
                pass
