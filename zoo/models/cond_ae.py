"""A label-conditioned autoencoder that repaints an image in another style.

An image is painted in two layers, and the model keeps them apart:

* the *layout and colour* (what a restyle keeps), seen at a coarse scale: the encoder averages
  the image over squares of ``2**stages`` pixels, so brush marks, dots and hatching finer than
  that cannot reach the code, and the code is those colours plus learned features of them. The
  decoder's *smooth path* adds a style-dependent correction to the colours (a style darkens its
  outlines, blurs its washes) and upsamples them (``upsample``);
* the *texture* (what a restyle changes): fine marks, copied from real paintings of the
  target style or painted by a full-resolution network (``marks``, below). The network paints
  them from random noise, reading the smooth image (marks follow edges and tones) and the style. Sampling
  from noise is what lets it paint crisp dots and strokes rather than their blurred mean. The
  noise comes per pixel and constant over 4- and 8-pixel squares, so mosaic tiles and facets
  have a coarse random field to start from; each style has a loudness (a gain on its marks),
  so a style of soft washes can paint almost none.

The style reaches both paths in one of two ways (``conditioning``):

* ``concat`` (the course's design): a learned style embedding is tiled over the input of each
  path and concatenated to it; the texture path normalises with batch norm (instance norm would
  subtract the tiled embedding's constant contribution and erase the label). A blend of styles
  blends their embeddings. The default: it scores the higher restyle_acc (docs/results.md).
* ``cin``: conditional instance normalisation (Dumoulin et al. 2017) in the texture path, a
  scale and shift per style and channel; the smooth path uses the same per-style scale and shift
  without the normalisation, which would erase the colours. A blend of styles blends those
  parameters. They start apart (random, not all ones and zeros), so that each style's texture
  begins different instead of having to break a tie.

The marks come from one of three places (``marks``):

* ``learned``: the texture path above, taught by the ``restyle`` task's critic;
* ``exemplar`` (the default; docs/restyle-notes.md): copied from training images of the target
  style, as in image analogies (Hertzmann et al. 2001), in the tiles of image quilting (Efros &
  Freeman 2001). While it trains, the model keeps up to ``bank`` square tiles of the images it
  sees, per style, as they were (uint8). A restyle cuts its smooth image into tiles of the same
  side, finds for each the kept tile of the target style whose coarse colours (the code's,
  averaged over the same squares) are nearest, and adds that tile's marks: the tile minus its
  coarse colours upsampled, less their mean over each of the code's squares, so that they keep
  the layout. The match weighs each tile's *pattern* of colours (the colours less their mean
  over the tile) ``layout`` times beside the colours themselves: an edge between two regions is
  matched to an edge, where a style's outline or seam lies, even where no kept tile has quite
  its colours. A style's marks thus follow the colours they were painted over in real paintings
  of it: outlines where regions meet, shaded facets inside regions, which marks sampled from
  noise never learned. Nothing learns the marks; the critic still teaches the smooth path each
  style's colours. The price is identity_psnr: another painting's marks are not the image's own;
* ``dictionary``: exemplar marks while training; then (the restyle task's ``after_fit``) each
  style's kept tiles are replaced by a dictionary distilled from them, k-means of their match
  keys, each atom from at least eight distinct tiles' marks (each shifted by up to 2 px to meet
  the others'): their per-pixel median where they agree where their marks are, else their mean
  made as loud as they are and sharpened, then synthesised until its texture statistics are
  theirs (a blur of strokes becomes strokes again). It paints
  as the exemplar path does, from atoms instead of tiles: a model to share where the training
  paintings may not be shared (docs/restyle-notes.md has what it costs).

Where a style inks the boundaries of its regions (Pop_Art's outlines), the smooth path draws a
dark line about a code square wide where its colours step from one region's to another's, as
dark as a gain per style (``ink``) and the step make it (:func:`crossing_ink`). The gain is
*calibrated* once training is over (:meth:`CondAE.calibrate_ink`), not trained: the critic
cannot teach it. Dark squares on a boundary are what make the match pick outlined tiles, and a
match has no gradient; the line alone, without the outlines it brings, does not look like the
style. Each style's gain is the one that makes its restyles (of training paintings of other
styles) nearest as dark where their colours change as its own training paintings are; a style
whose restyles are nearly that dark already gets none. Learned marks, which the critic does
teach, are not inked.

What makes the decoder use its label is the training recipe of the ``restyle`` task
(zoo/tasks/restyle.py); this module is only the network.
"""

from __future__ import annotations

import hashlib
import math
import warnings
from typing import Annotated, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from zoo.fit import Step
from zoo.style import luminance
from zoo.task import phase

__all__ = ["CondAE", "cond_ae", "style_weights"]

