"""Start a StairModel from dense checkpoints a user already has on disk (no hub access).

Vision: a local CLIP vision checkpoint (``CLIPVisionModel`` / full ``CLIPModel`` directory). Text: a local
BERT checkpoint with its WordPiece ``vocab.txt``/``tokenizer.json`` (its vocabulary becomes the output
space), or a fresh random text tower over a locally built vocabulary. Used by dense-to-sparse training.
"""

from __future__ import annotations

from pathlib import Path

from stair_es.errors import ModelError, UsageError
from stair_es.model.config import StairConfig
from stair_es.model.modeling import StairModel
from stair_es.model.tokenizer import (
    DEFAULT_STOP_WORDS,
    build_wordpiece_tokenizer,
    tokenizer_from_vocab_file,
    zeroed_token_ids,
)


def model_from_towers(
    vision_path: str | Path | None = None,
    text_path: str | Path | None = None,
    texts: list[str] | None = None,
    base: StairConfig | None = None,
    max_text_length: int = 32,
) -> StairModel:
    """Build a model whose towers come from local checkpoints where given, random init elsewhere."""
    from tokenizers import Tokenizer
    from transformers import BertConfig, BertModel, CLIPVisionConfig, CLIPVisionModel

    from stair_es.data.images import default_preprocessor_config

    if text_path is not None:
        text_dir = Path(text_path)
        if (text_dir / "tokenizer.json").is_file():
            tokenizer = Tokenizer.from_file(str(text_dir / "tokenizer.json"))
            tokenizer.enable_truncation(max_length=max_text_length)
        elif (text_dir / "vocab.txt").is_file():
            tokenizer = tokenizer_from_vocab_file(text_dir / "vocab.txt", max_text_length)
        else:
            raise ModelError(f"{text_dir}: a BERT text checkpoint needs tokenizer.json or vocab.txt")
        _check_vocab_size(text_dir, tokenizer.get_vocab_size(with_added_tokens=True))
    else:
        tokenizer = build_wordpiece_tokenizer(texts or [], max_length=max_text_length)
    zeroed = zeroed_token_ids(tokenizer, DEFAULT_STOP_WORDS)
    vocab_size = tokenizer.get_vocab_size()
    config = base or StairConfig.small(vocab_size, zeroed, max_text_length=max_text_length)
    config.vocab_size, config.zeroed_token_ids, config.stop_words = (
        vocab_size,
        zeroed,
        list(DEFAULT_STOP_WORDS),
    )
    config.text_config = dict(config.text_config, vocab_size=vocab_size)

    try:
        if vision_path is not None:
            vision = CLIPVisionModel.from_pretrained(str(vision_path))
            config.vision_config = vision.config.to_dict()
        else:
            vision = CLIPVisionModel(CLIPVisionConfig(**config.vision_config))
        if text_path is not None:
            text = BertModel.from_pretrained(str(text_path), add_pooling_layer=False)
            config.text_config = text.config.to_dict()
            config.max_text_length = min(max_text_length, int(text.config.max_position_embeddings))
        else:
            text = BertModel(BertConfig(**config.text_config), add_pooling_layer=False)
    except OSError as exc:
        raise ModelError(f"cannot load a tower checkpoint: {exc}") from exc
    preprocessor = default_preprocessor_config(
        config.image_size, config.max_text_length, clip_stats=vision_path is not None
    )
    return StairModel(config, tokenizer, preprocessor, towers=(vision, text))


def _check_vocab_size(text_dir: Path, tokens: int) -> None:
    """The tokenizer must index exactly the checkpoint's embedding rows: fewer leaves dead rows the
    output head would emit, more sends ids past the embedding table."""
    import json

    try:
        embeddings = int(json.loads((text_dir / "config.json").read_text(encoding="utf-8"))["vocab_size"])
    except (OSError, ValueError, KeyError, TypeError):
        return  # from_pretrained reports an unreadable checkpoint itself
    if embeddings != tokens:
        raise UsageError(
            f"{text_dir}: the tokenizer has {tokens} tokens but the BERT checkpoint has {embeddings} "
            "embeddings; use the vocab.txt/tokenizer.json the checkpoint was trained with"
        )
