"""The demo cluster's docker-compose.yml and Dockerfile, checked without a Docker engine.

The compose-spec JSON schema (check-jsonschema's vendored copy) checks the shape; these tests check
what a schema cannot see: dependencies that can actually be waited for, `up --wait` exiting 0,
loopback-only ports, engine images equal to the releases the local engine pins and CI tests,
every variable documented in .env.example, and entry commands that stair-es really has.
"""

from __future__ import annotations

import itertools
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from stair_es.local.distributions import DEFAULT_OPENSEARCH_VERSION, ELASTICSEARCH_7_VERSION

yaml = pytest.importorskip("yaml")

REPO = Path(__file__).resolve().parents[1]
COMPOSE = REPO / "docker-compose.yml"
ENGINE_IMAGES = {
    "opensearchproject/opensearch": DEFAULT_OPENSEARCH_VERSION,
    "opensearchproject/opensearch-dashboards": DEFAULT_OPENSEARCH_VERSION,
    # the compose demo keeps the 7.17 image (rank_features); local nodes default to 9.x
    "docker.elastic.co/elasticsearch/elasticsearch": ELASTICSEARCH_7_VERSION,
}
_VAR_RE = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def services(compose) -> dict[str, dict[str, Any]]:
    return compose["services"]


def _one_shot(service: dict[str, Any]) -> bool:
    return service.get("restart") == "no"


def _check_schema(path: Path) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec", str(path)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def test_compose_file_matches_the_compose_spec_schema(tmp_path):
    pytest.importorskip("check_jsonschema")
    result = _check_schema(COMPOSE)
    assert result.returncode == 0, result.stdout + result.stderr
    # and the check can fail: a healthcheck with a misspelled key is refused
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(COMPOSE.read_text().replace("start_period:", "start_periode:", 1))
    assert _check_schema(broken).returncode != 0


def test_every_dependency_exists_and_can_be_waited_for(services):
    for name, service in services.items():
        for target, spec in (service.get("depends_on") or {}).items():
            assert target in services, f"{name} depends on unknown service {target}"
            condition = spec.get("condition")
            if condition == "service_healthy":
                assert "healthcheck" in services[target], (
                    f"{name} waits for {target}, which has no healthcheck"
                )
            elif condition == "service_completed_successfully":
                assert _one_shot(services[target]), f"{name} waits for {target} to finish, but it restarts"
            else:
                pytest.fail(f"{name} -> {target}: condition {condition!r} waits for nothing useful")
            assert set(services[target].get("profiles") or []) <= set(service.get("profiles") or []), (
                f"{name} depends on {target}, which is not started in all of {name}'s profiles"
            )


def test_long_running_services_have_healthchecks(services):
    for name, service in services.items():
        if not _one_shot(service):
            assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
            assert service.get("restart") == "unless-stopped", name


def test_up_wait_exits_zero_in_every_profile_combination(services):
    """`docker compose up --wait` fails on an exited one-shot service unless a running service waits
    for it with service_completed_successfully (docker/compose#10596)."""
    profiles = sorted({p for s in services.values() for p in s.get("profiles") or []})
    assert {"dashboards", "elasticsearch", "gpu"} <= set(profiles)
    for count in range(len(profiles) + 1):
        for chosen in itertools.combinations(profiles, count):
            active = {
                n: s for n, s in services.items() if not s.get("profiles") or set(s["profiles"]) & set(chosen)
            }
            for name, service in active.items():
                if not _one_shot(service):
                    continue
                adopters = [
                    other
                    for other, spec in active.items()
                    if not _one_shot(spec)
                    and (spec.get("depends_on") or {}).get(name, {}).get("condition")
                    == "service_completed_successfully"
                ]
                assert adopters, f"profiles {chosen}: nothing running waits for one-shot {name}"


def test_ports_are_bound_to_loopback(services):
    published = 0
    for name, service in services.items():
        for port in service.get("ports") or []:
            assert isinstance(port, str) and port.startswith("127.0.0.1:"), f"{name}: {port!r}"
            published += 1
    assert published >= 5


def test_engine_images_are_the_tested_releases(services):
    seen = set()
    for name, service in services.items():
        image = service.get("image", "")
        repo, _, tag = image.rpartition(":")
        if repo in ENGINE_IMAGES:
            assert tag == ENGINE_IMAGES[repo], f"{name}: {image} but stair-es tests {ENGINE_IMAGES[repo]}"
            seen.add(repo)
    assert seen == set(ENGINE_IMAGES)


