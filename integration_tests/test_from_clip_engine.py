"""A CLIPModel folder on disk -> ``train --from-clip`` -> ``export`` -> ``index images`` -> ``search`` and
``eval`` on a real engine: the index holds output-vocabulary (WordPiece) tokens although the text input
is CLIP's BPE, and the engine agrees with memory."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

pytest.importorskip("torch")

from stair_es.engine import ConnectionConfig, connect  # noqa: E402
from stair_es.model.testing import save_tiny_clip  # noqa: E402
from stair_es.model.tokenizer import build_wordpiece_tokenizer  # noqa: E402
from stair_es_cli.main import main  # noqa: E402

COLOURS = ["red", "green", "blue", "yellow"]


def _invoke(engine_url: str, *args: str):
    return CliRunner().invoke(main, list(args), env={"STAIR_ES_URL": engine_url}, catch_exceptions=False)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[str]]:
    root = tmp_path_factory.mktemp("from-clip")
    photos = root / "photos"
    photos.mkdir()
    rows = []
    for i in range(12):
        colour = COLOURS[i % 4]
        image = Image.new("RGB", (40, 32), colour)
        image.putpixel((i, i), (0, 0, 0))  # distinct files (documents are content-addressed)
        image.save(photos / f"{i}.png")
        (photos / f"{i}.txt").write_text(f"a {colour} square\n")
        rows.append({"image": f"photos/{i}.png", "caption": f"a {colour} square"})
    (root / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    clip = save_tiny_clip(root / "clip", [f"a {c} square" for c in COLOURS])
    vocab_tokens = sorted(
        build_wordpiece_tokenizer([" ".join(COLOURS)], vocab_size=1100).get_vocab().items(),
        key=lambda kv: kv[1],
    )
    vocab = root / "vocab.txt"
    vocab.write_text("".join(t + "\n" for t, _ in vocab_tokens))
    runner = CliRunner()
    result = runner.invoke(main, ["train", "--from-clip", str(clip), "--output-vocab", str(vocab), "--data",
                                  str(root / "pairs.jsonl"), "--output", str(root / "sparse"), "--steps", "20",
                                  "--batch-size", "4", "--lr", "3e-3", "--quiet"])  # fmt: skip
    assert result.exit_code == 0, result.output
    result = runner.invoke(main, ["export", str(root / "sparse"), str(root / "onnx")])
    assert result.exit_code == 0, result.output
    return root, root / "onnx", [t for t, _ in vocab_tokens]


def test_index_and_search_a_from_clip_model(engine_url: str, exported: tuple[Path, Path, list[str]]) -> None:
    root, model, vocab = exported
    index = f"test-from-clip-{uuid.uuid4().hex[:8]}"
    try:
        result = _invoke(engine_url, "index", "images", str(root / "photos"), "--model", str(model), "--index",
                         index, "--json", "--no-progress")  # fmt: skip
        assert result.exit_code == 0, result.output
        summary = json.loads(result.stdout)
        assert summary["indexed"] == 12 and summary["balanced"]
        result = _invoke(
            engine_url,
            "search",
            "a red square",
            "--index",
            index,
            "--model",
            str(model),
            "--json",
            "-k",
            "12",
        )
        assert result.exit_code == 0, result.output
        hits = json.loads(result.stdout)["hits"]
        assert len(hits) == 12
        matched = {row["token"] for hit in hits for row in hit["explanation"]}
        assert matched and matched <= set(vocab)  # WordPiece names, not BPE pieces ("red</w>")
        # the engine's score is the dot product of the query and the stored (9-bit) weights
        from stair_es.runtime import load_encoder
        from stair_es.sparse import truncate_9bit

        encoder = load_encoder(model, provider="cpu")
        query = encoder.encode_texts(["a red square"])[0]
        top = hits[0]
        image = encoder.encode_images([str(root / "photos" / Path(top["source"]["path"]).name)])[0]
        stored = dict(zip(image.tokens, truncate_9bit(image.weights).tolist()))
        expected = sum(float(w) * stored.get(t, 0.0) for t, w in zip(query.tokens, query.weights.tolist()))
        assert top["score"] == pytest.approx(expected, rel=1e-4)
    finally:
        with connect(ConnectionConfig(urls=engine_url)) as backend:
            backend.delete_index(index)


def test_eval_a_from_clip_model_through_the_engine(
    engine_url: str, exported: tuple[Path, Path, list[str]]
) -> None:
    root, model, _ = exported
    result = _invoke(engine_url, "eval", str(root / "pairs.jsonl"), "--model", str(model), "--relevance",
                     "caption", "--json")  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    for direction in report["directions"].values():
        assert direction["score_rel_diff_9bit_max"] < 1e-4
        assert set(direction["engine"]) == set(direction["memory"])
