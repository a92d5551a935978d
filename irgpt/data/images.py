"""Opening untrusted image files safely, and decoding stored image bytes.

Used by `irgpt data import` (every image is checked before a row is written)
and by the scorers at scoring time (`decode_to_array`). Rules (docs/import.md):

- The file is checked with `fstat` first: regular files only (a FIFO or device
  is refused without a read), at most `ImportConfig.max_file_bytes`.
- Only raster formats in `ALLOWED_FORMATS` are opened (no EPS/PDF, which
  Pillow hands to external programs).
- The size in the header is checked against `ImportConfig.max_pixels` /
  `max_side` BEFORE any pixel is decoded (decompression-bomb guard); Pillow's
  own guard (`Image.MAX_IMAGE_PIXELS`) is caught and reported the same way.
- The image is fully decoded (`load()`): truncated or corrupt files are
  rejected, never half-read (`ImageFile.LOAD_TRUNCATED_IMAGES` stays False).
- Output is always mode `L` (one channel) or `RGB`:
    L, RGB                   kept
    1, LA, La                -> L (alpha dropped)
    P, PA, RGBA, RGBa, RGBX,
    CMYK, YCbCr, LAB, HSV    -> RGB (alpha dropped, not composited)
    I;16*, I, F              -> L by the percentile stretch (`stretch_to_uint8`)
- Multi-frame files (GIF, multi-page TIFF): the first frame.
"""

from __future__ import annotations

import io
import os
import stat
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile

from irgpt.config.sections import ImportConfig

ALLOWED_FORMATS = ("PNG", "JPEG", "MPO", "TIFF", "BMP", "GIF", "WEBP", "PPM")
"""Formats `open_checked` will open (MPO: multi-picture JPEGs, a format of its own
before Pillow 13); Pillow's other formats (EPS, PDF, PSD, ...) are refused."""

HIGH_DEPTH_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I;16S", "I", "F")
"""Radiometric / high-bit-depth modes, stretched to 8-bit L."""

_TO_L = ("1", "LA", "La")
_TO_RGB = ("P", "PA", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "LAB", "HSV")
PASSTHROUGH_FORMATS = ("PNG", "JPEG")
"""Files in these formats whose pixels needed no conversion keep their bytes."""

RESIZE_FILTER = Image.Resampling.BILINEAR
"""The one filter `decode_to_array` resizes with (scorers must agree on it)."""


class ImageRejected(Exception):
    """An image that cannot be used; `str(exc)` / `.reason` is person-readable."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class PreparedImage:
    """What the importer stores for one image."""

    data: bytes | None
    """Encoded bytes (original PNG/JPEG, or a PNG re-encode); None when not embedded."""
    width: int
    height: int
    mode: str
    """`L` or `RGB`: the mode `data` decodes to."""
    reencoded: bool
    """True when `data` is a PNG made here rather than the file's own bytes."""


def stretch_to_uint8(
    values: np.ndarray, low_percentile: float, high_percentile: float
) -> np.ndarray:
    """Linear percentile stretch of a high-depth image to uint8.

    lo, hi = the `low_percentile` / `high_percentile` of the finite pixels
    (`numpy.percentile`, linear interpolation); out = clip((v - lo) / (hi - lo)
    * 255, 0, 255) rounded half up. If hi <= lo (a constant image, or one
    whose percentile window holds a single value) there is nothing to
    stretch: pixels above lo become 255, the rest 0, so a constant image is
    all zeros. Non-finite pixels (NaN, +-inf in float TIFFs) become 0.
    """
    a = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(a)
    out = np.zeros(a.shape, dtype=np.uint8)
    if not finite.any():
        return out
    lo, hi = np.percentile(a[finite], [low_percentile, high_percentile])
    if hi <= lo:
        out[finite & (a > lo)] = 255
        return out
    scaled = (a[finite] - lo) * 255.0 / (hi - lo)  # multiply first: exact halves stay exact
    out[finite] = np.floor(np.clip(scaled, 0.0, 255.0) + 0.5).astype(np.uint8)
    return out


