"""Fetch Maven artifacts with checksum verification.

``mvn`` is preferred (it is how our machines reach Maven Central and it honours the user's mirrors
and proxies); without it, plain HTTPS from the repository in ``STAIR_ES_MAVEN_URL``. Either way the
file's SHA-1 must match the repository's ``.sha1`` and, for pinned releases, its SHA-256 the pin.
A pinned artifact may lack a published ``.sha1`` (Elasticsearch 9.x integ-test zips): the pin is
then the check, so mvn runs with lax checksums for it (strict ones refuse such a file outright).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

from stair_es.errors import ProvisionError
from stair_es.local.distributions import Artifact


def _digest(path: Path, algorithm: str) -> str:
    h = hashlib.new(algorithm)
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verify(path: Path, artifact: Artifact, sha1: str | None) -> None:
    """Raise when the bytes are not the published (or pinned) ones."""
    if sha1 is not None:
        expected = sha1.split()[0].strip().lower()
        if _digest(path, "sha1") != expected:
            raise ProvisionError(
                f"checksum mismatch for {artifact.coordinate} ({path}): SHA-1 differs from the repository's"
            )
    if artifact.sha256 is not None and _digest(path, "sha256") != artifact.sha256:
        raise ProvisionError(
            f"checksum mismatch for {artifact.coordinate} ({path}): SHA-256 differs from the pinned value"
        )
    if sha1 is None and artifact.sha256 is None:
        raise ProvisionError(f"no checksum available for {artifact.coordinate}; refusing to use it")


def fetch(artifact: Artifact, dest_dir: Path, *, use_mvn: bool | None = None, timeout: float = 600) -> Path:
    """Return a verified local copy of ``artifact`` in ``dest_dir`` (cached across calls)."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    target = dest_dir / artifact.filename
    sha_file = dest_dir / (artifact.filename + ".sha1")
    if target.exists():
        verify(target, artifact, sha_file.read_text() if sha_file.exists() else None)
        return target
    mvn = shutil.which("mvn")
    if use_mvn is None:
        use_mvn = mvn is not None
    if use_mvn:
        if mvn is None:
            raise ProvisionError("mvn was requested but is not on PATH")
        _fetch_mvn(mvn, artifact, dest_dir, timeout)
    else:
        _fetch_https(artifact, dest_dir, timeout)
    verify(target, artifact, sha_file.read_text() if sha_file.exists() else None)
    return target


def _fetch_mvn(mvn: str, artifact: Artifact, dest_dir: Path, timeout: float) -> None:
    cmd = [
        mvn,
        "-B",
        "-q",
        # strict: the repository's checksum must exist and match; a pin is checked after the copy
        "--lax-checksums" if artifact.sha256 else "--strict-checksums",
        "dependency:copy",
        f"-Dartifact={artifact.coordinate}",
        f"-DoutputDirectory={dest_dir}",
    ]
    if os.environ.get("STAIR_ES_MAVEN_LOCAL_REPO"):
        cmd.append(f"-Dmaven.repo.local={os.environ['STAIR_ES_MAVEN_LOCAL_REPO']}")
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=dest_dir)
    except subprocess.TimeoutExpired as exc:
        raise ProvisionError(
            f"download of {artifact.coordinate} timed out after {timeout:.0f}s (mvn)"
        ) from exc
    if proc.returncode != 0:
        lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if "ERROR" in ln] or ["(no output)"]
        raise ProvisionError(f"download of {artifact.coordinate} failed (mvn): {lines[0].strip()[:300]}")
    # mvn keeps the repository's .sha1 beside the artifact in the local repository
    local_repo = _maven_local_repo(mvn)
    published = local_repo / (artifact.repo_path + ".sha1")
    if published.exists():
        shutil.copyfile(published, dest_dir / (artifact.filename + ".sha1"))


def _maven_local_repo(mvn: str) -> Path:
    env_repo = os.environ.get("STAIR_ES_MAVEN_LOCAL_REPO")
    if env_repo:
        return Path(env_repo)
    return Path.home() / ".m2" / "repository"


def _fetch_https(artifact: Artifact, dest_dir: Path, timeout: float) -> None:
    base = os.environ.get("STAIR_ES_MAVEN_URL", "").rstrip("/")
    if not base:
        raise ProvisionError(
            "mvn is not installed and STAIR_ES_MAVEN_URL is unset: install Maven, or set "
            "STAIR_ES_MAVEN_URL to the base URL of a Maven repository (Maven Central or a mirror)"
        )
    url = f"{base}/{artifact.repo_path}"
    part = dest_dir / (artifact.filename + ".part")
    try:
        try:
            with urllib.request.urlopen(url + ".sha1", timeout=timeout) as resp:
                (dest_dir / (artifact.filename + ".sha1")).write_bytes(resp.read())
        except (urllib.error.URLError, OSError):
            if not artifact.sha256:
                raise  # nothing else to check the download against
        with urllib.request.urlopen(url, timeout=timeout) as resp, part.open("wb") as out:
            shutil.copyfileobj(resp, out, 1 << 20)
    except (urllib.error.URLError, OSError) as exc:
        part.unlink(missing_ok=True)
        raise ProvisionError(f"download of {artifact.coordinate} failed from {url}: {exc}") from exc
    part.rename(dest_dir / artifact.filename)
