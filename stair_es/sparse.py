"""Sparse token->weight vectors: the one currency between encoders, indexer and queries.

Engine facts encoded here (see the README's "Engine facts"):
- ``rank_features`` stores only finite weights > 0 (at least ``Float.MIN_NORMAL``); anything else
  is rejected by the engine, so it is dropped on the client.
- Stored weights are truncated to 9 significant bits (``bits >> 15 << 15``), always toward zero.
- A ``rank_feature`` query addresses ``field.feature`` by splitting at the *last* dot, so a token
  with a dot (``.``, ``u.s.``) can never be queried, and ES 8.7+ refuses it at index time. Feature
  names are therefore percent-escaped: ``%`` -> ``%25`` and ``.`` -> ``%2E``; every other
  character is kept, so the index stays readable (``dog``, ``##s``, ``[CLS]``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from stair_es.errors import InvalidArgument

FLOAT_MIN_NORMAL = float(np.finfo(np.float32).tiny)


def encode_feature_name(token: str) -> str:
    """Make a token safe as a ``rank_features`` key (reversible, readable)."""
    if "%" in token:
        token = token.replace("%", "%25")
    if "." in token:
        token = token.replace(".", "%2E")
    return token


def decode_feature_name(name: str) -> str:
    """Inverse of :func:`encode_feature_name`."""
    if "%" not in name:
        return name
    return name.replace("%2E", ".").replace("%2e", ".").replace("%25", "%")


def truncate_9bit(weights: np.ndarray | float) -> np.ndarray:
    """What the engine stores for a weight: float32 with the low 15 mantissa bits cleared."""
    bits = np.asarray(weights, dtype=np.float32).view(np.uint32)
    return ((bits >> np.uint32(15)) << np.uint32(15)).view(np.float32)


def shift_weights(weights: np.ndarray, shift: int) -> np.ndarray:
    """``weights * 2**-shift`` as float32, exactly (a power of two moves only the exponent).

    Why: the engine stores a weight's top 16 float bits (8 exponent, 8 mantissa) as a term frequency,
    and Lucene bit-packs frequencies without an offset, so weights near 1 (exponent 127) cost ~16
    bits each. Shifted down to the smallest normal exponents the same 9 significant bits cost ~12.
    A query boost times ``2**shift`` (:func:`unshift_weight`) gives back the same scores bit for bit.
    """
    w = np.asarray(weights, dtype=np.float32)
    return np.ldexp(w, -shift).astype(np.float32) if shift else w


def unshift_weight(value: float, shift: int) -> float:
    """Inverse of :func:`shift_weights` for one float32 value (query boosts, stored values read
    back from explanations, whose JSON decimals are rounded to float32 first so they are exact)."""
    return float(np.ldexp(np.float64(np.float32(value)), shift)) if shift else float(value)


def min_storable_weight(shift: int = 0) -> float:
    """The smallest weight an index with ``shift`` can store (``Float.MIN_NORMAL * 2**shift``)."""
    return float(np.ldexp(np.float64(FLOAT_MIN_NORMAL), shift))


def storable_mask(weights: np.ndarray) -> np.ndarray:
    """True where the engine accepts the weight: finite and >= Float.MIN_NORMAL."""
    w = np.asarray(weights, dtype=np.float32)
    return np.isfinite(w) & (w >= FLOAT_MIN_NORMAL)


@dataclass(frozen=True)
class SparseVector:
    """Tokens with positive weights, heaviest first.

    ``ids`` are vocabulary ids when the vector came from an encoder (None for hand-made vectors).
    """

    tokens: tuple[str, ...]
    weights: np.ndarray
    ids: np.ndarray | None = None

    def __post_init__(self) -> None:
        if len(self.tokens) != len(self.weights):
            raise InvalidArgument("tokens and weights differ in length")
        if self.ids is not None and len(self.ids) != len(self.tokens):
            raise InvalidArgument("ids and tokens differ in length")

    # construction -------------------------------------------------------------------------
    @classmethod
    def from_arrays(
        cls, tokens: Iterable[str], weights: Iterable[float], ids: Iterable[int] | None = None
    ) -> SparseVector:
        """Build from parallel sequences: drops unstorable weights, sorts heaviest first.

        A token that appears twice keeps its largest weight (max-pooling semantics).
        """
        toks = list(tokens)
        w = np.asarray(list(weights) if not isinstance(weights, np.ndarray) else weights, dtype=np.float32)
        idx = None if ids is None else np.asarray(list(ids) if not isinstance(ids, np.ndarray) else ids)
        keep = storable_mask(w)
        if len(set(toks)) != len(toks):
            best: dict[str, int] = {}
            for i, t in enumerate(toks):
                if keep[i] and (t not in best or w[i] > w[best[t]]):
                    best[t] = i
            keep = np.zeros(len(toks), dtype=bool)
            keep[list(best.values())] = True
        order = np.flatnonzero(keep)
        order = order[np.argsort(-w[order], kind="stable")]
        return cls(
            tokens=tuple(toks[i] for i in order),
            weights=w[order],
            ids=None if idx is None else idx[order],
        )

    @classmethod
    def from_dict(cls, mapping: Mapping[str, float]) -> SparseVector:
        return cls.from_arrays(list(mapping.keys()), list(mapping.values()))

    @classmethod
    def from_features(cls, features: Mapping[str, float]) -> SparseVector:
        """From a ``rank_features`` map as stored in ``_source`` (escaped names)."""
        return cls.from_arrays([decode_feature_name(k) for k in features], list(features.values()))

    # views -------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.tokens)

    def to_dict(self, ndigits: int | None = None) -> dict[str, float]:
        if ndigits is None:
            return {t: float(w) for t, w in zip(self.tokens, self.weights)}
        return {t: round(float(w), ndigits) for t, w in zip(self.tokens, self.weights)}

    def to_features(self) -> dict[str, float]:
        """The ``rank_features`` value: escaped names, storable weights only."""
        return {encode_feature_name(t): float(w) for t, w in zip(self.tokens, self.weights)}

    # pruning -----------------------------------------------------------------------------
    def drop(self, tokens: Iterable[str]) -> SparseVector:
        """This vector without ``tokens`` (order kept: still heaviest first)."""
        gone = set(tokens)
        keep = [i for i, t in enumerate(self.tokens) if t not in gone]
        return SparseVector(
            tokens=tuple(self.tokens[i] for i in keep),
            weights=self.weights[keep],
            ids=None if self.ids is None else self.ids[keep],
        )

    def prune(
        self, top_k: int | None = None, min_weight: float = 0.0, mass: float | None = None
    ) -> SparseVector:
        """Keep the heaviest tokens.

        ``top_k`` caps the count, ``min_weight`` drops light tokens, ``mass`` (0..1] keeps the
        smallest prefix whose weights add up to that fraction of the total. Cheap because the
        weights are already sorted.
        """
        n = len(self.weights)
        if min_weight > 0:
            n = int(np.searchsorted(-self.weights, -min_weight, side="right"))
        if top_k is not None:
            n = min(n, max(int(top_k), 0))
        if mass is not None and n > 0:
            if not 0 < mass <= 1:
                raise InvalidArgument(f"mass must be in (0, 1], got {mass}")
            csum = np.cumsum(self.weights[:n], dtype=np.float64)
            n = min(n, int(np.searchsorted(csum, mass * csum[-1] * (1 - 1e-9))) + 1)
        if n == len(self.weights):
            return self
        return SparseVector(
            tokens=self.tokens[:n],
            weights=self.weights[:n],
            ids=None if self.ids is None else self.ids[:n],
        )

    # scoring -----------------------------------------------------------------------------
    def dot(self, other: SparseVector, truncate_other: bool = False) -> float:
        """Dot product; ``truncate_other`` applies the engine's 9-bit storage to ``other``."""
        ow = truncate_9bit(other.weights) if truncate_other else other.weights
        lookup = dict(zip(other.tokens, ow.tolist()))
        return float(sum(float(w) * lookup[t] for t, w in zip(self.tokens, self.weights) if t in lookup))

    def contributions(self, other: SparseVector) -> list[tuple[str, float, float, float]]:
        """(token, self weight, other weight, product) for shared tokens, largest product first."""
        lookup = dict(zip(other.tokens, other.weights.tolist()))
        rows = [
            (t, float(w), lookup[t], float(w) * lookup[t])
            for t, w in zip(self.tokens, self.weights)
            if t in lookup
        ]
        rows.sort(key=lambda r: -r[3])
        return rows
