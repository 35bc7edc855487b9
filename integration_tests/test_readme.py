"""The README's Usage section runs as written: every command of its bash block, in order, then each
Python block, against the engine under test, in a fresh folder with a fresh stair-es cache.

The commands and programs are taken from README.md verbatim (nothing is edited before it runs), so
the README cannot drift from the tool again. What the test adds is only what a reader brings: a
folder of photos with captions (~/photos), a text corpus, two query images and the engine's URL
(STAIR_ES_URL, the documented way to name an engine). One documented knob keeps it fast: the
README says STAIR_ES_TRAIN_STEPS gives a quick, weaker model with the same files, and that is what
CI trains (quality is measured elsewhere; here every command must work and say what it did).
Runs once per CI run (marker ``readme``): a few minutes, mostly make-synthetic, training and eval.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from stair_es.engine import ConnectionConfig, connect

pytestmark = [pytest.mark.readme, pytest.mark.slow]
README = Path(__file__).resolve().parents[1] / "README.md"
TRAIN_STEPS = "100"  # what the README offers: "STAIR_ES_TRAIN_STEPS=100 ... gives a quick, weaker model"
OWNED = ("photos", "captions", "photos-gpu", "photos-py")  # the names the README uses


def usage_section(text: str) -> str:
    start = text.index("\n## Usage\n")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def blocks(section: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", section, flags=re.DOTALL)


def readme_commands() -> list[str]:
    (block,) = blocks(usage_section(README.read_text(encoding="utf-8")), "bash")
    return [line for line in block.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def test_the_readme_documents_what_this_test_relies_on() -> None:
    text = README.read_text(encoding="utf-8")
    assert "STAIR_ES_TRAIN_STEPS=100" in usage_section(text)
    assert "9250" not in text.split("## Development")[0]  # one port story: 9200 everywhere
    commands = readme_commands()
    assert commands[0].startswith("stair-es make-synthetic data/")
    assert any(c.startswith("stair-es train ") and "--data data/train.jsonl" in c for c in commands)
    assert len(blocks(usage_section(text), "python")) == 2


def _user_files(home: Path, work: Path) -> None:
    """What a reader brings: ~/photos (images + photo.txt captions), corpus.jsonl, query images.

    A third of the photos show red circles, since that is what the README searches for."""
    from stair_es.data.synthetic import SyntheticConfig, generate_synthetic

    photos = home / "photos"
    photos.mkdir(parents=True)
    rows: list[tuple[Path, str]] = []
    for part, extra in (("red", {"colours": ["red"], "shapes": ["circle"]}), ("mixed", {})):
        raw = work.parent / f"raw-{part}"
        config = SyntheticConfig(
            num_images=8 if extra else 16, seed=77, image_format="jpeg", test_fraction=1.0, **extra
        )
        manifest = generate_synthetic(raw, config)["test"]
        rows += [(raw / r["image"], r["caption"]) for r in map(json.loads, manifest.read_text().splitlines())]
    for i, (image, caption) in enumerate(rows):
        shutil.copy(image, photos / f"photo-{i:02d}.jpg")
        (photos / f"photo-{i:02d}.txt").write_text(caption + "\n")
    (work / "corpus.jsonl").write_text(
        "".join(json.dumps({"text": c, "n": i}) + "\n" for i, (_, c) in enumerate(rows))
    )
    for name, source in (("query.jpg", 0), ("photo.jpg", 9), ("a.jpg", 1), ("b.jpg", 10)):
        shutil.copy(photos / f"photo-{source:02d}.jpg", work / name)


def _cleanup(engine_url: str) -> None:
    with connect(ConnectionConfig(urls=engine_url)) as backend:
        for name in (
            backend.client.indices.get_alias(index="photos*,captions*", ignore_unavailable=True) or {}
        ):
            backend.delete_index(name)
        backend.delete_index("captions")


@pytest.fixture()
def reader(tmp_path: Path, engine_url: str):
    home, work = tmp_path / "home", tmp_path / "work"
    work.mkdir()
    _user_files(home, work)
    env = {k: v for k, v in os.environ.items() if not k.startswith("STAIR_ES_")}
    env.update(
        HOME=str(home),
        STAIR_ES_URL=engine_url,
        STAIR_ES_CACHE=str(tmp_path / "cache"),
        STAIR_ES_TRAIN_STEPS=TRAIN_STEPS,
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    )
    _cleanup(engine_url)
    yield work, env
    _cleanup(engine_url)


def _run(args: list[str], work: Path, env: dict[str, str], what: str) -> subprocess.CompletedProcess:
    done = subprocess.run(args, cwd=work, env=env, capture_output=True, text=True, timeout=900)
    if what.startswith("stair-es search") and done.returncode == 1 and done.stdout.endswith("no hits\n"):
        return done  # exit 1 = "no hits" (like grep): a quick model may not know a raw token yet
    assert done.returncode == 0, (
        f"{what} exited {done.returncode}\nstdout:\n{done.stdout[-3000:]}\nstderr:\n{done.stderr[-3000:]}"
    )
    return done


def test_readme_usage_runs_as_written(reader, engine_url: str, engine_distribution: str) -> None:
    work, env = reader
    outputs: dict[str, subprocess.CompletedProcess] = {}
    for command in readme_commands():
        outputs[command] = _run(["bash", "-c", command], work, env, command)

    first_search = next(
        out for c, out in outputs.items() if c.startswith('stair-es search "two red circles"')
    )
    assert "(index 'photos' was built with it; found via recorded in the index)" in first_search.stderr
    assert first_search.returncode == 0 and "two red circles" in first_search.stdout  # hits, with captions
    images = outputs[next(c for c in outputs if c.startswith("stair-es index images"))]
    assert "24 indexed" in images.stderr and "alias 'photos' -> 'photos-" in images.stderr
    image_search = next(out for c, out in outputs.items() if c.startswith("stair-es search --image"))
    assert image_search.returncode == 0 and json.loads(image_search.stdout)["hits"]
    raw = next(out for c, out in outputs.items() if c.startswith("stair-es search --tokens"))
    assert "token map -> 2 query tokens, mode two_phase, index 'photos'" in raw.stdout
    tokens = next(out for c, out in outputs.items() if c.startswith("stair-es index tokens"))
    assert "24 indexed" in tokens.stderr
    evaluated = next(out for c, out in outputs.items() if c.startswith("stair-es eval"))
    assert "models/stair-demo-onnx" in evaluated.stderr and "R@1" in evaluated.stdout
    assert "photos -> photos-" in outputs["stair-es alias"].stdout

    python = blocks(usage_section(README.read_text(encoding="utf-8")), "python")
    example, service = python
    for run, code in enumerate((example, _with_user_client(example, engine_distribution))):
        (work / f"example-{run}.py").write_text(code)
        done = _run([sys.executable, f"example-{run}.py"], work, env, f"Python example, run {run + 1}")
        assert re.match(r"^[0-2] matching documents\n", done.stdout), done.stdout
    with connect(ConnectionConfig(urls=engine_url)) as backend:
        backend.refresh("photos-py")
        assert backend.count("photos-py") == 2  # the second run (a user-made client) added, not doubled
    (work / "service.py").write_text(service)
    done = _run([sys.executable, "service.py"], work, env, "Python service example")
    assert re.fullmatch(r"\[.*\] \[[0-3], [0-3]\]", done.stdout.strip()), done.stdout


def _with_user_client(example: str, distribution: str) -> str:
    """The same program with an application's own client instead of connect()'s."""
    assert "backend = connect()" in example
    if distribution == "opensearch":
        make = "from opensearchpy import OpenSearch\nclient = OpenSearch(hosts=os.environ['STAIR_ES_URL'].split(','))\n"
    else:
        make = "from elasticsearch import Elasticsearch\nclient = Elasticsearch(os.environ['STAIR_ES_URL'].split(','))\n"
    return "import os\n" + make + example.replace("backend = connect()", "backend = connect(client=client)")
