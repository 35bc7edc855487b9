"""Runtime encoders: exported ONNX graphs on onnxruntime, texts and images to sparse vectors.

Nothing in this package imports torch (tests/test_runtime_no_torch.py checks it), so indexing and
search hosts only need onnxruntime, tokenizers, Pillow and numpy.
"""

from stair_es.runtime.encoder import Encoder, load_encoder
from stair_es.runtime.images import ImageDecodeError, ImagePreprocessing, decode_image, load_pixels
from stair_es.runtime.manifest import MANIFEST_NAME, Manifest
from stair_es.runtime.results import ImageResult, StreamStats
from stair_es.runtime.sessions import ProviderInfo, create_session
from stair_es.runtime.tokenizer import TextTokenizer

__all__ = [
    "MANIFEST_NAME",
    "Encoder",
    "ImageDecodeError",
    "ImagePreprocessing",
    "ImageResult",
    "Manifest",
    "ProviderInfo",
    "StreamStats",
    "TextTokenizer",
    "create_session",
    "decode_image",
    "load_encoder",
    "load_pixels",
]
