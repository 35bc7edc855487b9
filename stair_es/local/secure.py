"""A secured local Elasticsearch node: x-pack security on, TLS on HTTP, one superuser.

What a real deployment looks like, so that basic auth, API keys, ``--ca-certs`` and hostname
verification are tested against the engine itself: the CA and the HTTP certificate come from the
node's own ``bin/elasticsearch-certutil`` (the certificate names ``localhost`` only, so
``https://127.0.0.1`` is a hostname mismatch on purpose), the user from ``bin/elasticsearch-users``.
The password is written to a 0600 file in the instance folder and never printed.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import secrets
import ssl
import subprocess
import urllib.request
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from stair_es.errors import ProvisionError, UsageError
from stair_es.local.distributions import Distribution

logger = logging.getLogger(__name__)
SECURE_USER = "stair"
SECURE_HOST = "localhost"  # the only name in the HTTP certificate


def check_secure(dist: Distribution) -> None:
    """Only the 8.x/9.x zips carry x-pack security (7.17's integ-test zip has none)."""
    if dist.engine != "elasticsearch" or int(dist.version.split(".")[0]) < 8:
        raise UsageError(
            f"--secure needs Elasticsearch 8.x or 9.x (x-pack security); {dist.engine} {dist.version} "
            "from Maven has no security module"
        )


def secure_settings(conf: Path) -> dict[str, Any]:
    """Node settings for security + HTTP TLS; the files are made by :func:`prepare`."""
    certs = conf / "certs"
    return {
        "xpack.security.enabled": True,
        "xpack.security.http.ssl.enabled": True,
        "xpack.security.http.ssl.key": str(certs / "http" / "http.key"),
        "xpack.security.http.ssl.certificate": str(certs / "http" / "http.crt"),
        "xpack.security.http.ssl.certificate_authorities": [str(certs / "ca" / "ca.crt")],
        "xpack.security.authc.api_key.enabled": True,
    }


def _tool(home: Path, name: str, args: list[str], env: Mapping[str, str], secret: str | None = None) -> None:
    try:
        proc = subprocess.run(
            [str(home / "bin" / name), *args],
            env=dict(env),
            capture_output=True,
            text=True,
            timeout=300,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ProvisionError(f"bin/{name} could not run: {type(exc).__name__}") from None
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        line = detail[-1] if detail else f"exit code {proc.returncode}"
        if secret:
            line = line.replace(secret, "***")
        raise ProvisionError(f"bin/{name} failed: {line[:300]}")


def prepare(home: Path, conf: Path, instance: Path, env: Mapping[str, str]) -> dict[str, str]:
    """CA, HTTP certificate and the superuser in ``conf``; returns where the client finds them."""
    certs = conf / "certs"
    certs.mkdir(parents=True, exist_ok=True)
    _tool(home, "elasticsearch-certutil", ["ca", "--pem", "--silent", "--out", str(certs / "ca.zip")], env)
    with zipfile.ZipFile(certs / "ca.zip") as zf:
        zf.extractall(certs)
    _tool(
        home,
        "elasticsearch-certutil",
        ["cert", "--pem", "--silent", "--name", "http", "--dns", SECURE_HOST]
        + ["--ca-cert", str(certs / "ca" / "ca.crt"), "--ca-key", str(certs / "ca" / "ca.key")]
        + ["--out", str(certs / "http.zip")],
        env,
    )
    with zipfile.ZipFile(certs / "http.zip") as zf:
        zf.extractall(certs)
    password = secrets.token_urlsafe(18)
    _tool(
        home,
        "elasticsearch-users",
        ["useradd", SECURE_USER, "-p", password, "-r", "superuser"],
        env,
        secret=password,
    )
    password_file = instance / "password"
    password_file.touch(mode=0o600)
    password_file.chmod(0o600)
    password_file.write_text(password + "\n")
    ca = instance / "ca.crt"  # outside config/, which is rewritten at every start
    ca.write_bytes((certs / "ca" / "ca.crt").read_bytes())
    return {"ca_certs": str(ca), "username": SECURE_USER, "password_file": str(password_file)}


def connect_hint(url: str, ca_certs: str, username: str, password_file: str) -> str:
    """How to point stair-es at the node (the password stays in its file)."""
    return (
        f"STAIR_ES_URL={url} STAIR_ES_CA_CERTS={ca_certs} STAIR_ES_USER={username} "
        f'STAIR_ES_PASSWORD="$(cat {password_file})"'
    )


def authorized_get(url: str, ca_certs: str, username: str, password_file: str, timeout: float) -> dict:
    """GET over TLS (the node's CA) with basic auth: the health checks of a secured node."""
    context = ssl.create_default_context(cafile=ca_certs)
    password = Path(password_file).read_text().strip()
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    request = urllib.request.Request(url, headers={"Authorization": f"Basic {token}"})
    with urllib.request.urlopen(request, timeout=timeout, context=context) as resp:
        return json.loads(resp.read().decode())


def node_env_for_tools(env: Mapping[str, str]) -> dict[str, str]:
    """The tools run with the node's Java and config, without its heap settings."""
    out = dict(env)
    out.pop("ES_JAVA_OPTS", None)
    out.setdefault("PATH", os.environ.get("PATH", "/usr/bin:/bin"))
    return out
