"""Torch wrappers whose forward is exactly what one ONNX graph computes: raw inputs to sparse weights.

The model's ``encode_image``/``encode_text`` already end in the token head, max-pool, log1p(ReLU)
and zeroed special tokens; the wrappers fix the input/output signature and optionally append an
in-graph top-k, so the graph emits ``(indices[B,k], values[B,k])`` instead of ``B x vocab`` floats.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class ImageGraph(nn.Module):
    """pixel_values [B,3,H,W] float32 -> weights [B,V] (or indices/values [B,k])."""

    def __init__(self, model: Any, top_k: int | None = None) -> None:
        super().__init__()
        self.model = model
        self.top_k = top_k

    def forward(self, pixel_values: torch.Tensor) -> Any:
        weights = self.model.encode_image(pixel_values)
        if self.top_k:
            values, indices = torch.topk(weights, self.top_k, dim=-1)
            return indices, values
        return weights


class TextGraph(nn.Module):
    """input_ids, attention_mask [B,L] int64 -> weights [B,V] (or indices/values [B,k])."""

    def __init__(self, model: Any, top_k: int | None = None) -> None:
        super().__init__()
        self.model = model
        self.top_k = top_k

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> Any:
        weights = self.model.encode_text(input_ids, attention_mask)
        if self.top_k:
            values, indices = torch.topk(weights, self.top_k, dim=-1)
            return indices, values
        return weights


def output_names(top_k: int | None) -> list[str]:
    return ["indices", "values"] if top_k else ["weights"]
