"""``stair-es doctor``: is this machine ready to encode, index and search, and if not, what to do.

Each check is one line, ``ok``/``warn``/``fail``, with a hint for anything not ok: package
versions, the execution provider onnxruntime really uses (by creating a session), the engine
(reachable, distribution, version, the modules rank_features needs), local nodes, the model
(manifest, files, hashes, parity report, a test encode) and optionally an index's model metadata.
Never starts or changes anything.
"""

from __future__ import annotations

import json
import platform
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import click

from stair_es_cli.common import (
    EngineOptions,
    connection_options,
    index_option,
    local_port,
    model_option,
    provider_option,
)

OK, WARN, FAIL = "ok", "warn", "fail"
EXIT_FAILED = 1
DOCTOR_EXIT_HELP = f"""
\b
Exit status:
  0  no check failed (warnings allowed unless --strict)    {EXIT_FAILED}  at least one check failed
"""

# (distribution names to try, shown name, required for the runtime path, install hint)
PACKAGES: list[tuple[tuple[str, ...], str, bool, str]] = [
    (("numpy",), "numpy", True, "pip install numpy"),
    (("tokenizers",), "tokenizers", True, "pip install tokenizers"),
    (("pillow", "Pillow"), "pillow", True, "pip install pillow"),
    (("click",), "click", True, "pip install click"),
    (
        ("onnxruntime-gpu", "onnxruntime"),
        "onnxruntime",
        True,
        "pip install onnxruntime-gpu (or onnxruntime on CPU hosts)",
    ),
    (
        ("opensearch-py",),
        "opensearch-py",
        False,
        'pip install "stair-es[opensearch]" (needed for OpenSearch)',
    ),
    (
        ("elasticsearch",),
        "elasticsearch",
        False,
        'pip install "stair-es[elasticsearch]" (needed for Elasticsearch)',
    ),
    (("torch",), "torch", False, 'only for training/export: pip install "stair-es[train]"'),
]


@dataclass
class Check:
    name: str
    status: str
    detail: str
    hint: str = ""


class Report:
    def __init__(self) -> None:
        self.checks: list[Check] = []

    def add(self, name: str, status: str, detail: str, hint: str = "") -> Check:
        from stair_es.engine.config import redact_urls

        check = Check(name, status, redact_urls(detail), redact_urls(hint) if status != OK else "")
        self.checks.append(check)
        return check

    def run(self, name: str, fn: Callable[[], None]) -> None:
        """Run a group of checks; an unexpected exception becomes one failed line, not a traceback."""
        try:
            fn()
        except Exception as exc:  # noqa: BLE001 - the doctor reports, it does not crash
            self.add(
                name, FAIL, f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
            )

    def counts(self) -> dict[str, int]:
        return {s: sum(c.status == s for c in self.checks) for s in (OK, WARN, FAIL)}


def _version(names: tuple[str, ...]) -> tuple[str, str] | None:
    for name in names:
        try:
            return name, metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


# --------------------------------------------------------------------------------------------
# checks


def check_versions(report: Report) -> None:
    from stair_es import __version__

    report.add("stair-es", OK, f"{__version__} (python {platform.python_version()}, {sys.executable})")
    for names, shown, required, hint in PACKAGES:
        found = _version(names)
        if found is None:
            if shown == "torch":
                report.add(shown, OK, "not installed (not needed to encode, index or search)")
            else:
                report.add(shown, FAIL if required else WARN, "not installed", hint)
            continue
        dist, version = found
        report.add(shown, OK, version if dist == shown else f"{version} ({dist})")
    if _version(("onnxruntime",)) and _version(("onnxruntime-gpu",)):
        report.add(
            "onnxruntime pkgs",
            WARN,
            "both onnxruntime and onnxruntime-gpu are installed: one shadows the other",
            "pip uninstall -y onnxruntime onnxruntime-gpu && pip install onnxruntime-gpu",
        )
    if not (_version(("opensearch-py",)) or _version(("elasticsearch",))):
        report.add(
            "engine client",
            FAIL,
            "neither opensearch-py nor elasticsearch is installed",
            'pip install "stair-es[opensearch]"',
        )


