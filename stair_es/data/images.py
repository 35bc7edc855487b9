"""Training's view of image preprocessing: ``preprocessor_config.json`` in a model folder.

Training and the onnxruntime path must feed the towers byte-identical pixels, so there is one
implementation, :mod:`stair_es.runtime.images` (:class:`ImagePreprocessing`, ``resize_and_crop``,
``to_pixel_values``); this module only writes the config keys and reads them into that spec.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image


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
    """One image -> float32 [3, crop, crop], exactly as the runtime prepares it for the exported
    model (same spec, same resize, crop, alpha compositing and normalisation code)."""
    from stair_es.runtime.images import (
        ImagePreprocessing,
        decode_image,
        resize_and_crop,
        to_pixel_values,
        to_rgb,
    )

    spec = ImagePreprocessing.from_dict(config)
    if isinstance(image, Image.Image):
        picture = to_rgb(image, spec.background)
    else:
        picture = decode_image(str(image), background=spec.background)
    return to_pixel_values(resize_and_crop(picture, spec), spec)


def preprocess_images(paths: Sequence[Path | str], config: dict[str, Any]) -> np.ndarray:
    """Stack of :func:`preprocess_image` results, float32 [N, 3, crop, crop]."""
    crop = int(config["crop_size"])
    out = np.empty((len(paths), 3, crop, crop), dtype=np.float32)
    for i, path in enumerate(paths):
        out[i] = preprocess_image(path, config)
    return out
