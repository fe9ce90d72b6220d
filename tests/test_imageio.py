"""read_image: odd files come out as a viewer shows them; broken ones are refused with the reason."""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
from PIL import Image, ImageOps

from images import BLUE, GREEN, RED, UNREADABLE, encoded, exif_jpeg, halves, solid
from zoo.data import UnreadableImage
from zoo.imageio import is_image_name, read_image

WHITE = (255, 255, 255)


def close(pixel, colour, tol=6) -> bool:
    return bool(np.all(np.abs(np.asarray(pixel, int) - np.asarray(colour, int)) <= tol))


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF"])
def test_each_format_reads_as_rgb_uint8(fmt):
    image = read_image(encoded(Image.new("RGB", (24, 16), (200, 60, 20)), fmt), 8)
    assert image.shape == (8, 8, 3) and image.dtype == np.uint8
    assert close(image[4, 4], (200, 60, 20), tol=8)  # JPEG and the GIF palette are lossy


def test_transparent_png_is_white_where_transparent():
    rgba = halves((0, 0, 255, 0), (255, 0, 0, 255), mode="RGBA", size=(20, 20))
    image = read_image(encoded(rgba, "PNG"), 20)
    # Fully transparent blue must not show, neither as blue nor as the black of convert("RGB").
    assert close(image[10, 2], WHITE, tol=0) and close(image[10, 17], RED, tol=0)


def test_half_transparent_pixels_blend_with_white():
    image = read_image(encoded(Image.new("RGBA", (8, 8), (0, 0, 0, 128)), "PNG"), 8)
    assert close(image[4, 4], (127, 127, 127), tol=2)


@pytest.mark.parametrize("fmt", ["PNG", "GIF"])
def test_palette_transparency_is_white(fmt):
    palette_image = Image.new("P", (10, 10), 1)
    palette_image.putpalette([0, 0, 0, 255, 0, 0])
    palette_image.paste(0, (0, 0, 5, 10))  # left half: colour 0 (black), marked transparent
    image = read_image(encoded(palette_image, fmt, transparency=0), 10)
    assert close(image[5, 1], WHITE, tol=0) and close(image[5, 8], RED, tol=0)


def test_grey_with_alpha_is_white_where_transparent():
    image = read_image(encoded(halves((0, 0), (40, 255), mode="LA", size=(10, 10)), "PNG"), 10)
    assert close(image[5, 1], WHITE, tol=0) and close(image[5, 8], (40, 40, 40), tol=0)


@pytest.mark.parametrize(
    ("orientation", "top", "bottom"),
    [(6, RED, BLUE), (8, BLUE, RED), (1, None, None)],  # 6: turn clockwise, 8: anticlockwise
)
def test_exif_orientation_is_applied(orientation, top, bottom):
    image = read_image(exif_jpeg(orientation), 10)
    if orientation == 1:  # no turn: red stays left, blue right
        assert close(image[5, 0], RED, 12) and close(image[5, 9], BLUE, 12)
    else:
        assert close(image[0, 5], top, 12) and close(image[9, 5], bottom, 12)


def test_cmyk_jpeg_is_converted_to_rgb():
    cmyk = Image.new("CMYK", (16, 16), (0, 255, 255, 0))  # no cyan, full magenta and yellow: red
    assert close(read_image(encoded(cmyk, "JPEG", quality=95), 8)[4, 4], RED, tol=4)


def test_16_bit_greyscale_is_scaled_not_clipped():
    ramp = np.tile(np.array([0, 1000, 32896, 65535], np.uint16).repeat(4), (16, 1))
    png = encoded(Image.fromarray(ramp), "PNG")
    assert Image.open(io.BytesIO(png)).mode.startswith("I;16")
    row = read_image(png, 16)[8]
    # Pillow's own convert("RGB") would clip 1000 and 32896 to 255.
    assert [tuple(row[x]) for x in (1, 5, 9, 14)] == [(0, 0, 0), (4, 4, 4), (128, 128, 128), (255, 255, 255)]


