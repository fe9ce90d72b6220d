"""synthart: procedurally rendered paintings, the default dataset.

Every item is a random scene (a background with a horizon and a lighting ramp, a few ellipses,
rectangles, triangles and blobs, a random palette) painted with one rendering technique, its
class. The classes are named after WikiArt movements:

    Pointillism             dots of jittered colour
    Impressionism           short straight brush strokes, one main direction per painting
    Cubism                  flat facets (Voronoi cells) with their own shading planes
    Pop_Art                 flat colour, hand-inked dark outlines
    Northern_Renaissance    engraved hatching, thicker and crossed where the scene is dark
    Color_Field_Painting    soaked washes: soft, bleeding edges, granulated pigment
    Art_Nouveau_Modern      mosaic tesserae in staggered rows, dark grout
    Abstract_Expressionism  speckled, spattered pigment
    Post_Impressionism      (num_styles >= 9) curved strokes that follow a swirling flow field
    Action_painting         (num_styles = 10) drips and flung lines of the scene's own colours

Style is texture, never colour or position: the scene (layout, palette) is drawn from its own
random stream, independent of the style, and every technique keeps the scene's colours where
they are, up to its texture; so ``render(index, style)`` paints item ``index``'s scene in any
style, the ground truth of a restyle. Texture sizes are fractions of the image side (with a
floor of a pixel or two), so a 416 px image is painted at 416 px, not upscaled.

Every random number comes from a stream keyed by (seed, split, item, purpose): the same seed
gives the same pixels on every machine and in every process, and splits never share a scene.
Class counts follow WikiArt's long tail: the classes rank as these movements rank by image count
in WikiArt, and shares fall geometrically from the largest to the smallest, ``imbalance`` to 1.
"""

from __future__ import annotations

import colorsys
import functools
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFilter
from pydantic import Field

from zoo.data import ImageDataset, cached_images

UNSEEN_SEED = 100_003  # the seed offset of SynthArt.unseen(): far from any seed a sweep runs
VERSION = 1  # bump when the pixels for a given seed change; part of the cache key
SPLITS = ("train", "valid", "test")
HELD_OUT = 0.15  # valid and test each hold this share of the training size
_CONTENT, _TEXTURE, _LABELS = range(3)  # purposes of the random streams


# -- scene content ------------------------------------------------------------------------------


@dataclass
class Scene:
    """What a painting shows, independent of how it is painted."""

    regions: np.ndarray  # H×W int: 0 sky, 1 ground, 2.. shapes in drawing order
    colours: np.ndarray  # R×3 float: the flat colour of each region
    light: np.ndarray  # H×W float: a gentle lighting ramp across the picture
    palette: np.ndarray  # P×3 float: the colours the scene was drawn from

    @property
    def size(self) -> int:
        return self.regions.shape[0]

    @property
    def unit(self) -> float:
        """One pixel of a 64 px painting, in pixels of this one: texture sizes scale with it."""
        return self.size / 64

    @functools.cached_property
    def base(self) -> np.ndarray:
        """The scene without any texture, H×W×3 float."""
        return np.clip(self.colours[self.regions] * self.light[..., None], 0, 1).astype(np.float32)


def scene(rng: np.random.Generator, size: int) -> Scene:
    """A random scene drawn in relative coordinates, rasterised at ``size``."""
    hsv = np.column_stack([rng.random(6), rng.uniform(0.15, 0.9, 6), rng.uniform(0.2, 0.95, 6)])
    palette = np.array([colorsys.hsv_to_rgb(*c) for c in hsv])
    regions = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(regions)
    if rng.random() < 0.7:  # a horizon, tilted
        left, right = rng.uniform(0.35, 0.85, 2) * size
        draw.polygon([(0, left), (size, right), (size, size), (0, size)], fill=1)
    shapes = int(rng.integers(2, 7))
    for k in range(shapes):
        _shape(draw, rng, size, fill=2 + k)
    colours = palette[rng.integers(0, len(palette), 2 + shapes)]
    angle = rng.uniform(0, 2 * np.pi)
    yy, xx = (np.mgrid[0:size, 0:size] + 0.5) / size - 0.5
    light = 1 + rng.uniform(0, 0.35) * (xx * np.cos(angle) + yy * np.sin(angle))
    return Scene(np.asarray(regions, dtype=np.int64), colours, light.astype(np.float32), palette)


