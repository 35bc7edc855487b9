"""How to reach a cluster: one dataclass filled from flags, environment variables, or both.

Every field has an environment variable (``STAIR_ES_*``) so that the CLI, tests and benchmarks all
connect the same way; explicit values win over the environment. :data:`CONNECTION_SETTINGS` and
:data:`OTHER_SETTINGS` are the one table of variables: the CLI builds its flags and help from it.
"""

from __future__ import annotations

import base64
import math
import os
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from stair_es.errors import UsageError

DEFAULT_URL = "http://127.0.0.1:9200"
DISTRIBUTIONS = ("auto", "opensearch", "elasticsearch")


@dataclass(frozen=True)
class Setting:
    """One user-facing setting: the name the library gives it, its environment variable, its CLI
    flag and help. The CLI builds its options from these, so flag, variable and help cannot drift."""

    name: str
    env: str
    flag: str
    help: str
    kind: str = "text"  # text | bool | int | float | file | dir | choice
    choices: tuple[str, ...] = ()
    default: Any = None  # ConnectionConfig settings take the dataclass's default instead

    def parse(self, text: str) -> Any:
        """The value of ``text`` as this setting's kind; a bad value is a UsageError naming the variable."""
        if self.kind == "bool":
            return _parse_bool(self.env, text)
        if self.kind in ("int", "float"):
            return _number(self.env, text, int if self.kind == "int" else float)
        return text

    def read(self, env: Mapping[str, str] | None = None) -> Any:
        """The value from the environment (``os.environ`` by default), else the default."""
        text = (os.environ if env is None else env).get(self.env)
        return self.default if text is None or text == "" else self.parse(text)


# how to reach the engine: one entry per ConnectionConfig field a user sets
CONNECTION_SETTINGS: tuple[Setting, ...] = (
    Setting("urls", "STAIR_ES_URL", "--url", "Engine URL(s), comma-separated; default: the local engine."),
    Setting("username", "STAIR_ES_USER", "--user", "User for basic auth."),
    Setting("password", "STAIR_ES_PASSWORD", "--password", "Password for basic auth."),
    Setting("api_key", "STAIR_ES_API_KEY", "--api-key", "API key: id:key or base64."),
    Setting("ca_certs", "STAIR_ES_CA_CERTS", "--ca-certs", "CA bundle.", kind="file"),
    Setting(
        "verify_certs", "STAIR_ES_VERIFY_CERTS", "--verify-certs", "Check TLS certificates.", kind="bool"
    ),
    Setting("timeout", "STAIR_ES_TIMEOUT", "--timeout", "Request timeout in seconds.", kind="float"),
    Setting(
        "max_retries", "STAIR_ES_MAX_RETRIES", "--max-retries", "Retries of a failed request.", kind="int"
    ),
    Setting(
        "distribution",
        "STAIR_ES_DISTRIBUTION",
        "--distribution",
        "Skip detection (no GET /): the engine is opensearch or elasticsearch.",
        kind="choice",
        choices=DISTRIBUTIONS,
    ),
    Setting("cloud_id", "STAIR_ES_CLOUD_ID", "--cloud-id", "Elastic Cloud id."),
    Setting("bearer_token", "STAIR_ES_BEARER_TOKEN", "--bearer-token", "Send Authorization: Bearer TOKEN."),
    Setting(
        "aws_region",
        "STAIR_ES_AWS_REGION",
        "--aws-region",
        'Sign requests with AWS SigV4 for this region (pip install "stair-es[aws]").',
    ),
    Setting(
        "aws_service",
        "STAIR_ES_AWS_SERVICE",
        "--aws-service",
        "es: Amazon OpenSearch Service; aoss: Serverless.",
    ),
)

# field name -> environment variable (the table above, for code that only needs the names)
ENV_VARS: dict[str, str] = {s.name: s.env for s in CONNECTION_SETTINGS}

# the rest of what the commands read from the environment
DEFAULT_IMAGE_INDEX = "stair-images"
DEFAULT_TEXT_INDEX = "stair-texts"
DEFAULT_TOKENS_INDEX = "stair-tokens"
LOCAL_PORT = Setting(
    "local_port",
    "STAIR_ES_PORT",
    "--port",
    "HTTP port of the local engine on 127.0.0.1 (where commands without a URL look).",
    kind="int",
    default=9200,  # stair_es.local.DEFAULT_PORT (tests/test_settings.py checks that they agree)
)
MODEL = Setting("model", "STAIR_ES_MODEL", "--model", "Exported model folder (stair-es export).", kind="dir")
INDEX = Setting("index", "STAIR_ES_INDEX", "--index", "Index name.")
OTHER_SETTINGS: tuple[Setting, ...] = (LOCAL_PORT, MODEL, INDEX)

_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@]+@")


def redact_urls(text: str) -> str:
    """``scheme://user:password@host`` -> ``scheme://***@host`` anywhere in ``text`` (last line of
    defence for messages that quote a URL)."""
    return _URL_USERINFO.sub(r"\1***@", text)


