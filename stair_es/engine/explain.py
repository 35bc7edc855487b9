"""Why a hit scored what it did: per matched token, query weight x stored document weight.

Computed on the client from the hit's stored token map (or, when token maps are not in
``_source``, from the engine's own ``_explanation``): for each query token the document also has,
contribution = query weight x trunc9(document weight), largest first. Because the engine scores
exactly that sum (``linear`` clauses), the contributions add up to the sparse score;
``Hit.explained_score`` lets a reader check it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from stair_es.sparse import SparseVector, decode_feature_name, truncate_9bit, unshift_weight


@dataclass(frozen=True)
class TokenContribution:
    token: str
    query_weight: float
    doc_weight: float  # as stored by the engine (9-bit truncated)
    contribution: float


def explain(
    query: SparseVector, doc_features: Mapping[str, float], weight_shift: int = 0
) -> list[TokenContribution]:
    """Matched tokens with query weight x stored document weight, largest first."""
    doc = {decode_feature_name(k): float(v) for k, v in doc_features.items()}
    rows = []
    for token, qw in zip(query.tokens, query.weights.tolist(), strict=False):
        if token in doc:
            dw = unshift_weight(float(truncate_9bit(doc[token])), weight_shift)
            rows.append(TokenContribution(token, float(qw), dw, float(qw) * dw))
    rows.sort(key=lambda r: (-r.contribution, r.token))  # ties by token: stable output
    return rows


_LINEAR_RE = re.compile(r"^Linear function on the (\S+) field for the (.+) feature")


def explain_from_engine(
    query: SparseVector, explanation: Mapping[str, Any], fields: Sequence[str], weight_shift: int = 0
) -> tuple[str | None, list[TokenContribution]]:
    """Contributions from the engine's ``_explanation`` (used when token maps are not in ``_source``).

    Reads each ``linear`` clause's stored feature value S (times 2**weight_shift on a compact index)
    and multiplies by our query weight, so the result does not depend on how a version nests boosts.
    """
    weights = dict(zip(query.tokens, query.weights.tolist(), strict=True))
    per_field: dict[str, dict[str, float]] = {f: {} for f in fields}
    stack = [explanation]
    while stack:
        node = stack.pop()
        match = _LINEAR_RE.match(str(node.get("description", "")))
        if match and match.group(1) in per_field:
            stored = next(
                (
                    d["value"]
                    for d in node.get("details", [])
                    if str(d.get("description", "")).startswith("S,")
                ),
                None,
            )
            if stored is not None:
                per_field[match.group(1)][decode_feature_name(match.group(2))] = unshift_weight(
                    float(stored), weight_shift
                )
            continue
        stack.extend(node.get("details") or [])
    best_field: str | None = None
    best: list[TokenContribution] = []
    for name, stored in per_field.items():
        rows = [
            TokenContribution(t, weights[t], s, weights[t] * s) for t, s in stored.items() if t in weights
        ]
        rows.sort(key=lambda r: (-r.contribution, r.token))  # ties by token: stable output
        if rows and sum(r.contribution for r in rows) > sum(r.contribution for r in best):
            best_field, best = name, rows
    return best_field, best
