"""Model checks of ``stair-es doctor``: manifest, files, sha256 hashes, export parity, a test encode."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from stair_es_cli.doctor_cmd import FAIL, OK, WARN, Report


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_model(report: Report, model_path: Path | None, verify_hashes: bool) -> tuple[Any, Path | None]:
    """Manifest, files, hashes, parity and a test encode; returns (manifest or None, a text graph)."""
    from stair_es.errors import StairError
    from stair_es.runtime import Manifest

    if model_path is None:
        from stair_es.demo import demo_model_dir

        candidate = demo_model_dir()
        if not (candidate / "manifest.json").is_file():
            report.add(
                "model",
                WARN,
                "no model given and no demo model built",
                "pass --model DIR (or set STAIR_ES_MODEL), or run: stair-es demo",
            )
            return None, None
        model_path = candidate
    try:
        manifest = Manifest.read(model_path)
    except StairError as exc:
        report.add("model", FAIL, str(exc), "re-export the model: stair-es export")
        return None, None
    label = (manifest.exporter.get("demo") or {}).get("label")
    report.add(
        "model",
        WARN if label else OK,
        f"{manifest.model_id} at {manifest.root}" + (f" ({label})" if label else ""),
        "demo models are for trying the tool; pass --model for a real one",
    )

    files = dict(manifest.exporter.get("files") or {})
    problems: list[str] = []
    text_graph = None
    for precision, towers in sorted(manifest.graphs.items()):
        for tower, name in sorted(towers.items()):
            path = manifest.root / name
            if not path.is_file():
                problems.append(f"{precision} {tower} graph {name} missing")
            elif tower == "text" and (text_graph is None or precision == "fp32"):
                text_graph = path
    tokenizer = manifest.tokenizer_path
    if not tokenizer.is_file():
        problems.append(f"{manifest.tokenizer_file} missing")
    report.add(
        "model files",
        FAIL if problems else OK,
        "; ".join(problems)
        or f"{sum(len(t) for t in manifest.graphs.values())} graphs ({', '.join(sorted(manifest.graphs))}) + tokenizer present",
        "re-export the model: stair-es export",
    )
    if verify_hashes:
        bad = []
        if tokenizer.is_file() and _sha256(tokenizer) != manifest.tokenizer_sha256:
            bad.append(manifest.tokenizer_file)
        for name, entry in sorted(files.items()):
            path = manifest.root / name
            if (
                path.is_file()
                and isinstance(entry, dict)
                and entry.get("sha256")
                and _sha256(path) != entry["sha256"]
            ):
                bad.append(name)
        checked = len(files) + 1
        if bad:
            report.add(
                "model hashes",
                FAIL,
                f"sha256 differs from the manifest: {', '.join(bad)} (files replaced or corrupt)",
                "re-export or re-copy the model folder",
            )
        elif not files:
            report.add(
                "model hashes",
                WARN,
                "tokenizer hash ok; the manifest records no graph hashes (older export)",
                "re-export to record graph hashes",
            )
        else:
            report.add("model hashes", OK, f"{checked} files match the manifest's sha256")
    check_parity(report, manifest)
    return manifest, text_graph


def check_parity(report: Report, manifest: Any) -> None:
    parity = manifest.parity or {}
    if not parity:
        report.add(
            "model parity",
            WARN,
            "the manifest has no parity report (torch vs onnxruntime)",
            "re-export with stair-es export (it measures parity)",
        )
        return
    failed, passed, missing = [], [], []
    for precision, towers in sorted(manifest.graphs.items()):
        for tower in sorted(towers):
            entry = (parity.get(precision) or {}).get(tower)
            if not isinstance(entry, dict):
                missing.append(f"{precision}/{tower}")
            elif entry.get("passed"):
                passed.append(f"{precision}/{tower} top10 {entry.get('top10_agreement', float('nan')):.3f}")
            else:
                failed.append(
                    f"{precision}/{tower} (max diff {entry.get('max_abs_diff')}, top10 {entry.get('top10_agreement')})"
                )
    if failed:
        report.add(
            "model parity",
            FAIL,
            "export parity failed: " + "; ".join(failed),
            "use a passing precision (--precision fp32) or re-export",
        )
    elif missing:
        report.add(
            "model parity", WARN, f"no parity measured for {', '.join(missing)}", "re-export to measure it"
        )
    else:
        report.add("model parity", OK, "passed: " + ", ".join(passed))


def check_encode(report: Report, manifest: Any, provider: str) -> Any:
    from stair_es.runtime import load_encoder

    encoder = load_encoder(manifest.root, provider=provider)
    vec = encoder.encode_texts(["a photo of a dog"])[0]
    top = ", ".join(f"{t} {w:.2f}" for t, w in zip(vec.tokens[:3], vec.weights[:3].tolist()))
    status = OK if len(vec) else FAIL
    report.add(
        "model encode",
        status,
        f"'a photo of a dog' -> {len(vec)} tokens ({top})",
        "the text tower outputs no positive weight: re-export or retrain",
    )
    return encoder
