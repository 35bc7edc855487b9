"""Image decoding and preprocessing (runtime, Pillow only)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from stair_es.runtime.files import list_image_files
from stair_es.runtime.images import (
    ImageDecodeError,
    ImagePreprocessing,
    decode_image,
    iter_decoded,
    load_pixels,
    resize_and_crop,
)


def _bytes(img: Image.Image, fmt: str, **kwargs: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kwargs)
    return buf.getvalue()


def _gradient(w: int = 64, h: int = 48) -> Image.Image:
    yy, xx = np.mgrid[0:h, 0:w]
    arr = np.stack([xx * 255 // max(w - 1, 1), yy * 255 // max(h - 1, 1), (xx + yy) % 256], -1)
    return Image.fromarray(arr.astype(np.uint8), "RGB")


def test_palette_with_transparency_is_composited_on_white() -> None:
    img = Image.new("P", (4, 4), 0)
    img.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    img.putpixel((0, 0), 1)
    img.info["transparency"] = 0  # index 0 (red) is transparent
    out = decode_image(_bytes(img, "PNG"))
    assert out.mode == "RGB"
    assert out.getpixel((1, 1)) == (255, 255, 255)  # transparent -> background
    assert out.getpixel((0, 0)) == (0, 255, 0)


def test_rgba_and_la_alpha_composited() -> None:
    rgba = Image.new("RGBA", (2, 2), (0, 0, 0, 0))
    rgba.putpixel((0, 0), (10, 20, 30, 255))
    out = decode_image(_bytes(rgba, "PNG"))
    assert out.getpixel((0, 0)) == (10, 20, 30)
    assert out.getpixel((1, 1)) == (255, 255, 255)
    la = Image.new("LA", (2, 2), (0, 0))
    assert decode_image(la, background=(1, 2, 3)).getpixel((0, 0)) == (1, 2, 3)


def test_cmyk_jpeg_becomes_rgb() -> None:
    cmyk = Image.new("CMYK", (16, 16), (0, 255, 255, 0))  # pure red in CMYK
    out = decode_image(_bytes(cmyk, "JPEG", quality=95))
    assert out.mode == "RGB"
    r, g, b = out.getpixel((8, 8))
    assert r > 200 and g < 60 and b < 60


def test_16bit_grayscale_is_scaled_not_clipped() -> None:
    arr = np.array([[0, 32768], [65535, 1000]], dtype=np.uint16)
    img = Image.fromarray(arr)  # mode I;16
    out = decode_image(_bytes(img, "PNG"))
    assert out.mode == "RGB"
    assert out.getpixel((0, 0)) == (0, 0, 0)
    assert out.getpixel((1, 0)) == (128, 128, 128)  # clipping would give 255
    assert out.getpixel((0, 1)) == (255, 255, 255)


def test_float_and_one_bit_modes() -> None:
    f = Image.fromarray(np.array([[0.0, 0.5], [1.0, np.nan]], dtype=np.float32), "F")
    assert decode_image(f).getpixel((1, 0)) == (127, 127, 127)
    one = Image.new("1", (3, 3), 1)
    assert decode_image(_bytes(one, "PNG")).getpixel((0, 0)) == (255, 255, 255)


def test_exif_orientation_is_applied() -> None:
    img = _gradient(40, 20)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    out = decode_image(_bytes(img, "JPEG", exif=exif.tobytes()))
    assert out.size == (20, 40)


def test_jpeg_draft_decodes_large_files_at_reduced_size() -> None:
    big = _gradient(1600, 1200).resize((1600, 1200))
    data = _bytes(big, "JPEG", quality=90)
    drafted = decode_image(data, draft_size=(224, 224))
    assert drafted.size == (400, 300)  # libjpeg 1/4 scale, both sides still >= 224
    full = decode_image(data)
    assert full.size == (1600, 1200)
    spec = ImagePreprocessing(size=(224, 224), mean=(0.5,) * 3, std=(0.5,) * 3)
    a = load_pixels(data, spec)
    b = load_pixels(full, spec)
    assert a.shape == (3, 224, 224)
    assert float(np.mean(np.abs(a - b))) < 0.05  # same picture, slightly different pixels


def test_decompression_bomb_guard_is_one_clear_line() -> None:
    data = _bytes(Image.new("L", (200, 100)), "PNG")
    with pytest.raises(ImageDecodeError) as info:
        decode_image(data, max_pixels=10_000)
    msg = str(info.value)
    assert "decompression-bomb" in msg and "200x100" in msg and "\n" not in msg
    assert decode_image(data, max_pixels=None).size == (200, 100)


def test_truncated_missing_and_garbage_inputs(tmp_path: Path) -> None:
    data = _bytes(_gradient(256, 256), "JPEG")
    with pytest.raises(ImageDecodeError, match="cannot decode"):
        decode_image(data[: len(data) // 2])
    with pytest.raises(ImageDecodeError, match="file not found"):
        decode_image(tmp_path / "missing.jpg")
    with pytest.raises(ImageDecodeError, match="not a recognised image"):
        decode_image(b"hello")


def test_preprocessing_matches_the_training_reference() -> None:
    """Runtime pixels must equal stair_es.data.images.preprocess_image for the model's config."""
    from stair_es.data.images import default_preprocessor_config, preprocess_image

    config = default_preprocessor_config(32, clip_stats=True)
    spec = ImagePreprocessing.from_dict(config)
    for size in [(64, 48), (45, 101), (32, 32), (33, 80)]:
        img = _gradient(*size)
        ours = load_pixels(_bytes(img, "PNG"), spec)
        ref = preprocess_image(img, config)
        np.testing.assert_array_equal(ours, ref)  # one implementation: the same floats


