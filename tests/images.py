"""Real image files for the tests, written with Pillow: ordinary ones, odd ones and broken ones."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)
# Well-separated colours, one per class, so a test can tell an item's class from its pixels.
PALETTE = [(230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180), (70, 240, 240)]


def solid(path: Path, colour: tuple, *, size: tuple[int, int] = (24, 16), fmt: str | None = None) -> Path:
    """A file of one colour; the format follows the suffix unless ``fmt`` says otherwise."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path, fmt, **({"quality": 95} if _is_jpeg(path, fmt) else {}))
    return path


def encoded(image: Image.Image, fmt: str, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def halves(left: tuple, right: tuple, *, mode: str = "RGB", size: tuple[int, int] = (20, 10)) -> Image.Image:
    """Left half one colour, right half another."""
    image = Image.new(mode, size, left)
    image.paste(right, (size[0] // 2, 0, size[0], size[1]))
    return image


def exif_jpeg(orientation: int) -> bytes:
    """A JPEG stored red-left/blue-right, whose EXIF says how to turn it for display."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encoded(halves(RED, BLUE), "JPEG", quality=95, exif=exif.tobytes())


def png_header(width: int, height: int) -> bytes:
    """A tiny PNG that declares ``width``×``height`` pixels: the shape of a decompression bomb."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    pixels = chunk(b"IDAT", zlib.compress(b"\0" * 64))  # far fewer than declared: never decoded
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + pixels + chunk(b"IEND", b"")


def truncated_jpeg() -> bytes:
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    data = encoded(Image.fromarray(noise), "JPEG", quality=90)
    return data[: len(data) // 2]


def truncated_png() -> bytes:
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    data = encoded(Image.fromarray(noise), "PNG")
    return data[: len(data) // 2]


# Broken files, each with a word its reason must contain.
UNREADABLE = {
    "empty.jpg": (b"", "empty"),
    "notes-renamed.png": (b"these are my notes, not a picture\n", "not an image"),
    "cut.jpg": (truncated_jpeg(), "truncated"),
    "cut.png": (truncated_png(), "truncated"),
    "bomb.png": (png_header(30_000, 30_000), "too large"),
}


def _is_jpeg(path: Path, fmt: str | None) -> bool:
    return (fmt or path.suffix.lstrip(".")).upper() in ("JPG", "JPEG")


def odd_images(colour: tuple) -> dict[str, bytes]:
    """One colour in every odd shape a real export holds."""
    rgb = Image.new("RGB", (40, 30), colour)
    rgba = Image.new("RGBA", (30, 30), (*colour, 255))
    rgba.paste((0, 0, 0, 0), (0, 0, 5, 5))
    frames = [Image.new("RGB", (20, 20), colour), Image.new("RGB", (20, 20), BLUE)]
    gif = io.BytesIO()
    frames[0].save(gif, "GIF", save_all=True, append_images=frames[1:], duration=100)
    return {
        "plain photo.jpg": encoded(rgb, "JPEG", quality=95),
        "transparent corner.png": encoded(rgba, "PNG"),
        "cmyk print.jpg": encoded(rgb.convert("CMYK"), "JPEG", quality=95),
        "grey 16-bit.png": encoded(Image.fromarray(np.full((20, 20), 40000, np.uint16)), "PNG"),
        "animated.gif": gif.getvalue(),
        "scan.tiff": encoded(rgb, "TIFF"),
        "old.bmp": encoded(rgb, "BMP"),
        "web.webp": encoded(rgb, "WEBP"),
        "one pixel.png": encoded(Image.new("RGB", (1, 1), colour), "PNG"),
        "panorama.png": encoded(Image.new("RGB", (400, 8), colour), "PNG"),
        "turned.jpg": exif_jpeg(6),
        "really a png.jpg": encoded(rgb, "PNG"),
    }
