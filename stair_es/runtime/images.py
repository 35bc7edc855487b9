"""Image decoding and preprocessing with Pillow (no torch).

Decoding is where real image folders fail, so every source goes through one function that
handles what cameras and the web produce: EXIF rotation, CMYK/palette/alpha/16-bit modes, huge
files (decompression bombs) and truncated data. JPEGs are decoded at reduced size with libjpeg's
DCT scaling (``Image.draft``) when the model needs far fewer pixels than the file holds.

Preprocessing follows the manifest exactly (resize mode, interpolation, crop, mean/std), because a
mismatch with training silently costs recall. Pillow releases the GIL while decoding and
resizing, so a thread pool scales across cores without pickling images between processes.
"""

from __future__ import annotations

import io
import os
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Union

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from stair_es.ahead import map_ahead
from stair_es.errors import UsageError

ImageSource = Union[str, os.PathLike, bytes, bytearray, memoryview, Image.Image]  # noqa: UP007

# Pillow's own default (about 89.5 megapixels, a 1/4 GiB RGB image); larger files are refused.
DEFAULT_MAX_PIXELS = 89_478_485
# decode_image refuses oversized images itself with one line naming the file; the CLI hides
# Pillow's own warning for them (stair_es.process), a library user sees it as Pillow sends it.

_RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}
RESIZE_MODES = ("shortest", "squash")