def test_engine_nodes_lock_memory_and_set_the_heap(services):
    for name, service in services.items():
        if service.get("image", "").rpartition(":")[0] not in (
            "opensearchproject/opensearch",
            "docker.elastic.co/elasticsearch/elasticsearch",
        ):
            continue
        env = service["environment"]
        assert env["bootstrap.memory_lock"] == "true", name
        assert service["ulimits"]["memlock"] == {"soft": -1, "hard": -1}, name
        heap = env.get("OPENSEARCH_JAVA_OPTS") or env.get("ES_JAVA_OPTS")
        assert heap and "-Xms" in heap and "-Xmx" in heap, name


def test_two_opensearch_nodes_form_one_cluster(services):
    nodes = [n for n, s in services.items() if s.get("image", "").startswith("opensearchproject/opensearch:")]
    assert len(nodes) == 2
    for name in nodes:
        env = services[name]["environment"]
        assert sorted(env["discovery.seed_hosts"].split(",")) == sorted(nodes)
        assert sorted(env["cluster.initial_cluster_manager_nodes"].split(",")) == sorted(nodes)
        assert "wait_for_nodes=2" in " ".join(services[name]["healthcheck"]["test"])


def test_gpu_profile_reserves_a_gpu(services):
    gpu = [s for s in services.values() if "gpu" in (s.get("profiles") or [])]
    assert gpu
    for service in gpu:
        devices = service["deploy"]["resources"]["reservations"]["devices"]
        assert any("gpu" in d.get("capabilities", []) for d in devices)
        assert service["environment"]["STAIR_ES_PROVIDER"] == "cuda"


def test_every_variable_is_documented_in_env_example():
    documented = {
        line.split("=", 1)[0].lstrip("# ").strip()
        for line in (REPO / ".env.example").read_text().splitlines()
        if "=" in line
    }
    used = set(_VAR_RE.findall(COMPOSE.read_text()))
    assert used, "no variables found: the pattern is wrong"
    assert used <= documented, f"not in .env.example: {sorted(used - documented)}"
    env_ignored = (REPO / ".gitignore").read_text().splitlines()
    assert ".env" in env_ignored  # the real .env (secrets) is never committed


def _dockerfile_exec_form(instruction: str) -> list[str]:
    lines = [
        line for line in (REPO / "Dockerfile").read_text().splitlines() if line.startswith(instruction + " ")
    ]
    assert len(lines) == 1, f"expected one {instruction}"
    return json.loads(lines[0][len(instruction) + 1 :])


def _parse_stair_command(args: list[str], env: dict[str, str], monkeypatch) -> None:
    """Parse ``stair-es ARGS`` exactly as click would, without running it (unknown options fail)."""
    import click

    from stair_es_cli.main import main

    for key, value in env.items():
        monkeypatch.setenv(key, value)
    ctx = click.Context(main, info_name="stair-es")
    command = main.get_command(ctx, args[0])
    assert command is not None, f"stair-es has no command {args[0]!r}"
    command.make_context(args[0], list(args[1:]), parent=ctx)


def _interpolate(value: str) -> str:
    """Compose's ${VAR:-default}, with the defaults (what runs without a .env)."""
    return re.sub(r"\$\{[A-Za-z_][A-Za-z0-9_]*:-([^}]*)\}", r"\1", value)


def test_dockerfile_and_compose_commands_are_real_stair_es_commands(services, monkeypatch):
    assert _dockerfile_exec_form("ENTRYPOINT") == ["stair-es"]
    _parse_stair_command(_dockerfile_exec_form("CMD"), {}, monkeypatch)
    stair = {n: s for n, s in services.items() if s.get("image", "").startswith("stair-es:")}
    assert {"loader", "serve", "serve-gpu", "loader-elasticsearch", "serve-elasticsearch"} <= set(stair)
    for service in stair.values():
        command = [_interpolate(c) for c in service["command"]]
        env = {k: _interpolate(str(v)) for k, v in service["environment"].items()}
        _parse_stair_command(command, env, monkeypatch)
    # the Elasticsearch profile runs the very same loader and page
    assert services["loader-elasticsearch"]["command"] == services["loader"]["command"]
    assert services["serve-elasticsearch"]["command"] == services["serve"]["command"]


def test_a_wrong_option_in_a_command_is_caught(monkeypatch):
    import click

    with pytest.raises(click.UsageError):
        _parse_stair_command(["serve", "--no-such-option"], {}, monkeypatch)
    with pytest.raises(click.UsageError):
        _parse_stair_command(["demo", "--images", "many"], {}, monkeypatch)


def test_readme_documents_the_compose_commands():
    readme = (REPO / "README.md").read_text()
    assert "docker compose up --wait" in readme
    for line in COMPOSE.read_text().splitlines()[:12]:
        if "docker compose" in line:
            assert shlex.split(line.lstrip("# "))[0:2] == ["docker", "compose"]
