"""Short queries, the way people type them, over a synthetic collection: families and precision.

A person searching images types two or three words ("red circles", "three crosses", "a big green
star"), not a full caption. This module makes such queries from the scenes of a held-out synthetic
collection and scores rankings of that collection against them:

- colour+shape       "red circles", "a green star"
- count+shape        "three crosses", "one star"
- size+shape         "big stars", "a small circle"
- colour+shape+position  "red circles on the left", "a blue square at the top"
- single word        "red", "stars"

Relevance is decided on the scene, not on caption text: an image is relevant when one of its object
groups has every attribute the query names (a plural noun does not demand two or more objects:
"red circles" is answered by an image with one red circle too; counts are asked with count words).
Only queries with at least ``min_relevant`` relevant images are kept, so precision@5 can reach 1.
Nothing here imports torch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from stair_es.data.synthetic import (
    COLOURS,
    COUNTS,
    POSITIONS,
    PREPOSITIONS,
    SHAPES,
    SIZES,
    ObjectGroup,
    Scene,
)

FAMILIES = ("colour+shape", "count+shape", "size+shape", "colour+shape+position", "single word")


@dataclass(frozen=True)
class ShortQuery:
    family: str
    text: str
    relevant: frozenset[int]  # indices into the collection


def _noun(shape: str, plural: bool) -> str:
    return SHAPES[shape] if plural else shape


def _candidates(rng: np.random.Generator) -> list[tuple[str, str, Callable[[ObjectGroup], bool]]]:
    """(family, text, group predicate) for every attribute combination the grammar allows."""
    out: list[tuple[str, str, Callable[[ObjectGroup], bool]]] = []

    def article(plural: bool, word: str) -> str:
        return "" if plural else ("an " if word[0] in "aeiou" else "a ")

    for colour in COLOURS:
        for shape in SHAPES:
            plural = bool(rng.random() < 0.5)
            text = f"{article(plural, colour)}{colour} {_noun(shape, plural)}"
            out.append(("colour+shape", text, lambda g, c=colour, s=shape: g.colour == c and g.shape == s))
            for position in POSITIONS:
                plural = bool(rng.random() < 0.5)
                text = f"{article(plural, colour)}{colour} {_noun(shape, plural)} {PREPOSITIONS[position]} the {position}"
                out.append(
                    (
                        "colour+shape+position",
                        text,
                        lambda g, c=colour, s=shape, p=position: (
                            g.colour == c and g.shape == s and g.position == p
                        ),
                    )
                )
    for count, word in COUNTS.items():
        for shape in SHAPES:
            text = f"{word} {_noun(shape, count > 1)}"
            out.append(("count+shape", text, lambda g, n=count, s=shape: g.count == n and g.shape == s))
    for size in SIZES:
        for shape in SHAPES:
            plural = bool(rng.random() < 0.5)
            text = f"{article(plural, size)}{size} {_noun(shape, plural)}"
            out.append(("size+shape", text, lambda g, z=size, s=shape: g.size == z and g.shape == s))
    for colour in COLOURS:
        out.append(("single word", colour, lambda g, c=colour: g.colour == c))
    for shape in SHAPES:
        out.append(("single word", SHAPES[shape], lambda g, s=shape: g.shape == s))
    return out


def short_queries(scenes: Sequence[Scene], min_relevant: int = 5, seed: int = 0) -> list[ShortQuery]:
    """Every family's queries that have at least ``min_relevant`` relevant scenes (seeded wording)."""
    rng = np.random.default_rng(seed)
    queries = []
    for family, text, predicate in _candidates(rng):
        relevant = frozenset(i for i, scene in enumerate(scenes) if any(predicate(g) for g in scene.groups))
        if len(relevant) >= min_relevant:
            queries.append(ShortQuery(family, text, relevant))
    return queries


def precision_at_k(ranked: Sequence[int], relevant: frozenset[int], k: int) -> float:
    """Share of the first ``k`` results that are relevant (missing results count as wrong)."""
    return sum(1 for item in list(ranked)[:k] if item in relevant) / k


def short_query_report(
    queries: Sequence[ShortQuery], rankings: Sequence[Sequence[int]], k: int = 5
) -> dict[str, object]:
    """``p_at_5`` (mean over all queries), ``p_at_1`` (first hit right), and both per family."""
    if len(queries) != len(rankings):
        raise ValueError(f"{len(queries)} queries but {len(rankings)} rankings")
    p_k = np.array([precision_at_k(r, q.relevant, k) for q, r in zip(queries, rankings)])
    p_1 = np.array([precision_at_k(r, q.relevant, 1) for q, r in zip(queries, rankings)])
    families: dict[str, dict[str, float]] = {}
    for family in FAMILIES:
        rows = [i for i, q in enumerate(queries) if q.family == family]
        if rows:
            families[family] = {
                f"p_at_{k}": round(float(p_k[rows].mean()), 4),
                "p_at_1": round(float(p_1[rows].mean()), 4),
                "queries": len(rows),
            }
    return {
        f"p_at_{k}": round(float(p_k.mean()), 4) if len(p_k) else 0.0,
        "p_at_1": round(float(p_1.mean()), 4) if len(p_1) else 0.0,
        "queries": len(queries),
        "families": families,
    }


def query_attributes(text: str) -> dict[str, object]:
    """The scene attributes a short query in the synthetic words names: ``"three small pink crosses"``
    -> ``{"count": 3, "size": "small", "colour": "pink", "shape": "cross"}`` (other words ignored)."""
    count_of = {word: n for n, word in COUNTS.items()}
    plural_to_shape = {plural: shape for shape, plural in SHAPES.items()}
    attributes: dict[str, object] = {}
    for word in text.lower().split():
        if word in count_of:
            attributes["count"] = count_of[word]
        elif word in SIZES:
            attributes["size"] = word
        elif word in COLOURS:
            attributes["colour"] = word
        elif word in SHAPES or word in plural_to_shape:
            attributes["shape"] = plural_to_shape.get(word, word)
        elif word in POSITIONS:
            attributes["position"] = word
    return attributes


def answers(text: str, scene: Scene) -> bool:
    """True when one object group of ``scene`` has every attribute the query names (relevance as in
    :func:`short_queries`)."""
    wanted = query_attributes(text)
    return bool(wanted) and any(all(getattr(g, k) == v for k, v in wanted.items()) for g in scene.groups)


def caption_answers(text: str, caption: object) -> bool:
    """:func:`answers` for a synthetic caption; False for anything else (a hit without one)."""
    from stair_es.data.synthetic import parse_caption

    try:
        return answers(text, parse_caption(str(caption)))
    except ValueError:
        return False
