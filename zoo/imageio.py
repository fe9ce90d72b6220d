"""Read any image file into an H×W×3 uint8 array, or say exactly why it cannot be read.

Used by the folder dataset (through the decode cache) and by the dashboard for uploaded
pictures. What a painting looks like on screen is what a model should see, so the odd files found
in scraped art collections are converted the way a viewer shows them: EXIF orientation applied,
CMYK, 16-bit and greyscale/palette images turned into RGB, and transparency composited onto
white (the page a transparent PNG is shown on), not onto the black that a bare ``convert("RGB")``
leaves behind.

Resize policy (:func:`read_image`, what models train on): keep the aspect ratio, centre-crop the
largest square, then resize it to the target with Pillow's bicubic filter. :func:`read_picture`
keeps the whole picture at its own size, or resized to a given short side (a restyle of a
user's photo). Pillow's resize is antialiased (the filter widens with the
reduction), and bicubic is the interpolation timm's image pipelines train with, with less ringing
around hard painted edges than Lanczos.
"""

from __future__ import annotations

import io
import os
import warnings
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from zoo.data import UnreadableImage

# File names taken for images by a folder scan; anything else (.DS_Store, Thumbs.db, a CSV, a
# README) is not an image and is passed over without a word.
IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"}
)
# The largest image decoded, in pixels, checked from the header before any pixel is decoded: a
# few hundred bytes of PNG can declare gigapixels (a decompression bomb). Pillow's own limit, so
# both guards agree; about 89 megapixels, beyond any painting scan in WikiArt.
MAX_PIXELS = Image.MAX_IMAGE_PIXELS or 89_478_485
# Bump when the pixels this module produces change, so that decode caches keyed on it rebuild.
DECODE_VERSION = 1
# JPEGs are decoded at a reduced scale (1/2, 1/4, 1/8) as long as the result keeps at least this
# many times the target size, the margin Pillow's own thumbnail() keeps for a clean resize.
_DRAFT_GAP = 2

_RESAMPLE = Image.Resampling.BICUBIC
_SIXTEEN_BIT = {"I", "I;16", "I;16L", "I;16B", "I;16N"}

Source = str | os.PathLike | bytes | BinaryIO


def is_image_name(name: str | os.PathLike) -> bool:
    """Whether a file is taken for an image by its name: a known suffix, not a hidden file."""
    base = os.path.basename(os.fspath(name))
    return not base.startswith(".") and os.path.splitext(base)[1].lower() in IMAGE_SUFFIXES


def read_image(source: Source, size: int, *, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode ``source`` (a path, the file's bytes, or a binary file object) to size×size×3 uint8.

    The format is read from the content, never the file name. Raises
    :class:`zoo.data.UnreadableImage` with the reason when the file cannot be opened, is empty,
    is not an image, is truncated or corrupt, or is larger than ``max_pixels``.
    """
    if size < 1:
        raise ValueError(f"image size must be a positive number of pixels, not {size}")
    square = _read(source, max_pixels, draft=size * _DRAFT_GAP)
    return np.asarray(ImageOps.fit(square, (size, size), method=_RESAMPLE), dtype=np.uint8)


def read_picture(source: Source, short_side: int | None = None, *, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode ``source`` as :func:`read_image` does, but keep its aspect ratio: H×W×3 uint8 at
    the picture's own size, or resized (bicubic, antialiased) so that its shorter side is
    ``short_side`` pixels."""
    if short_side is not None and short_side < 1:
        raise ValueError(f"the short side must be a positive number of pixels, not {short_side}")
    picture = _read(source, max_pixels, draft=None)  # decoded whole: its exact size decides the output's
    if short_side is not None and min(picture.size) != short_side:
        scale = short_side / min(picture.size)
        picture = picture.resize([max(1, round(side * scale)) for side in picture.size], _RESAMPLE)
    return np.array(picture, dtype=np.uint8)  # writable: it becomes a tensor


def _read(source: Source, max_pixels: int, draft: int | None) -> Image.Image:
    """The upright RGB image of ``source``; a JPEG is decoded at a reduced scale that keeps both
    sides at least ``draft`` pixels."""
    if isinstance(source, (str, os.PathLike)):
        try:
            file = open(source, "rb")
        except OSError as exc:
            raise UnreadableImage(f"cannot be opened ({exc.strerror or exc})") from exc
        with file:
            return _decode(file, max_pixels, draft)
    data = source if isinstance(source, (bytes, bytearray)) else source.read()  # e.g. an upload
    return _decode(io.BytesIO(data), max_pixels, draft)


def _decode(file: BinaryIO, max_pixels: int, draft: int | None) -> Image.Image:
    if not file.read(1):
        raise UnreadableImage("empty file (0 bytes)")
    file.seek(0)
    try:
        # Pillow warns between 1x and 2x its pixel limit and raises beyond; both mean "too big".
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(file) as im:
                if im.width * im.height > max_pixels:
                    raise UnreadableImage(_too_large(im.width, im.height, max_pixels))
                if draft:
                    im.draft(None, (draft, draft))  # JPEG only; else a no-op
                im.load()
                return _to_rgb(_upright(im))
    except UnreadableImage:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise UnreadableImage(f"too large to decode safely ({exc})") from exc
    except UnidentifiedImageError as exc:
        raise UnreadableImage("not an image (Pillow does not recognise the content)") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        # What Pillow raises for truncated or damaged data ("image file is truncated", ...).
        raise UnreadableImage(f"truncated or corrupt image data ({exc})") from exc


def _too_large(width: int, height: int, limit: int) -> str:
    return (
        f"too large: {width}×{height} = {width * height:,} pixels, over the limit of {limit:,} "
        f"that guards against decompression bombs"
    )


def _upright(im: Image.Image) -> Image.Image:
    try:
        return ImageOps.exif_transpose(im)
    except Exception:  # damaged EXIF metadata must not cost the pixels; show them as stored
        return im


def _to_rgb(im: Image.Image) -> Image.Image:
    if im.mode in _SIXTEEN_BIT:
        # Pillow's own conversion clips 16-bit values at 255 instead of scaling them down.
        wide = np.asarray(im).astype(np.float64)
        im = Image.fromarray(np.round(np.clip(wide, 0, 65535) / 257).astype(np.uint8))
    has_alpha = "A" in im.getbands() or "a" in im.getbands() or "transparency" in im.info
    try:
        if not has_alpha:
            return im.convert("RGB")  # CMYK, YCbCr, greyscale, bilevel, palette
        rgba = im.convert("RGBA")  # palette or colour-key transparency becomes an alpha band
    except ValueError as exc:
        raise UnreadableImage(f"colour mode {im.mode} cannot be converted to RGB ({exc})") from exc
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, rgba).convert("RGB")
