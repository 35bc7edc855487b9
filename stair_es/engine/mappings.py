"""Index bodies and the ``_meta`` block that ties an index to one model.

The schema is data: ``mappings/<template>.json`` (one per token field type, PUT-able as it is).
This module loads a template and fills in values only (shards, replicas, refresh, caption analyzer,
``_source`` excludes, ``_meta.stair_es``: model id + vocabulary hash), and reads that block back so
that a query with another model fails with one clear line instead of silently returning nonsense.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from stair_es import __version__
from stair_es.errors import ModelError, UsageError
from stair_es.mappings_data import TEMPLATES, load

SCHEMA_VERSION = 1
FEATURE_NAME_ENCODING = "percent-dot-v1"  # stair_es.sparse.encode_feature_name
IMAGE_FIELD = "image_tokens"
CAPTION_FIELD = "caption"
TEXT_FIELD = "text_tokens"
TOKEN_FIELDS = {"image": IMAGE_FIELD, "text": TEXT_FIELD}
TOKEN_FIELD_TYPES = ("rank_features", "sparse_vector")
# the template a token field type gets when the caller names none (the backend names one per cluster)
DEFAULT_TEMPLATES = {"rank_features": "rank_features", "sparse_vector": "sparse_vector-8.11"}
# Compact indexes store w * 2**-112 (see stair_es.sparse.shift_weights): the same 9 significant bits,
# in ~12-bit instead of ~16-bit term frequencies. Query boosts carry the 2**112 back, so scores are
# unchanged bit for bit; weights below 2**-14 (~6e-5) cannot be stored and are dropped.
COMPACT_WEIGHT_SHIFT = 112
MAX_WEIGHT_SHIFT = 120
PLACEHOLDER = "SET-ME"  # the model_id / vocab_hash of a template as shipped


@dataclass(frozen=True)
class ModelMeta:
    """What identifies the encoder whose token maps an index holds."""

    model_id: str
    vocab_hash: str
    vocab_size: int | None = None
    path: str | None = None  # the exported model's folder at index time (a hint to find it again)

    def __post_init__(self) -> None:
        if not self.model_id or not self.vocab_hash:
            raise UsageError("model_id and vocab_hash must both be non-empty")


@dataclass(frozen=True)
class IndexMeta:
    """``_meta.stair_es`` of an existing index."""

    model: ModelMeta
    token_field_type: str
    schema_version: int
    feature_names: str
    tokens_in_source: bool = True
    library_version: str | None = None
    weight_shift: int = 0

    def matches(self, model_id: str, vocab_hash: str) -> bool:
        """True when the index was built with this model and vocabulary."""
        return self.model.model_id == model_id and self.model.vocab_hash == vocab_hash

    def check(self, index: str, model_id: str, vocab_hash: str) -> None:
        """Raise :class:`ModelError` unless the index was built with this model and vocabulary."""
        if not self.matches(model_id, vocab_hash):
            raise ModelError(
                f"index '{index}' was built with model '{self.model.model_id}' "
                f"(vocab {self.model.vocab_hash[:12]}) but this query uses model '{model_id}' "
                f"(vocab {vocab_hash[:12]}): use the matching model or re-index"
            )


def index_body(
    distribution: str,
    model: ModelMeta,
    *,
    shards: int = 1,
    replicas: int = 0,
    refresh_interval: str = "1s",
    token_field_type: str = "rank_features",
    tokens_in_source: bool = True,
    caption_analyzer: str = "english",
    extra_settings: Mapping[str, Any] | None = None,
    weight_shift: int | None = None,
    token_field_options: Mapping[str, Any] | None = None,
    template: str | None = None,
) -> dict[str, Any]:
    """The ``PUT /<index>`` body for ``distribution`` ("opensearch" or "elasticsearch").

    ``template`` names the ``mappings/`` file (None: :data:`DEFAULT_TEMPLATES` for the field
    type); ``token_field_options`` are merged into both token fields on top of it.

    ``token_field_type="sparse_vector"`` (Elasticsearch 8.11+ only) stores tokens in ES's
    ``sparse_vector`` field so the native ``sparse_vector`` query can be used; ``rank_feature``
    queries do not work on it, so the query builder switches to ``term`` clauses (same scores).

    ``tokens_in_source=False`` keeps the token maps out of ``_source`` (about half the index size);
    explanations then come from the engine's ``explain`` output, but the maps cannot be read back.

    ``weight_shift`` (``None``: :data:`COMPACT_WEIGHT_SHIFT` when the tokens are out of ``_source``,
    else 0) stores weights times 2**-shift, which cuts ~0.4-0.5 bytes per
    stored token; it is recorded in ``_meta`` and undone by the query builder and explanations.
    """
    if distribution not in ("opensearch", "elasticsearch"):
        raise UsageError(f"unknown distribution {distribution!r}")
    if token_field_type not in TOKEN_FIELD_TYPES:
        raise UsageError(f"token_field_type must be one of {TOKEN_FIELD_TYPES}, got {token_field_type!r}")
    if token_field_type == "sparse_vector" and distribution != "elasticsearch":
        raise UsageError("sparse_vector token fields need Elasticsearch 8.11+; use rank_features")
    if shards < 1 or replicas < 0:
        raise UsageError(f"shards must be >= 1 and replicas >= 0, got {shards}/{replicas}")
    if weight_shift is None:
        # sparse_vector stores FeatureField terms too: the shift saves the same bytes and the
        # ``term`` boosts undo it exactly (checked on Elasticsearch 8.15 and 9.1)
        weight_shift = COMPACT_WEIGHT_SHIFT if not tokens_in_source else 0
    if not 0 <= weight_shift <= MAX_WEIGHT_SHIFT:
        raise UsageError(f"weight_shift must be in [0, {MAX_WEIGHT_SHIFT}], got {weight_shift}")
    template = template or DEFAULT_TEMPLATES[token_field_type]
    if template not in TEMPLATES:
        raise UsageError(f"unknown index template {template!r}; templates: {', '.join(TEMPLATES)}")
    body = load(template)
    template_type = body["mappings"]["properties"][IMAGE_FIELD]["type"]
    if template_type != token_field_type:
        raise UsageError(f"template {template!r} stores {template_type} token fields, not {token_field_type}")
    settings = body["settings"]["index"]
    settings.update(
        {"number_of_shards": shards, "number_of_replicas": replicas, "refresh_interval": refresh_interval}
    )
    if extra_settings:
        settings.update(extra_settings)
    props = body["mappings"]["properties"]
    for name in TOKEN_FIELDS.values():
        props[name].update(copy.deepcopy(dict(token_field_options or {})))
    props[CAPTION_FIELD]["analyzer"] = caption_analyzer
    if not tokens_in_source:
        body["mappings"]["_source"] = {"excludes": list(TOKEN_FIELDS.values())}
    meta: dict[str, Any] = body["mappings"]["_meta"]["stair_es"]
    meta.update(
        {
            "model_id": model.model_id,
            "vocab_hash": model.vocab_hash,
            "tokens_in_source": tokens_in_source,
            "caption_analyzer": caption_analyzer,
            "library_version": __version__,
            "weight_shift": weight_shift,
        }
    )
    if model.vocab_size is not None:
        meta["vocab_size"] = int(model.vocab_size)
    if model.path:
        meta["model_path"] = str(model.path)
    return body


def parse_meta(index: str, mapping: Mapping[str, Any]) -> IndexMeta:
    """Read ``_meta.stair_es`` from a ``GET /<index>/_mapping`` entry's ``mappings`` object."""
    meta = (mapping.get("_meta") or {}).get("stair_es")
    if not isinstance(meta, Mapping) or "model_id" not in meta or "vocab_hash" not in meta:
        raise ModelError(
            f"index '{index}' has no stair-es model metadata (_meta.stair_es): "
            "it was not created by stair-es; create it with stair-es or choose another index"
        )
    if any(str(meta[key]).startswith(PLACEHOLDER) for key in ("model_id", "vocab_hash")):
        raise ModelError(
            f"index '{index}' was created from a mappings/ template without its model: set "
            "_meta.stair_es.model_id and vocab_hash from the model's manifest.json before indexing"
        )
    if meta.get("feature_names", FEATURE_NAME_ENCODING) != FEATURE_NAME_ENCODING:
        raise ModelError(
            f"index '{index}' uses feature-name encoding {meta.get('feature_names')!r}; "
            f"this stair-es ({__version__}) writes {FEATURE_NAME_ENCODING!r}: re-index"
        )
    return IndexMeta(
        model=ModelMeta(
            str(meta["model_id"]), str(meta["vocab_hash"]), meta.get("vocab_size"), meta.get("model_path")
        ),
        token_field_type=str(meta.get("token_field_type", "rank_features")),
        schema_version=int(meta.get("schema_version", SCHEMA_VERSION)),
        feature_names=str(meta.get("feature_names", FEATURE_NAME_ENCODING)),
        tokens_in_source=bool(meta.get("tokens_in_source", True)),
        library_version=meta.get("library_version"),
        weight_shift=int(meta.get("weight_shift", 0)),
    )


def field_paths(mapping: Mapping[str, Any]) -> set[str]:
    """Every field a mapping defines, dotted (``user.split``, ``caption.keyword``)."""
    out: set[str] = set()
    stack = [("", mapping.get("properties") or {})]
    while stack:
        prefix, props = stack.pop()
        for name, spec in props.items():
            path = prefix + name
            out.add(path)
            if isinstance(spec, Mapping):
                stack.append((path + ".", spec.get("properties") or {}))
                stack.append((path + ".", spec.get("fields") or {}))
    return out
