"""The exported model described as data (``manifest.json`` beside the ONNX graphs).

Everything the runtime needs besides the graphs lives here, so encoding never consults the torch
checkpoint: tokenizer file and hash, vocabulary hash, max text length, image preprocessing,
output kind, pruning defaults, which graph files exist per precision, and the parity report that
export measured before writing them.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stair_es.errors import ModelError
from stair_es.runtime.images import ImagePreprocessing

MANIFEST_NAME = "manifest.json"
FORMAT_NAME = "stair-es-onnx"
# 2: the text input tokenizer and the output vocabulary are separate files ("output_vocabulary");
# exports without one stay version 1, so older readers keep reading them
FORMAT_VERSION = 2
PRECISIONS = ("fp32", "fp16", "int8")
OUTPUT_KINDS = ("dense", "topk")


@dataclass
class Manifest:
    """Parsed ``manifest.json``; ``root`` is the directory that holds it."""

    root: Path
    model_id: str
    vocab_size: int
    vocab_hash: str
    tokenizer_file: str
    tokenizer_sha256: str
    max_text_length: int
    image: ImagePreprocessing
    output_kind: str = "dense"
    output_top_k: int | None = None
    pruning: dict[str, Any] = field(default_factory=lambda: {"top_k": None, "min_weight": 0.0})
    zeroed_token_ids: list[int] = field(default_factory=list)
    graphs: dict[str, dict[str, str]] = field(default_factory=dict)  # precision -> {"image": f, "text": f}
    parity: dict[str, Any] = field(default_factory=dict)
    exporter: dict[str, Any] = field(default_factory=dict)
    # provider ("cpu"/"cuda") -> tower -> precision that "auto" runs (the fastest measured at export)
    auto: dict[str, dict[str, str]] = field(default_factory=dict)
    optimization: dict[str, Any] = field(default_factory=dict)  # fusions, int8 candidates, timings
    format_version: int = 1
    # the output vocabulary (one token per line, id = line number) when the text input is tokenized
    # with another tokenizer (a CLIP BPE); None: the tokenizer's vocabulary names the outputs
    output_vocab_file: str | None = None
    output_vocab_sha256: str | None = None

    # io -----------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        data = {
            "format": FORMAT_NAME,
            "format_version": 2 if self.output_vocab_file else self.format_version,
            "model_id": self.model_id,
            "vocab_size": self.vocab_size,
            "vocab_hash": self.vocab_hash,
            "tokenizer": {"file": self.tokenizer_file, "sha256": self.tokenizer_sha256},
            "text": {"max_length": self.max_text_length},
            "image": self.image.to_dict(),
            "output": {"kind": self.output_kind, "top_k": self.output_top_k},
            "pruning": self.pruning,
            "zeroed_token_ids": self.zeroed_token_ids,
            "graphs": self.graphs,
            "parity": self.parity,
            "exporter": self.exporter,
            **({"auto": self.auto} if self.auto else {}),
            **({"optimization": self.optimization} if self.optimization else {}),
        }
        if self.output_vocab_file:
            data["output_vocabulary"] = {"file": self.output_vocab_file, "sha256": self.output_vocab_sha256}
        return data

    def write(self, directory: str | os.PathLike | None = None) -> Path:
        path = Path(directory or self.root) / MANIFEST_NAME
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n", encoding="utf-8")
        os.replace(tmp, path)
        return path

    @classmethod
    def read(cls, path: str | os.PathLike) -> Manifest:
        """Read a manifest from its file or its directory; one-line errors for what is wrong."""
        path = Path(path)
        file = path / MANIFEST_NAME if path.is_dir() else path
        if not file.is_file():
            raise ModelError(f"{path}: no {MANIFEST_NAME} (export a model with `stair-es export` first)")
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ModelError(f"{file}: unreadable manifest ({exc})") from exc
        if not isinstance(data, dict) or data.get("format") != FORMAT_NAME:
            raise ModelError(f"{file}: not a stair-es ONNX manifest")
        version = data.get("format_version")
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise ModelError(
                f"{file}: manifest format {version} is newer than this stair-es reads ({FORMAT_VERSION}); "
                "upgrade stair-es"
            )
        try:
            output = data.get("output", {})
            names = data.get("output_vocabulary") or {}
            manifest = cls(
                root=file.parent,
                model_id=str(data["model_id"]),
                vocab_size=int(data["vocab_size"]),
                vocab_hash=str(data["vocab_hash"]),
                tokenizer_file=str(data["tokenizer"]["file"]),
                tokenizer_sha256=str(data["tokenizer"]["sha256"]),
                max_text_length=int(data["text"]["max_length"]),
                image=ImagePreprocessing.from_dict(data["image"]),
                output_kind=str(output.get("kind", "dense")),
                output_top_k=output.get("top_k"),
                pruning=dict(data.get("pruning") or {}),
                zeroed_token_ids=[int(i) for i in data.get("zeroed_token_ids", [])],
                graphs={str(k): dict(v) for k, v in (data.get("graphs") or {}).items()},
                parity=dict(data.get("parity") or {}),
                exporter=dict(data.get("exporter") or {}),
                auto={
                    str(p): {str(t): str(v) for t, v in dict(c).items()}
                    for p, c in (data.get("auto") or {}).items()
                },
                optimization=dict(data.get("optimization") or {}),
                format_version=version,
                output_vocab_file=str(names["file"]) if names else None,
                output_vocab_sha256=str(names["sha256"]) if names else None,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"{file}: manifest is missing or has a bad field ({exc!r})") from exc
        if manifest.output_kind not in OUTPUT_KINDS:
            raise ModelError(f"{file}: unknown output kind {manifest.output_kind!r}")
        if not manifest.graphs:
            raise ModelError(f"{file}: manifest lists no graphs")
        return manifest

    # lookups ------------------------------------------------------------------------------
    def auto_precision(self, tower: str, cuda: bool) -> str:
        """What ``precision="auto"`` runs: the export's measured choice for this provider, else fp16
        on CUDA when exported, else fp32."""
        choice = self.auto.get("cuda" if cuda else "cpu", {}).get(tower)
        if choice in self.graphs and tower in self.graphs[choice] and (cuda or choice != "fp16"):
            return choice  # fp16 is a GPU format: never auto on CPU, where it is slower than fp32
        return "fp16" if cuda and "fp16" in self.graphs else "fp32"

    def graph_path(self, precision: str, tower: str) -> Path:
        """Absolute path of one graph; a clear error when that precision was not exported."""
        if precision not in self.graphs:
            have = ", ".join(sorted(self.graphs)) or "none"
            raise ModelError(
                f"{self.root}: no {precision} graphs exported (have: {have}); "
                f"re-run `stair-es export` with --{precision}"
            )
        name = self.graphs[precision].get(tower)
        if not name:
            raise ModelError(f"{self.root}: the {precision} export has no {tower} graph")
        path = self.root / name
        if not path.is_file():
            raise ModelError(f"{path}: graph file listed in the manifest is missing")
        return path

    @property
    def tokenizer_path(self) -> Path:
        return self.root / self.tokenizer_file

    @property
    def output_vocab_path(self) -> Path | None:
        return self.root / self.output_vocab_file if self.output_vocab_file else None