Conditioning = Literal["concat", "cin"]
Marks = Literal["learned", "exemplar", "dictionary"]
Upsample = Literal["bilinear", "bicubic"]
STYLE_INIT = 0.5  # spread of the per-style scales and shifts at the start (cin)
NOISE_CHANS = 2  # channels of random noise per scale that the texture path paints from
# Noise per pixel, and constant over 4- and 8-pixel squares: tiles and facets, larger than what a
# few convolutions can grow from per-pixel noise alone, start from a coarse random field
NOISE_SCALES = (1, 4, 8)
# A dictionary atom is distilled from at least this many training tiles' marks: none is one painting's
MIN_MEMBERS = 8
# A mean of random marks is fainter and softer than any of them: its loudness is restored to the
# members' and its peaks raised by this power, so that strokes and dots stay strokes and dots
SHARPEN = 1.5
# Before they are averaged, a member's marks shift (circularly) by up to this many pixels to meet
# the others': an outline's place in its tile varies by a pixel or two between paintings
ALIGN = 2
# Tiles are clustered on their match keys and their loudness (log RMS of the marks, as much of the
# spread as all the keys): a cluster of flat tiles and a few outlined ones has the statistics of
# some outline, which the synthesis gathers into one dot that every flat square then gets
LOUDNESS_WEIGHT = 1.0
# A tile whose marks are quieter than a grey level is flat. Where a style's paintings hold at least
# MIN_MEMBERS flat tiles (Pop_Art's regions), a flat tile of whatever colour a restyle asks for is one of
# its dictionary's atoms: atoms of a few colours matched by colour paint some other tile's outline
# fragment on every flat square
FLAT_RMS = 1 / 255
# Members that agree where their marks are (the aligned mean keeps at least this share of their
# energy: a soft wash's edge, a mosaic's grout, an outline at one place) keep them there: the atom's
# marks are their per-pixel median, crisp, and not synthesised, since statistics do not say where
PLACED = 0.25
# A mean of strokes, cells or dots placed at random is a blur of them, whatever its loudness: each
# atom's marks are then synthesised (Adam, this many steps, from the sharpened mean) until their
# texture statistics, the Gram matrices and means of one layer of fixed random filters (Gatys et
# al. 2015; random filters suffice, Ustyuzhaninov et al. 2017), are their members' average
SYNTH_STEPS = 100
SYNTH_LR = 0.02
SYNTH_WIDTH = 64  # random filters per kernel size
SYNTH_KERNELS = (3, 5, 7)
# A code square is on a boundary where its colour differs from a neighbour's by more than this
# (summed over channels): the fine colour noise a source's marks leave in its code is not inked.
# Chosen on the validation split (docs/restyle-notes.md)
INK_STEP = 0.2
# The gains a calibration tries. At 4 a line across a typical boundary between two regions is as
# dark as INK_FLOOR lets it be: more would only ink fainter changes
INK_GAINS = (0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0)
INK_FLOOR = 0.1  # inked colours keep at least this share of their own: a line, not a hole
# A style is inked only where its paintings are this many times as dark where their colours
# change as its restyles without ink: closer, the difference is the paintings' own variety
INK_MARGIN = 1.1
INK_CHUNK = 64  # restyles painted at once while calibrating


def style_weights(style: torch.Tensor, num_styles: int) -> torch.Tensor:
    """B×num_styles weights from int labels (B) or from weights already (a blend of styles)."""
    if not style.is_floating_point():
        if style.dim() != 1:
            raise ValueError(f"style labels must be a 1-D tensor of ints, got shape {tuple(style.shape)}")
        if len(style) and (style.min() < 0 or style.max() >= num_styles):
            raise ValueError(f"style labels must lie in 0..{num_styles - 1}, got {style.tolist()}")
        return F.one_hot(style, num_styles).float()
    if style.dim() != 2 or style.shape[1] != num_styles:
        raise ValueError(
            f"style weights must be B×{num_styles} (one column per style), got shape {tuple(style.shape)}; "
            f"or pass int labels"
        )
    return style


class StyleAffine(nn.Module):
    """A scale and shift per style and channel (a blend mixes the rows), after an optional
    instance norm: with it, conditional instance normalisation."""

    def __init__(self, channels: int, num_styles: int, normalize: bool) -> None:
        super().__init__()
        self.norm = nn.InstanceNorm2d(channels) if normalize else nn.Identity()
        self.scale = nn.Parameter(1 + STYLE_INIT * torch.randn(num_styles, channels))
        self.shift = nn.Parameter(STYLE_INIT * torch.randn(num_styles, channels))

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        return self.norm(x) * (weights @ self.scale)[:, :, None, None] + (weights @ self.shift)[:, :, None, None]


class Block(nn.Module):
    """3×3 convolution (optionally dilated), style-dependent or plain norm, activation."""

    def __init__(self, in_chans: int, out_chans: int, num_styles: int, conditioning: Conditioning, *,
                 normalize: bool, dilation: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_chans, out_chans, 3, padding=dilation, dilation=dilation)
        if conditioning == "cin":
            self.norm = StyleAffine(out_chans, num_styles, normalize)
        else:
            self.norm = nn.BatchNorm2d(out_chans) if normalize else nn.Identity()
        self.act = nn.LeakyReLU(0.2)

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        x = self.norm(x, weights) if isinstance(self.norm, StyleAffine) else self.norm(x)
        return self.act(x)