def _shape(draw: ImageDraw.ImageDraw, rng: np.random.Generator, size: int, fill: int) -> None:
    cx, cy = rng.uniform(0.1, 0.9, 2) * size
    r = rng.uniform(0.07, 0.28) * size
    kind = rng.integers(4)
    if kind == 0:
        ry = r * rng.uniform(0.5, 1.5)
        draw.ellipse([cx - r, cy - ry, cx + r, cy + ry], fill=fill)
        return
    if kind == 1:  # a rotated rectangle
        a = rng.uniform(0, np.pi)
        half = np.array([[1, 1], [1, -1], [-1, -1], [-1, 1]]) * [r, r * rng.uniform(0.3, 1.2)]
        rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        corners = half @ rot.T + [cx, cy]
    else:  # a triangle (3 corners) or a blob (7 to 11)
        n = 3 if kind == 2 else int(rng.integers(7, 12))
        a = np.sort(rng.uniform(0, 2 * np.pi, n)) if n == 3 else np.linspace(0, 2 * np.pi, n, endpoint=False)
        radius = r * (rng.uniform(0.7, 1.2, n) if n == 3 else rng.uniform(0.6, 1.15, n))
        corners = np.column_stack([cx + radius * np.cos(a), cy + radius * np.sin(a)])
    draw.polygon([tuple(p) for p in corners.tolist()], fill=fill)


# -- texture helpers ----------------------------------------------------------------------------


def _grid_points(rng: np.random.Generator, size: int, cell: float) -> np.ndarray:
    """N×2 (x, y) points, one per cell of a jittered grid that overhangs the picture, shuffled."""
    n = int(np.ceil(size / cell)) + 2
    ij = np.stack(np.meshgrid(np.arange(n), np.arange(n)), -1).reshape(-1, 2)
    points = (ij - 1 + rng.random(ij.shape)) * cell
    return points[rng.permutation(len(points))]


def _at(image: np.ndarray, points: np.ndarray) -> np.ndarray:
    """The pixels of ``image`` under (x, y) ``points`` (clamped to the picture)."""
    size = image.shape[0]
    ix = np.clip(points[:, 0].astype(int), 0, size - 1)
    iy = np.clip(points[:, 1].astype(int), 0, size - 1)
    return image[iy, ix]