def check_provider(report: Report, provider: str, graph: Path | None) -> None:
    """Which provider a session really runs on: a real session on the model's text graph."""
    from stair_es.runtime.sessions import create_session, cuda_unavailable_reason, import_onnxruntime

    ort = import_onnxruntime()
    report.add("ort providers", OK, ", ".join(ort.get_available_providers()))
    blocker = cuda_unavailable_reason(ort)
    if graph is None:
        if blocker is None:
            report.add(
                "provider",
                WARN,
                "CUDA looks usable but was not verified",
                "pass --model DIR to create a real session",
            )
        else:
            report.add(
                "provider",
                OK if "no NVIDIA driver" in blocker else WARN,
                f"CPU expected: {blocker}",
                _cuda_hint(blocker),
            )
        return
    try:
        _session, info = create_session(graph, provider)
    except Exception as exc:  # noqa: BLE001 - provider="cuda" without CUDA, or a broken graph
        report.add(
            "provider",
            FAIL,
            str(exc).splitlines()[0][:240],
            "use --provider auto/cpu, or fix CUDA (see detail)",
        )
        return
    if info.is_cuda:
        report.add("provider", OK, f"CUDAExecutionProvider ({info.reason})")
    elif provider == "cpu":
        report.add("provider", OK, "CPUExecutionProvider (requested)")
    elif blocker is not None and "no NVIDIA driver" in blocker:
        report.add("provider", OK, f"CPUExecutionProvider: {info.reason}")
    else:
        report.add("provider", WARN, f"CPUExecutionProvider: {info.reason}", _cuda_hint(info.reason))


def _cuda_hint(reason: str) -> str:
    if "no CUDA provider" in reason:
        return "pip uninstall -y onnxruntime && pip install onnxruntime-gpu"
    if "CUDA_VISIBLE_DEVICES" in reason:
        return "unset CUDA_VISIBLE_DEVICES or set it to a GPU index"
    if "cuDNN" in reason or "libraries" in reason or "preload" in reason:
        return "pip install nvidia-cudnn-cu12 nvidia-cublas-cu12 (CUDA 12 / cuDNN 9 wheels) or fix LD_LIBRARY_PATH"
    return "CPU works; install an NVIDIA driver and onnxruntime-gpu for CUDA"


def check_local_nodes(report: Report) -> list[str]:
    """Local nodes started by ``stair-es engine up``; returns the URLs of running ones."""
    from stair_es.local import instances, node_status

    running = []
    states = instances()
    if not states:
        report.add("local nodes", OK, "none started here (stair-es engine up starts one)")
    for state in states:
        status = node_status(state)
        name = f"local :{state.port}"
        if not status["running"]:
            report.add(
                name,
                WARN,
                f"{state.engine} {state.version} recorded but not running (pid {state.pid})",
                f"stair-es engine up --port {state.port}  (or stair-es engine down --port {state.port} to forget it)",
            )
            continue
        health = status.get("health")
        ok = health in ("green", "yellow")
        report.add(
            name,
            OK if ok else WARN,
            f"{state.engine} {state.version} at {state.url}, health {health}",
            f"see the log: stair-es engine logs --port {state.port}",
        )
        running.append(state.url)
    return running


