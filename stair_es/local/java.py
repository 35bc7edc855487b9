"""Find a Java runtime that fits the engine release (OpenSearch 2.x: 11+, 3.x: 21+)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from stair_es.errors import ProvisionError

_VERSION_RE = re.compile(r'version "(\d+)(?:\.(\d+))?')


@dataclass(frozen=True)
class JavaRuntime:
    home: Path
    major: int

    @property
    def executable(self) -> Path:
        return self.home / "bin" / "java"


def java_major(java: Path) -> int | None:
    """Major version printed by ``java -version`` (1.8 -> 8), or None when it cannot run."""
    try:
        out = subprocess.run([str(java), "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = _VERSION_RE.search(out.stderr + out.stdout)
    if not m:
        return None
    major = int(m.group(1))
    return int(m.group(2) or 0) if major == 1 else major


def _candidates(explicit: str | None) -> list[tuple[str, Path]]:
    found: list[tuple[str, Path]] = []
    if explicit:
        found.append(("--java-home", Path(explicit)))
    for var in ("STAIR_ES_JAVA_HOME", "JAVA_HOME"):
        if os.environ.get(var):
            found.append((var, Path(os.environ[var])))
    on_path = shutil.which("java")
    if on_path:
        found.append(("PATH", Path(on_path).resolve().parent.parent))
    for root in (Path("/usr/lib/jvm"), Path("/opt/java"), Path("/Library/Java/JavaVirtualMachines")):
        if root.is_dir():
            for home in sorted(root.iterdir()):
                mac_home = home / "Contents" / "Home"
                found.append((str(root), mac_home if mac_home.is_dir() else home))
    return found


def find_java(min_major: int, max_major: int | None = None, explicit: str | None = None) -> JavaRuntime:
    """The first runtime that satisfies the range; an explicit choice must satisfy it or fail."""
    seen: list[str] = []
    for source, home in _candidates(explicit):
        exe = home / "bin" / "java"
        if not exe.exists():
            if source == "--java-home":
                raise ProvisionError(f"--java-home {home} has no bin/java")
            continue
        major = java_major(exe)
        if major is None:
            continue
        ok = major >= min_major and (max_major is None or major <= max_major)
        if ok:
            return JavaRuntime(home, major)
        seen.append(f"{home} (Java {major})")
        if source == "--java-home":
            break
    wanted = f"Java {min_major}+" if max_major is None else f"Java {min_major}-{max_major}"
    if not seen:
        raise ProvisionError(
            f"no Java runtime found: install {wanted} (e.g. apt-get install openjdk-{min_major}-jre-headless) "
            "or pass --java-home / set JAVA_HOME"
        )
    raise ProvisionError(
        f"wrong Java version: this engine needs {wanted}, found {', '.join(seen)}; install {wanted} "
        "or choose an engine --version your Java runs (OpenSearch 2.19.6 runs on Java 11+)"
    )