def test_greyscale_and_bilevel_become_grey_rgb():
    assert tuple(read_image(encoded(Image.new("L", (4, 4), 77), "PNG"), 4)[2, 2]) == (77, 77, 77)
    assert tuple(read_image(encoded(Image.new("1", (4, 4), 1), "BMP"), 4)[2, 2]) == WHITE


def test_animated_gif_gives_its_first_frame():
    frames = [Image.new("RGB", (8, 8), RED), Image.new("RGB", (8, 8), BLUE)]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=100)
    assert close(read_image(buffer.getvalue(), 8)[4, 4], RED, tol=4)


def test_wrong_extension_is_read_by_content(tmp_path):
    path = solid(tmp_path / "actually-a-png.jpg", GREEN, fmt="PNG")
    assert close(read_image(path, 8)[4, 4], GREEN, tol=0)


def test_path_bytes_and_file_object_read_the_same(tmp_path):
    path = solid(tmp_path / "a.webp", (10, 120, 240))
    from_path = read_image(path, 8)
    assert np.array_equal(read_image(str(path), 8), from_path)
    assert np.array_equal(read_image(path.read_bytes(), 8), from_path)
    with open(path, "rb") as f:
        assert np.array_equal(read_image(f, 8), from_path)


def test_keeps_aspect_and_centre_crops_to_square():
    thirds = Image.new("RGB", (30, 10), RED)
    thirds.paste(GREEN, (10, 0, 20, 10))
    thirds.paste(BLUE, (20, 0, 30, 10))
    image = read_image(encoded(thirds, "PNG"), 10)
    assert (image == GREEN).all()  # the centre square, not the whole picture squeezed


def test_downscaling_is_antialiased():
    checker = (np.indices((64, 64)).sum(0) % 2 * 255).astype(np.uint8)  # 1-pixel checkerboard
    image = read_image(encoded(Image.fromarray(checker), "PNG"), 8)
    # Sampling without a filter gives pure black or white; an antialiasing filter gives grey.
    assert np.abs(image.astype(int) - 127).max() <= 2


def test_jpeg_draft_decoding_matches_a_full_decode_and_is_faster():
    rng = np.random.default_rng(0)
    coarse = Image.fromarray(rng.integers(0, 256, (26, 26, 3), dtype=np.uint8))
    jpeg = encoded(coarse.resize((416, 416), Image.BICUBIC), "JPEG", quality=90)  # a WikiArt export's size

    def full_decode() -> np.ndarray:
        with Image.open(io.BytesIO(jpeg)) as im:
            return np.asarray(ImageOps.fit(im.convert("RGB"), (64, 64), method=Image.BICUBIC))

    assert np.abs(read_image(jpeg, 64).astype(int) - full_decode()).mean() < 3
    assert _best_time(lambda: read_image(jpeg, 64)) < _best_time(full_decode)


def _best_time(fn, repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


@pytest.mark.parametrize("name", sorted(UNREADABLE))
def test_unreadable_files_raise_with_their_reason(tmp_path, name):
    data, reason = UNREADABLE[name]
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(UnreadableImage, match=reason):
        read_image(path, 8)


def test_pixel_cap_is_checked_before_decoding():
    png = encoded(Image.new("RGB", (100, 100)), "PNG")
    with pytest.raises(UnreadableImage, match=r"100×100 = 10,000 pixels, over the limit of 5,000"):
        read_image(png, 8, max_pixels=5_000)
    assert read_image(png, 8, max_pixels=10_000).shape == (8, 8, 3)


def test_missing_file_is_unreadable(tmp_path):
    with pytest.raises(UnreadableImage, match="cannot be opened"):
        read_image(tmp_path / "gone.jpg", 8)


@pytest.mark.parametrize(
    ("name", "taken"),
    [("a.jpg", True), ("B.JPEG", True), ("c.webp", True), ("d.tiff", True), (".DS_Store", False),
     ("Thumbs.db", False), ("notes.txt", False), ("_classes.csv", False), (".hidden.jpg", False)],
)
def test_image_names(name, taken):
    assert is_image_name(name) is taken
