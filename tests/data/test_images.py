"""irgpt.data.images: safe opening, mode normalisation, the 16-bit stretch, encoding."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from irgpt.config.sections import ImportConfig
from irgpt.data.images import (
    ImageRejected,
    decode_to_array,
    encode_png,
    open_checked,
    prepare_image,
    stretch_to_uint8,
)

# A ramp 0, 100, ..., 20000 (201 values). numpy's linear percentiles:
# 0.5% sits at index 0.005 * 200 = 1 -> lo = 100; 99.5% at index 199 -> hi = 19900,
# so pixel i maps to (100 i - 100) * 255 / 19800 = (i - 1) * 255 / 198, clipped.
RAMP = (np.arange(201) * 100).reshape(1, 201)
RAMP_EXPECTED = np.floor(np.clip((np.arange(201) - 1) * 255 / 198, 0, 255) + 0.5).astype(np.uint8)


def _save(arr_or_img, fmt: str) -> bytes:
    img = arr_or_img if isinstance(arr_or_img, Image.Image) else Image.fromarray(arr_or_img)
    buf = io.BytesIO()
    img.save(buf, fmt)
    return buf.getvalue()


def _png_with_header_size(width: int, height: int) -> bytes:
    """A 1x1 PNG whose IHDR claims width x height (valid CRC, tiny IDAT)."""
    data = bytearray(_save(Image.new("L", (1, 1)), "PNG"))
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def _noise(shape, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


# ---------------------------------------------------------------- stretch ----
def test_ramp_stretch_hand_values():
    out = stretch_to_uint8(RAMP, 0.5, 99.5)[0]
    # i=0 and i=1 -> 0 (at/below lo); i=2 -> 255/198 = 1.29 -> 1; i=50 -> 63.1 -> 63;
    # i=100 -> 127.5 -> 128 (halves round up); i=199, 200 -> 255 (at/above hi).
    assert [out[i] for i in (0, 1, 2, 50, 100, 199, 200)] == [0, 0, 1, 63, 128, 255, 255]
    np.testing.assert_array_equal(out, RAMP_EXPECTED[None][0])


def test_stretch_full_range_and_constant_and_nan():
    out = stretch_to_uint8(RAMP, 0.0, 100.0)[0]  # lo 0, hi 20000: i -> i * 255 / 200
    assert [out[0], out[100], out[200]] == [0, 128, 255]
    assert not stretch_to_uint8(np.full((4, 4), 777), 0.5, 99.5).any()  # constant -> zeros
    f = np.array([[np.nan, 0.0, 1.0, np.inf]])
    np.testing.assert_array_equal(stretch_to_uint8(f, 0, 100), [[0, 0, 255, 0]])


@pytest.mark.parametrize(
    "array, fmt, mode",
    [
        (RAMP.astype(np.uint16), "PNG", "I;16"),
        (RAMP.astype(np.uint16), "TIFF", "I;16"),
        (RAMP.astype(">u2"), "TIFF", "I;16B"),
        (RAMP.astype(np.int32), "TIFF", "I"),
        (RAMP.astype(np.float32), "TIFF", "F"),
    ],
)
def test_high_depth_files_stretched_to_L(array, fmt, mode):
    data = _save(array, fmt)
    assert Image.open(io.BytesIO(data)).mode == mode
    img = open_checked(data)
    assert img.mode == "L" and img.size == (201, 1)
    np.testing.assert_array_equal(np.asarray(img)[0], RAMP_EXPECTED)


def test_constant_16bit_image_is_all_zeros():
    img = open_checked(_save(np.full((8, 8), 4242, np.uint16), "PNG"))
    assert img.mode == "L" and not np.asarray(img).any()


def test_stretch_percentiles_come_from_config():
    cfg = ImportConfig(stretch_low_percentile=0.0, stretch_high_percentile=100.0)
    out = np.asarray(open_checked(_save(RAMP.astype(np.uint16), "PNG"), cfg))[0]
    assert [out[0], out[100], out[200]] == [0, 128, 255]


# ------------------------------------------------------------------ modes ----
@pytest.mark.parametrize(
    "make, want",
    [
        (lambda: Image.fromarray(_noise((6, 5))), "L"),
        (lambda: Image.fromarray(_noise((6, 5, 3))), "RGB"),
        (lambda: Image.fromarray(_noise((6, 5, 4)), "RGBA"), "RGB"),
        (lambda: Image.fromarray(_noise((6, 5, 2)), "LA"), "L"),
        (lambda: Image.fromarray(_noise((6, 5, 3))).convert("P"), "RGB"),
        (lambda: Image.fromarray(_noise((6, 5))).convert("1"), "L"),
    ],
)
def test_modes_normalised(make, want):
    img = open_checked(_save(make(), "PNG"))
    assert img.mode == want and img.size == (5, 6)


def test_rgba_drops_alpha_keeps_colour():
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 0  # fully transparent red
    out = np.asarray(open_checked(_save(Image.fromarray(rgba, "RGBA"), "PNG")))
    assert (out[..., 0] == 200).all() and (out[..., 1:] == 0).all()


# ----------------------------------------------------------------- guards ----
def test_too_many_pixels_rejected_before_decoding():
    data = _save(_noise((64, 64)), "PNG")
    with pytest.raises(
        ImageRejected, match=r"image too large: 64x64 = 4096 pixels > max_pixels=1000"
    ):
        open_checked(data, ImportConfig(max_pixels=1000))
    with pytest.raises(ImageRejected, match="side over max_side=32"):
        open_checked(data, ImportConfig(max_side=32))


def test_header_claiming_huge_size_is_too_large_not_decoded():
    # The pixel data is 1x1: decoding would fail as truncated. "too large" proves
    # the header was checked first.
    with pytest.raises(
        ImageRejected, match="image too large: 17000x100 has a side over max_side=16384"
    ):
        open_checked(_png_with_header_size(17000, 100))
    with pytest.raises(ImageRejected, match="image too large"):  # Pillow's own bomb error
        open_checked(
            _png_with_header_size(100_000, 100_000), ImportConfig(max_side=10**6, max_pixels=10**12)
        )
    with pytest.raises(ImageRejected, match="image too large: 3000x3000"):
        open_checked(_png_with_header_size(3000, 3000), ImportConfig(max_pixels=1_000_000))


def test_corrupt_truncated_missing(tmp_path):
    good = _save(_noise((64, 64)), "PNG")  # noise: the IDAT is large, truncation cuts it
    with pytest.raises(ImageRejected, match="cannot decode image: "):
        open_checked(good[: len(good) // 2])
    jpeg = _save(_noise((64, 64, 3)), "JPEG")
    with pytest.raises(ImageRejected, match="cannot decode image: "):
        open_checked(jpeg[: len(jpeg) // 2])
    with pytest.raises(ImageRejected, match="cannot decode image: not a recognised image format"):
        open_checked(b"definitely not an image")
    with pytest.raises(ImageRejected, match="not a recognised image format"):  # EPS is never opened
        open_checked(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n")
    with pytest.raises(ImageRejected, match="missing image file: "):
        open_checked(tmp_path / "nope.png")
    with pytest.raises(ImageRejected, match="missing image file: .* is a directory"):
        open_checked(tmp_path)


# --------------------------------------------------------------- encoding ----
def test_encode_png_deterministic_and_lossless():
    img = Image.fromarray(_noise((9, 7, 3)))
    img.info["icc_profile"] = b"junk"  # metadata must not leak into the bytes
    data = encode_png(img)
    assert data == encode_png(Image.fromarray(_noise((9, 7, 3))))
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(data))), _noise((9, 7, 3)))


def test_decode_to_array():
    data = _save(_noise((10, 20, 3)), "PNG")
    gray = decode_to_array(data)
    assert gray.dtype == np.uint8 and gray.shape == (10, 20)
    assert decode_to_array(data, size=8, mode="RGB").shape == (8, 8, 3)
    resized = decode_to_array(data, size=8)
    np.testing.assert_array_equal(resized, decode_to_array(data, size=8))  # fixed filter
    np.testing.assert_array_equal(
        decode_to_array(_save(RAMP.astype(np.uint16), "PNG"))[0], RAMP_EXPECTED
    )
    with pytest.raises(ImageRejected):
        decode_to_array(b"\x89PNG\r\n\x1a\n broken")
    with pytest.raises(ValueError):
        decode_to_array(data, mode="CMYK")


def test_prepare_image_keeps_png_jpeg_bytes_reencodes_others(tmp_path):
    png = tmp_path / "a.png"
    Image.fromarray(_noise((5, 6))).save(png)
    kept = prepare_image(png)
    assert (
        kept.data == png.read_bytes() and not kept.reencoded and (kept.width, kept.height) == (6, 5)
    )
    tif = tmp_path / "b.tif"
    Image.fromarray(RAMP.astype(np.uint16)).save(tif)
    made = prepare_image(tif)
    assert made.reencoded and made.mode == "L" and made.data.startswith(b"\x89PNG")
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(made.data)))[0], RAMP_EXPECTED)
    assert prepare_image(tif, ImportConfig(embed_images=False)).data is None


def _png48(rgb16: np.ndarray) -> bytes:
    """A 16-bit-per-channel RGB PNG, written by hand (Pillow cannot write one)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    h, w, _ = rgb16.shape
    rows = b"".join(b"\x00" + rgb16[y].astype(">u2").tobytes() for y in range(h))
    ihdr = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def test_48bit_rgb_png_is_reencoded_as_8bit(tmp_path):
    rgb16 = (np.arange(4 * 5 * 3, dtype=np.uint16) * 1000).reshape(4, 5, 3)
    path = tmp_path / "deep.png"
    path.write_bytes(_png48(rgb16))
    prepared = prepare_image(path)
    assert prepared.reencoded and prepared.mode == "RGB" and prepared.data[24] == 8
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(prepared.data))), rgb16 >> 8)
