"""The stages of ``--ray`` indexing (see :mod:`stair_es.ingest.ray_ingest`): functions and classes
Ray Data runs on the workers, each a thin wrapper around the single-process stage it mirrors
(``load_file``, ``decode_to_pixels``, the encoder, ``EngineSink``). Rows travel as numpy batches
with one fixed schema; vectors as int32/float32 byte strings so they stay small.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from stair_es.ingest.discover import ImageItem
from stair_es.ingest.pipeline import _strip_source, load_file

# Every stage emits every column (Ray Data concatenates blocks, which must share one schema).
SCHEMA: dict[str, type] = {
    **dict.fromkeys(("i", "width", "height", "caption_only"), int),
    **dict.fromkeys(("decode_seconds", "inference_seconds"), float),
    **dict.fromkeys(("pixels", "token_ids", "weights", "text_ids", "text_weights"), bytes),
    **dict.fromkeys(
        ("key", "abs_path", "caption", "url", "id", "metadata", "status", "kind", "reason", "stage")
        + ("doc_id", "content_hash", "mime", "extra", "provider", "load_error"),
        str,
    ),
}
_DEFAULTS = {int: -1, float: 0.0, bytes: b"", str: ""}


@dataclass(frozen=True)
class SinkSpec:
    """What a remote actor needs to open the sink: the connection (None: dry run), index, options."""

    connection: Any  # stair_es.engine.ConnectionConfig, or None for --dry-run
    index: str
    indexer_options: Any = None
    compact: bool = False
    lookup: bool = True  # ask the index which ids exist (False: new index or --reindex-existing)

    def open(self) -> Any:
        from stair_es.ingest.sink import EngineSink, MemorySink

        if self.connection is None:
            return MemorySink(self.index)
        from stair_es.engine import connect

        sink = EngineSink(connect(self.connection), self.index, self.indexer_options, self.compact)
        sink._can_have_docs = self.lookup
        return sink


# stages (module-level functions and classes: Ray pickles them by reference) ----------------------
def _rows(batch: dict[str, np.ndarray]) -> Iterator[dict[str, Any]]:
    keys = list(batch)
    for values in zip(*(batch[k] for k in keys)):
        yield dict(zip(keys, values))


def _columns(rows: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for key, kind in SCHEMA.items():
        default = _DEFAULTS[kind]
        values = [default if row.get(key) is None else row[key] for row in rows]
        if kind is int:
            out[key] = np.asarray(values, dtype=np.int64)
        elif kind is float:
            out[key] = np.asarray(values, dtype=np.float64)
        else:
            out[key] = np.asarray([v if kind is bytes else str(v) for v in values], dtype=object)
    return out


def read_and_hash(batch: dict[str, np.ndarray], max_file_bytes: int) -> dict[str, np.ndarray]:
    """Read each file and hash it (``load_file``): the document id, or the read failure."""
    from stair_es.engine.indexer import Document, document_id

    rows = []
    for row in _rows(batch):
        item = ImageItem(key=str(row["key"]), path=Path(str(row["abs_path"])))
        loaded = load_file(item, max_file_bytes)
        if loaded.error is not None:
            row.update(status="failed", kind=loaded.kind or "unreadable", reason=loaded.error, stage="read")
        else:
            caption = str(row["caption"]) or None
            doc = Document(content_hash=loaded.content_hash, caption=caption)
            row.update(
                status="encode",
                content_hash=loaded.content_hash,
                doc_id=str(row["id"]) or document_id(doc, {}),
                width=loaded.width if loaded.width is not None else -1,
                height=loaded.height if loaded.height is not None else -1,
                mime=loaded.mime or "",
            )
        rows.append(row)
    return _columns(rows)


class Gate:
    """One actor sees every id once: in-run duplicates first (as the single-process run), then one
    "which of these exist?" request per batch."""

    def __init__(self, spec: SinkSpec, skip_existing: bool) -> None:
        self.sink = spec.open() if skip_existing else None
        self.seen: set[str] = set()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows = list(_rows(batch))
        todo = [str(r["doc_id"]) for r in rows if r["status"] == "encode"]
        existing = self.sink.existing_ids(todo) if self.sink is not None and todo else set()
        for row in rows:
            if row["status"] != "encode":
                continue
            doc_id = str(row["doc_id"])
            if doc_id in self.seen:
                row["status"] = "skipped_duplicate"
                continue
            self.seen.add(doc_id)
            if doc_id in existing:
                row["status"] = "skipped_existing"
        return _columns(rows)


def decode(
    batch: dict[str, np.ndarray], spec: dict[str, Any], max_pixels: int | None
) -> dict[str, np.ndarray]:
    """Read the file again, check it is the one hashed, decode and preprocess (CPU task)."""
    from stair_es.process import quiet_bomb_warnings
    from stair_es.runtime.images import ImagePreprocessing, try_load_pixels

    quiet_bomb_warnings()  # a Ray worker process is ours, as the CLI's is

    preprocessing = ImagePreprocessing.from_dict(spec)
    rows = []
    for row in _rows(batch):
        row["pixels"] = None
        if row["status"] == "encode":
            start = time.perf_counter()
            error: str | None
            try:
                data = Path(str(row["abs_path"])).read_bytes()
            except OSError as exc:
                data, error = b"", f"cannot read ({exc.strerror or exc})"
            else:
                error = None
                if hashlib.sha256(data).hexdigest() != row["content_hash"]:
                    error = "file changed while it was being indexed"
            if error is not None:
                row.update(status="failed", kind="unreadable", reason=error, stage="read")
                extra = json.dumps({"content_hash": row["content_hash"]})
                row["extra"] = extra
            else:
                pixels, failure = try_load_pixels(data, preprocessing, max_pixels)
                if failure is not None:
                    reason = _strip_source(str(failure))
                    extra = json.dumps({"content_hash": row["content_hash"]})
                    row.update(
                        status="failed",
                        kind=failure.kind,
                        reason=reason,
                        stage="decode",
                        extra=extra,
                    )
                else:
                    row["pixels"] = np.ascontiguousarray(pixels, dtype=np.float32).tobytes()
            row["decode_seconds"] = time.perf_counter() - start
        rows.append(row)
    return _columns(rows)


class Encode:
    """One ONNX session per actor (on its GPU when it was given one); sparse vectors as id/weight
    byte strings, so the rows that travel on stay small."""

    def __init__(self, model_dir: str, encoder_kwargs: dict[str, Any], encode_captions: bool) -> None:
        from stair_es.runtime import load_encoder

        self.encoder = load_encoder(model_dir, **encoder_kwargs)
        self.encode_captions = encode_captions
        info = self.encoder.provider_info("image")
        self.provider = f"{info.active} [{self.encoder.active_precision('image')}]"
        height, width = self.encoder.manifest.image.size
        self.shape = (3, height, width)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows = list(_rows(batch))
        todo = [r for r in rows if r["status"] == "encode"]
        for row in rows:
            row["provider"] = self.provider
        if todo:
            pixels = np.stack(
                [np.frombuffer(r["pixels"], dtype=np.float32).reshape(self.shape) for r in todo]
            )
            start = time.perf_counter()
            vectors = self.encoder.to_vectors(self.encoder.run_images(pixels))
            seconds = (time.perf_counter() - start) / len(todo)
            captions = [str(r["caption"]) for r in todo]
            text_vectors: list[Any] = [None] * len(todo)
            if self.encode_captions:
                wanted = [i for i, c in enumerate(captions) if c]
                for i, vec in zip(wanted, self.encoder.encode_texts([captions[i] for i in wanted])):
                    text_vectors[i] = vec
            for row, vec, text in zip(todo, vectors, text_vectors):
                # an empty token map with a caption is indexed by the caption alone (counted apart)
                row["caption_only"] = int(len(vec) == 0 and bool(row["caption"]))
                row["token_ids"] = np.asarray(vec.ids, dtype=np.int32).tobytes()
                row["weights"] = np.asarray(vec.weights, dtype=np.float32).tobytes()
                if text is not None:
                    row["text_ids"] = np.asarray(text.ids, dtype=np.int32).tobytes()
                    row["text_weights"] = np.asarray(text.weights, dtype=np.float32).tobytes()
                row["inference_seconds"] = seconds
        for row in rows:
            row["pixels"] = b""
        return _columns(rows)


class Write:
    """A bulk writer: one sink (engine connection) per actor, one bulk load per batch; each row
    comes back indexed, or failed with the engine's reason."""

    def __init__(self, spec: SinkSpec, model_dir: str) -> None:
        from stair_es.runtime import Manifest
        from stair_es.runtime.encoder import Encoder
        from stair_es.runtime.tokenizer import TextTokenizer

        manifest = Manifest.read(model_dir)
        # the names of the output dimensions, as the encoder names them (a separate output vocabulary
        # when the text input has its own tokenizer, e.g. CLIP's BPE)
        self.tokens = (
            Encoder._load_output_vocab(manifest)
            or TextTokenizer.from_file(manifest.tokenizer_path, manifest.max_text_length).tokens
        )
        self.sink = spec.open()

    def _vector(self, ids: bytes, weights: bytes) -> Any:
        from stair_es.sparse import SparseVector

        index = np.frombuffer(ids, dtype=np.int32).astype(np.int64)
        tokens = [self.tokens[i] for i in index.tolist()]
        return SparseVector.from_arrays(tokens, np.frombuffer(weights, dtype=np.float32), index)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from stair_es.engine.indexer import Document

        rows = list(_rows(batch))
        docs, by_id = [], {}
        for row in rows:
            if row["status"] != "encode":
                continue
            text = row.get("text_ids")
            docs.append(
                Document(
                    image_tokens=self._vector(row["token_ids"], row["weights"]),
                    text_tokens=self._vector(text, row["text_weights"]) if text else None,
                    caption=str(row["caption"]) or None,
                    path=str(row["abs_path"]),
                    url=str(row["url"]) or None,
                    content_hash=str(row["content_hash"]),
                    width=int(row["width"]) if int(row["width"]) >= 0 else None,
                    height=int(row["height"]) if int(row["height"]) >= 0 else None,
                    mime=str(row["mime"]) or None,
                    user=json.loads(str(row["metadata"]) or "{}"),
                    id=str(row["doc_id"]),
                )
            )
            by_id[str(row["doc_id"])] = row
            row["status"] = "indexed"
        if docs:
            entries: list[dict[str, Any]] = []
            taken: set[str] = set()

            def stream() -> Iterator[Any]:
                for doc in docs:
                    taken.add(str(doc.id))
                    yield doc

            result = self.sink.write(stream(), on_failure=entries.append)
            for row in rows:
                if row["status"] == "indexed" and str(row["doc_id"]) not in taken:
                    row["status"] = "unsent"  # the load stopped before it: not reached
            unmatched = []
            for entry in entries:  # failed, or sent but never acknowledged (not reached)
                found = by_id.get(str(entry.get("id")))
                if found is None or found["status"] != "indexed":
                    unmatched.append(entry)
                    continue
                found.update(status="sink_entry", extra=json.dumps(entry, default=str))
            indexed = [r for r in rows if r["status"] == "indexed"]
            for row, entry in zip(indexed[::-1], unmatched):  # keep the totals exact if ids are missing
                row.update(status="sink_entry", extra=json.dumps(entry, default=str))
            if result.error is not None:
                for row in rows:
                    row["load_error"] = str(result.error)
        for row in rows:
            for key in ("token_ids", "weights", "text_ids", "text_weights"):
                row[key] = b""
        return _columns(rows)