def _check_size(width: int, height: int, cfg: ImportConfig) -> None:
    if width <= 0 or height <= 0:
        raise ImageRejected(f"cannot decode image: empty image ({width}x{height})")
    if width > cfg.max_side or height > cfg.max_side:
        raise ImageRejected(
            f"image too large: {width}x{height} has a side over max_side={cfg.max_side}"
        )
    if width * height > cfg.max_pixels:
        raise ImageRejected(
            f"image too large: {width}x{height} = {width * height} pixels > max_pixels={cfg.max_pixels}"
        )


def _file_errors(source, exc: OSError) -> ImageRejected:
    if isinstance(exc, FileNotFoundError):
        return ImageRejected(f"missing image file: {source}")
    if isinstance(exc, IsADirectoryError):
        return ImageRejected(f"missing image file: {source} is a directory")
    return ImageRejected(f"cannot read image file: {source}: {exc.strerror or exc}")


_FILE_KINDS = {
    stat.S_IFIFO: "FIFO",
    stat.S_IFSOCK: "socket",
    stat.S_IFCHR: "character device",
    stat.S_IFBLK: "block device",
}


def read_image_file(path: str | Path, cfg: ImportConfig) -> bytes:
    """The bytes of an image file, checked by `fstat` before anything is read.

    Opened non-blocking (a FIFO named `x.png` must not hang the import) and
    refused unless it is a regular file no larger than `cfg.max_file_bytes`.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:  # missing, permissions, I/O errors
        raise _file_errors(path, exc) from exc
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise ImageRejected(f"missing image file: {path} is a directory")
        if not stat.S_ISREG(info.st_mode):
            kind = _FILE_KINDS.get(stat.S_IFMT(info.st_mode), "special file")
            raise ImageRejected(f"not a regular file: {path} is a {kind}")
        if info.st_size > cfg.max_file_bytes:
            raise ImageRejected(
                f"image too large: {path} has {info.st_size} bytes > max_file_bytes={cfg.max_file_bytes}"
            )
        with os.fdopen(os.dup(fd), "rb") as fp:
            data = fp.read(cfg.max_file_bytes + 1)
    except OSError as exc:
        raise _file_errors(path, exc) from exc
    finally:
        os.close(fd)
    if len(data) > cfg.max_file_bytes:  # grew after the fstat
        raise ImageRejected(f"image too large: {path} has over max_file_bytes={cfg.max_file_bytes} bytes")
    return data


def _open_decoded(source: str | Path | bytes, cfg: ImportConfig) -> tuple[Image.Image, str]:
    """Open, guard and fully decode; returns (image in its file mode, format)."""
    if not isinstance(source, (bytes, bytearray, memoryview)):
        source = read_image_file(source, cfg)
    return _decode_stream(io.BytesIO(source), cfg)


def _decode_stream(fp, cfg: ImportConfig) -> tuple[Image.Image, str]:
    Image.init()  # register every plugin, so `formats=` can name TIFF/WEBP/MPO (cheap after once)
    if ImageFile.LOAD_TRUNCATED_IMAGES:  # someone flipped the global: refuse to half-read
        raise RuntimeError("PIL.ImageFile.LOAD_TRUNCATED_IMAGES is set; refusing to decode")
    with warnings.catch_warnings(record=True):
        # Pillow warns (DecompressionBombWarning) above MAX_IMAGE_PIXELS and raises
        # above twice that; our own header check below is the authority.
        warnings.simplefilter("always", Image.DecompressionBombWarning)
        try:
            img = Image.open(fp, formats=[f for f in ALLOWED_FORMATS if f in Image.OPEN])
        except Image.DecompressionBombError as exc:
            raise ImageRejected(f"image too large: {exc}") from exc
        except Image.UnidentifiedImageError as exc:
            raise ImageRejected(
                "cannot decode image: not a recognised image format "
                f"(accepted: {', '.join(ALLOWED_FORMATS)})"
            ) from exc
        except (
            Exception
        ) as exc:  # corrupt headers raise many types (SyntaxError, struct.error, ...)
            raise ImageRejected(f"cannot decode image: {type(exc).__name__}: {exc}") from exc
        _check_size(img.width, img.height, cfg)  # header only: nothing decoded yet
        fmt = img.format or ""
        try:
            img.load()
        except Image.DecompressionBombError as exc:
            raise ImageRejected(f"image too large: {exc}") from exc
        except Exception as exc:  # truncated data, bad CRC, decoder errors
            raise ImageRejected(f"cannot decode image: {type(exc).__name__}: {exc}") from exc
    return img, fmt


def _normalise(img: Image.Image, cfg: ImportConfig) -> Image.Image:
    mode = img.mode
    if mode in ("L", "RGB"):
        return img
    if mode in _TO_L:
        return img.convert("L")
    if mode in _TO_RGB:
        return img.convert("RGB")
    if mode in HIGH_DEPTH_MODES or mode.startswith("I;16"):
        try:
            values = np.asarray(img)
        except Exception:  # exotic 16-bit layouts numpy cannot view directly
            values = np.asarray(img.convert("I"))
        out = stretch_to_uint8(values, cfg.stretch_low_percentile, cfg.stretch_high_percentile)
        return Image.fromarray(out, mode="L")
    try:
        return img.convert("RGB")
    except Exception as exc:
        raise ImageRejected(f"cannot decode image: unsupported image mode {mode}") from exc


def open_checked(source: str | Path | bytes, cfg: ImportConfig = ImportConfig()) -> Image.Image:
    """Open an image file (or encoded bytes) safely; returns a decoded L or RGB image.

    Raises `ImageRejected` with a person-readable reason: `missing image file`,
    `image too large: ...` (header over max_pixels / max_side, or Pillow's bomb
    guard), `cannot decode image: ...` (unknown format, truncated, corrupt).
    """
    img, _fmt = _open_decoded(source, cfg)
    return _normalise(img, cfg)


def encode_png(img: Image.Image) -> bytes:
    """Deterministic PNG bytes of `img`: pixels only (no metadata, no ICC), fixed zlib level."""
    clean = Image.frombytes(img.mode, img.size, img.tobytes())
    buf = io.BytesIO()
    clean.save(buf, format="PNG", compress_level=6, optimize=False)
    return buf.getvalue()


def prepare_image(path: str | Path, cfg: ImportConfig = ImportConfig()) -> PreparedImage:
    """Check one image file and make the bytes the importer stores.

    8-bit PNG and JPEG files already in mode L or RGB keep their original
    bytes (no generation loss, JPEGs stay small); anything converted (16-bit,
    palette, alpha, TIFF, BMP, ...) is re-encoded as PNG of the normalised
    image. The file is read once, so the stored bytes are the checked bytes.
    `data` is None when `cfg.embed_images` is off (the check still runs).
    """
    raw_bytes = read_image_file(path, cfg)
    raw, fmt = _open_decoded(raw_bytes, cfg)
    img = _normalise(raw, cfg)
    # PNG IHDR byte 24 is the bit depth: a 16-bit RGB PNG decodes as mode RGB
    # (Pillow keeps the high byte) but must not be stored as 16-bit bytes.
    eight_bit = fmt != "PNG" or raw_bytes[24:25] == b"\x08"
    passthrough = img is raw and fmt in PASSTHROUGH_FORMATS and eight_bit
    data = None
    if cfg.embed_images:
        data = raw_bytes if passthrough else encode_png(img)
    return PreparedImage(data, img.width, img.height, img.mode, reencoded=not passthrough)


def decode_to_array(
    data: bytes | str | Path,
    size: int | None = None,
    mode: str = "L",
    cfg: ImportConfig = ImportConfig(),
) -> np.ndarray:
    """Stored image bytes (or a path) -> uint8 array for a model.

    Goes through `open_checked` (same guards and 16-bit stretch), converts to
    `mode` (`L` -> shape (H, W); `RGB` -> (H, W, 3)), and when `size` is given
    resizes to size x size (aspect ratio not kept) with `RESIZE_FILTER`.
    Raises `ImageRejected` for bytes that do not decode.
    """
    if mode not in ("L", "RGB"):
        raise ValueError(f"mode must be 'L' or 'RGB', got {mode!r}")
    img = open_checked(data, cfg)
    if img.mode != mode:
        img = img.convert(mode)
    if size is not None:
        if size < 1:
            raise ValueError(f"size must be >= 1, got {size}")
        if img.size != (size, size):
            img = img.resize((size, size), RESIZE_FILTER)
    return np.asarray(img, dtype=np.uint8)
