"""Runtime building blocks that need no exported model: tokenizer, sessions, manifest parsing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer, models, pre_tokenizers, processors

from stair_es.errors import ModelError, UsageError
from stair_es.runtime import Manifest, TextTokenizer, create_session
from stair_es.runtime.sessions import cuda_unavailable_reason, import_onnxruntime
from stair_es.runtime.tokenizer import vocabulary_hash


def _tokenizer() -> Tokenizer:
    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "a", "red", "circle", "blue"])}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    return tok


def test_tokenizer_pads_to_longest_and_truncates_with_specials() -> None:
    tok = TextTokenizer(_tokenizer(), max_length=4)
    ids, mask = tok(["a red circle blue", "a", ""])
    assert ids.dtype == np.int64 and mask.dtype == np.int64 and ids.shape == (3, 4)
    assert ids[0].tolist() == [2, 4, 5, 3]  # truncated, [SEP] kept
    assert ids[1].tolist() == [2, 4, 3, 0] and mask[1].tolist() == [1, 1, 1, 0]
    assert ids[2].tolist()[:2] == [2, 3]
    assert tok.tokens[5] == "red" and tok.vocab_size == 8 and tok.pad_id == 0
    assert tok.vocab_hash == vocabulary_hash(tok.tokens) != vocabulary_hash(tok.tokens[::-1])


def test_tokenizer_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not found"):
        TextTokenizer.from_file(tmp_path / "tokenizer.json", 8)
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(ModelError, match="not a valid tokenizers file"):
        TextTokenizer.from_file(tmp_path / "tokenizer.json", 8)


def test_session_argument_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="unknown provider"):
        create_session(tmp_path / "x.onnx", provider="tpu")
    with pytest.raises(ModelError, match="not found"):
        create_session(tmp_path / "x.onnx", provider="cpu")
    (tmp_path / "bad.onnx").write_bytes(b"not a graph")
    with pytest.raises(ModelError, match="cannot load"):
        create_session(tmp_path / "bad.onnx", provider="cpu")


def test_cuda_reason_is_a_sentence_or_none() -> None:
    reason = cuda_unavailable_reason(import_onnxruntime())
    assert reason is None or (isinstance(reason, str) and "\n" not in reason and len(reason) > 10)


def test_manifest_rejects_foreign_json(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(ModelError, match="not a stair-es ONNX manifest"):
        Manifest.read(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"format": "stair-es-onnx", "format_version": 1}))
    with pytest.raises(ModelError, match="missing or has a bad field"):
        Manifest.read(tmp_path)
