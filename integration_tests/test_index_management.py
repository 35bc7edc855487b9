"""Index management on the real node: the index knows its model (search/doctor without --model),
aliases and zero-downtime re-indexing, STAIR_ES_INDEX, --keep-settings on a live index, vectors
encoded elsewhere (index tokens), and mistakes that get one line instead of a mess."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from stair_es.engine import Backend, ConnectionConfig, connect
from stair_es_cli.main import main


@pytest.fixture()
def backend(engine_url: str) -> Iterator[Backend]:
    with connect(ConnectionConfig(urls=engine_url)) as b:
        yield b


@pytest.fixture()
def names(backend: Backend) -> Iterator[str]:
    """A unique name prefix; every index and alias starting with it is deleted afterwards."""
    prefix = f"stair-test-mgmt-{uuid.uuid4().hex[:8]}"
    yield prefix
    for name in backend.client.indices.get_alias(index=f"{prefix}*"):
        backend.delete_index(name)


@pytest.fixture()
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private stair-es cache: the model registry starts empty."""
    root = tmp_path / "cache"
    monkeypatch.setenv("STAIR_ES_CACHE", str(root))
    return root


def cli(engine_url: str, *args: str, **env: str):
    return CliRunner().invoke(main, list(args), env={"STAIR_ES_URL": engine_url, **env})


def _texts(path: Path, n: int = 6) -> Path:
    colours = ["red", "blue", "green", "yellow", "pink", "white"]
    path.write_text(
        "".join(json.dumps({"text": f"two {c} circles", "n": i}) + "\n" for i, c in enumerate(colours[:n]))
    )
    return path


def test_search_and_doctor_find_the_model_from_the_index(
    engine_url: str, names: str, tiny_onnx_model: Path, tmp_path: Path, cache: Path
) -> None:
    corpus = _texts(tmp_path / "corpus.jsonl")
    made = cli(engine_url, "index", "texts", str(corpus), "--index", names, "--model", str(tiny_onnx_model))
    assert made.exit_code == 0, made.output
    found = cli(engine_url, "search", "two red circles", "--index", names, "--target", "text", "--json")
    assert found.exit_code == 0, found.output
    assert (
        f"at {tiny_onnx_model.resolve()}" in found.stderr
        and f"index '{names}' was built with it" in found.stderr
    )
    assert json.loads(found.stdout)["hits"]
    doctor = cli(engine_url, "doctor", "--index", names, "--json")
    checks = {c["name"]: c for c in json.loads(doctor.stdout)["checks"]}
    assert checks["model source"]["status"] == "ok" and checks[f"index {names}"]["status"] == "ok", checks
    assert str(tiny_onnx_model.resolve()) in checks["model"]["detail"]


def test_model_is_found_through_the_registry_when_the_folder_moved(
    engine_url: str, names: str, tiny_onnx_model: Path, tmp_path: Path, cache: Path
) -> None:
    import shutil

    model = tmp_path / "model"
    shutil.copytree(tiny_onnx_model, model)
    corpus = _texts(tmp_path / "corpus.jsonl")
    assert (
        cli(engine_url, "index", "texts", str(corpus), "--index", names, "--model", str(model)).exit_code == 0
    )
    moved = tmp_path / "moved"
    model.rename(moved)
    lost = cli(engine_url, "search", "red", "--index", names, "--target", "text")
    assert lost.exit_code == 5 and "pass --model DIR" in lost.output, lost.output
    from stair_es.runtime import Manifest
    from stair_es.runtime.registry import register_model

    register_model(Manifest.read(moved))  # what `stair-es export` does for every model it writes
    found = cli(engine_url, "search", "red", "--index", names, "--target", "text")
    assert found.exit_code == 0 and "found via model registry" in found.stderr, found.output


def test_eval_refuses_to_guess_the_model(engine_url: str, tmp_path: Path) -> None:
    data = tmp_path / "test.jsonl"
    data.write_text(json.dumps({"image": "a.png", "caption": "x"}) + "\n")
    result = CliRunner().invoke(
        main, ["eval", str(data)], env={"STAIR_ES_URL": engine_url, "STAIR_ES_MODEL": ""}
    )
    assert result.exit_code == 2 and "which model? pass --model" in result.output


