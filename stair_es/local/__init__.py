"""Local engine provisioning: a real OpenSearch node from Maven Central, on loopback, cached.

This is the embedded default for people without a cluster, and what CI and integration tests run
against. Nothing here needs Docker.
"""

from stair_es.local.cluster import cluster_name, clusters, records, start_cluster
from stair_es.local.distributions import DEFAULT_OPENSEARCH_VERSION, Distribution, get_distribution
from stair_es.local.node import (
    DEFAULT_PORT,
    NodeState,
    cache_root,
    ensure_home,
    ensure_running,
    instances,
    start,
    stop,
)
from stair_es.local.status import node_status, tail_log

__all__ = [
    "DEFAULT_OPENSEARCH_VERSION",
    "DEFAULT_PORT",
    "Distribution",
    "NodeState",
    "cache_root",
    "cluster_name",
    "clusters",
    "ensure_home",
    "ensure_running",
    "get_distribution",
    "instances",
    "node_status",
    "records",
    "start",
    "start_cluster",
    "stop",
    "tail_log",
]
