"""Datasets: readers for common captioned-image layouts and a seeded synthetic generator.

numpy + pillow only (no torch), so the runtime and the demo can use it without the train extra.
"""

from stair_es.data.images import default_preprocessor_config, preprocess_image, preprocess_images
from stair_es.data.readers import (
    CaptionedImage,
    read_coco_captions,
    read_csv,
    read_jsonl,
    read_karpathy,
    read_pairs,
    read_sidecar_folder,
)
from stair_es.data.synthetic import SyntheticConfig, content_words, generate_synthetic, grammar_words

__all__ = [
    "CaptionedImage",
    "SyntheticConfig",
    "content_words",
    "default_preprocessor_config",
    "generate_synthetic",
    "grammar_words",
    "preprocess_image",
    "preprocess_images",
    "read_coco_captions",
    "read_csv",
    "read_jsonl",
    "read_karpathy",
    "read_pairs",
    "read_sidecar_folder",
]
