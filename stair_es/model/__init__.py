"""The STAIR model (torch): towers, token heads, sparse pooling, save/load as a directory.

Needs the ``train`` extra (torch, transformers, safetensors); the runtime path never imports this.
"""

from stair_es.errors import require

require("torch", "train", "the STAIR model")
require("transformers", "train", "the STAIR model")

from stair_es.model.config import StairConfig  # noqa: E402
from stair_es.model.modeling import StairModel, caption_token_mask, sparse_max_pool, tokenize  # noqa: E402

__all__ = ["StairConfig", "StairModel", "caption_token_mask", "sparse_max_pool", "tokenize"]