def test_alias_reindex_swaps_atomically_and_search_follows(
    engine_url: str, backend: Backend, names: str, tiny_onnx_model: Path, tmp_path: Path, cache: Path
) -> None:
    corpus = _texts(tmp_path / "corpus.jsonl")
    first = cli(engine_url, "index", "texts", str(corpus), "--alias", names, "--model", str(tiny_onnx_model))
    assert first.exit_code == 0, first.output
    from stair_es.engine.aliases import alias_holders, model_slug
    from stair_es.runtime import Manifest

    model_id = Manifest.read(tiny_onnx_model).model_id
    built = f"{names}-{model_slug(model_id)}"
    assert alias_holders(backend, names) == [built] and f"alias '{names}' -> '{built}'" in first.stderr
    # STAIR_ES_INDEX names the alias searches use; with --alias, index builds a new index beside it
    second = cli(
        engine_url, "index", "texts", str(corpus), "--alias", names, "--index", f"{names}-v2",
        "--model", str(tiny_onnx_model),
    )  # fmt: skip
    assert second.exit_code == 0 and alias_holders(backend, names) == [f"{names}-v2"], second.output
    assert f"was {built}" in second.stderr
    hits = cli(engine_url, "search", "two red circles", "--index", names, "--target", "text", "--json")
    assert hits.exit_code == 0 and json.loads(hits.stdout)["hits"], hits.output
    listed = cli(engine_url, "alias")
    assert f"{names} -> {names}-v2" in listed.stdout and model_id in listed.stdout
    back = cli(engine_url, "alias", names, built)
    assert back.exit_code == 0 and alias_holders(backend, names) == [built], back.output
    gone = cli(engine_url, "alias", names, "--remove")
    assert gone.exit_code == 0 and alias_holders(backend, names) == []
    # a plain index of the alias's name: refused, unless it is replaced in the same atomic request
    plain = f"{names}-plain"
    assert (
        cli(
            engine_url, "index", "texts", str(corpus), "--index", plain, "--model", str(tiny_onnx_model)
        ).exit_code
        == 0
    )
    refused = cli(engine_url, "alias", plain, built)
    assert refused.exit_code == 2 and "--replace-index" in refused.output
    replaced = cli(engine_url, "alias", plain, built, "--replace-index")
    assert replaced.exit_code == 0 and alias_holders(backend, plain) == [built], replaced.output


def test_index_honours_stair_es_index(
    engine_url: str, backend: Backend, names: str, tiny_onnx_model: Path, tmp_path: Path, cache: Path
) -> None:
    corpus = _texts(tmp_path / "corpus.jsonl", 2)
    result = cli(
        engine_url, "index", "texts", str(corpus), "--model", str(tiny_onnx_model), STAIR_ES_INDEX=names
    )
    assert result.exit_code == 0 and backend.count(names) == 2, result.output


def _token_file(path: Path, n: int) -> Path:
    with path.open("w") as out:
        for i in range(n):
            out.write(
                json.dumps({"id": f"t{i}", "kind": "text", "tokens": {"red": 1.0, f"w{i % 97}": 0.5}}) + "\n"
            )
    return path


def test_keep_settings_leaves_a_live_index_alone(
    engine_url: str, backend: Backend, names: str, tmp_path: Path, cache: Path
) -> None:
    """Loads over 5,000 documents relax refresh/replicas; --keep-settings must not touch them."""
    tokens = _token_file(tmp_path / "tokens.jsonl", 6000)
    flags = ["--model-id", "m", "--vocab-hash", "a" * 64, "--bulk-docs", "200"]

    def load(index: str, *extra: str) -> set[str]:
        seen: set[str] = set()
        done = threading.Event()

        def watch() -> None:
            while not done.is_set():
                if backend.index_exists(index):
                    seen.add(str(backend.get_settings(index).get("refresh_interval")))
                time.sleep(0.02)

        watcher = threading.Thread(target=watch)
        watcher.start()
        try:
            result = cli(engine_url, "index", "tokens", str(tokens), "--index", index, *flags, *extra)
        finally:
            done.set()
            watcher.join()
        assert result.exit_code == 0 and backend.count(index) == 6000, result.output
        return seen

    assert "-1" in load(f"{names}-relaxed")  # the default relaxes (and restores) a bulk load
    assert "-1" not in load(f"{names}-live", "--keep-settings")