def test_training_sees_transparent_and_rotated_files_as_the_runtime_does(tmp_path) -> None:
    """Training read files with a plain Image.open: alpha dropped (not composited on the runtime's
    white) and no EXIF rotation, so the towers trained on other pixels than they later got."""
    from stair_es.data.images import default_preprocessor_config, preprocess_image

    config = default_preprocessor_config(32)
    spec = ImagePreprocessing.from_dict(config)
    clear = Image.new("RGBA", (40, 40), (0, 0, 0, 0))
    clear.paste((255, 0, 0, 255), (10, 10, 30, 30))
    clear.save(tmp_path / "clear.png")
    rotated = _gradient(64, 32).convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees
    rotated.save(tmp_path / "rotated.jpg", exif=exif.tobytes())
    for name in ("clear.png", "rotated.jpg"):
        path = tmp_path / name
        np.testing.assert_array_equal(preprocess_image(path, config), load_pixels(str(path), spec))


def test_squash_and_shortest_resize_shapes() -> None:
    img = _gradient(100, 50)
    assert resize_and_crop(img, ImagePreprocessing(size=(20, 30), resize="squash")).size == (30, 20)
    shortest = ImagePreprocessing(size=(24, 24), resize_shortest=32)
    assert resize_and_crop(img, shortest).size == (24, 24)
    with pytest.raises(Exception, match="unknown resize"):
        ImagePreprocessing(resize="stretch")


def test_iter_decoded_keeps_order_and_reports_failures(tmp_path: Path) -> None:
    good = []
    for i in range(7):
        path = tmp_path / f"{i}.png"
        _gradient(20 + i, 30).save(path)
        good.append(path)
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    sources = good[:3] + [tmp_path / "bad.jpg"] + good[3:]
    items = list(iter_decoded(sources, ImagePreprocessing(size=(16, 16)), workers=3, prefetch=2))
    assert [it.index for it in items] == list(range(8))
    assert items[3].pixels is None and "bad.jpg" in (items[3].error or "")
    assert all(
        it.pixels is not None and it.pixels.shape == (3, 16, 16) for i, it in enumerate(items) if i != 3
    )
    assert len(list_image_files(tmp_path)) == 8


def test_decode_failures_carry_their_kind(tmp_path) -> None:
    """The kind is set where the failure happens, not read back from the message's wording."""
    from stair_es.ingest.testing import make_messy_folder
    from stair_es.runtime.images import ImageDecodeError, decode_image, iter_decoded

    folder = make_messy_folder(tmp_path / "messy", num_images=2)
    decodable = {p: k for p, k in folder.bad.items() if k != "empty"}  # empty files stop at reading
    for path, kind in decodable.items():
        with pytest.raises(ImageDecodeError) as raised:
            decode_image(str(path))
        assert raised.value.kind == kind, path
    spec = ImagePreprocessing(size=(16, 16))
    items = list(iter_decoded(list(map(str, decodable)), spec))
    assert [item.kind for item in items] == list(decodable.values())
    assert decode_image(_bytes(_gradient(8, 8), "PNG")).size == (8, 8)
