"""Assemble, start, watch and stop a local single-node engine bound to 127.0.0.1.

Layout under the cache root (``STAIR_ES_CACHE``, else ``$XDG_CACHE_HOME/stair-es`` or ``~/.cache/stair-es``)::

    downloads/<engine>-<version>/   verified Maven artifacts (kept: a warm start downloads nothing)
    homes/<engine>-<version>/       assembled node home (core + module folders with descriptors)
    instances/<engine>-<port>/      config/, data/, logs/, console.log, state.json of one running node
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from stair_es.errors import ProvisionError
from stair_es.local import secure as _sec
from stair_es.local.distributions import Distribution, get_distribution
from stair_es.local.fetch import fetch
from stair_es.local.heartbeat import heartbeat
from stair_es.local.java import find_java
from stair_es.local.ownership import _chown_tree, prepare_data_dir

DEFAULT_PORT = 9200
_ASSEMBLED_MARK = ".stair-es-assembled"


ROOT_RUN_USER = "stair-es"


def cache_root() -> Path:
    """Where downloads, node homes and instances live.

    As root the default is /var/cache/stair-es: the node then runs as an unprivileged user (the
    engines refuse root) that must be able to reach its files, which /root does not allow.
    """
    if os.environ.get("STAIR_ES_CACHE"):
        return Path(os.environ["STAIR_ES_CACHE"]).expanduser()
    if _is_root():
        return Path("/var/cache/stair-es")
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "stair-es"


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def _run_user(log) -> tuple[str, int, int] | None:
    """The unprivileged (name, uid, gid) to run the node as when we are root, else None."""
    if not _is_root():
        return None
    import pwd

    name = os.environ.get("STAIR_ES_RUN_USER", ROOT_RUN_USER)
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        useradd = shutil.which("useradd")
        if useradd:
            subprocess.run(
                [useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
                capture_output=True,
            )
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            entry = pwd.getpwnam("nobody")
    log(f"running as root: the node runs as the unprivileged user '{entry.pw_name}' (engines refuse root)")
    return entry.pw_name, entry.pw_uid, entry.pw_gid


@dataclass
class NodeState:
    """What ``state.json`` records about a started node."""

    engine: str
    version: str
    port: int
    transport_port: int
    pid: int
    url: str
    home: str
    instance_dir: str
    data_dir: str
    log_file: str
    java_home: str
    started_at: float
    cluster: str | None = None  # the cluster name when the node is one of several (start_cluster)
    # a --secure node (stair_es.local.secure): HTTPS with this CA, basic auth from the 0600 file
    ca_certs: str | None = None
    username: str | None = None
    password_file: str | None = None

    def get_json(self, path: str, timeout: float = 5.0) -> dict:
        """``GET path`` on this node (over TLS with its credentials when it is secured)."""
        if self.password_file and self.ca_certs and self.username:
            return _sec.authorized_get(
                self.url + path, self.ca_certs, self.username, self.password_file, timeout
            )
        return http_get_json(self.url + path, timeout=timeout)

    @classmethod
    def load(cls, path: Path) -> NodeState | None:
        try:
            return cls(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            return None


# ----------------------------------------------------------------------------------------------
# assembling


def ensure_home(dist: Distribution, root: Path | None = None, log=print) -> Path:
    """Download (if needed) and assemble the node home; returns its path."""
    root = root or cache_root()
    home = root / "homes" / dist.key
    if (home / _ASSEMBLED_MARK).exists():
        return home
    downloads = root / "downloads" / dist.key
    log(
        f"downloading {dist.engine} {dist.version} from Maven ({dist.core.coordinate}; once, then cached) ..."
    )
    with heartbeat(log, f"downloading {dist.core.coordinate}"):
        core_zip = fetch(dist.core, downloads)
    jars = {}
    for module in dist.modules:
        log(f"downloading module {module.name} ...")
        jars[module.name] = fetch(module.jar, downloads)
    log(f"checksums verified; assembling the node in {home} ...")
    (root / "homes").mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dist.key}-", dir=root / "homes"))
    try:
        with zipfile.ZipFile(core_zip) as zf:
            zf.extractall(staging)
            top = {name.split("/")[0] for name in zf.namelist()}
        if len(top) != 1:
            raise ProvisionError(f"unexpected layout in {core_zip.name}: {sorted(top)[:3]}")
        unpacked = staging / top.pop()
        for script in (unpacked / "bin").iterdir():
            script.chmod(0o755)
        for module in dist.modules:
            mdir = unpacked / "modules" / module.name
            mdir.mkdir(parents=True, exist_ok=True)
            shutil.copy2(jars[module.name], mdir / jars[module.name].name)
            (mdir / "plugin-descriptor.properties").write_text(dist.descriptor(module))
        (unpacked / _ASSEMBLED_MARK).write_text(json.dumps({"modules": [m.name for m in dist.modules]}))
        if home.exists():
            shutil.rmtree(home)
        unpacked.rename(home)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return home


# ----------------------------------------------------------------------------------------------
# process helpers


def _port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _free_port_near(port: int) -> int:
    for candidate in [port + 100, *range(port + 101, port + 200)]:
        if candidate < 65536 and not _port_in_use(candidate):
            return candidate
    raise ProvisionError(f"no free transport port near {port + 100}")


def pid_alive(pid: int, home: str | None = None) -> bool:
    """True when ``pid`` runs and (on Linux) is still our engine, not a reused pid."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    cmdline = Path(f"/proc/{pid}/cmdline")
    if home and cmdline.exists():
        try:
            text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            return True
        if not text:  # a zombie, or a launcher in the middle of exec'ing Java: ask its state
            return _process_state(pid) not in ("Z", "X", "")
        return "<defunct>" not in text and home in text
    return True