def test_index_tokens_from_encode_output(
    engine_url: str, backend: Backend, names: str, tiny_onnx_model: Path, tmp_path: Path, cache: Path
) -> None:
    encoded = tmp_path / "encoded.jsonl"
    runner = CliRunner()
    out = runner.invoke(
        main, ["encode", "--model", str(tiny_onnx_model), "--text", "two red circles", "--text", "a blue square",
               "-o", str(encoded)],
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    with encoded.open("a") as handle:
        handle.write("not json\n" + json.dumps({"id": "x", "tokens": {"a": 1}}) + "\n")
    result = cli(
        engine_url,
        "index",
        "tokens",
        str(encoded),
        "--model",
        str(tiny_onnx_model),
        "--index",
        names,
        "--json",
    )
    assert result.exit_code == 10, result.output  # two bad lines reported, the rest indexed
    summary = json.loads(result.stdout)
    assert (summary["indexed"], summary["failed"], summary["discovered"]) == (2, 2, 4)
    search = cli(engine_url, "search", "two red circles", "--index", names, "--target", "text", "--json")
    top = json.loads(search.stdout)["hits"][0]["source"]
    assert top["caption"] == "two red circles" and top["modality"] == "text"
    again = cli(
        engine_url,
        "index",
        "tokens",
        str(encoded),
        "--model-id",
        _model_id(tiny_onnx_model),
        "--index",
        names,
        "--json",
    )
    assert json.loads(again.stdout)["skipped_existing"] == 2  # the id alone is enough for an existing index
    new = cli(
        engine_url, "index", "tokens", str(encoded), "--model-id", "someone-else", "--index", f"{names}-new"
    )
    assert new.exit_code == 2 and "--vocab-hash" in new.output


def _model_id(model: Path) -> str:
    from stair_es.runtime import Manifest

    return Manifest.read(model).model_id


def test_mistakes_get_one_line(
    engine_url: str, backend: Backend, names: str, tiny_onnx_model: Path, tmp_path: Path, cache: Path
) -> None:
    corpus = _texts(tmp_path / "corpus.jsonl")
    wrong = cli(engine_url, "index", "texts", str(corpus), "--index", names, "--model", str(tiny_onnx_model),
                "--text-field", "caption")  # fmt: skip
    assert (
        wrong.exit_code == 2
        and "no 'caption' field" in wrong.output
        and "fields found: n, text" in wrong.output
    )
    assert len(wrong.output.strip().splitlines()) == 1 and not backend.index_exists(names)

    assert (
        cli(
            engine_url, "index", "texts", str(corpus), "--index", names, "--model", str(tiny_onnx_model)
        ).exit_code
        == 0
    )
    compact = cli(
        engine_url,
        "index",
        "texts",
        str(corpus),
        "--index",
        names,
        "--model",
        str(tiny_onnx_model),
        "--compact",
    )
    assert compact.exit_code == 2 and "--compact applies to new indexes only" in compact.output

    missing_field = cli(engine_url, "search", "red", "--index", names, "--target", "text", "--filter", "n=1",
                        "--filter", "colour=red")  # fmt: skip
    assert missing_field.exit_code == 2 and "filter on 'colour'" in missing_field.output
    close = cli(engine_url, "search", "red", "--index", names, "--target", "text", "--filter", "n=1")
    assert close.exit_code == 2 and "did you mean user.n" in close.output
    ok = cli(
        engine_url, "search", "red", "--index", names, "--target", "text", "--filter", "user.n=1", "--json"
    )
    assert ok.exit_code == 0 and len(json.loads(ok.stdout)["hits"]) == 1

    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "a.jpg").write_bytes(b"not an image")
    empty = cli(
        engine_url,
        "index",
        "images",
        str(broken),
        "--index",
        f"{names}-empty",
        "--model",
        str(tiny_onnx_model),
    )
    assert empty.exit_code == 10 and "left empty by this run: deleted it again" in empty.stderr
    assert not backend.index_exists(f"{names}-empty")


def test_failures_keep_a_live_alias_but_do_not_block_a_new_one(
    engine_url: str, backend: Backend, names: str, tiny_onnx_model: Path, tmp_path: Path, cache: Path
) -> None:
    from stair_es.data.synthetic import SyntheticConfig, generate_synthetic
    from stair_es.engine.aliases import alias_holders

    folder = tmp_path / "photos"
    generate_synthetic(folder, SyntheticConfig(num_images=3, image_size=32, test_fraction=0.34))
    (folder / "images" / "broken.jpg").write_bytes(b"not a jpeg")
    model = ["--model", str(tiny_onnx_model)]
    first = cli(
        engine_url,
        "index",
        "images",
        str(folder / "images"),
        "--alias",
        names,
        "--index",
        f"{names}-a",
        *model,
    )
    assert first.exit_code == 10 and alias_holders(backend, names) == [f"{names}-a"], first.output
    second = cli(
        engine_url,
        "index",
        "images",
        str(folder / "images"),
        "--alias",
        names,
        "--index",
        f"{names}-b",
        *model,
    )
    assert second.exit_code == 10 and alias_holders(backend, names) == [f"{names}-a"], second.output
    assert f"alias '{names}' not moved (1 items failed)" in second.stderr