def split_credentials(url: str) -> tuple[str, tuple[str, str] | None]:
    """The URL without its ``user:password@`` part, and that part (percent-decoded), if any."""
    parts = urllib.parse.urlsplit(url)
    if "@" not in parts.netloc:
        return url, None
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    bare = urllib.parse.urlunsplit(parts._replace(netloc=hostport))
    return bare, (urllib.parse.unquote(user), urllib.parse.unquote(password))


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
    ``elasticsearch`` (no ``GET /``: for proxies and serverless collections that hide it; the
    version is then assumed to be the client library's). ``cloud_id`` (Elastic Cloud) replaces
    ``urls``; ``bearer_token`` sends ``Authorization: Bearer``; ``aws_region`` signs every request
    with AWS SigV4 for ``aws_service`` (``es``: Amazon OpenSearch Service, ``aoss``: Serverless)
    through opensearch-py's ``AWSV4SignerAuth`` (``pip install "stair-es[aws]"``).
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
    cloud_id: str | None = None
    bearer_token: str | None = None
    aws_region: str | None = None
    aws_service: str = "es"

    def __post_init__(self) -> None:
        if self.cloud_id:
            object.__setattr__(self, "urls", (cloud_id_url(self.cloud_id),))
        # "a,b" (as STAIR_ES_URL and --url take them) is two nodes, in a string or in a tuple entry
        given = (self.urls,) if isinstance(self.urls, str) else tuple(self.urls)
        object.__setattr__(self, "urls", tuple(u.strip() for g in given for u in g.split(",") if u.strip()))
        # credentials in a URL become user/password at once, so no message can ever quote them
        found: set[tuple[str, str]] = set()
        urls = []
        for raw in self.urls:
            bare, creds = split_credentials(raw.strip())
            urls.append(bare.rstrip("/"))
            if creds:
                found.add(creds)
        if not urls:
            raise UsageError("no engine URL given (--url or STAIR_ES_URL)")
        for url in urls:
            if not url.startswith(("http://", "https://")):
                shown = "***@" + url.rpartition("@")[2] if "@" in url else url
                raise UsageError(f"engine URL {shown!r} must start with http:// or https://")
        object.__setattr__(self, "urls", tuple(urls))
        if len(found) > 1:
            raise UsageError("the engine URLs carry different credentials: give one --user/--password")
        if found:
            creds = found.pop()
            if self.username is not None and (self.username, self.password) != creds:
                raise UsageError(
                    "credentials are given both in the URL and as --user/--password and differ: give one"
                )
            object.__setattr__(self, "username", creds[0])
            object.__setattr__(self, "password", creds[1])
        if self.distribution not in DISTRIBUTIONS:
            raise UsageError(
                f"distribution must be one of {', '.join(DISTRIBUTIONS)}, got {self.distribution!r}"
            )
        if (self.username is None) != (self.password is None):
            raise UsageError("give both a user and a password, or neither")
        if not (math.isfinite(self.timeout) and self.timeout > 0):
            raise UsageError(f"timeout must be a positive number of seconds, got {self.timeout}")
        auth_ways = [
            name
            for name, value in (
                ("user/password", self.username),
                ("API key", self.api_key),
                ("bearer token", self.bearer_token),
                ("AWS SigV4", self.aws_region),
            )
            if value
        ]
        if len(auth_ways) > 1:
            raise UsageError(f"give one way to authenticate, not {' and '.join(auth_ways)}")
        if self.aws_region and self.distribution == "elasticsearch":
            raise UsageError("AWS SigV4 signing is for OpenSearch (opensearch-py); drop the distribution")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> ConnectionConfig:
        """Environment first, then explicit ``overrides`` (``None`` values are ignored)."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for setting in CONNECTION_SETTINGS:
            text = env.get(setting.env)
            if text is not None and text != "":
                values[setting.name] = setting.parse(text)
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
        elif self.bearer_token:
            headers["Authorization"] = f"Bearer {self.bearer_token}"
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
        """Address without credentials, for messages (they were taken out of the URLs on creation)."""
        return redact_urls(", ".join(self.urls))


def cloud_id_url(cloud_id: str) -> str:
    """The Elasticsearch URL an Elastic Cloud id names (``name:base64(host[:port]$es_uuid$kibana_uuid)``),
    parsed as elasticsearch-py parses it, so detection and messages use the address the client uses."""
    _, _, encoded = cloud_id.partition(":")
    try:
        parts = base64.b64decode(encoded.encode("ascii"), validate=False).decode("ascii").split("$")
    except (ValueError, UnicodeError):
        parts = []
    if len(parts) < 2 or not parts[0] or not parts[1]:
        raise UsageError("the cloud id is not an Elastic Cloud id (name:base64 of host$es-uuid$kibana-uuid)")
    host, _, port = parts[0].rpartition(":") if ":" in parts[0] else (parts[0], "", "443")
    return f"https://{parts[1]}.{host}:{port}"


def _number(var: str, text: str, kind: type) -> Any:
    try:
        return kind(text)
    except ValueError:
        raise UsageError(f"{var}={text!r} is not a number") from None