def _process_state(pid: int) -> str:
    """The state letter of /proc/PID/stat (R, S, Z, ...), or "" when it cannot be read."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return ""


def http_get_json(url: str, timeout: float = 5.0) -> dict:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return json.loads(resp.read().decode())


def _last_error_line(log_file: Path) -> str:
    if not log_file.exists():
        return ""
    lines = log_file.read_text(errors="replace").splitlines()
    for line in reversed(lines[-400:]):
        if any(word in line for word in ("ERROR", "Exception", "error:", "FATAL")):
            return line.strip()[:300]
    return lines[-1].strip()[:300] if lines else ""


# ----------------------------------------------------------------------------------------------
# lifecycle


def _instance_dir(engine: str, port: int, root: Path) -> Path:
    return root / "instances" / f"{engine}-{port}"


def _write_config(
    dist: Distribution,
    home: Path,
    conf: Path,
    port: int,
    tport: int,
    data: Path,
    logs: Path,
    extra: Mapping[str, Any] | None = None,
):
    """Copy the default config and pin the node to loopback, single-node, relaxed disk checks.

    ``extra`` settings win; with ``discovery.seed_hosts`` among them the node joins a cluster instead.
    """
    if conf.exists():
        shutil.rmtree(conf)
    shutil.copytree(home / "config", conf)
    settings = {
        "cluster.name": "stair-es-local",
        "node.name": f"stair-es-{port}",
        "network.host": "127.0.0.1",
        "http.port": port,
        "transport.port": tport,
        "discovery.type": "single-node",
        "path.data": str(data),
        "path.logs": str(logs),
        # a developer laptop is often >90% full; a demo must not go read-only because of that
        "cluster.routing.allocation.disk.threshold_enabled": False,
        "action.destructive_requires_name": True,
    }
    if dist.engine == "elasticsearch":
        settings["xpack.security.enabled"] = False
    settings.update(extra or {})
    if "discovery.seed_hosts" in settings:
        del settings["discovery.type"]
    # the launcher runs from the (shared, read-only) home: point relative log paths at the instance
    jvm = conf / "jvm.options"
    if jvm.exists():
        text = jvm.read_text()
        for old, new in (
            ("file=logs/", f"file={logs}/"),
            ("=logs/hs_err", f"={logs}/hs_err"),
            ("-XX:HeapDumpPath=data", f"-XX:HeapDumpPath={logs}"),
        ):
            text = text.replace(old, new)
        jvm.write_text(text)
    (conf / dist.config_file).write_text("".join(f"{k}: {json.dumps(v)}\n" for k, v in settings.items()))


def start(
    engine: str = "opensearch",
    version: str | None = None,
    port: int = DEFAULT_PORT,
    heap: str = "512m",
    data_dir: str | Path | None = None,
    java_home: str | None = None,
    timeout: float = 240.0,
    root: Path | None = None,
    log=print,
    settings: Mapping[str, Any] | None = None,
    transport_port: int | None = None,
    wait: bool = True,
    secure: bool = False,
) -> NodeState:
    """Start a node (or return the running one on that port) and wait until it is healthy.

    ``settings``: extra node settings (e.g. ``thread_pool.write.queue_size``; the discovery settings
    of :func:`~stair_es.local.cluster.start_cluster`). ``wait=False`` returns once the process runs.
    ``secure``: Elasticsearch 8.x/9.x with security, HTTPS and a generated superuser (see
    :mod:`stair_es.local.secure`).
    """
    root = root or cache_root()
    dist = get_distribution(engine, version)
    if secure:
        _sec.check_secure(dist)
    instance = _instance_dir(dist.engine, port, root)
    state_file = instance / "state.json"
    existing = NodeState.load(state_file)
    if existing and pid_alive(existing.pid, existing.home):
        if existing.version != dist.version:
            raise ProvisionError(
                f"port {port} already runs {existing.engine} {existing.version}; "
                f"stop it first: stair-es engine down --port {port}"
            )
        if bool(existing.password_file) != secure:
            kind = "a secured" if existing.password_file else "an unsecured"
            raise ProvisionError(
                f"port {port} already runs {kind} node; stop it first: stair-es engine down --port {port}"
            )
        if data_dir and Path(existing.data_dir) != Path(data_dir).expanduser().resolve():
            raise ProvisionError(
                f"port {port} already runs a node on data dir {existing.data_dir}, not {data_dir}; "
                f"stop it first: stair-es engine down --port {port}"
            )
        log(f"{existing.engine} {existing.version} already running at {existing.url} (pid {existing.pid})")
        return existing
    if _port_in_use(port):
        raise ProvisionError(
            f"port {port} is taken by another process: choose another with --port, or stop what listens there"
        )
    data = Path(data_dir).expanduser().absolute() if data_dir else instance / "data"
    run_as = _run_user(log)
    if run_as and data_dir:
        prepare_data_dir(data, run_as[1])
    data = data.resolve()
    java = find_java(dist.min_java, dist.max_java, java_home)
    home = ensure_home(dist, root, log=log)
    logs = instance / "logs"
    conf = instance / "config"
    for path in (data, logs, instance / "tmp"):
        path.mkdir(parents=True, exist_ok=True)
    tport = transport_port or _free_port_near(port)
    if secure:
        settings = {**_sec.secure_settings(conf), **(settings or {})}
    _write_config(dist, home, conf, port, tport, data, logs, settings)
    env = dict(os.environ)
    env.update(
        {
            dist.conf_env: str(conf),
            dist.java_home_env: str(java.home),
            "JAVA_HOME": str(java.home),
            dist.java_opts_env: f"-Xms{heap} -Xmx{heap}",
            "OPENSEARCH_TMPDIR" if dist.engine == "opensearch" else "ES_TMPDIR": str(instance / "tmp"),
        }
    )
    credentials: dict[str, str] = {}
    if secure:
        log("security on: making a CA, an HTTPS certificate for localhost and a superuser ...")
        credentials = _sec.prepare(home, conf, instance, _sec.node_env_for_tools(env))
    if run_as:
        for path in (instance, data):
            _chown_tree(path, run_as[1], run_as[2])
        for parent in (root, root / "instances"):
            parent.chmod(parent.stat().st_mode | 0o711)
    console = instance / "console.log"
    log(f"starting {dist.engine} {dist.version} on 127.0.0.1:{port} (Java {java.major}, heap {heap}) ...")
    as_user: dict[str, Any] = {"user": run_as[1], "group": run_as[2], "extra_groups": []} if run_as else {}
    with console.open("wb") as out:
        proc = subprocess.Popen(
            [str(home / dist.launcher)],
            cwd=str(instance),
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            **as_user,
        )
    url = f"https://{_sec.SECURE_HOST}:{port}" if secure else f"http://127.0.0.1:{port}"
    state = NodeState(
        engine=dist.engine,
        version=dist.version,
        port=port,
        transport_port=tport,
        pid=proc.pid,
        url=url,
        home=str(home),
        instance_dir=str(instance),
        data_dir=str(data),
        log_file=str(console),
        java_home=str(java.home),
        started_at=time.time(),
        cluster=(settings or {}).get("cluster.name") if "discovery.seed_hosts" in (settings or {}) else None,
        **credentials,
    )
    state_file.write_text(json.dumps(asdict(state), indent=2))
    if wait:
        with heartbeat(log, f"waiting for {dist.engine} to answer on {url} (log: {console})"):
            _wait_healthy(state, proc, timeout)
    return state


def _wait_healthy(state: NodeState, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    health_path = "/_cluster/health?wait_for_status=yellow&timeout=2s"
    while time.monotonic() < deadline:
        code = proc.poll()
        if code is not None:
            Path(state.instance_dir, "state.json").unlink(missing_ok=True)
            detail = _last_error_line(Path(state.log_file))
            raise ProvisionError(
                f"{state.engine} exited with code {code} during start-up (log: {state.log_file}): {detail}"
            )
        try:
            health = state.get_json(health_path, timeout=5)
            if health.get("status") in ("green", "yellow"):
                return
        except (urllib.error.URLError, OSError, ValueError):
            pass
        time.sleep(0.5)
    _terminate(state.pid)
    Path(state.instance_dir, "state.json").unlink(missing_ok=True)
    raise ProvisionError(
        f"{state.engine} did not become healthy within {timeout:.0f}s; stopped it (log: {state.log_file})"
    )


def _terminate(pid: int, grace: float = 60.0) -> None:
    """SIGTERM the node's process group, SIGKILL what is left after ``grace`` seconds."""
    try:
        pgid = os.getpgid(pid)
    except ProcessLookupError:
        return
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            break
        try:  # reap our own child when it was started by this process
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        time.sleep(0.2)
    else:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def instances(root: Path | None = None) -> list[NodeState]:
    root = root or cache_root()
    found = []
    for state_file in sorted((root / "instances").glob("*/state.json")):
        state = NodeState.load(state_file)
        if state:
            found.append(state)
    return found


def stop(
    port: int | None = None, root: Path | None = None, log=print, cluster: str | None = None
) -> list[NodeState]:
    """Stop one node (``port``), one cluster's nodes (``cluster``) or all nodes this cache started;
    returns the ones stopped."""
    stopped = []
    for state in instances(root):
        if (port is not None and state.port != port) or (cluster is not None and state.cluster != cluster):
            continue
        if pid_alive(state.pid, state.home):
            log(f"stopping {state.engine} {state.version} on port {state.port} (pid {state.pid}) ...")
            _terminate(state.pid)
            if pid_alive(state.pid, state.home):
                raise ProvisionError(f"could not stop pid {state.pid}; kill it by hand")
            stopped.append(state)
        Path(state.instance_dir, "state.json").unlink(missing_ok=True)
    if port is None:  # a whole cluster, or everything: its record goes too
        from stair_es.local.cluster import forget_stopped

        forget_stopped(root)
    return stopped


def ensure_running(port: int = DEFAULT_PORT, engine: str = "opensearch", log=print, **kwargs) -> str:
    """The embedded default: a healthy local node's URL, starting one when needed."""
    return start(engine=engine, port=port, log=log, **kwargs).url
