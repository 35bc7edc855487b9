"""Provisioning logic that does not need a download: descriptors, checksums, Java detection."""

from __future__ import annotations

import hashlib
import os
import socket
from pathlib import Path

import pytest

from stair_es.errors import ProvisionError
from stair_es.local import get_distribution
from stair_es.local.distributions import Artifact
from stair_es.local.fetch import fetch, verify
from stair_es.local.java import find_java


def test_default_distribution_is_pinned_and_has_the_modules_we_need() -> None:
    dist = get_distribution()
    assert dist.engine == "opensearch"
    names = {m.name for m in dist.modules}
    assert {"mapper-extras", "analysis-common"} <= names
    assert dist.core.sha256 and all(m.jar.sha256 for m in dist.modules)
    desc = dist.descriptor(dist.modules[0])
    assert f"opensearch.version={dist.version}" in desc and "classname=org.opensearch" in desc


def test_opensearch_3_needs_java_21() -> None:
    assert get_distribution("opensearch", "3.3.0").min_java == 21


@pytest.mark.parametrize(("version", "suffix"), [("3.8.0", "ModulePlugin"), ("2.19.6", "Plugin")])
def test_module_plugin_classes_follow_the_3_0_rename(version: str, suffix: str) -> None:
    # 3.0 renamed MapperExtrasPlugin -> MapperExtrasModulePlugin (same for analysis-common); a node
    # given the old name dies at start-up with ClassNotFoundException
    dist = get_distribution("opensearch", version)
    assert dist.core.sha256 and all(m.jar.sha256 for m in dist.modules)
    assert all(m.classname.endswith(suffix) for m in dist.modules)


def test_verify_rejects_wrong_bytes(tmp_path: Path) -> None:
    f = tmp_path / "x.jar"
    f.write_bytes(b"hello")
    sha1 = hashlib.sha1(b"hello").hexdigest()
    art = Artifact("g", "x", "1")
    verify(f, art, sha1)  # ok
    with pytest.raises(ProvisionError, match="SHA-1"):
        verify(f, art, hashlib.sha1(b"other").hexdigest())
    pinned = Artifact("g", "x", "1", sha256=hashlib.sha256(b"other").hexdigest())
    with pytest.raises(ProvisionError, match="SHA-256"):
        verify(f, pinned, sha1)
    with pytest.raises(ProvisionError, match="no checksum"):
        verify(f, art, None)


def test_fetch_without_mvn_or_url_says_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STAIR_ES_MAVEN_URL", raising=False)
    with pytest.raises(ProvisionError, match="STAIR_ES_MAVEN_URL"):
        fetch(Artifact("g", "x", "1"), tmp_path, use_mvn=False)


def test_fetch_over_https_verifies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = tmp_path / "repo" / "g" / "x" / "1"
    repo.mkdir(parents=True)
    (repo / "x-1.jar").write_bytes(b"payload")
    (repo / "x-1.jar.sha1").write_text(hashlib.sha1(b"payload").hexdigest())
    monkeypatch.setenv("STAIR_ES_MAVEN_URL", (tmp_path / "repo").as_uri())
    got = fetch(Artifact("g", "x", "1"), tmp_path / "dl", use_mvn=False)
    assert got.read_bytes() == b"payload"
    (repo / "x-1.jar.sha1").write_text(hashlib.sha1(b"tampered").hexdigest())
    with pytest.raises(ProvisionError, match="checksum"):
        fetch(Artifact("g", "x", "1"), tmp_path / "dl2", use_mvn=False)


def test_java_detection_errors_are_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ProvisionError, match="no bin/java"):
        find_java(11, explicit=str(tmp_path))
    with pytest.raises(ProvisionError, match="wrong Java version"):
        find_java(99)


def test_port_taken_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from stair_es.local import start

    monkeypatch.setenv("STAIR_ES_CACHE", str(tmp_path))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        with pytest.raises(ProvisionError, match=f"port {port} is taken"):
            start(port=port, log=lambda m: None)


def test_elasticsearch_distributions_by_major() -> None:
    """7.17 gets mapper-extras (rank_features) and a Java cap; 8.x/9.x are the core zip alone (pinned,
    sparse_vector) on Java 17+/21+; before 8.11 neither token field type exists and it is refused."""
    from stair_es.errors import UsageError
    from stair_es.local.distributions import DEFAULT_ELASTICSEARCH_VERSION, ELASTICSEARCH_7_VERSION

    dist = get_distribution("elasticsearch", ELASTICSEARCH_7_VERSION)
    assert dist.version.startswith("7.17.") and dist.max_java == 23
    assert [m.name for m in dist.modules] == ["mapper-extras"]
    assert "elasticsearch.version=" in dist.descriptor(dist.modules[0])
    default = get_distribution("elasticsearch")
    assert default.version == DEFAULT_ELASTICSEARCH_VERSION and default.version.startswith("9.")
    assert default.modules == () and default.min_java == 21 and default.core.sha256
    es8 = get_distribution("elasticsearch", "8.15.0")
    assert es8.modules == () and es8.min_java == 17 and es8.core.sha256
    with pytest.raises(UsageError, match="neither rank_features"):
        get_distribution("elasticsearch", "8.10.4")