def _noise(like: torch.Tensor) -> torch.Tensor:
    """NOISE_CHANS channels of Gaussian noise per scale k in NOISE_SCALES, constant over k×k squares."""
    b, _, h, w = like.shape
    parts = []
    for k in NOISE_SCALES:
        coarse = torch.randn(b, NOISE_CHANS, -(-h // k), -(-w // k), device=like.device, dtype=like.dtype)
        parts.append(coarse.repeat_interleave(k, 2).repeat_interleave(k, 3)[..., :h, :w])
    return torch.cat(parts, 1)


class ExemplarMarks(nn.Module):
    """Tiles of training images kept per style, and the marks of the nearest ones (module docstring)."""

    def __init__(self, num_styles: int, in_chans: int, scale: int, tile: int, size: int, *,
                 layout: float, upsample: Upsample) -> None:
        super().__init__()
        if tile % scale:
            raise ValueError(f"cond_ae: model.tile={tile} must be a multiple of the code's square, 2**stages = {scale}")
        self.scale, self.tile = scale, tile
        self.layout, self.upsample = layout, upsample
        # uint8, as the images were: lossless, a quarter of float32, and copied, not averaged, by
        # the weights' moving average (timm's ModelEmaV3 averages only floating-point tensors);
        # flat, so that a conversion to channels-last leaves it alone
        self.in_chans = in_chans
        self.register_buffer("tiles", torch.zeros(num_styles, size, in_chans * tile * tile, dtype=torch.uint8))
        self.register_buffer("kept", torch.zeros(num_styles, dtype=torch.long))
        self._cache: dict[int, tuple] = {}
        # Writes by remember() change one style's tiles, and its count says so; any other write to
        # the bank (a checkpoint loaded, the moving average's copy) could change every style's
        self._generation, self._seen = 0, self._stamp()

    def _cut(self, x: torch.Tensor) -> tuple[torch.Tensor, int]:
        """B×C×H×W (H, W multiples of the tile) -> B×L×C×tile×tile, and L."""
        t = self.tile
        tiles = F.unfold(x, t, stride=t)  # B×(C·t·t)×L
        return tiles.transpose(1, 2).reshape(len(x), -1, x.shape[1], t, t), tiles.shape[-1]

    def _as_kept(self, images: torch.Tensor) -> torch.Tensor:
        """B×C×H×W images in [0, 1] -> their tiles as the bank keeps them, B×L×C·tile² uint8 (the
        sides cropped to whole tiles)."""
        h, w = images.shape[-2:]
        tiles, _ = self._cut(images[..., : h - h % self.tile, : w - w % self.tile].float())
        return tiles.flatten(2).mul(255).round().clamp(0, 255).to(torch.uint8)

    def unpack(self, tiles: torch.Tensor) -> torch.Tensor:
        """Tiles as the bank keeps them (uint8, N×C·t²) -> N×C×t×t in [0, 1]."""
        return tiles.float().div(255).view(len(tiles), self.in_chans, self.tile, self.tile)

    def _colours(self, tiles: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(tiles, self.scale)

    def _keys(self, colours: torch.Tensor) -> torch.Tensor:
        """What a match compares, per tile (N×C×g×g coarse colours): the colours and, ``layout``
        times, their pattern (the colours less their mean over the tile)."""
        if not self.layout:
            return colours.flatten(1)
        pattern = colours - colours.mean((-2, -1), keepdim=True)
        return torch.cat([colours.flatten(1), self.layout * pattern.flatten(1)], 1)

    def _stamp(self) -> tuple[int, int]:
        """Which tensor holds the bank (a copy of the module holds another) and its version, which
        every write bumps."""
        return id(self.tiles), self.tiles._version

    def _sync(self) -> None:
        """Note a write to the bank that :meth:`remember` did not make: every style's cached
        colours are then stale."""
        if self._stamp() != self._seen:
            self._generation += 1
            self._seen = self._stamp()

    def _kept(self, style: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The coarse colours of ``style``'s kept tiles (kept × C·(tile/scale)²) and their match
        keys, or None if it has none; cached until the style's tiles change (a tile kept, a
        checkpoint loaded, the moving average's copy)."""
        kept = int(self.kept[style])
        if not kept:
            return None
        self._sync()
        key = (kept, self._generation, self.tiles.device)
        if self._cache.get(style, (None,))[0] != key:
            tiles = self.unpack(self.tiles[style, :kept])
            colours = self._colours(tiles)
            self._cache[style] = (key, (colours.flatten(1), self._keys(colours)))
        return self._cache[style][1]

    @torch.no_grad()
    def remember(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        """Keep tiles of ``images`` (in [0, 1]) under their style until that style's bank is full:
        the first tiles of a shuffled stream are a uniform sample of it."""
        tiles = self._as_kept(images)
        size = self.tiles.shape[1]
        self._sync()  # a write before this one, not its own, still makes every cached style stale
        for style in labels.unique().tolist():
            start = int(self.kept[style])
            if start == size:
                continue  # full: not even an empty write, which would mark the bank changed
            new = tiles[labels == style].flatten(0, 1)[: size - start]
            self.tiles[style, start : start + len(new)] = new
            self.kept[style] += len(new)
        self._seen = self._stamp()  # its own writes: the counts say which styles changed

    @torch.no_grad()
    def replace(self, style: int, images: torch.Tensor) -> int:
        """Keep tiles of ``images`` (in [0, 1], sides multiples of the tile) as ``style``'s only
        tiles, up to the bank's size; how many were kept."""
        self.kept[style] = 0
        self.remember(images, torch.full((len(images),), style, dtype=torch.long, device=images.device))
        self._cache.pop(style, None)  # the same count of other tiles: the cached colours are not theirs
        return int(self.kept[style])

    def forward(self, smooth: torch.Tensor, weights: torch.Tensor, *, rank: int = 0) -> torch.Tensor:
        """The marks for ``smooth`` (B×C×H×W) in the styles ``weights`` (B×styles; a blend blends
        the styles' marks). A style with no kept tile paints none. ``rank`` k copies each tile's
        (k+1)-th nearest kept tile instead of its nearest, or its farthest where it keeps no more
        (bench/marks_placement.py)."""
        h, w = smooth.shape[-2:]
        t = self.tile
        pad = (0, -w % t, 0, -h % t)
        query, count = self._cut(F.pad(smooth.detach().float(), pad, mode="replicate"))
        query_colours = self._colours(query.flatten(0, 1))
        query = self._keys(query_colours).view(len(smooth), count, -1)
        query_colours = query_colours.view(len(smooth), count, *query_colours.shape[1:])
        marks = torch.zeros(len(smooth), count, smooth.shape[1] * t * t, device=smooth.device)
        for style in (weights > 0).any(0).nonzero().flatten().tolist():
            kept = self._kept(style)
            if kept is None:
                continue
            colours, keys = kept
            rows = weights[:, style] > 0
            q, qc = query[rows].flatten(0, 1), query_colours[rows].flatten(0, 1)

            def pick(part: torch.Tensor, part_colours: torch.Tensor) -> torch.Tensor:
                distances = self._distances(style, part, part_colours, keys)
                k = min(rank, distances.shape[1] - 1)  # a style keeping fewer tiles: its farthest
                return distances.argmin(1) if not k else distances.topk(k + 1, largest=False).indices[:, k]

            nearest = torch.cat([pick(*parts) for parts in zip(q.split(4096), qc.split(4096))])
            flat = nearest >= len(keys)  # a flat tile: no marks
            nearest = nearest.clamp_max(len(keys) - 1)
            # only the chosen tiles are unpacked: the bank is far larger than one batch's tiles
            tiles = self.unpack(self.tiles[style, nearest])
            coarse = colours[nearest].view(len(nearest), self.in_chans, t // self.scale, t // self.scale)
            chosen = tiles - F.interpolate(coarse, scale_factor=self.scale, mode=self.upsample, align_corners=False)
            chosen[flat] = 0
            marks[rows] += weights[rows, style, None, None].float() * chosen.flatten(1).view(int(rows.sum()), count, -1)
        size = (h + pad[3], w + pad[1])
        painted = F.fold(marks.transpose(1, 2), size, t, stride=t)
        # the restyle's colours at the code's scale stay the smooth path's (what texture_mean asks
        # of learned marks)
        return keep_layout(painted, self.scale)[..., :h, :w].to(smooth.dtype)

    def _distances(self, style: int, query: torch.Tensor, colours: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """N×kept distances of N match keys (``query``, of the coarse colours ``colours``, N×C×g×g)
        to ``style``'s kept tiles' ``keys``; a column past them is a flat tile (no marks)."""
        return torch.cdist(query, keys)


def colour_steps(colours: torch.Tensor) -> torch.Tensor:
    """B×1×h×w: per code square, the largest difference of its colours (summed over channels)
    from one of its four neighbours'."""
    padded = F.pad(colours, (1, 1, 1, 1), mode="replicate")
    h, w = colours.shape[-2:]
    return torch.stack([(colours - padded[..., 1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]).abs().sum(1, keepdim=True)
                        for dy, dx in ((0, 1), (0, -1), (1, 0), (-1, 0))]).amax(0)


def sharpened(x: torch.Tensor, radius: int = 2) -> torch.Tensor:
    """``x`` (B×C×H×W) with every ramp made a step at its middle: each pixel takes its
    neighbourhood's minimum or maximum, whichever is nearer (a toggle filter, per channel)."""
    padded = F.pad(x, (radius,) * 4, mode="replicate")
    low = -F.max_pool2d(-padded, 2 * radius + 1, 1)
    high = F.max_pool2d(padded, 2 * radius + 1, 1)
    return torch.where(x - low < high - x, low, high)


def crossing_ink(smooth: torch.Tensor, scale: int) -> torch.Tensor:
    """B×1×H×W, how much a gain of 1 darkens each pixel of ``smooth`` (B×C×H×W, the code's
    colours upsampled from squares of ``scale`` pixels): a line about a square wide where its
    colours, sharpened, step by more than INK_STEP (summed over channels), by the step above it. A square's colour is an area average, so the upsampled colours cross midway
    between two regions' where the scene's boundary crosses the square: the line follows the
    boundary, not the squares' borders."""
    steps = colour_steps(sharpened(smooth, max(1, scale // 2)))
    band = F.max_pool2d(steps, scale - 1, 1, scale // 2 - 1) if scale > 2 else steps
    return (band - INK_STEP).clamp_min(0)


def inked(smooth: torch.Tensor, lines: torch.Tensor, gain: torch.Tensor | float) -> torch.Tensor:
    """``smooth`` darkened by its :func:`crossing_ink` ``lines`` at ``gain`` (B, or one for all)."""
    gain = gain[:, None, None, None] if isinstance(gain, torch.Tensor) else gain
    return smooth * (1 - gain * lines).clamp_min(INK_FLOOR)


def edge_darkness(colours: torch.Tensor) -> float:
    """How dark images are where their colours change (B×C×h×w at the code's scale): per square,
    how much darker its luminance is than its neighbourhood's lightest (3×3), averaged with the
    squares' colour steps as weights. Inked outlines raise it; a plain edge between a dark region
    and a light one counts too, in paintings and restyles alike."""
    dark, steps = _darkness_sums(colours)
    return dark / max(steps, 1e-8)


def _darkness_sums(colours: torch.Tensor) -> tuple[float, float]:
    """:func:`edge_darkness`'s weighted sum and sum of weights, to add up over parts of a set."""
    luma = luminance(colours)
    dark = F.max_pool2d(F.pad(luma, (1, 1, 1, 1), mode="replicate"), 3, 1) - luma
    steps = colour_steps(colours)
    return float((dark * steps).sum()), float(steps.sum())


def keep_layout(marks: torch.Tensor, scale: int) -> torch.Tensor:
    """``marks`` less their mean over each ``scale``-pixel square: added to a smooth image, they
    leave its colours at the code's scale as they were."""
    return marks - F.interpolate(F.avg_pool2d(marks, scale), scale_factor=scale, mode="nearest")


def marks_rms(marks: torch.Tensor) -> torch.Tensor:
    """The loudness of each of N marks (N×…): their root mean square."""
    return marks.flatten(1).square().mean(1).sqrt()


def split_tiles(tiles: torch.Tensor, scale: int, upsample: Upsample) -> tuple[torch.Tensor, torch.Tensor]:
    """N×C×t×t tiles -> their coarse colours (averaged over ``scale``-pixel squares) and their
    marks (each tile less its colours upsampled), as exemplar marks copy them."""
    colours = F.avg_pool2d(tiles, scale)
    return colours, tiles - F.interpolate(colours, scale_factor=scale, mode=upsample, align_corners=False)


def texture_statistics(marks: torch.Tensor, filters: list[torch.Tensor]) -> torch.Tensor:
    """N×D statistics of N×C×t×t marks: per bank of ``filters`` (circular, so that a tile's edge
    is no edge), the Gram matrix and the means of its rectified responses. Not
    :func:`zoo.style.gram_vector`: its unit norm per layer drops the loudness an atom must keep."""
    out = []
    for w in filters:
        f = F.relu(F.conv2d(F.pad(marks, [w.shape[-1] // 2] * 4, mode="circular"), w)).flatten(2)
        out += [(f @ f.transpose(1, 2)).flatten(1) / f.shape[-1], f.mean(2)]
    return torch.cat(out, 1)


def synthesis_filters(in_chans: int, device: torch.device | str = "cpu") -> list[torch.Tensor]:
    """The fixed random filters whose statistics :func:`synthesise_marks` matches (seeded: the
    same on every device)."""
    gen = torch.Generator().manual_seed(0)
    return [(torch.randn(SYNTH_WIDTH, in_chans, k, k, generator=gen) / math.sqrt(in_chans * k * k)).to(device)
            for k in SYNTH_KERNELS]


def synthesise_marks(start: torch.Tensor, members: list[torch.Tensor], *, paint,
                     steps: int = SYNTH_STEPS) -> torch.Tensor:
    """A×C×t×t marks, started from ``start`` and moved by Adam until the texture statistics
    (:func:`texture_statistics`) of each one as painted (``paint``: what is left of marks once
    painted) are the average of its ``members``' (A tensors of M×C×t×t marks). Seeded: the same
    input gives the same marks."""
    filters = synthesis_filters(start.shape[1], start.device)
    target = torch.stack([texture_statistics(own, filters).mean(0) for own in members])
    norm = target.square().sum(1).clamp_min(1e-12)
    marks = start.detach().clone().requires_grad_(True)
    step = Step("dictionary synthesis", [marks], torch.optim.Adam([marks], lr=SYNTH_LR))
    with torch.enable_grad():
        for _ in range(steps):
            step(((texture_statistics(paint(marks), filters) - target).square().sum(1) / norm).sum())
    return paint(marks).detach()


def distil_tiles(tiles: torch.Tensor, keys, scale: int, upsample: Upsample, atoms: int, *,
                 members: int = MIN_MEMBERS, align: int = ALIGN, sharpen: float = SHARPEN,
                 synthesise: int = SYNTH_STEPS, loudness: float = LOUDNESS_WEIGHT,
                 placed: float = PLACED) -> torch.Tensor:
    """At most ``atoms`` tiles (A×C×t×t in [0, 1]) that hold no one of ``tiles`` (N×C×t×t): k-means
    of their match keys (``keys``, a function of the coarse colours) and, ``loudness`` times, their
    marks' loudness; per cluster of at least ``members`` distinct tiles the mean colours plus marks.
    The marks: where the members' mean (aligned by up to ``align`` px) keeps at least ``placed`` of
    their energy, their aligned per-pixel median (0: never); elsewhere that mean, made as loud as
    the members' on average and sharpened by the power ``sharpen``, then ``synthesise`` steps
    towards the members' texture statistics (:func:`synthesise_marks`; 0: the sharpened mean).
    Seeded: the same tiles give the same atoms (the defaults: docs/restyle-notes.md,
    bench/dictionary_atoms.py)."""
    from sklearn.cluster import KMeans
    from sklearn.exceptions import ConvergenceWarning

    # a small style's bank holds each tile several times (seen again every epoch): a mean of one
    # tile's copies would be that tile
    tiles = torch.unique(tiles.flatten(1), dim=0).view(-1, *tiles.shape[1:])
    count = min(atoms, len(tiles) // members)
    if not count:
        return tiles.new_zeros(0, *tiles.shape[1:])
    colours, marks = split_tiles(tiles, scale, upsample)
    features = keys(colours).double()
    loud = marks_rms(marks).clamp_min(FLAT_RMS).log().double()
    loud = (loud - loud.mean()) / loud.std().clamp_min(1e-8)
    features = torch.cat([features, loudness * features.std(0).norm() * loud[:, None]], 1)
    with warnings.catch_warnings():  # alike tiles (a user's flat paintings) make fewer clusters: fewer atoms
        warnings.simplefilter("ignore", ConvergenceWarning)
        clusters = KMeans(count, n_init=1, random_state=0).fit(features.cpu().numpy()).labels_
    clusters = torch.as_tensor(clusters, device=tiles.device)
    shifts = [(dy, dx) for dy in range(-align, align + 1) for dx in range(-align, align + 1)]
    made, groups, coarse, kept_in_place = [], [], [], []
    for c in range(count):
        ours = clusters == c
        if int(ours.sum()) < members:
            continue
        own = aligned = marks[ours]
        mean = own.mean(0)
        for _ in range(2 if align else 0):  # each member at the shift that best meets the mean, then the mean again
            shifted = torch.stack([own.roll(shift, (2, 3)) for shift in shifts])  # shifts×members×C×t×t
            best = (shifted.flatten(2) @ mean.flatten()).argmax(0)
            aligned = shifted[best, torch.arange(len(own), device=own.device)]
            mean = aligned.mean(0)
        in_place = bool(placed) and bool(mean.square().sum() >= placed * own.square().sum((1, 2, 3)).mean())
        if in_place:
            # what is left of the median once painted, as the synthesis returns its marks
            made.append(split_tiles(aligned.median(0).values[None], scale, upsample)[1][0])
        else:
            sharp = mean.sign() * mean.abs().pow(sharpen)
            members_rms = marks_rms(own).mean()
            made.append(sharp * members_rms / sharp.square().mean().sqrt().clamp_min(1e-8))
        kept_in_place.append(in_place)
        groups.append(own)
        coarse.append(colours[ours].mean(0))
    if not made:
        return tiles.new_zeros(0, *tiles.shape[1:])
    made = torch.stack(made)
    free = [i for i, in_place in enumerate(kept_in_place) if not in_place]
    if synthesise and free:
        # a tile's marks are what is left of it less its colours: the synthesis sees them so
        made[free] = synthesise_marks(made[free], [groups[i] for i in free],
                                      paint=lambda m: split_tiles(m, scale, upsample)[1], steps=synthesise)
    return (F.interpolate(torch.stack(coarse), scale_factor=scale, mode=upsample, align_corners=False) + made).clamp(0, 1)


def distil_kept(bank: ExemplarMarks, tiles: torch.Tensor, atoms: int, **recipe) -> torch.Tensor:
    """:func:`distil_tiles` of ``bank``'s tiles as it keeps them (uint8, N×C·t²), its atoms the same way."""
    made = distil_tiles(bank.unpack(tiles), bank._keys, bank.scale, bank.upsample, atoms, **recipe)
    return made.flatten(1).mul(255).round().to(torch.uint8)


def holds_flat(bank: ExemplarMarks, tiles: torch.Tensor) -> bool:
    """Whether at least :data:`MIN_MEMBERS` distinct tiles of ``bank``'s (as it keeps them) are
    flat: marks quieter than :data:`FLAT_RMS`."""
    marks = split_tiles(bank.unpack(torch.unique(tiles, dim=0)), bank.scale, bank.upsample)[1]
    return int((marks_rms(marks) < FLAT_RMS).sum()) >= MIN_MEMBERS


class DictionaryMarks(ExemplarMarks):
    """Exemplar marks while the model trains; after it (:meth:`distil`), a dictionary per style
    distilled from the kept tiles (:func:`distil_tiles`), matched and painted the same way, and for
    a style with flat tiles (:data:`FLAT_RMS`) a flat tile of the query's own colours. The model
    then holds no training tile, only atoms distilled from at least :data:`MIN_MEMBERS` of them."""

    def __init__(self, *args, atoms: int, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.atoms = atoms
        self.register_buffer("distilled", torch.zeros((), dtype=torch.bool))
        self.register_buffer("flat", torch.zeros(self.tiles.shape[0], dtype=torch.bool))  # per style: FLAT_RMS
        # a style's atoms by the digest of its distinct tiles: a run's every checkpoint holds the
        # same tiles once each painting has been seen, and is distilled once
        self._atoms_of: dict[str, tuple[torch.Tensor, bool]] = {}

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        # a distilled dictionary keeps as many rows per style as its largest style has atoms, not
        # the bank's: take the saved shape
        saved = state_dict.get(prefix + "tiles")
        if saved is not None and saved.shape != self.tiles.shape:
            self.tiles = torch.zeros_like(saved, device=self.tiles.device)
        if saved is not None and prefix + "flat" not in state_dict:  # saved before flat tiles: it paints none
            state_dict[prefix + "flat"] = torch.zeros_like(self.flat)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _distances(self, style: int, query: torch.Tensor, colours: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        distances = super()._distances(style, query, colours, keys)
        if not (self.distilled and self.flat[style]):
            return distances
        # the flat tile of the query's own colours
        flat = self._keys(colours.mean((-2, -1), keepdim=True).expand_as(colours))
        return torch.cat([distances, (query - flat).norm(dim=1, keepdim=True)], 1)

    @torch.no_grad()
    def distil(self) -> None:
        """Replace every style's kept tiles by their dictionary: from here on no tile is kept."""
        made = []
        for style in range(len(self.kept)):
            tiles = torch.unique(self.tiles[style, : int(self.kept[style])], dim=0)  # distil_tiles's own
            digest = hashlib.sha256(tiles.cpu().numpy().tobytes()).hexdigest()
            if digest not in self._atoms_of:
                self._atoms_of[digest] = distil_kept(self, tiles, self.atoms), holds_flat(self, tiles)
            made.append(self._atoms_of[digest])
        self.tiles = self.tiles.new_zeros(len(made), max(len(atoms) for atoms, _ in made), self.tiles.shape[-1])
        for style, (atoms, flat) in enumerate(made):
            self.tiles[style, : len(atoms)] = atoms
            self.kept[style] = len(atoms)
            self.flat[style] = flat
        self.distilled.fill_(True)

    def remember(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        if not self.distilled:  # a distilled dictionary is what was served: training on leaves it
            super().remember(images, labels)

    @torch.no_grad()
    def replace(self, style: int, images: torch.Tensor) -> int:
        """``style``'s atoms distilled from the tiles of ``images`` (a user's paintings; none
        kept); how many tiles they were distilled from."""
        if not self.distilled:
            return super().replace(style, images)
        tiles = self._as_kept(images).flatten(0, 1)
        atoms = distil_kept(self, tiles, self.atoms)
        self.flat[style] = holds_flat(self, tiles)
        if len(atoms) > self.tiles.shape[1]:
            self.tiles = torch.cat([self.tiles, self.tiles.new_zeros(len(self.tiles), len(atoms) - self.tiles.shape[1],
                                                                     self.tiles.shape[-1])], 1)
        self.tiles[style] = 0
        self.tiles[style, : len(atoms)] = atoms
        self.kept[style] = len(atoms)
        return len(tiles)


class CondAE(nn.Module):
    """Encoder to a coarse content code; decoder from (code, style) to smooth image + texture."""

    def __init__(
        self,
        num_classes: int,
        in_chans: int = 3,
        latent_dim: int = 8,
        stages: int = 2,
        width: int = 32,
        texture_width: int = 32,
        conditioning: Conditioning = "concat",
        embed_dim: int = 16,
        marks: Marks = "exemplar",
        tile: int = 16,
        bank: int = 4096,
        layout: float = 2.0,
        upsample: Upsample = "bilinear",
        atoms: int = 512,
    ) -> None:
        super().__init__()
        self.num_styles = num_classes
        self.in_chans = in_chans
        self.conditioning = conditioning
        self.latent_dim = in_chans + latent_dim  # the code: the coarse colours, then learned features
        self.scale = 2**stages
        self.size_multiple = self.scale  # it paints any H×W that the code's squares divide (zoo/pictures.py)
        self.upsample = upsample
        self.features = nn.Sequential(
            nn.Conv2d(in_chans, width, 3, padding=1), nn.LeakyReLU(0.2),
            nn.Conv2d(width, width, 3, padding=1), nn.LeakyReLU(0.2),
            nn.Conv2d(width, latent_dim, 1),
        )
        self.embedding = nn.Linear(num_classes, embed_dim, bias=False) if conditioning == "concat" else None
        extra = embed_dim if conditioning == "concat" else 0
        self.smooth_blocks = nn.ModuleList([
            Block(self.latent_dim + extra, width, num_classes, conditioning, normalize=False),
            Block(width, width, num_classes, conditioning, normalize=False),
        ])
        self.correction = nn.Conv2d(width, in_chans, 3, padding=1)
        nn.init.zeros_(self.correction.weight)  # starts as the plain upsampled colours
        nn.init.zeros_(self.correction.bias)
        if marks == "exemplar":
            self.exemplars = ExemplarMarks(num_classes, in_chans, self.scale, tile, bank, layout=layout, upsample=upsample)
        elif marks == "dictionary":
            self.exemplars = DictionaryMarks(num_classes, in_chans, self.scale, tile, bank, layout=layout,
                                             upsample=upsample, atoms=atoms)
        else:
            self.exemplars = None
            self._texture_path(in_chans + extra, texture_width, conditioning)
        # Replicate padding: with zeros the border is a place the network can find, and the critic
        # rewarded dark bands it painted there (docs/restyle-notes.md)
        self.register_buffer("replicate_padding", torch.ones((), dtype=torch.bool))
        self._pad(True)
        # the gain per style of the ink on boundaries, 0 until calibrate_ink (module docstring)
        self.register_buffer("ink", torch.zeros(num_classes))
        self.register_buffer("ink_calibrated", torch.zeros((), dtype=torch.bool))
        self._ink_seen: tuple = (None, False)  # (the ink tensor's id and version, whether any is inked)

    def _pad(self, replicate: bool) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d) and module.padding != (0, 0):
                module.padding_mode = "replicate" if replicate else "zeros"

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        # A checkpoint from before 2026-12-07 has no such entry: its convolutions padded with
        # zeros, and painting it with replicate padding would change every restyle it makes
        key = prefix + "replicate_padding"
        state_dict.setdefault(key, torch.zeros((), dtype=torch.bool))
        # nor ink: it painted none
        state_dict.setdefault(prefix + "ink", torch.zeros_like(self.ink))
        state_dict.setdefault(prefix + "ink_calibrated", torch.zeros((), dtype=torch.bool))
        self._pad(bool(state_dict[key]))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _texture_path(self, in_chans: int, width: int, conditioning: Conditioning) -> None:
        """The learned marks' network: noise and the smooth image (and the style) in, marks out."""
        # dilations 1, 2, 4, 1: a 17-pixel field, the size of a stroke or a facet at 64 px
        chans = NOISE_CHANS * len(NOISE_SCALES) + in_chans
        self.texture_blocks = nn.ModuleList()
        for dilation in (1, 2, 4, 1):
            self.texture_blocks.append(Block(chans, width, self.num_styles, conditioning, normalize=True,
                                             dilation=dilation))
            chans = width
        self.to_texture = nn.Conv2d(chans, self.in_chans, 3, padding=1)
        # one loudness per style: a style of washes rather than marks can turn its texture down
        self.texture_gain = nn.Parameter(torch.ones(self.num_styles))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The content code, (in_chans + latent_dim) × H/2**stages × W/2**stages: the image's
        colours averaged over 2**stages-pixel squares, then features computed from them alone."""
        return self.code_of(F.avg_pool2d(x, self.scale))

    def code_of(self, colours: torch.Tensor) -> torch.Tensor:
        """The content code of an image's colours averaged over the code's squares."""
        return torch.cat([colours, self.features(colours)], 1)

    def _tiled(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        if self.embedding is None:
            return x
        return torch.cat([x, self.embedding(weights)[:, :, None, None].expand(-1, -1, *x.shape[2:])], 1)

    def smooth(self, code: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        """The layout and colour of ``code`` in ``style``, at full resolution, without texture:
        the code's colours corrected for the style, upsampled, and inked where they change."""
        weights = style_weights(style, self.num_styles).to(code.dtype)
        smooth = self._upsampled(code, weights)
        if not self._inks():
            return smooth
        return inked(smooth, crossing_ink(smooth, self.scale), weights @ self.ink.to(code.dtype))

    def _upsampled(self, code: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """The code's colours corrected for the styles ``weights`` and upsampled: the smooth image before ink."""
        h = self._tiled(code, weights)
        for block in self.smooth_blocks:
            h = block(h, weights)
        colours = code[:, : self.in_chans] + self.correction(h)
        return F.interpolate(colours, scale_factor=self.scale, mode=self.upsample, align_corners=False)

    def _inks(self) -> bool:
        """Whether any style is inked, asked of the device only when the ink changed (a write, a
        checkpoint loaded, a move): not once per decode, which on a GPU would wait for it."""
        stamp = (id(self.ink), self.ink._version)
        if self._ink_seen[0] != stamp:
            self._ink_seen = (stamp, bool(self.ink.any()))
        return self._ink_seen[1]

    @torch.no_grad()
    def calibrate_ink(self, colours: torch.Tensor, labels: torch.Tensor) -> dict[int, float] | None:
        """Each style's ink (module docstring) from training images' ``colours`` (B×C×h×w, each
        averaged over the code's squares) and their ``labels``: the one of INK_GAINS whose
        restyles of the other styles' images are nearest as dark where their colours change as
        the style's own images (:func:`edge_darkness`, at the code's scale); none where they are
        nearly that dark without (INK_MARGIN). The gains found, or None where there is nothing
        to calibrate (learned marks, or calibrated already: a run continued keeps its ink)."""
        if self.exemplars is None or bool(self.ink_calibrated):
            return None
        found = {}
        for style in labels.unique().tolist():
            own, others = colours[labels == style], colours[labels != style]
            if not len(others):
                continue
            target = edge_darkness(own)
            weights = F.one_hot(torch.full((INK_CHUNK,), style, device=colours.device), self.num_styles).to(colours.dtype)
            sums = np.zeros((len(INK_GAINS), 2))
            # a few restyles at a time (at 416 px all of them would be gigabytes), each painted
            # once: only the ink's gain changes between the gains tried
            for part in others.split(INK_CHUNK):
                smooth = self._upsampled(self.code_of(part), weights[: len(part)])
                lines = crossing_ink(smooth, self.scale)
                for row, gain in enumerate(INK_GAINS):
                    sums[row] += _darkness_sums(F.avg_pool2d(inked(smooth, lines, gain), self.scale))
            darkness = sums[:, 0] / np.maximum(sums[:, 1], 1e-8)
            # none where the restyles are dark enough without: an ink that only deepens some
            # plain edge would add nothing the style's paintings have
            gain = 0.0 if INK_MARGIN * darkness[0] >= target else \
                INK_GAINS[int(np.argmin(np.abs(np.subtract(darkness, target))))]
            self.ink[style] = found[style] = gain
        self.ink_calibrated.fill_(True)
        return found

    def use_exemplars(self, images: torch.Tensor, style: int) -> int:
        """Paint ``style``'s marks from ``images`` (B×C×H×W in [0, 1], a user's own paintings)
        instead of the training tiles kept for it: reference-guided restyling. How many tiles
        were kept; a :class:`ValueError` for learned marks, which come from the weights."""
        if self.exemplars is None:
            raise ValueError("this cond_ae paints learned marks (model.marks=learned), from its weights: it has no "
                             "exemplar tiles to replace")
        t = self.exemplars.tile
        h, w = images.shape[-2:]
        if h < t or w < t:
            raise ValueError(f"exemplar paintings must be at least one tile ({t} px) on each side, not {h}×{w}")
        return self.exemplars.replace(style, images)

    def training_pixel_bytes(self) -> int:
        """Bytes of training paintings' pixels the model holds (its kept tiles; learned marks and a
        distilled dictionary, whose atoms are distilled from clusters of tiles: 0).
        A checkpoint or MLflow model of it carries them: redistributing it redistributes them."""
        if self.exemplars is None or getattr(self.exemplars, "distilled", False):
            return 0
        return int(self.exemplars.kept.sum()) * self.exemplars.tiles.shape[-1]

    def distil(self) -> bool:
        """``model.marks=dictionary``: replace the kept training tiles by the dictionary distilled
        from them (:class:`DictionaryMarks`), once training is over. True where it did."""
        if not isinstance(self.exemplars, DictionaryMarks) or self.exemplars.distilled:
            return False
        with phase(f"distilling the kept tiles of {len(self.exemplars.kept)} styles into dictionaries"):
            self.exemplars.distil()
        return True

    def texture(self, smooth: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        """Fine marks of ``style`` following the tones of ``smooth``: sampled from fresh noise
        (``learned``) or copied from the nearest kept tiles (``exemplar``)."""
        weights = style_weights(style, self.num_styles).to(smooth.dtype)
        if self.exemplars is not None:
            return self.exemplars(smooth, weights)
        h = self._tiled(torch.cat([_noise(smooth), smooth], 1), weights)
        for block in self.texture_blocks:
            h = block(h, weights)
        return (weights @ self.texture_gain)[:, None, None, None] * self.to_texture(h)

    def decode(self, code: torch.Tensor, style: torch.Tensor, *, mark_scale: float = 1.0) -> torch.Tensor:
        """Paint ``code`` in ``style``: int labels (B) or B×num_styles blend weights. Unclamped.

        ``mark_scale`` > 1 paints the marks that many times larger: on the smooth image shrunk
        by it, then enlarged (bicubic) onto the smooth image at full resolution."""
        smooth = self.smooth(code, style)
        if mark_scale == 1:
            return smooth + self.texture(smooth.detach(), style)
        size = smooth.shape[-2:]
        small = F.interpolate(smooth.detach(), size=[max(1, round(s / mark_scale)) for s in size], mode="area")
        marks = F.interpolate(self.texture(small, style), size=size, mode="bicubic", align_corners=False)
        return smooth + marks

    def forward(self, x: torch.Tensor, style: torch.Tensor, target: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Everything one training step needs, in one call (so DistributedDataParallel syncs it).

        ``code``; ``smooth``: the smooth path with the image's own style (what the identity loss
        compares). With ``target``: ``fake`` (the image painted in the target styles) and its
        ``texture``. The restyle's smooth path does not train the encoder, and the texture does
        not reshape the smooth path (it reads it detached).
        """
        code = self.encode(x)
        out = {"code": code, "smooth": self.smooth(code, style)}
        if target is not None:
            smooth = self.smooth(code.detach(), target)
            texture = self.texture(smooth.detach(), target)
            out.update(fake=smooth + texture, texture=texture)
        if self.exemplars is not None and self.training:
            # after painting, so that a restyle never copies the tiles of its own image
            self.exemplars.remember(x, style)
        return out


def cond_ae(
    *,
    num_classes: int,
    in_chans: int = 3,
    image_size: int = 64,
    latent_dim: Annotated[int, Field(gt=0, description="learned feature channels of the content code "
                                     "(beside the coarse colours)")] = 8,
    stages: Annotated[int, Field(ge=1, le=6, description="the code is 2**stages times smaller than the image "
                                 "(2: 64 px -> 16×16); marks finer than that are painted from the label")] = 2,
    width: Annotated[int, Field(gt=0, description="channels of the encoder and the smooth path")] = 32,
    texture_width: Annotated[int, Field(gt=0, description="channels of the full-resolution texture path")] = 32,
    conditioning: Annotated[Conditioning, Field(description="how the decoder gets its style: concat (an "
                                                "embedding beside its input; the default, higher restyle_acc in bench/quality.py) or cin "
                                                "(conditional instance norm)")] = "concat",
    embed_dim: Annotated[int, Field(gt=0, description="size of the style embedding (concat only)")] = 16,
    marks: Annotated[Marks, Field(description="where the marks come from: learned (a texture path painting "
                                  "from noise), exemplar (tiles of training images of the style, matched "
                                  "on their coarse colours) or dictionary (exemplar while training, then "
                                  "atoms distilled from those tiles: no training tile is kept)")] = "exemplar",
    tile: Annotated[int, Field(gt=0, description="side of the tiles of exemplar marks, in pixels (a "
                               "multiple of 2**stages)")] = 16,
    bank: Annotated[int, Field(gt=0, description="tiles kept per style for exemplar marks")] = 4096,
    layout: Annotated[float, Field(ge=0, description="exemplar marks: weight of a tile's pattern of colours "
                                   "(less their mean) beside the colours themselves when matching kept tiles "
                                   "(0: the colours alone)")] = 2.0,
    upsample: Annotated[Upsample, Field(description="how the smooth path (and the exemplar marks' residual) "
                                        "upsamples the code's colours; bicubic draws sharper edges and "
                                        "scores lower restyle_psnr_gt (docs/restyle-notes.md)")] = "bilinear",
    atoms: Annotated[int, Field(gt=0, description="dictionary marks: most atoms per style, each distilled from "
                                "at least 8 distinct kept tiles' marks")] = 512,
) -> CondAE:
    """The label-conditioned autoencoder of the restyle task."""
    if image_size % 2**stages:
        raise ValueError(
            f"cond_ae: image_size {image_size} is not divisible by 2**stages = {2**stages}; "
            f"choose model.stages so that it is (at most {int(math.log2(image_size & -image_size))})"
        )
    return CondAE(num_classes, in_chans, latent_dim=latent_dim, stages=stages, width=width,
                  texture_width=texture_width, conditioning=conditioning, embed_dim=embed_dim,
                  marks=marks, tile=tile, bank=bank, layout=layout, upsample=upsample, atoms=atoms)


cond_ae.task = "restyle"
# 7 epochs of 32-image steps (875 steps); with learned marks, longer training paints louder
# ones, which the judge accepts more often but which cost restyle_psnr_gt. beta1 0.5 as in GANs,
# since the decoder's target (the style critic) moves as it learns. As GAN generators are usually evaluated, the model
# reported is a moving average of the weights (train.ema, about the last 200 steps): it smooths
# the colours that restyles keep; a much longer average would average the marks away too.
# The measurements behind these choices: docs/results.md, docs/restyle-notes.md.
cond_ae.defaults = {"train.batch_size": 32, "train.epochs": 7, "train.beta1": 0.5, "train.ema": 0.995}
