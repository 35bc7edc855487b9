"""What the cluster is: ``GET /`` (or ``_nodes/_local`` where ``GET /`` is not served) and the
capabilities that follow from distribution and version (see reference/engines.md).

Detection goes over plain urllib3 because elasticsearch-py refuses OpenSearch servers.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from stair_es.engine.config import ConnectionConfig
from stair_es.errors import EngineError


@dataclass(frozen=True)
class ClusterInfo:
    """What ``GET /`` says, plus derived capabilities (see reference/engines.md)."""

    distribution: str  # "opensearch" | "elasticsearch"
    number: str
    cluster_name: str = ""
    lucene_version: str = ""
    detected: bool = True  # False: the distribution was given, the version is the client library's

    @property
    def version(self) -> tuple[int, int, int]:
        parts = [int(p) for p in re.findall(r"\d+", self.number)[:3]]
        return tuple((parts + [0, 0, 0])[:3])  # type: ignore[return-value]

    @property
    def major(self) -> int:
        return self.version[0]

    @property
    def supports_linear(self) -> bool:
        """``rank_feature`` ``linear``: ES 7.12+, OpenSearch 1.1+ (backport #1025)."""
        if self.distribution == "opensearch":
            return self.version >= (1, 1, 0)
        return self.version >= (7, 12, 0)

    @property
    def supports_sparse_vector_field(self) -> bool:
        return self.distribution == "elasticsearch" and self.version >= (8, 11, 0)

    @property
    def supports_sparse_vector_query(self) -> bool:
        return self.distribution == "elasticsearch" and self.version >= (8, 15, 0)

    @property
    def supports_sparse_vector_index_options(self) -> bool:
        """``index_options.prune`` on ``sparse_vector`` fields (8.19 and 9.1+, pruning on by default)."""
        if self.distribution != "elasticsearch":
            return False
        return self.version >= (9, 1, 0) or (8, 19, 0) <= self.version < (9, 0, 0)

    def describe(self) -> str:
        name = "OpenSearch" if self.distribution == "opensearch" else "Elasticsearch"
        return f"{name} {self.number}" if self.detected else f"{name} (version assumed {self.number})"


def parse_root(body: Mapping[str, Any]) -> ClusterInfo:
    """Build :class:`ClusterInfo` from the ``GET /`` body of either engine."""
    version = body.get("version") or {}
    number = str(version.get("number", ""))
    if not number:
        raise EngineError("the server answered GET / without a version: is this OpenSearch/Elasticsearch?")
    tagline = str(body.get("tagline", ""))
    is_os = version.get("distribution") == "opensearch" or "OpenSearch" in tagline
    return ClusterInfo(
        distribution="opensearch" if is_os else "elasticsearch",
        number=number,
        cluster_name=str(body.get("cluster_name", "")),
        lucene_version=str(version.get("lucene_version", "")),
    )


def _transport_problem(exc: BaseException) -> str:
    """A failed connection in a few words; TLS failures say which check failed and what to pass
    (the exception text names only the server and the certificate, never credentials)."""
    text = str(exc)
    if "CERTIFICATE_VERIFY_FAILED" not in text and "SSL" not in type(exc).__name__:
        return type(exc).__name__
    if "Hostname mismatch" in text or "doesn't match" in text or "IP address mismatch" in text:
        return "TLS hostname mismatch (the server's certificate is not for this host name: use the name it was issued for)"
    if "CERTIFICATE_VERIFY_FAILED" in text:
        return "TLS certificate not trusted (pass the CA that signed it with --ca-certs / STAIR_ES_CA_CERTS)"
    return "TLS handshake failed"


def _node_info(data: bytes) -> ClusterInfo | None:
    """Elasticsearch's version from ``GET /_nodes/_local`` (where ``GET /`` is not served)."""
    try:
        body = json.loads(data)
    except ValueError:
        return None
    node = next(iter((body.get("nodes") or {}).values()), None)
    if not node or not node.get("version"):
        return None
    return ClusterInfo("elasticsearch", str(node["version"]), cluster_name=str(body.get("cluster_name", "")))


def detect(config: ConnectionConfig) -> ClusterInfo:
    """``GET /`` on the first URL that answers; one clear line when none does."""
    import urllib3

    kwargs: dict[str, Any] = {"timeout": urllib3.Timeout(total=config.timeout), "retries": False}
    if any(u.startswith("https://") for u in config.urls):
        kwargs["cert_reqs"] = "CERT_REQUIRED" if config.verify_certs else "CERT_NONE"
        if config.ca_certs:
            kwargs["ca_certs"] = config.ca_certs
        if not config.verify_certs:
            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
    pool = urllib3.PoolManager(**kwargs)
    headers = {"Accept": "application/json", **config.auth_headers()}
    problems = []
    for url in config.urls:
        try:
            resp = pool.request("GET", url + "/", headers=headers)
        except Exception as exc:  # noqa: BLE001 - any transport failure means "try the next URL"
            problems.append(f"{url}: {_transport_problem(exc)}")
            continue
        if resp.status in (401, 403):
            raise EngineError(
                f"{url} refused the credentials (HTTP {resp.status}): check user/password/API key"
            )
        if resp.status == 405 and resp.headers.get("X-Elastic-Product") == "Elasticsearch":
            # builds without the rest-root module (Maven's 8.x/9.x integ-test zips): ask the node
            resp = pool.request(
                "GET", url + "/_nodes/_local?filter_path=cluster_name,nodes.*.version", headers=headers
            )
            info = _node_info(resp.data) if resp.status == 200 else None
            if info is not None:
                return info
        if resp.status != 200:
            problems.append(f"{url}: HTTP {resp.status}")
            continue
        try:
            return parse_root(json.loads(resp.data))
        except ValueError:
            problems.append(f"{url}: not JSON")
    raise EngineError(
        f"cannot reach a search engine at {'; '.join(problems)} "
        "(start one with `stair-es engine up` or set STAIR_ES_URL)"
    )
