"""Short-query families and precision over synthetic scenes (torch-free)."""

from __future__ import annotations

import numpy as np
import pytest

from stair_es.data.synthetic import ObjectGroup, Scene, SyntheticConfig, parse_caption, sample_scene
from stair_es.eval.short_queries import FAMILIES, precision_at_k, short_queries, short_query_report


def test_parse_caption_inverts_every_caption_the_grammar_makes() -> None:
    rng = np.random.default_rng(3)
    config = SyntheticConfig(two_group_fraction=0.5)
    for _ in range(500):
        scene = sample_scene(rng, config)
        assert parse_caption(scene.caption()) == scene


@pytest.mark.parametrize(
    "caption",
    ["a dog on a sofa", "two big red blobs on the left on a white background", "", "on a white background"],
)
def test_parse_caption_refuses_other_text(caption: str) -> None:
    with pytest.raises(ValueError, match="not a synthetic caption"):
        parse_caption(caption)


def _scene(count: int, size: str, colour: str, shape: str, position: str) -> Scene:
    return Scene((ObjectGroup(count, size, colour, shape, position),), "white")


def test_relevance_is_decided_on_the_scene() -> None:
    scenes = [_scene(1, "big", "red", "circle", "left")] * 5 + [
        _scene(3, "small", "red", "circle", "top")
    ] * 5
    scenes += [_scene(2, "big", "blue", "star", "left")] * 5
    by_text = {q.text: q for q in short_queries(scenes, min_relevant=5, seed=0)}
    red_circle = next(q for t, q in by_text.items() if t in ("red circles", "a red circle"))
    assert red_circle.family == "colour+shape"
    assert red_circle.relevant == frozenset(range(10))  # one circle or three: both hold red circles
    assert by_text["three circles"].relevant == frozenset(range(5, 10))
    assert by_text["one circle"].relevant == frozenset(range(5))
    assert by_text["stars"].family == "single word" and by_text["stars"].relevant == frozenset(range(10, 15))
    assert "blue circles" not in by_text and "a blue circle" not in by_text  # no relevant image: dropped
    positional = [q for q in by_text.values() if q.family == "colour+shape+position"]
    assert {q.text.split()[-1] for q in positional} == {"left", "top"}
    assert all(len(q.relevant) >= 5 for q in by_text.values())


def test_min_relevant_drops_rare_queries() -> None:
    scenes = [_scene(1, "big", "red", "circle", "left")] * 4
    assert short_queries(scenes, min_relevant=5) == []
    assert short_queries(scenes, min_relevant=4)


def test_precision_and_report() -> None:
    assert precision_at_k([1, 2, 9, 3], frozenset({1, 2, 3}), 5) == pytest.approx(3 / 5)
    assert precision_at_k([9], frozenset({9}), 1) == 1.0
    scenes = [_scene(1, "big", "red", "circle", "left")] * 6 + [
        _scene(2, "small", "green", "star", "top")
    ] * 6
    queries = short_queries(scenes, min_relevant=5)
    perfect = [sorted(q.relevant) for q in queries]
    report = short_query_report(queries, perfect)
    assert report["p_at_5"] == 1.0 and report["p_at_1"] == 1.0 and report["queries"] == len(queries)
    assert set(report["families"]) == set(FAMILIES)
    wrong = [sorted(set(range(12)) - q.relevant) for q in queries]
    assert short_query_report(queries, wrong)["p_at_5"] == 0.0
    with pytest.raises(ValueError):
        short_query_report(queries, perfect[:-1])


def test_query_attributes_and_answers_agree_with_the_families() -> None:
    from stair_es.eval.short_queries import answers, query_attributes

    assert query_attributes("three small pink crosses") == {
        "count": 3,
        "size": "small",
        "colour": "pink",
        "shape": "cross",
    }
    assert query_attributes("a red circle on the left") == {
        "colour": "red",
        "shape": "circle",
        "position": "left",
    }
    assert query_attributes("a dog") == {}
    rng = np.random.default_rng(1)
    scenes = [sample_scene(rng, SyntheticConfig()) for _ in range(300)]
    for query in short_queries(scenes, min_relevant=3):
        assert {i for i, s in enumerate(scenes) if answers(query.text, s)} == query.relevant, query.text
    assert not answers("a dog", scenes[0])
    from stair_es.eval.short_queries import caption_answers

    assert caption_answers("red circles", "two big red circles on the left on a white background")
    assert not caption_answers("red circles", "two big red stars on the left on a white background")
    assert not caption_answers("red circles", "red circles") and not caption_answers("red", None)


def test_synthetic_manifest_records_where_each_object_is(tmp_path) -> None:
    import json

    from stair_es.data import generate_synthetic
    from stair_es.eval.short_queries import group_centres, in_region

    manifest = generate_synthetic(
        tmp_path, SyntheticConfig(num_images=30, seed=4, test_fraction=1.0, two_group_fraction=0.5)
    )
    for row in map(json.loads, manifest["test"].read_text().splitlines()):
        scene = parse_caption(row["caption"])
        centres = group_centres(row["objects"], len(scene.groups))
        assert [len(c) for c in centres] == [g.count for g in scene.groups]
        assert all(in_region(g.position, c) for g, c in zip(scene.groups, centres))  # the caption is true


def test_positions_are_judged_where_the_objects_are() -> None:
    from stair_es.eval.short_queries import answers

    top_left = _scene(1, "big", "red", "circle", "left")  # captioned "left", drawn in the top left
    assert answers("a red circle on the left", top_left) and not answers("a red circle at the top", top_left)
    assert answers("a red circle at the top", top_left, [[(0.2, 0.2)]])
    assert not answers("a red circle at the bottom", top_left, [[(0.2, 0.2)]])
    scenes = [top_left] * 5 + [_scene(1, "big", "red", "circle", "bottom")] * 5
    centres = [[[(0.2, 0.2)]]] * 5 + [[[(0.5, 0.8)]]] * 5
    by_text = {q.text.split(" ", 1)[-1]: q for q in short_queries(scenes, min_relevant=5, centres=centres)}
    top = next(q for t, q in by_text.items() if t.endswith("at the top"))
    assert top.relevant == frozenset(range(5))
    with pytest.raises(ValueError):
        short_queries(scenes, centres=centres[:3])