def test_running_node_on_another_data_dir_is_not_silently_reused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CI starts nodes on fresh data dirs; a node left running on old data must be refused, not reused."""
    import json

    from stair_es.local import node

    monkeypatch.setattr(node, "pid_alive", lambda pid, home=None: True)
    dist = get_distribution("opensearch")
    instance = tmp_path / "instances" / f"opensearch-{9299}"
    instance.mkdir(parents=True)
    state = {
        "engine": "opensearch", "version": dist.version, "port": 9299, "transport_port": 9399, "pid": 1,
        "url": "http://127.0.0.1:9299", "home": "h", "instance_dir": str(instance),
        "data_dir": str(tmp_path / "old-data"), "log_file": "l", "java_home": "j", "started_at": 0.0,
    }  # fmt: skip
    (instance / "state.json").write_text(json.dumps(state))
    with pytest.raises(ProvisionError, match="already runs a node on data dir .*old-data"):
        node.start(port=9299, data_dir=tmp_path / "new-data", root=tmp_path, log=lambda m: None)
    same = node.start(port=9299, data_dir=tmp_path / "old-data", root=tmp_path, log=lambda m: None)
    assert same.pid == 1
    assert node.start(port=9299, root=tmp_path, log=lambda m: None).pid == 1


def test_heartbeat_says_what_is_going_on_while_it_waits() -> None:
    import time

    from stair_es.local.heartbeat import heartbeat

    lines: list[str] = []
    with heartbeat(lines.append, "waiting for opensearch", every=0.05):
        time.sleep(0.3)
    count = len(lines)
    time.sleep(0.1)
    assert count >= 3 and len(lines) == count  # stops with the block
    assert all(line.startswith("  ... waiting for opensearch (") and line.endswith(" s)") for line in lines)


def test_engine_up_names_each_step_of_the_first_download(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`engine up` used to be silent for a minute and a half while it downloaded and assembled."""
    import zipfile

    from stair_es.local import fetch as fetch_module
    from stair_es.local.distributions import Distribution, Module
    from stair_es.local.node import ensure_home

    repo = tmp_path / "repo"
    core = Artifact("org.example", "engine-core", "1.0", "zip")
    module = Module("mapper-extras", "org.example.Plugin", Artifact("org.example", "mapper", "1.0"), "d")
    for artifact in (core, module.jar):
        path = repo / artifact.repo_path
        path.parent.mkdir(parents=True, exist_ok=True)
        if artifact is core:
            with zipfile.ZipFile(path, "w") as zf:
                zf.writestr("engine-1.0/bin/opensearch", "#!/bin/sh\n")
        else:
            path.write_bytes(b"jar")
        (path.parent / (path.name + ".sha1")).write_text(hashlib.sha1(path.read_bytes()).hexdigest())
    monkeypatch.setenv("STAIR_ES_MAVEN_URL", repo.as_uri())
    monkeypatch.setattr(fetch_module.shutil, "which", lambda name: None)  # plain HTTPS(file) fetch
    lines: list[str] = []
    home = ensure_home(
        Distribution("opensearch", "1.0", core, (module,)), tmp_path / "cache", log=lines.append
    )
    assert (home / "bin" / "opensearch").is_file()
    assert lines[0].startswith("downloading opensearch 1.0 from Maven (org.example:engine-core:1.0:zip")
    assert lines[1] == "downloading module mapper-extras ..."
    assert lines[2].startswith("checksums verified; assembling the node in ")


def _fake_mvn(bin_dir: Path, repo: Path) -> None:
    """An ``mvn`` that behaves like Maven Central for an artifact published without a ``.sha1``
    (Elasticsearch 9.x integ-test zips): strict checksum mode refuses it, lax mode copies it."""
    bin_dir.mkdir()
    script = bin_dir / "mvn"
    script.write_text(
        "#!/usr/bin/env python3\n"
        "import shutil, sys\n"
        "args = sys.argv[1:]\n"
        "if '--strict-checksums' in args:\n"
        "    print('[ERROR] Could not transfer artifact: Checksum validation failed, no checksums available')\n"
        "    sys.exit(1)\n"
        "out = next(a.split('=', 1)[1] for a in args if a.startswith('-DoutputDirectory='))\n"
        f"shutil.copy({str(repo / 'x-1.zip')!r}, out)\n"
    )
    script.chmod(0o755)


def test_pinned_artifact_without_a_published_sha1_is_fetched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Maven Central serves no .sha1 for Elasticsearch 9.1.0's zip: the SHA-256 pin is the check, so a
    strict-checksum mvn (which refuses the download) or a 404 on the .sha1 must not stop it."""
    repo = tmp_path / "repo" / "g" / "x" / "1"
    repo.mkdir(parents=True)
    (repo / "x-1.zip").write_bytes(b"payload")
    pinned = Artifact("g", "x", "1", "zip", sha256=hashlib.sha256(b"payload").hexdigest())
    _fake_mvn(tmp_path / "bin", repo)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("STAIR_ES_MAVEN_LOCAL_REPO", str(tmp_path / "m2"))
    assert fetch(pinned, tmp_path / "dl-mvn").read_bytes() == b"payload"
    monkeypatch.setenv("STAIR_ES_MAVEN_URL", (tmp_path / "repo").as_uri())
    assert fetch(pinned, tmp_path / "dl-https", use_mvn=False).read_bytes() == b"payload"
    wrong = Artifact("g", "x", "1", "zip", sha256=hashlib.sha256(b"other").hexdigest())
    for dest, use_mvn in (("bad-mvn", True), ("bad-https", False)):
        with pytest.raises(ProvisionError, match="SHA-256 differs"):
            fetch(wrong, tmp_path / dest, use_mvn=use_mvn)
    unpinned = Artifact("g", "x", "1", "zip")  # no pin and no .sha1: nothing to check it against
    with pytest.raises(ProvisionError, match="no checksum|failed"):
        fetch(unpinned, tmp_path / "unpinned", use_mvn=False)