class ImageDecodeError(UsageError):
    """One image could not be decoded or is refused; the message names the source.

    ``kind`` is what went wrong, decided where it went wrong (never read back from the wording):
    ``missing``, ``not_an_image``, ``corrupt``, ``bomb`` or ``decode`` (anything else). The ingest
    report and the failures file use these names.
    """

    def __init__(self, message: str, kind: str = "decode") -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class ImagePreprocessing:
    """How pixels become model input; stored in the manifest so runtime matches training.

    ``resize="shortest"`` scales the shorter side to ``resize_shortest`` (default: the crop size) and
    center-crops to ``size`` (CLIP style); ``"squash"`` resizes straight to ``size``. Training runs
    this same code (``stair_es.data.images.preprocess_image`` reads the model folder's
    ``preprocessor_config.json`` into this spec), so both feed the towers the same pixels.
    """

    size: tuple[int, int] = (224, 224)  # crop (height, width)
    resize: str = "shortest"
    resize_shortest: int | None = None
    crop: str = "center"
    interpolation: str = "bicubic"
    mean: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)
    std: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)
    background: tuple[int, int, int] = (255, 255, 255)  # transparent pixels are composited onto this

    def __post_init__(self) -> None:
        if self.resize not in RESIZE_MODES:
            raise UsageError(f"unknown resize mode {self.resize!r}; expected one of {RESIZE_MODES}")
        if self.interpolation not in _RESAMPLE:
            raise UsageError(
                f"unknown interpolation {self.interpolation!r}; expected one of {list(_RESAMPLE)}"
            )
        if self.crop != "center":
            raise UsageError(f"unknown crop {self.crop!r}; only 'center' is supported")
        if self.resize_shortest is not None and self.resize_shortest < max(self.size):
            raise UsageError(f"resize_shortest {self.resize_shortest} is smaller than the crop {self.size}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise UsageError("image mean and std need three values each, std > 0")

    def to_dict(self) -> dict[str, Any]:
        return {
            "size": list(self.size),
            "resize": self.resize,
            "resize_shortest": self.resize_shortest,
            "crop": self.crop,
            "interpolation": self.interpolation,
            "mean": list(self.mean),
            "std": list(self.std),
            "background": list(self.background),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ImagePreprocessing:
        # Also reads the model directory's preprocessor_config.json keys (crop_size, resize_shortest_edge).
        size = data.get("size", data.get("crop_size", data.get("image_size", 224)))
        if isinstance(size, int):
            size = (size, size)
        shortest = data.get("resize_shortest", data.get("resize_shortest_edge"))
        return cls(
            size=(int(size[0]), int(size[1])),
            resize=str(data.get("resize", data.get("resize_mode", "shortest"))),
            resize_shortest=None if shortest is None else int(shortest),
            crop=str(data.get("crop", "center")),
            interpolation=str(data.get("interpolation", "bicubic")),
            mean=tuple(float(v) for v in data.get("mean", data.get("image_mean", cls.mean))),  # type: ignore[arg-type]
            std=tuple(float(v) for v in data.get("std", data.get("image_std", cls.std))),  # type: ignore[arg-type]
            background=tuple(int(v) for v in data.get("background", (255, 255, 255))),  # type: ignore[arg-type]
        )


def describe_source(source: object) -> str:
    """A short name for error messages: the path, or the kind of in-memory object."""
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return f"<{len(source)} bytes>"
    if isinstance(source, Image.Image):
        return f"<PIL {source.mode} {source.width}x{source.height}>"
    return f"<{type(source).__name__}>"


def special_file_reason(path: str | os.PathLike) -> str | None:
    """Why ``path`` cannot be read as an image file without blocking, or None when it can.

    Opening a FIFO blocks until a writer comes, and a device never ends: both are refused up front,
    like folders and unreadable files. Symlinks are followed (a link to a photo is fine).
    """
    import stat

    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "file not found"
    except OSError as exc:
        return f"cannot read ({exc.strerror or exc})"
    if stat.S_ISDIR(mode):
        return "is a folder, not a file"
    if not stat.S_ISREG(mode):
        kind = (
            "a FIFO (named pipe)"
            if stat.S_ISFIFO(mode)
            else "a device"
            if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
            else "a socket"
            if stat.S_ISSOCK(mode)
            else "a special file"
        )
        return f"not a regular file ({kind})"
    if not os.access(path, os.R_OK):
        return "cannot read (permission denied)"
    return None


def decode_image(
    source: ImageSource,
    *,
    draft_size: tuple[int, int] | None = None,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    background: tuple[int, int, int] = (255, 255, 255),
) -> Image.Image:
    """Open any image source and return an upright 8-bit RGB image.

    ``draft_size`` (width, height) lets libjpeg decode at 1/2, 1/4 or 1/8 scale while keeping both
    sides at least that large. Raises :class:`ImageDecodeError` with a one-line reason.
    """
    name = describe_source(source)
    limit = Image.MAX_IMAGE_PIXELS
    if limit is not None and (max_pixels is None or max_pixels > limit):
        # Pillow refuses at 2x its own limit inside open(); a caller who allowed more gets more,
        # and the check below stays the guard.
        Image.MAX_IMAGE_PIXELS = max_pixels
    if isinstance(source, (str, os.PathLike)):
        reason = special_file_reason(source)
        if reason is not None and reason != "file not found":
            raise ImageDecodeError(f"{name}: {reason}")
    try:
        if isinstance(source, Image.Image):
            img = source
            _check_pixels(img, max_pixels, name)
        else:
            fp: Any = (
                io.BytesIO(bytes(source)) if isinstance(source, (bytes, bytearray, memoryview)) else source
            )
            img = Image.open(fp)
            _check_pixels(img, max_pixels, name)
            if draft_size is not None and img.format in ("JPEG", "MPO"):
                # EXIF rotation may swap the sides, so ask for the larger side in both directions.
                side = max(draft_size)
                img.draft("RGB", (side, side))
            img.load()
        img = ImageOps.exif_transpose(img)
        return to_rgb(img, background)
    except ImageDecodeError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError(f"{name}: refused as a decompression bomb ({exc})", "bomb") from exc
    except FileNotFoundError as exc:
        raise ImageDecodeError(f"{name}: file not found", "missing") from exc
    except UnidentifiedImageError as exc:
        raise ImageDecodeError(f"{name}: not a recognised image format", "not_an_image") from exc
    except OSError as exc:  # truncated or corrupt data, unreadable file
        raise ImageDecodeError(f"{name}: cannot decode ({exc})", "corrupt") from exc
    except (ValueError, SyntaxError, MemoryError) as exc:
        raise ImageDecodeError(f"{name}: cannot decode ({type(exc).__name__}: {exc})", "corrupt") from exc


def _check_pixels(img: Image.Image, max_pixels: int | None, name: str) -> None:
    """Refuse images whose header promises more pixels than allowed, before decoding them."""
    pixels = img.width * img.height
    if max_pixels is not None and pixels > max_pixels:
        raise ImageDecodeError(
            f"{name}: {img.width}x{img.height} = {pixels:,} pixels exceeds the decompression-bomb limit "
            f"of {max_pixels:,} (raise max_pixels / --max-image-pixels if the file is trusted)",
            "bomb",
        )


def to_rgb(img: Image.Image, background: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """Any Pillow mode to 8-bit RGB: alpha is composited, 16/32-bit ranges are scaled, not clipped."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
        mode = img.mode
        if mode == "RGB":
            return img
    if mode in ("RGBa", "La"):
        img = img.convert("RGBA" if mode == "RGBa" else "LA")
        mode = img.mode
    if mode in ("RGBA", "LA", "PA"):
        rgba = img.convert("RGBA")
        base = Image.new("RGB", rgba.size, background)
        base.paste(rgba, mask=rgba.getchannel("A"))
        return base
    if mode.startswith("I;16") or mode in ("I", "F"):
        return Image.fromarray(_high_depth_to_uint8(img), "L").convert("RGB")
    try:
        return img.convert("RGB")  # L, 1, CMYK, YCbCr, HSV, ...
    except ValueError as exc:
        raise ImageDecodeError(f"cannot convert image mode {mode} to RGB") from exc


def _high_depth_to_uint8(img: Image.Image) -> np.ndarray:
    """16-bit and 32-bit grayscale to 8 bits by range, as viewers show them."""
    arr = np.asarray(img)
    if img.mode == "F":
        arr = np.nan_to_num(arr.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        scale = 255.0 if arr.max(initial=0.0) <= 1.0 else 1.0
        return np.clip(arr * scale, 0, 255).astype(np.uint8)
    arr = arr.astype(np.int64)
    if img.mode == "I" and arr.max(initial=0) <= 255 and arr.min(initial=0) >= 0:
        return arr.astype(np.uint8)
    return (np.clip(arr, 0, 65535) >> 8).astype(np.uint8)


def resize_and_crop(img: Image.Image, spec: ImagePreprocessing) -> Image.Image:
    """Resize per the manifest (shortest side or squash), then center-crop to ``spec.size``."""
    out_h, out_w = spec.size
    resample = _RESAMPLE[spec.interpolation]
    w, h = img.size
    if spec.resize == "squash":
        return img if (w, h) == (out_w, out_h) else img.resize((out_w, out_h), resample)
    target = spec.resize_shortest or max(out_w, out_h)
    scale = target / min(w, h)
    new_w, new_h = max(target, round(w * scale)), max(target, round(h * scale))
    if (new_w, new_h) != (w, h):
        img = img.resize((new_w, new_h), resample)
    left, top = (new_w - out_w) // 2, (new_h - out_h) // 2
    if (left, top, new_w, new_h) == (0, 0, out_w, out_h):
        return img
    return img.crop((left, top, left + out_w, top + out_h))


def to_pixel_values(img: Image.Image, spec: ImagePreprocessing) -> np.ndarray:
    """RGB image of ``spec.size`` to a normalised float32 ``[3, H, W]`` array."""
    arr = np.asarray(img, dtype=np.float32)  # H, W, 3
    scale = np.asarray([1.0 / (255.0 * s) for s in spec.std], dtype=np.float32)
    shift = np.asarray([m / s for m, s in zip(spec.mean, spec.std)], dtype=np.float32)
    return np.ascontiguousarray((arr * scale - shift).transpose(2, 0, 1))


def load_pixels(
    source: ImageSource, spec: ImagePreprocessing, max_pixels: int | None = DEFAULT_MAX_PIXELS
) -> np.ndarray:
    """Decode + resize + crop + normalise one image: the whole per-item CPU work."""
    out_h, out_w = spec.size
    side = max(out_h, out_w, spec.resize_shortest or 0)
    img = decode_image(source, draft_size=(side, side), max_pixels=max_pixels, background=spec.background)
    return to_pixel_values(resize_and_crop(img, spec), spec)


def decode_to_pixels(
    source: ImageSource, spec: ImagePreprocessing, max_pixels: int | None = DEFAULT_MAX_PIXELS
) -> tuple[np.ndarray | None, str | None]:
    """:func:`load_pixels` that never raises: ``(pixels, None)`` or ``(None, one-line reason)``."""
    pixels, failure = try_load_pixels(source, spec, max_pixels)
    return pixels, None if failure is None else str(failure)


def try_load_pixels(
    source: ImageSource, spec: ImagePreprocessing, max_pixels: int | None = DEFAULT_MAX_PIXELS
) -> tuple[np.ndarray | None, ImageDecodeError | None]:
    """:func:`load_pixels` that never raises: ``(pixels, None)`` or ``(None, the error)``, whose
    ``kind`` says what went wrong."""
    try:
        return load_pixels(source, spec, max_pixels), None
    except ImageDecodeError as exc:
        return None, exc
    except Exception as exc:  # noqa: BLE001 - a decoder bug must not kill the batch
        return None, ImageDecodeError(f"{describe_source(source)}: unexpected {type(exc).__name__}: {exc}")


@dataclass
class DecodedItem:
    """One source after decoding: pixels or a one-line error, plus the CPU seconds it took."""

    index: int
    source: object
    pixels: np.ndarray | None
    error: str | None
    seconds: float
    kind: str | None = None  # ImageDecodeError.kind when it failed


@dataclass
class DecodeStats:
    items: int = 0
    failures: int = 0
    decode_seconds: float = 0.0  # summed over workers
    extra: dict[str, float] = field(default_factory=dict)


def default_workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


def iter_decoded(
    sources: Iterable[ImageSource],
    spec: ImagePreprocessing,
    *,
    workers: int | None = None,
    prefetch: int = 64,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
) -> Iterator[DecodedItem]:
    """Decode sources in a thread pool, yielding in input order with at most ``prefetch`` in flight.

    Never raises for a bad image: the item carries the error instead, so one broken file in a
    folder of a million does not stop the run.
    """
    workers = workers or default_workers()

    def work(numbered: tuple[int, ImageSource]) -> DecodedItem:
        index, source = numbered
        start = time.perf_counter()
        pixels, failure = try_load_pixels(source, spec, max_pixels)
        error, kind = (None, None) if failure is None else (str(failure), failure.kind)
        return DecodedItem(index, source, pixels, error, time.perf_counter() - start, kind)

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="stair-decode") as pool:
        for future in map_ahead(pool, work, enumerate(sources), max(prefetch, workers)):
            yield future.result()


# Truncated files are an error by default (reported per item); callers opting in get partial images.
def allow_truncated_images(allow: bool = True) -> None:
    """Process-wide Pillow switch: decode truncated files instead of reporting them."""
    ImageFile.LOAD_TRUNCATED_IMAGES = allow