def check_engine(
    report: Report, connection: EngineOptions, local_urls: list[str], index: str | None, model: Any
) -> None:
    from stair_es.engine import connect, detect
    from stair_es.errors import StairError

    if not connection.url_given and not local_urls:
        report.add(
            "engine",
            WARN,
            "no engine configured (no --url/STAIR_ES_URL, no local node running)",
            "set STAIR_ES_URL=http://host:9200, or start a local node: stair-es engine up",
        )
        return
    config = connection.config(urls=None if connection.url_given else _local_url(local_urls))
    try:
        info = detect(config)
    except StairError as exc:
        report.add("engine", FAIL, str(exc), "check the URL/credentials, or start a node: stair-es engine up")
        return
    report.add("engine", OK, f"{info.describe()} at {config.describe()} (cluster '{info.cluster_name}')")
    if not info.supports_linear:
        report.add(
            "engine version",
            FAIL,
            f"{info.describe()} lacks rank_feature 'linear' scoring",
            "use OpenSearch >= 1.1 or Elasticsearch >= 7.12",
        )
    client = "opensearch-py" if info.distribution == "opensearch" else "elasticsearch"
    if _version((client,)) is None:
        report.add(
            "engine client",
            FAIL,
            f"{info.describe()} needs {client}, which is not installed",
            f'pip install "stair-es[{info.distribution}]"',
        )
        return
    backend = connect(config)
    try:
        plugins = backend.plugins()
        if "mapper-extras" in plugins:
            report.add("rank_features", OK, "mapper-extras module present")
        else:
            report.add(
                "rank_features",
                FAIL,
                "mapper-extras module missing: rank_features fields cannot be created",
                "use a full distribution (it ships mapper-extras)",
            )
        if "analysis-common" not in plugins:
            report.add(
                "analyzers",
                WARN,
                "analysis-common missing: captions use the standard analyzer (no stemming)",
                "use a full distribution for the english analyzer",
            )
        extras = [p for p in sorted(plugins) if "neural" in p]
        report.add(
            "engine limits",
            OK,
            f"max_clause_count {backend.max_clause_count()}" + (f"; {', '.join(extras)}" if extras else ""),
        )
        health = backend.client.cluster.health()
        health = getattr(health, "body", health)
        status = health.get("status")
        report.add(
            "cluster health",
            {"green": OK, "yellow": WARN}.get(str(status), FAIL),
            f"{status}, {health.get('number_of_nodes')} node(s), {health.get('active_shards')} active shards",
            "yellow: replicas unassigned (fine on one node with replicas > 0); red: primaries missing, see the log",
        )
        if index:
            check_index(report, backend, index, model)
    finally:
        backend.close()


def check_index(report: Report, backend: Any, index: str, model: Any) -> None:
    from stair_es.errors import StairError

    try:
        meta = backend.index_meta(index)
    except StairError as exc:
        report.add(f"index {index}", FAIL, str(exc), "create it with stair-es index, or pass another --index")
        return
    count = backend.count(index)
    detail = f"{count} documents, model {meta.model.model_id}, {meta.token_field_type}"
    if model is not None and (
        meta.model.model_id != model.model_id or meta.model.vocab_hash != model.vocab_hash
    ):
        report.add(
            f"index {index}",
            FAIL,
            detail + f"; this model is {model.model_id}",
            "search it with the model it was built with, or re-index",
        )
    else:
        report.add(f"index {index}", OK, detail)
    check_load_settings(report, backend, index)


def check_load_settings(report: Report, backend: Any, index: str) -> None:
    """Refresh left off (-1) hides every new document; a note from an interrupted load says so."""
    from stair_es.engine.relax import describe_marker, marker_of

    refresh = backend.get_settings(index).get("refresh_interval")
    marker = marker_of(backend.mapping_meta(index))
    name = f"index {index} refresh"
    if marker is not None:
        restore = json.dumps({"index": marker["previous"]})
        report.add(
            name,
            FAIL,
            f"refresh_interval {refresh}: {describe_marker(marker)}; documents written since may stay invisible",
            f"the next stair-es index run on '{index}' restores it, or: PUT /{index}/_settings {restore}",
        )
    elif str(refresh) == "-1":
        report.add(
            name,
            WARN,
            "refresh_interval -1 (refresh off): newly written documents stay invisible to searches",
            f'unless that is meant: PUT /{index}/_settings {{"index": {{"refresh_interval": null}}}}',
        )
    else:
        report.add(name, OK, f"refresh_interval {refresh or 'default (1s)'}")


