"""Image preprocessing as plain numpy + pillow, driven by ``preprocessor_config.json``.

Why here and torch-free: training and the onnxruntime path must feed the towers byte-identical pixels,
so both read the same config keys; this is the reference implementation of those keys.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

INTERPOLATIONS = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}


def default_preprocessor_config(image_size: int, max_text_length: int = 32, clip_stats: bool = False) -> dict:
    """Resize the shorter side to ``image_size`` then centre-crop; normalise with CLIP or 0.5 stats."""
    mean, std = (
        ([0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711])
        if clip_stats
        else (
            [0.5, 0.5, 0.5],
            [0.5, 0.5, 0.5],
        )
    )
    return {
        "image_size": image_size,
        "resize_shortest_edge": image_size,
        "crop": "center",
        "crop_size": image_size,
        "mean": mean,
        "std": std,
        "interpolation": "bicubic",
        "rescale_factor": 1.0 / 255.0,
        "channel_order": "RGB",
        "layout": "NCHW",
        "max_text_length": max_text_length,
    }


def preprocess_image(image: Image.Image | str | Path, config: dict[str, Any]) -> np.ndarray:
    """One image -> float32 [3, crop, crop]: RGB, resize shorter edge, centre crop, rescale, normalise."""
    if isinstance(image, Image.Image):
        picture = image if image.mode == "RGB" else image.convert("RGB")
    else:
        with Image.open(image) as opened:
            picture = opened.convert("RGB")
    target = int(config["resize_shortest_edge"])
    width, height = picture.size
    scale = target / min(width, height)
    new_size = (max(target, round(width * scale)), max(target, round(height * scale)))
    if new_size != picture.size:
        picture = picture.resize(new_size, INTERPOLATIONS[config.get("interpolation", "bicubic")])
    crop = int(config["crop_size"])
    left, top = (picture.size[0] - crop) // 2, (picture.size[1] - crop) // 2
    picture = picture.crop((left, top, left + crop, top + crop))
    array: np.ndarray = np.asarray(picture, dtype=np.float32) * float(config.get("rescale_factor", 1 / 255))
    array = (array - np.asarray(config["mean"], np.float32)) / np.asarray(config["std"], np.float32)
    return np.ascontiguousarray(array.transpose(2, 0, 1))


def preprocess_images(paths: Sequence[Path | str], config: dict[str, Any]) -> np.ndarray:
    """Stack of :func:`preprocess_image` results, float32 [N, 3, crop, crop]."""
    crop = int(config["crop_size"])
    out = np.empty((len(paths), 3, crop, crop), dtype=np.float32)
    for i, path in enumerate(paths):
        out[i] = preprocess_image(path, config)
    return out
