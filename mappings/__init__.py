"""The index schema as data (installed as ``stair_es.mappings_data``).

Each ``<template>.json`` is a complete ``PUT /<index>`` body that works as it is with curl (after
setting ``_meta.stair_es.model_id`` and ``vocab_hash`` from the model's ``manifest.json``; see
README.md here). :mod:`stair_es.engine.mappings` loads the same files and only fills in values
(shards, replicas, analyzer, ``_source`` excludes, model metadata): it never re-states a field.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

# template -> the engines it is for (stair_es.engine.Backend.token_template picks one per cluster)
TEMPLATES: dict[str, str] = {
    "rank_features": "OpenSearch 1.x-3.x; Elasticsearch 7.x-9.x with the mapper-extras module "
    "(every full distribution)",
    "sparse_vector": "Elasticsearch 8.19+ and 9.1+ without mapper-extras (sparse_vector fields, "
    "index_options.prune false keeps every token)",
    "sparse_vector-8.11": "Elasticsearch 8.11-8.18 and 9.0 without mapper-extras (sparse_vector "
    "fields, which these versions never prune)",
}


def load(name: str) -> dict[str, Any]:
    """Load the template ``<name>.json`` shipped in this folder."""
    if name not in TEMPLATES:
        raise KeyError(f"unknown index template {name!r}; templates: {', '.join(TEMPLATES)}")
    return json.loads(resources.files(__name__).joinpath(f"{name}.json").read_text(encoding="utf-8"))