def _local_url(running: list[str]) -> str:
    """Of the running local nodes, the one other commands would use (STAIR_ES_PORT), else the first."""
    wanted = f"127.0.0.1:{local_port()}"
    return next((u for u in running if u.rstrip("/").endswith(wanted)), running[0])


def model_of_index(report: Report, connection: EngineOptions, index: str) -> Path | None:
    """The model ``index`` was built with, when it is on this machine (else the model check warns)."""
    from stair_es.engine import connect
    from stair_es.errors import StairError
    from stair_es.local import instances, node_status
    from stair_es.runtime.registry import find_model

    urls = None
    if not connection.url_given:
        running = [s.url for s in instances() if node_status(s)["running"]]
        if not running:
            return None
        urls = _local_url(running)
    try:
        with connect(connection.config(urls=urls)) as backend:
            model = backend.index_meta(index).model
    except StairError:
        return None  # the engine and index checks say why
    found = find_model(model.model_id, model.vocab_hash, [model.path])
    if found is None:
        report.add(
            "model source",
            WARN,
            f"index '{index}' was built with model {model.model_id}, not found on this machine",
            "pass --model DIR",
        )
        return None
    report.add("model source", OK, f"the model index '{index}' was built with ({found[1]})")
    return found[0]


# --------------------------------------------------------------------------------------------
# command


def render(report: Report) -> str:
    width = max(len(c.name) for c in report.checks) if report.checks else 10
    lines = []
    for check in report.checks:
        line = f"{check.status:<5} {check.name:<{width}}  {check.detail}"
        if check.hint:
            line += f"  -> {check.hint}"
        lines.append(line)
    counts = report.counts()
    lines.append(f"{counts[OK]} ok, {counts[WARN]} warn, {counts[FAIL]} fail")
    return "\n".join(lines)


@click.command(epilog=DOCTOR_EXIT_HELP)
@model_option(default_help="the model of --index, else the demo model")
@provider_option("Execution provider to test")
@index_option("Also check this index")
@click.option(
    "--hashes/--no-hashes", "verify_hashes", default=True, show_default=True, help="Verify model file sha256."
)
@click.option("--strict", is_flag=True, help="Exit non-zero on warnings too.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON: checks and counts.")
@connection_options
def doctor(
    model_path: Path | None,
    provider: str,
    index_name: str | None,
    verify_hashes: bool,
    strict: bool,
    as_json: bool,
    connection: EngineOptions,
) -> None:
    """Check versions, the execution provider actually used, the engine, local nodes and the model.

    Starts nothing: without --url/STAIR_ES_URL it checks a running local node if there is one.
    """
    from stair_es_cli.doctor_model import check_encode, check_model

    report = Report()
    report.run("versions", lambda: check_versions(report))
    state: dict[str, Any] = {"manifest": None, "graph": None, "local": []}
    if model_path is None and index_name:
        model_path = model_of_index(report, connection, index_name)

    def model_checks() -> None:
        state["manifest"], state["graph"] = check_model(report, model_path, verify_hashes)

    report.run("model", model_checks)
    report.run("provider", lambda: check_provider(report, provider, state["graph"]))
    if state["manifest"] is not None and not any(
        c.status == FAIL and c.name.startswith("model") for c in report.checks
    ):
        report.run("model encode", lambda: check_encode(report, state["manifest"], provider))

    def local() -> None:
        state["local"] = check_local_nodes(report)

    report.run("local nodes", local)
    report.run(
        "engine", lambda: check_engine(report, connection, state["local"], index_name, state["manifest"])
    )
    counts = report.counts()
    if as_json:
        click.echo(json.dumps({"checks": [asdict(c) for c in report.checks], "counts": counts}, indent=2))
    else:
        click.echo(render(report))
    if counts[FAIL] or (strict and counts[WARN]):
        sys.exit(EXIT_FAILED)
