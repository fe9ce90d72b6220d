"""Restyle scores that share nothing with what they score.

A judge trained on the training split has seen every tile an example-based restyler copies, so
its verdict cannot tell a style learned from tiles remembered; a PSNR at a quarter of the side
cannot see marks at all. The scores here look elsewhere:

* **Unseen judges** (:func:`unseen_judges`): the same judge recipe (zoo/judge.py) trained on
  paintings of the same styles that the restyler never saw, where the dataset can paint them
  (:class:`Unseen`: synthart, another seed of the same recipe).
* **Texture ratio** (:class:`TextureProbe`): the distance between the texture statistics (the
  loudness of each channel of a fixed filter bank) of a restyle and of its ground truth, over
  the same distance for the input left unchanged: 0 is the truth's marks, 1 no better than
  doing nothing, above 1 worse (a blur). Random marks differ between two samples of a style, so
  even the truth painted again with other marks is not at 0 (the ceiling, logged beside it).
  The statistics come from a fixed, seeded, untrained network, which no run trains and no
  critic shares, at full resolution.
* **Structure** (:func:`structure`): the correlation of a restyle's edges (the gradient
  magnitude of its luminance at full resolution) with the truth's: where a style's marks follow
  the scene (Pop_Art's outlines on its regions' boundaries, Cubism's facets), a restyle that
  copies marks from elsewhere puts edges where the scene has none. Beside it the input's and the
  truth painted with other marks (the floor and the ceiling).
* **Copy rate** (:func:`copy_rates`): the share of a restyle's tiles whose marks (their high
  pass) are a near-copy (cosine ≥ :data:`COPY_COSINE`) of a tile of a training painting of the
  target style, at any half-tile offset, mirrored or not. The ground truth, freshly painted,
  scores what an original painting of the style does by chance.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from zoo.judge import train_judge
from zoo.style import high_pass, luminance
from zoo.task import labels_of

SEED = 0
COPY_COSINE = 0.9  # a tile whose marks correlate this well with a training tile's is a copy of it
COPY_TILE_SHARE = 1 / 4  # the copy rate's tile, as a share of the image side (16 px at 64 px)
COPY_SOURCES = 256  # training paintings per style searched for a copy (a seeded sample where more)
MARKS_RMS = 0.01  # a tile with less high-pass energy than this carries no marks to copy
QUIET = 1e-3  # a channel's response to marks fainter than a grey level: none (keeps log finite)
SOURCE_PIXELS = 64 * 64 * 64  # the training paintings searched at once: 64 of 64 px, 5 of 224 px


@runtime_checkable
class Unseen(Protocol):
    """A dataset capability: ``unseen()`` gives a training split of the same classes, image size
    and class counts that shares no image with this one (synthart: another seed of its recipe),
    for judges that never saw what a model trained on this one may have copied."""

    def unseen(self): ...


def unseen_judges(train_set, models: list[str], num_classes: int, device: torch.device, *,
                  steps: int) -> dict[str, nn.Module]:
    """Each registered classifier of ``models`` trained as a judge on ``train_set.unseen()``;
    none where the dataset cannot paint unseen paintings."""
    if not isinstance(train_set, Unseen):
        return {}
    unseen = train_set.unseen()
    return {name: train_judge(unseen, num_classes, device, steps=steps, model=name) for name in models}


class TextureProbe(nn.Module):
    """How loud an image's marks are in each channel of three fixed random conv layers over its
    high pass: a filter bank's energies (the diagonal of each layer's centred Gram matrix).

    Not whole Gram matrices: over one small painting the channels' cross-correlations of two
    samples of the same style's random marks differ almost as much as two styles' do, and a Gram
    matrix normalised per layer cannot tell loud marks from faint ones."""

    def __init__(self, in_chans: int = 3, width: int = 32) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(SEED)
        shapes = [(in_chans, width, 1), (width, 2 * width, 2), (2 * width, 2 * width, 2)]
        self.layers = nn.ModuleList()
        for c_in, c_out, stride in shapes:
            conv = nn.Conv2d(c_in, c_out, 3, stride, 1)
            nn.init.kaiming_normal_(conv.weight, a=0.2, nonlinearity="leaky_relu", generator=gen)
            nn.init.zeros_(conv.bias)
            self.layers.append(nn.Sequential(conv, nn.LeakyReLU(0.2)))
        self.requires_grad_(False).eval()

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """B×D texture vectors of ``x`` (B×C×H×W in [0, 1]): per channel, the log of the response's
        standard deviation over positions (loudness is compared as a ratio)."""
        h, parts = high_pass(x.float()), []
        for layer in self.layers:
            h = layer(h)
            parts.append(h.flatten(2).std(2).clamp_min(QUIET).log())
        return torch.cat(parts, 1)

    def distance(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Per item, the distance between the texture vectors of ``a`` and ``b``."""
        return (self(a) - self(b)).norm(dim=1)


