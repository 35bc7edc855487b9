"""Text tokenization through the `tokenizers` library (Rust, no torch, no transformers).

The exported text graph takes ``input_ids``/``attention_mask`` with a dynamic sequence axis, so a
batch is padded to its longest member only, and texts are bucketed by length before batching.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from stair_es.errors import ModelError

# CLIP tokenizers have no pad token and pad with the end-of-text token (the text tower pools the
# first one, so padding after it changes nothing)
PAD_CANDIDATES = ("[PAD]", "<pad>", "<PAD>", "<|endoftext|>")


def vocabulary_hash(tokens: list[str]) -> str:
    """sha256 over the id-ordered vocabulary: two models with the same hash share feature names."""
    digest = hashlib.sha256()
    for token in tokens:
        digest.update(token.encode("utf-8"))
        digest.update(b"\n")
    return digest.hexdigest()


def read_vocab_file(path: str | os.PathLike) -> list[str]:
    """A vocabulary file, one token per line (id = line number), as ``vocab.txt`` files are."""
    try:
        return Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelError(f"{path}: unreadable output vocabulary ({exc})") from exc


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class TextTokenizer:
    """WordPiece (or any `tokenizers`) tokenizer with truncation and pad-to-longest batching."""

    def __init__(self, tokenizer: Tokenizer, max_length: int) -> None:
        if max_length < 2:
            raise ModelError(f"max text length must be at least 2, got {max_length}")
        self.max_length = int(max_length)
        self._tok = tokenizer
        self._tok.no_padding()
        self._tok.enable_truncation(max_length=self.max_length)
        vocab = tokenizer.get_vocab(with_added_tokens=True)
        size = max(vocab.values()) + 1 if vocab else 0
        tokens = [""] * size
        for token, idx in vocab.items():
            tokens[idx] = token
        self.tokens: list[str] = tokens
        self.pad_id = next((vocab[t] for t in PAD_CANDIDATES if t in vocab), 0)

    @classmethod
    def from_file(cls, path: str | os.PathLike, max_length: int) -> TextTokenizer:
        path = Path(path)
        if not path.is_file():
            raise ModelError(f"{path}: tokenizer.json not found")
        try:
            return cls(Tokenizer.from_file(str(path)), max_length)
        except Exception as exc:  # tokenizers raises plain Exception subclasses
            raise ModelError(f"{path}: not a valid tokenizers file ({exc})") from exc

    @property
    def vocab_size(self) -> int:
        return len(self.tokens)

    @property
    def vocab_hash(self) -> str:
        return vocabulary_hash(self.tokens)

    def encode_ids(self, texts: list[str]) -> list[list[int]]:
        """Token ids per text, truncated to ``max_length`` (special tokens included)."""
        return [enc.ids for enc in self._tok.encode_batch(list(texts))]

    def pad(self, ids: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
        """Pad to the longest row: int64 ``input_ids`` and ``attention_mask`` of shape [B, L]."""
        length = max((len(row) for row in ids), default=1) or 1
        input_ids = np.full((len(ids), length), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(ids), length), dtype=np.int64)
        for i, row in enumerate(ids):
            input_ids[i, : len(row)] = row
            mask[i, : len(row)] = 1
        return input_ids, mask

    def __call__(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        return self.pad(self.encode_ids(texts))
