"""Tiny random models for tests (here and in export/runtime/engine tests): built and saved in seconds."""

from __future__ import annotations

from pathlib import Path

from stair_es.model.config import StairConfig
from stair_es.model.modeling import StairModel
from stair_es.model.tokenizer import DEFAULT_STOP_WORDS, build_wordpiece_tokenizer, zeroed_token_ids


def tiny_model(
    vocab_size: int | None = 1200,
    seed: int = 0,
    image_size: int = 32,
    patch_size: int = 8,
    hidden_size: int = 32,
    layers: int = 1,
    max_text_length: int = 16,
    texts: list[str] | None = None,
    vision_stem: str = "patch",
) -> StairModel:
    """A StairModel with random weights and a real WordPiece tokenizer (>= 1,000 tokens by default)."""
    import torch

    from stair_es.data.synthetic import grammar_words

    torch.manual_seed(seed)
    tokenizer = build_wordpiece_tokenizer(
        texts if texts is not None else [" ".join(grammar_words())], vocab_size, max_length=max_text_length
    )
    config = StairConfig.small(
        tokenizer.get_vocab_size(),
        zeroed_token_ids(tokenizer, DEFAULT_STOP_WORDS),
        image_size=image_size,
        patch_size=patch_size,
        hidden_size=hidden_size,
        layers=layers,
        heads=2,
        max_text_length=max_text_length,
        stop_words=list(DEFAULT_STOP_WORDS),
        vision_stem=vision_stem,
    )
    return StairModel(config, tokenizer).eval()


def save_tiny_model(path: str | Path, **kwargs: object) -> Path:
    """Build :func:`tiny_model` and save it as a model directory; returns the directory."""
    return tiny_model(**kwargs).save_pretrained(path)  # type: ignore[arg-type]


def save_tiny_clip(path: str | Path, texts: list[str], seed: int = 0, image_size: int = 32) -> Path:
    """A tiny random ``transformers.CLIPModel`` folder with a BPE ``tokenizer.json`` trained on ``texts``
    (what ``stair-es train --from-clip`` reads)."""
    import torch

    from stair_es.model.bpe import build_clip_bpe_tokenizer
    from stair_es.model.clip import new_clip, save_clip_folder

    torch.manual_seed(seed)
    tokenizer = build_clip_bpe_tokenizer(texts, vocab_size=400, max_length=16)
    clip = new_clip(tokenizer, image_size=image_size, patch_size=8, hidden_size=32, layers=1, heads=2,
                    projection_dim=16, max_text_length=16)  # fmt: skip
    return save_clip_folder(clip, tokenizer, path, image_size)
