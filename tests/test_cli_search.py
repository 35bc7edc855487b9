"""stair-es search / explain without an engine: argument checks, filters, formatting, explain output."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from stair_es.engine.explain import TokenContribution
from stair_es.engine.query import QueryPlan
from stair_es.engine.search import Hit, SearchResult
from stair_es.errors import UsageError
from stair_es.sparse import SparseVector
from stair_es_cli.main import main
from stair_es_cli.search_cmd import describe_item, parse_filters, render_hits, render_map

UNREACHABLE = "http://127.0.0.1:9"


def invoke(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(main, list(args), env={"STAIR_ES_URL": UNREACHABLE, **(env or {})})


def test_parse_filters() -> None:
    clauses = parse_filters(
        ("modality=image", "user.album=2024", "user.album=trip", "width>=100", "mime!=image/gif"), None
    )
    assert clauses == [
        {"terms": {"user.album": [2024, "trip"]}},
        {"term": {"modality": "image"}},
        {"range": {"width": {"gte": 100}}},
        {"bool": {"must_not": [{"term": {"mime": "image/gif"}}]}},
    ]
    raw = parse_filters((), '{"exists": {"field": "caption"}}')
    assert raw == [{"exists": {"field": "caption"}}]
    assert parse_filters((), '{"user.tag": ["a", "b"]}') == [{"terms": {"user.tag": ["a", "b"]}}]
    for bad in ("novalue", "=x"):
        with pytest.raises(UsageError, match="--filter"):
            parse_filters((bad,), None)
    with pytest.raises(UsageError, match="not valid JSON"):
        parse_filters((), "{nope")
    with pytest.raises(UsageError, match="JSON object"):
        parse_filters((), "3")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "exactly one query"),
        (("a dog", "--tokens", '{"dog": 1}'), "exactly one query"),
        (("--tokens", '{"dog": 1}', "--hybrid"), "needs a text query"),
        (("--tokens", "[1]"), "JSON object of token"),
        (("--tokens", '{"dog": 0}'), "no token with a positive weight"),
        (("a dog", "--hybrid", "--mode", "two-phase"), "drop --mode"),
        (("a dog", "--filter", "oops"), "--filter"),
    ],
)
def test_search_usage_errors_are_one_line_exit_2(args: tuple[str, ...], message: str) -> None:
    result = invoke("search", *args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_search_unreachable_engine_exits_3() -> None:
    result = invoke("search", "--tokens", '{"dog": 1.0}', "--timeout", "2")
    assert result.exit_code == 3
    assert result.output.startswith("error: cannot reach a search engine")


def test_search_help_lists_modes_and_defaults() -> None:
    result = invoke("search", "--help")
    assert result.exit_code == 0
    for word in ("two-phase", "--hybrid", "--filter", "--target", "default: 10;", "Exit status"):
        assert word in result.output


def _result() -> SearchResult:
    rows = [TokenContribution("dog", 1.0, 0.5, 0.5), TokenContribution("grass", 0.5, 0.5, 0.25)]
    hits = [
        Hit("1", 0.75, {"path": "img/dog.jpg", "caption": "a dog"}, "image_tokens", rows),
        Hit("2", 0.25, {"caption": "grass"}, "text_tokens", rows[1:]),
    ]
    used = SparseVector.from_dict({"dog": 1.0, "grass": 0.5})
    return SearchResult(hits, QueryPlan({}, "exact", ("image_tokens",), used), 3.0, used)


def test_render_hits_table_and_full_explanation() -> None:
    table = render_hits(_result(), top_tokens=1, full=False)
    lines = table.splitlines()
    assert lines[0].split()[:3] == ["#", "score", "item"]
    assert "img/dog.jpg" in lines[1] and "0.7500" in lines[1] and "dog 0.5 (+1 more)" in lines[1]
    assert lines[2].strip() == "“a dog”"  # the caption goes on its own line below the path
    assert "“grass”" in lines[3]
    full = render_hits(_result(), top_tokens=2, full=True, offset=10)
    assert full.splitlines()[1].lstrip().startswith("11")
    assert "66.7%" in full and "sum of contributions 0.75000 vs score 0.75000" in full


def test_describe_item(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert describe_item({"path": "a.jpg"}) == ("a.jpg", None)
    assert describe_item({"url": "http://x/a.jpg", "caption": "c"}) == ("http://x/a.jpg", "“c”")
    assert describe_item({"caption": "c"}) == ("“c”", None)
    assert describe_item({}) == ("(no path or caption stored)", None)
    monkeypatch.chdir(tmp_path)
    assert describe_item({"path": str(tmp_path / "sub" / "a.jpg")})[0] == "sub/a.jpg"
    assert describe_item({"path": "/very/long/folder/name/photo.jpg"}, width=12)[0] == "…e/photo.jpg"


def test_render_map_shares_bars_and_rest() -> None:
    vec = SparseVector.from_dict({"dog": 2.0, "grass": 1.0, "sky": 1.0})
    text = render_map("text", vec, top=2)
    assert "3 tokens, total weight 4" in text
    dog = next(line for line in text.splitlines() if line.strip().startswith("dog"))
    assert "50.0%" in dog and dog.count("█") == 30
    assert "(+1 more tokens holding 25.0% of the weight" in text
    assert "no token" in render_map("empty", SparseVector.from_arrays([], np.zeros(0)), top=5)


@pytest.fixture(scope="module")
def image_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from PIL import Image

    path = tmp_path_factory.mktemp("img") / "red.png"
    Image.new("RGB", (40, 30), (220, 10, 10)).save(path)
    return path


def test_explain_text_and_image(tiny_onnx_model: Path, image_file: Path) -> None:
    result = invoke("explain", "--model", str(tiny_onnx_model), "--text", "a red square", "--top", "3")
    assert result.exit_code == 0, result.output
    assert 'text "a red square":' in result.output and "%" in result.output and "█" in result.output
    both = invoke(
        "explain",
        "--model",
        str(tiny_onnx_model),
        "--text",
        "a red square",
        "--image",
        str(image_file),
        "--json",
        "--top",
        "5",
    )
    assert both.exit_code == 0, both.output
    data = json.loads(both.stdout)
    assert data["text"]["input"] == "a red square" and len(data["text"]["top"]) == 5
    weights = [row["weight"] for row in data["image"]["top"]]
    assert weights == sorted(weights, reverse=True)
    match = data["match"]
    assert match["matched_tokens"] > 0 and len(match["contributions"]) == 5
    # the score is the dot product of the two maps
    from stair_es.runtime import load_encoder

    encoder = load_encoder(tiny_onnx_model, provider="cpu")
    text_vec = encoder.encode_texts(["a red square"])[0]
    image_vec = encoder.encode_images([str(image_file)])[0]
    assert match["score"] == pytest.approx(text_vec.dot(image_vec), rel=1e-5)


def test_explain_needs_input_and_a_readable_image(tiny_onnx_model: Path, tmp_path: Path) -> None:
    assert invoke("explain", "--model", str(tiny_onnx_model)).exit_code == 2
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    result = invoke("explain", "--model", str(tiny_onnx_model), "--image", str(broken))
    assert result.exit_code == 2 and "broken.jpg" in result.output
    missing = invoke("explain", "--model", str(tmp_path / "nope"), "--text", "x")
    assert missing.exit_code == 5 and "manifest.json" in missing.output