def _smooth(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Smooth noise, H×W float of unit scale, varying over about ``size / cells`` pixels."""
    grid = Image.fromarray(rng.standard_normal((cells + 1, cells + 1)).astype(np.float32), mode="F")
    return np.asarray(grid.resize((size, size), Image.BICUBIC))


def _warp(image: np.ndarray, rng: np.random.Generator, amount: float, cells: int) -> np.ndarray:
    """``image`` displaced by a smooth random field of about ``amount`` pixels."""
    size = image.shape[0]
    yy, xx = np.mgrid[0:size, 0:size]
    dy = np.rint(yy + amount * _smooth(rng, size, cells)).astype(int).clip(0, size - 1)
    dx = np.rint(xx + amount * _smooth(rng, size, cells)).astype(int).clip(0, size - 1)
    return image[dy, dx]


def _to_bytes(colours: np.ndarray) -> list[tuple[int, ...]]:
    return [tuple(c) for c in np.clip(colours * 255 + 0.5, 0, 255).astype(np.uint8).tolist()]


def _canvas(image: np.ndarray) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    canvas = Image.fromarray(np.clip(image * 255 + 0.5, 0, 255).astype(np.uint8))
    return canvas, ImageDraw.Draw(canvas)


def _pixels(canvas: Image.Image) -> np.ndarray:
    return np.asarray(canvas, dtype=np.float32) / 255


def _cell_means(image: np.ndarray, cells: np.ndarray, count: int) -> np.ndarray:
    """count×3: the mean colour of ``image`` over each label of ``cells`` (H×W ints < count)."""
    flat = cells.ravel()
    area = np.maximum(np.bincount(flat, minlength=count), 1)
    return np.stack([np.bincount(flat, image[..., c].ravel(), count) for c in range(3)], 1) / area[:, None]


# -- techniques: (scene, texture stream) -> H×W×3 float -------------------------------------------
# Each keeps the scene's local colour on average, so that a restyle's ground truth, blurred, looks
# like the input blurred: what tells the styles apart is the texture.


def _dots(s: Scene, rng: np.random.Generator) -> np.ndarray:
    # small round dots of broken colour, each channel jittered on its own, as Seurat set them
    cell = max(2.0, 2.5 * s.unit)
    centres = _grid_points(rng, s.size, cell)
    colours = _at(s.base, centres) + rng.normal(0, 0.1, (len(centres), 3))
    radii = cell * rng.uniform(0.45, 0.7, len(centres))
    canvas, draw = _canvas(s.base)
    boxes = np.column_stack([centres - radii[:, None], centres + radii[:, None]])
    for box, colour in zip(boxes.tolist(), _to_bytes(colours)):
        draw.ellipse(box, fill=colour)
    return _pixels(canvas)


def _strokes(s: Scene, rng: np.random.Generator) -> np.ndarray:
    centres = _grid_points(rng, s.size, max(2.0, 3 * s.unit))
    angle = rng.uniform(0, np.pi) + rng.normal(0, 0.3, len(centres))
    half = 3.5 * s.unit * rng.uniform(0.7, 1.3, len(centres))
    offset = np.column_stack([np.cos(angle), np.sin(angle)]) * half[:, None]
    shade = rng.uniform(0.85, 1.15, (len(centres), 1)) + rng.normal(0, 0.03, (len(centres), 3))
    canvas, draw = _canvas(s.base)
    width = max(1, round(2 * s.unit))
    for line, colour in zip(np.hstack([centres - offset, centres + offset]).tolist(), _to_bytes(_at(s.base, centres) * shade)):
        draw.line(line, fill=colour, width=width)
    return _pixels(canvas)


def _swirls(s: Scene, rng: np.random.Generator) -> np.ndarray:
    points = _grid_points(rng, s.size, max(2.0, 4 * s.unit))
    flow = rng.uniform(0, 2 * np.pi) + 2.5 * _smooth(rng, s.size, 3)
    step = 2.5 * s.unit
    path = [points]
    for _ in range(4):  # every stroke takes a step along the flow at its tip
        a = _at(flow, path[-1])
        path.append(path[-1] + step * np.column_stack([np.cos(a), np.sin(a)]))
    paths = np.stack(path, 1).reshape(len(points), -1)
    shade = rng.uniform(0.85, 1.15, (len(points), 1)) + rng.normal(0, 0.03, (len(points), 3))
    canvas, draw = _canvas(s.base)
    width = max(1, round(1.5 * s.unit))
    for line, colour in zip(paths.tolist(), _to_bytes(_at(s.base, points) * shade)):
        draw.line(line, fill=colour, width=width, joint="curve")
    return _pixels(canvas)


def _facets(s: Scene, rng: np.random.Generator) -> np.ndarray:
    cell = max(4.0, 9 * s.unit)
    n = int(np.ceil(s.size / cell)) + 2  # seeds on a jittered grid that overhangs by one cell
    seeds = (np.stack(np.meshgrid(np.arange(n), np.arange(n)), -1) - 1 + rng.random((n, n, 2))) * cell
    yy, xx = np.mgrid[0:s.size, 0:s.size] + 0.5
    gy, gx = (yy // cell).astype(int) + 1, (xx // cell).astype(int) + 1
    best = np.full(yy.shape, np.inf)
    label = np.zeros(yy.shape, dtype=np.int64)
    for dy in (-1, 0, 1):  # the nearest seed lies in the pixel's cell or a neighbour
        for dx in (-1, 0, 1):
            cy, cx = np.clip(gy + dy, 0, n - 1), np.clip(gx + dx, 0, n - 1)
            sx, sy = seeds[cy, cx, 0], seeds[cy, cx, 1]
            d = (xx - sx) ** 2 + (yy - sy) ** 2
            closer = d < best
            best, label = np.where(closer, d, best), np.where(closer, cy * n + cx, label)
    means = _cell_means(s.base, label, n * n)
    # each facet is a plane tilted towards its own light: brighter on one side, darker on the other
    tilt = rng.uniform(0.15, 0.4, n * n)[label] / cell
    light = rng.uniform(0, 2 * np.pi, n * n)[label]
    flat = seeds.reshape(-1, 2)[label]
    shade = 1 + tilt * ((xx - flat[..., 0]) * np.cos(light) + (yy - flat[..., 1]) * np.sin(light))
    # a darker seam where facets meet, paid for by slightly lighter facets
    seam = np.zeros(label.shape, dtype=bool)
    seam[1:] |= label[1:] != label[:-1]
    seam[:, 1:] |= label[:, 1:] != label[:, :-1]
    share = seam.mean()
    shade = shade * np.where(seam, 0.8, 1 + 0.2 * share / (1 - share))
    return means[label] * shade[..., None]


def outline_mask(down: np.ndarray, right: np.ndarray, unit: float) -> np.ndarray:
    """H×W: Pop_Art's inked lines where a pixel differs from the one above (``down``, (H-1)×W) or
    to its left (``right``, H×(W-1)), thickened to synthart's line width at this ``unit``."""
    edge = np.zeros((down.shape[0] + 1, right.shape[1] + 1), dtype=bool)
    edge[1:] |= down
    edge[:, 1:] |= right
    return np.asarray(Image.fromarray(edge).filter(ImageFilter.MaxFilter(2 * round(0.6 * unit) + 1)))


def _outlines(s: Scene, rng: np.random.Generator) -> np.ndarray:
    regions = _warp(s.regions, rng, 0.8 * s.unit, 6)  # a hand-inked line wobbles
    edge = outline_mask(regions[1:] != regions[:-1], regions[:, 1:] != regions[:, :-1], s.unit)
    flat = s.colours[regions]  # pop art is flat: no lighting
    return np.where(edge[..., None], 0.08, flat)


def _hatching(s: Scene, rng: np.random.Generator) -> np.ndarray:
    period = max(3.0, 4 * s.unit)
    yy, xx = np.mgrid[0:s.size, 0:s.size] + 0.5
    dark = 1 - s.base.mean(-1)
    out = s.base.copy()
    for k, angle in enumerate(rng.uniform(0.6, 0.9) * np.pi / 2 + np.array([0, np.pi / 2])):
        # an engraver's line wanders a little; the burin cuts wider where the scene is darker
        along = xx * np.cos(angle) + yy * np.sin(angle) + rng.uniform(0, period)
        phase = (along / period + 0.25 * _smooth(rng, s.size, 5)) % 1
        cover = np.clip(0.15 + 0.45 * dark - (0.55 if k else 0), 0, 0.6)  # crossing lines only in shadows
        ink = phase < cover
        # ink darkens, the paper between lines lightens, so the local tone survives on average
        gain = np.where(ink, 0.4, 1 + 0.6 * cover / np.maximum(1 - cover, 1e-3))
        out = out * gain[..., None]
    return out


def _wash(s: Scene, rng: np.random.Generator) -> np.ndarray:
    bled = _warp(s.base, rng, 2.5 * s.unit, 5)  # pigment bleeds across the edges
    canvas, _ = _canvas(bled)
    soft = _pixels(canvas.filter(ImageFilter.GaussianBlur(2.2 * s.unit)))
    grain = 1 + 0.07 * _smooth(rng, s.size, 12) + 0.04 * _smooth(rng, s.size, max(4, s.size // 3))
    return soft * grain[..., None]


def _mosaic(s: Scene, rng: np.random.Generator) -> np.ndarray:
    tile = max(3, round(4.5 * s.unit))
    grout = max(1, round(s.unit))
    yy, xx = np.mgrid[0:s.size, 0:s.size]
    yy = yy + int(rng.integers(tile))
    rows = yy // tile
    xx = xx + rng.integers(0, tile, rows.max() + 1)[rows]  # staggered rows, as tesserae are laid
    label = rows * (s.size // tile + 3) + xx // tile
    count = int(label.max()) + 1
    colours = _cell_means(s.base, label, count)
    colours = colours * (rng.uniform(0.88, 1.12, (count, 1)) + rng.normal(0, 0.03, (count, 3)))
    gap = (yy % tile < grout) | (xx % tile < grout)
    # dark grout, and tiles lighter by as much, so the local tone survives on average
    share = 1 - (1 - grout / tile) ** 2
    return colours[label] * np.where(gap, 0.7, 1 + 0.3 * share / (1 - share))[..., None]


def _speckle(s: Scene, rng: np.random.Generator) -> np.ndarray:
    speck = max(1, round(s.unit))
    n = -(-s.size // speck)
    noise = rng.normal(0, 0.3, (n, n, 3)) * (rng.random((n, n, 1)) < 0.3)
    noise = np.repeat(np.repeat(noise, speck, 0), speck, 1)[: s.size, : s.size]
    return s.base + noise


def _drips(s: Scene, rng: np.random.Generator) -> np.ndarray:
    canvas, draw = _canvas(s.base)
    u = s.unit
    for _ in range(int(rng.integers(5, 9))):  # flung lines: a random walk in one of the scene's colours
        turns = np.cumsum(rng.normal(0, 0.6, 24)) + rng.uniform(0, 2 * np.pi)
        walk = rng.uniform(0, s.size, 2) + np.cumsum(4 * u * np.column_stack([np.cos(turns), np.sin(turns)]), 0)
        draw.line(walk.ravel().tolist(), fill=_to_bytes(s.palette[rng.integers(len(s.palette))][None])[0],
                  width=max(1, round(u * rng.uniform(0.7, 1.6))), joint="curve")
    starts = rng.uniform(0, s.size, (60, 2))
    ends = starts + np.column_stack([np.zeros(60), rng.uniform(0.05, 0.35, 60) * s.size])
    widths = np.maximum(1, np.rint(u * rng.uniform(0.8, 2.0, 60))).astype(int)
    for start, end, w, colour in zip(starts.tolist(), ends.tolist(), widths.tolist(), _to_bytes(_at(s.base, starts))):
        draw.line(start + end, fill=colour, width=w)  # paint runs down from where it landed
        draw.ellipse([end[0] - w, end[1] - w, end[0] + w, end[1] + w], fill=colour)
    return _pixels(canvas)


Technique = Callable[[Scene, np.random.Generator], np.ndarray]
# num_styles=k paints the first k; the first eight are the columns of the original sketch. The
# position of a technique also keys its texture stream, so it never changes.
TECHNIQUES: dict[str, Technique] = {
    "Pointillism": _dots,
    "Impressionism": _strokes,
    "Cubism": _facets,
    "Pop_Art": _outlines,
    "Northern_Renaissance": _hatching,
    "Color_Field_Painting": _wash,
    "Art_Nouveau_Modern": _mosaic,
    "Abstract_Expressionism": _speckle,
    "Post_Impressionism": _swirls,
    "Action_painting": _drips,
}
# Largest class first: these movements ranked by their number of images in WikiArt.
WIKIART_RANK = ("Impressionism", "Post_Impressionism", "Art_Nouveau_Modern", "Abstract_Expressionism",
                "Northern_Renaissance", "Cubism", "Color_Field_Painting", "Pop_Art", "Pointillism",
                "Action_painting")


# -- splits and labels --------------------------------------------------------------------------


def split_size(split: str, size: int, num_styles: int) -> int:
    """Images in ``split`` when the training split has ``size``: every style gets at least one."""
    return size if split == "train" else max(num_styles, round(HELD_OUT * size))


def split_counts(split: str, classes: list[str], size: int, imbalance: float, held_out_per_class: int = 0) -> np.ndarray:
    """Images per class of ``split``: the training split's long tail, which valid and test follow
    at :data:`HELD_OUT` of its size, or, with ``held_out_per_class``, that many of every class in
    valid and test (balanced held-out splits, as in ImageNet-LT and CIFAR-LT)."""
    if split != "train" and held_out_per_class:
        return np.full(len(classes), held_out_per_class, dtype=np.int64)
    return class_counts(classes, split_size(split, size, len(classes)), imbalance)


def class_counts(classes: list[str], count: int, imbalance: float) -> np.ndarray:
    """Images per class (in ``classes`` order) of a split of ``count``: WikiArt's order, a
    geometric fall from the largest to the smallest of ``imbalance`` to 1, and at least one each."""
    ranked = [c for c in WIKIART_RANK if c in classes]
    share = imbalance ** -np.linspace(0, 1, len(ranked))
    exact = count * share / share.sum()
    counts = np.maximum(1, np.rint(exact)).astype(np.int64)
    # settle the rounding one image at a time, where it moves a class least from its exact share
    while (short := count - counts.sum()) != 0:
        if short > 0:
            counts[np.argmax(exact - counts)] += 1
        else:
            counts[np.argmax(np.where(counts > 1, counts - exact, -np.inf))] -= 1
    by_rank = dict(zip(ranked, counts))
    return np.array([by_rank[c] for c in classes], dtype=np.int64)


def split_labels(*, split: str, num_styles: int = 8, seed: int = 0, size: int = 4000,
                 imbalance: float = 20.0, held_out_per_class: int = 0) -> np.ndarray:
    """The labels of a split, without rendering anything (same options as :func:`synthart`)."""
    counts = split_counts(split, style_names(num_styles), size, imbalance, held_out_per_class)
    labels = np.repeat(np.arange(num_styles), counts)
    return _rng(seed, split, _LABELS).permutation(labels)


def style_names(num_styles: int) -> list[str]:
    """The class names of a synthart with ``num_styles`` styles, sorted."""
    if not 1 <= num_styles <= len(TECHNIQUES):
        raise ValueError(f"num_styles must be between 1 and {len(TECHNIQUES)} (the techniques synthart "
                         f"knows: {', '.join(TECHNIQUES)}), not {num_styles}")
    return sorted(list(TECHNIQUES)[:num_styles])


def _rng(seed: int, split: str, purpose: int, index: int = 0, technique: int = 0, texture: int = 0) -> np.random.Generator:
    # a fixed-length key: no two purposes, items or splits share a stream
    return np.random.default_rng([seed, SPLITS.index(split), purpose, index, technique, texture])


# -- painting -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Recipe:
    """Everything the pixels of one split depend on."""

    seed: int
    split: str
    image_size: int

    def scene(self, index: int) -> Scene:
        """Item ``index``'s scene (layout and colours), before any technique paints it."""
        return scene(_rng(self.seed, self.split, _CONTENT, index), self.image_size)

    def paint(self, index: int, style: str, texture: int = 0) -> np.ndarray:
        """Item ``index``'s scene in ``style`` (a class name): H×W×3 uint8."""
        content = self.scene(index)
        technique = list(TECHNIQUES).index(style)
        stream = _rng(self.seed, self.split, _TEXTURE, index, 1 + technique, texture)
        return np.clip(TECHNIQUES[style](content, stream) * 255 + 0.5, 0, 255).astype(np.uint8)


def _paint_item(recipe: Recipe, styles: tuple[str, ...], index: int) -> np.ndarray:
    return recipe.paint(index, styles[index])


@dataclass
class SynthArt(ImageDataset):
    """An :class:`ImageDataset` that can also paint any of its scenes in any of its styles."""

    recipe: Recipe | None = None
    built: bool = False  # True when this call painted the images, False when the cache had them
    options: dict = field(default_factory=dict)  # synthart()'s arguments, for unseen()

    def unseen(self) -> SynthArt:
        """The training split of the same recipe (styles, tail, image size) on seed + :data:`UNSEEN_SEED`:
        paintings of the same styles that share no scene, mark or tile with this one
        (zoo/evidence.py's unseen judges train on them)."""
        options = {**self.options, "split": "train", "seed": self.options["seed"] + UNSEEN_SEED}
        data = synthart(**options)
        data.name = self.name
        return data

    def render(self, index: int, style: int | str, *, texture: int = 0) -> torch.Tensor:
        """Item ``index``'s scene painted in ``style`` (a class index or name), C×H×W in [0, 1].

        With ``texture=0`` and the item's own label this is exactly ``self[index][0]``; another
        ``texture`` paints an independent sample of the same scene and style.
        """
        if not 0 <= index < len(self):
            raise IndexError(f"{self.name} [{self.split}] has {len(self)} items; index {index} is out of range")
        if isinstance(style, str):
            if style not in self.classes:
                raise ValueError(f"unknown style {style!r}; this synthart paints {', '.join(self.classes)}")
            name = style
        elif 0 <= int(style) < len(self.classes):
            name = self.classes[int(style)]
        else:
            raise ValueError(f"style {style} is out of range: this synthart has {len(self.classes)} classes")
        image = self.recipe.paint(int(self.rows[index]), name, texture)
        return torch.from_numpy(image).permute(2, 0, 1).float().div_(255)


def synthart(
    *,
    split: str = "train",
    image_size: int = 64,
    num_styles: Annotated[int, Field(ge=2, le=len(TECHNIQUES), description="styles (classes), each a rendering technique")] = 8,
    seed: Annotated[int, Field(ge=0, description="seed of the scenes, textures and labels; fixes every pixel")] = 0,
    size: Annotated[int, Field(gt=0, description=f"training images; valid and test hold {HELD_OUT:.0%} as many each")] = 4000,
    imbalance: Annotated[float, Field(ge=1, description="largest to smallest class count, WikiArt-like (1: balanced)")] = 20.0,
    held_out_per_class: Annotated[int, Field(ge=0, description="images of every style in valid and test (balanced "
                                             f"held-out splits); 0: they follow the training tail at {HELD_OUT:.0%} "
                                             "of its size")] = 0,
) -> SynthArt:
    """Procedurally rendered paintings, one class per rendering technique, rendered once and cached."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, not {split!r}")
    if image_size < 8:
        raise ValueError(f"synthart paints images of 8 px and more, not image_size={image_size}")
    classes = style_names(num_styles)
    if size < num_styles:
        raise ValueError(f"synthart size={size} is too small for {num_styles} styles: every style needs at least "
                         f"one training image; give size >= {num_styles} (or fewer num_styles)")
    labels = split_labels(split=split, num_styles=num_styles, seed=seed, size=size, imbalance=imbalance,
                          held_out_per_class=held_out_per_class)
    recipe = Recipe(seed, split, image_size)
    styles = tuple(classes[y] for y in labels)
    # the labels decide which style each item is painted in, so they are part of what is cached
    key = {"dataset": "synthart", "version": VERSION, "seed": seed, "split": split,
           "styles": hashlib.sha256(" ".join(styles).encode()).hexdigest()}
    cache = cached_images(key, len(labels), image_size, functools.partial(_paint_item, recipe, styles),
                          desc=f"synthart-{split}")
    options = {"image_size": image_size, "num_styles": num_styles, "seed": seed, "size": size, "imbalance": imbalance,
               "held_out_per_class": held_out_per_class}
    return SynthArt(cache.images, labels, classes, name="synthart", split=split, recipe=recipe, built=cache.built,
                    options=options)


def synthart_lt(
    *,
    split: str = "train",
    image_size: int = 32,
    seed: Annotated[int, Field(ge=0, description="seed of the scenes, textures and labels; fixes every pixel")] = 0,
    size: Annotated[int, Field(gt=0, description="training images")] = 3000,
    imbalance: Annotated[float, Field(ge=1, description="largest to smallest training class count")] = 150.0,
    held_out_per_class: Annotated[int, Field(gt=0, description="images of every style in valid and test")] = 50,
) -> SynthArt:
    """The long-tail benchmark: all ten styles, WikiArt's order and about its 150:1 tail in
    training, balanced valid and test splits (ImageNet-LT's protocol), at 32 px."""
    data = synthart(split=split, image_size=image_size, num_styles=len(TECHNIQUES), seed=seed, size=size,
                    imbalance=imbalance, held_out_per_class=held_out_per_class)
    data.name = "synthart_lt"
    return data


# defaults for the run's data.* keys, applied when this dataset is chosen (docs/design.md)
synthart_lt.defaults = {"data.image_size": 32}