_SOBEL = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])


def edges(x: torch.Tensor) -> torch.Tensor:
    """B×H·W: the Sobel gradient magnitude of ``x``'s luminance (B×C×H×W in [0, 1]), full resolution."""
    x = x.float()
    y = luminance(x)
    k = _SOBEL.to(x.device)[None, None]
    gx, gy = F.conv2d(y, k, padding=1), F.conv2d(y, k.transpose(2, 3), padding=1)
    return (gx.square() + gy.square()).sqrt().flatten(1)


def structure(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per item, the Pearson correlation of the edges of ``a`` and ``b`` (1: edges in the same places)."""
    ea, eb = edges(a), edges(b)
    ea, eb = ea - ea.mean(1, keepdim=True), eb - eb.mean(1, keepdim=True)
    return (ea * eb).sum(1) / (ea.norm(dim=1) * eb.norm(dim=1)).clamp_min(1e-8)


def _mark_tiles(images: torch.Tensor, tile: int, stride: int) -> torch.Tensor:
    """N×(C·tile²): the high pass of every ``tile``-square of ``images`` at ``stride``."""
    return F.unfold(high_pass(images.float()), tile, stride=stride).transpose(1, 2).flatten(0, 1)


@torch.no_grad()
def copy_rates(painted: np.ndarray, targets: np.ndarray, train_set) -> np.ndarray:
    """Per painted image (N×H×W×C uint8, each in its style ``targets``), the share of its
    tiles with marks that copy a training painting of that style; NaN where none has marks."""
    labels = labels_of(train_set)
    side = painted.shape[1]
    tile = max(4, round(side * COPY_TILE_SHARE))
    rng = np.random.default_rng(SEED)
    rates = np.full(len(painted), np.nan)
    for style in np.unique(targets):
        sources = np.flatnonzero(labels == style)
        if not len(sources):
            continue
        if len(sources) > COPY_SOURCES:
            sources = np.sort(rng.choice(sources, COPY_SOURCES, replace=False))
        rows = np.flatnonzero(targets == style)
        images = torch.from_numpy(np.ascontiguousarray(painted[rows])).permute(0, 3, 1, 2).float() / 255
        tiles = _mark_tiles(images, tile, tile).view(len(rows), -1, images.shape[1] * tile * tile)
        marked = tiles.pow(2).mean(2).sqrt() > MARKS_RMS
        queries = F.normalize(tiles.flatten(0, 1), dim=1)
        best, searched = torch.full((len(queries),), -1.0), 0
        # the training tiles a few paintings at a time: at 224 px, 256 paintings' are a GB and its copies
        for chunk in np.array_split(sources, -(-len(sources) * side * side // SOURCE_PIXELS)):
            ours = torch.stack([train_set[int(i)][0] for i in chunk])
            known = torch.cat([_mark_tiles(ours, tile, tile // 2), _mark_tiles(ours.flip(-1), tile, tile // 2)])
            known = F.normalize(known[known.pow(2).mean(1).sqrt() > MARKS_RMS], dim=1)
            searched += len(known)
            if len(known):
                best = torch.maximum(best, torch.cat([(part @ known.T).max(1).values for part in queries.split(1024)]))
        if not searched:  # no training tile of this style carries marks
            rates[rows] = np.where(marked.any(1).numpy(), 0.0, np.nan)
            continue
        copied = (best.view(len(rows), -1) >= COPY_COSINE) & marked
        count = marked.sum(1)
        rates[rows] = torch.where(count > 0, copied.sum(1) / count.clamp_min(1), torch.nan).double().numpy()
    return rates
