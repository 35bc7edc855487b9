"""How to reach a cluster: one dataclass filled from flags, environment variables, or both.

Every field has an environment variable (``STAIR_ES_*``) so that the CLI, tests and benchmarks all
connect the same way; explicit values win over the environment.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from stair_es.errors import UsageError

DEFAULT_URL = "http://127.0.0.1:9200"

# field name -> environment variable; the CLI builds its flags from this table.
ENV_VARS: dict[str, str] = {
    "urls": "STAIR_ES_URL",
    "username": "STAIR_ES_USER",
    "password": "STAIR_ES_PASSWORD",
    "api_key": "STAIR_ES_API_KEY",
    "ca_certs": "STAIR_ES_CA_CERTS",
    "verify_certs": "STAIR_ES_VERIFY_CERTS",
    "timeout": "STAIR_ES_TIMEOUT",
    "max_retries": "STAIR_ES_MAX_RETRIES",
    "distribution": "STAIR_ES_DISTRIBUTION",
}

DISTRIBUTIONS = ("auto", "opensearch", "elasticsearch")


def _parse_bool(name: str, text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise UsageError(f"{name}={text!r} is not a boolean (use true/false)")


@dataclass(frozen=True)
class ConnectionConfig:
    """Cluster address and credentials.

    ``urls``: one or more node URLs (``http://host:9200``). ``api_key`` is either ``id:key`` or the
    already base64-encoded form. ``distribution`` skips detection when set to ``opensearch`` or
    ``elasticsearch`` (useful behind proxies that hide ``GET /``).
    """

    urls: tuple[str, ...] = (DEFAULT_URL,)
    username: str | None = None
    password: str | None = None
    api_key: str | None = None
    ca_certs: str | None = None
    verify_certs: bool = True
    timeout: float = 30.0
    max_retries: int = 3
    distribution: str = "auto"
    headers: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.urls, str):
            object.__setattr__(self, "urls", tuple(u.strip() for u in self.urls.split(",") if u.strip()))
        urls = tuple(u.rstrip("/") for u in self.urls)
        if not urls:
            raise UsageError("no engine URL given (--url or STAIR_ES_URL)")
        for url in urls:
            if not url.startswith(("http://", "https://")):
                raise UsageError(f"engine URL {url!r} must start with http:// or https://")
        object.__setattr__(self, "urls", urls)
        if self.distribution not in DISTRIBUTIONS:
            raise UsageError(
                f"distribution must be one of {', '.join(DISTRIBUTIONS)}, got {self.distribution!r}"
            )
        if (self.username is None) != (self.password is None):
            raise UsageError("give both a user and a password, or neither")
        if self.timeout <= 0:
            raise UsageError(f"timeout must be positive, got {self.timeout}")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> ConnectionConfig:
        """Environment first, then explicit ``overrides`` (``None`` values are ignored)."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for name, var in ENV_VARS.items():
            text = env.get(var)
            if text is None or text == "":
                continue
            if name == "verify_certs":
                values[name] = _parse_bool(var, text)
            elif name == "timeout":
                values[name] = _number(var, text, float)
            elif name == "max_retries":
                values[name] = _number(var, text, int)
            else:
                values[name] = text
        values.update({k: v for k, v in overrides.items() if v is not None})
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise TypeError(f"unknown connection settings: {sorted(unknown)}")
        return cls(**values)

    def with_(self, **changes: Any) -> ConnectionConfig:
        return replace(self, **changes)

    # derived --------------------------------------------------------------------------------
    def auth_headers(self) -> dict[str, str]:
        """HTTP headers for basic or API-key auth (used by detection; the clients get them natively)."""
        headers = dict(self.headers)
        if self.api_key:
            headers["Authorization"] = f"ApiKey {self.encoded_api_key()}"
        elif self.username is not None:
            token = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        return headers

    def encoded_api_key(self) -> str | None:
        if not self.api_key:
            return None
        if ":" in self.api_key:
            return base64.b64encode(self.api_key.encode()).decode()
        return self.api_key

    def describe(self) -> str:
        """Address without credentials, for messages."""
        return ", ".join(self.urls)


def _number(var: str, text: str, kind: type) -> Any:
    try:
        return kind(text)
    except ValueError:
        raise UsageError(f"{var}={text!r} is not a number") from None
