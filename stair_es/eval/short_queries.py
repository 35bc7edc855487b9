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

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from stair_es.data.synthetic import (
    COLOURS,
    COUNTS,
    POSITIONS,
    PREPOSITIONS,
    SHAPES,
    SIZES,
    Scene,
)
from stair_es.errors import InvalidArgument

FAMILIES = ("colour+shape", "count+shape", "size+shape", "colour+shape+position", "single word")


@dataclass(frozen=True)
class ShortQuery:
    family: str
    text: str
    relevant: frozenset[int]  # indices into the collection


def _noun(shape: str, plural: bool) -> str:
    return SHAPES[shape] if plural else shape


Centres = Sequence[Sequence[tuple[float, float]]]  # per group of one scene: its object centres


def in_region(position: str, centres: Sequence[tuple[float, float]]) -> bool:
    """Every centre lies in the named region (unit coordinates)."""
    x0, y0, x1, y1 = POSITIONS[position]
    return bool(centres) and all(x0 <= x <= x1 and y0 <= y <= y1 for x, y in centres)


def group_centres(objects: Sequence[Sequence[float]], groups: int) -> list[list[tuple[float, float]]]:
    """A manifest's ``objects`` rows ``[group, x, y, radius]`` as the centres of each group."""
    out: list[list[tuple[float, float]]] = [[] for _ in range(groups)]
    for group, x, y, *_ in objects:
        out[int(group)].append((float(x), float(y)))
    return out


def scene_answers(wanted: Mapping[str, object], scene: Scene, centres: Centres | None = None) -> bool:
    """One object group has every wanted attribute (``position`` judged on ``centres`` when given)."""
    if not wanted:
        return False
    for n, group in enumerate(scene.groups):
        if all(getattr(group, k) == v for k, v in wanted.items() if k != "position"):
            position = wanted.get("position")
            if position is None:
                return True
            if centres is not None and in_region(str(position), centres[n]):
                return True
            if centres is None and group.position == position:
                return True
    return False


def _candidates(rng: np.random.Generator) -> list[tuple[str, str, dict[str, object]]]:
    """(family, text, attributes) for every attribute combination the grammar allows."""
    out: list[tuple[str, str, dict[str, object]]] = []

    def article(plural: bool, word: str) -> str:
        return "" if plural else ("an " if word[0] in "aeiou" else "a ")

    for colour in COLOURS:
        for shape in SHAPES:
            plural = bool(rng.random() < 0.5)
            text = f"{article(plural, colour)}{colour} {_noun(shape, plural)}"
            out.append(("colour+shape", text, {"colour": colour, "shape": shape}))
            for position in POSITIONS:
                plural = bool(rng.random() < 0.5)
                text = f"{article(plural, colour)}{colour} {_noun(shape, plural)} {PREPOSITIONS[position]} the {position}"
                out.append(
                    ("colour+shape+position", text, {"colour": colour, "shape": shape, "position": position})
                )
    for count, word in COUNTS.items():
        for shape in SHAPES:
            out.append(("count+shape", f"{word} {_noun(shape, count > 1)}", {"count": count, "shape": shape}))
    for size in SIZES:
        for shape in SHAPES:
            plural = bool(rng.random() < 0.5)
            text = f"{article(plural, size)}{size} {_noun(shape, plural)}"
            out.append(("size+shape", text, {"size": size, "shape": shape}))
    for colour in COLOURS:
        out.append(("single word", colour, {"colour": colour}))
    for shape in SHAPES:
        out.append(("single word", SHAPES[shape], {"shape": shape}))
    return out


def short_queries(
    scenes: Sequence[Scene],
    min_relevant: int = 5,
    seed: int = 0,
    centres: Sequence[Centres] | None = None,
) -> list[ShortQuery]:
    """Every family's queries that have at least ``min_relevant`` relevant scenes (seeded wording).

    ``centres`` (per scene, per group, the object centres: :func:`group_centres`) makes position
    relevance geometric; without it the caption's position word decides."""
    if centres is not None and len(centres) != len(scenes):
        raise InvalidArgument(f"{len(scenes)} scenes but {len(centres)} centre lists")
    rng = np.random.default_rng(seed)
    queries = []
    for family, text, wanted in _candidates(rng):
        relevant = frozenset(
            i
            for i, scene in enumerate(scenes)
            if scene_answers(wanted, scene, centres[i] if centres is not None else None)
        )
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
        raise InvalidArgument(f"{len(queries)} queries but {len(rankings)} rankings")
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


def answers(text: str, scene: Scene, centres: Centres | None = None) -> bool:
    """True when one object group of ``scene`` has every attribute the query names (relevance as in
    :func:`short_queries`)."""
    return scene_answers(query_attributes(text), scene, centres)


def caption_answers(text: str, caption: object) -> bool:
    """:func:`answers` for a synthetic caption; False for anything else (a hit without one)."""
    from stair_es.data.synthetic import parse_caption

    try:
        return answers(text, parse_caption(str(caption)))
    except ValueError:
        return False
