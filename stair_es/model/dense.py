"""Dense CLIP baseline with the *same* towers as StairModel: CLS features -> linear projection -> L2
norm, cosine similarity with a learnable temperature. Exists so benchmarks compare like with like."""

from __future__ import annotations

import math

import torch
from torch import nn

from stair_es.model.config import StairConfig
from stair_es.model.modeling import build_towers


class DenseClipModel(nn.Module):
    def __init__(self, config: StairConfig, embed_dim: int = 128, temperature_init: float = 0.07) -> None:
        super().__init__()
        self.config = config
        self.vision_tower, self.text_tower = build_towers(config)
        self.image_projection = nn.Linear(int(config.vision_config["hidden_size"]), embed_dim, bias=False)
        self.text_projection = nn.Linear(int(config.text_config["hidden_size"]), embed_dim, bias=False)
        self.log_temperature = nn.Parameter(torch.tensor(math.log(temperature_init)))

    def encode_image(self, pixel_values: torch.Tensor) -> torch.Tensor:
        pooled = self.vision_tower(pixel_values=pixel_values).pooler_output
        return nn.functional.normalize(self.image_projection(pooled).float(), dim=-1)

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.text_tower(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return nn.functional.normalize(self.text_projection(hidden[:, 0]).float(), dim=-1)

    @property
    def temperature(self) -> torch.Tensor:
        return self.log_temperature.exp().clamp(min=0.005)

    def similarity(self, image_vectors: torch.Tensor, text_vectors: torch.Tensor) -> torch.Tensor:
        return image_vectors @ text_vectors.T
