"""Style statistics: what a painting's marks look like, wherever they lie in the picture.

The classic texture descriptor is the Gram matrix of a conv net's feature maps: the correlation
of every pair of channels, averaged over positions (Gatys et al. 2016, "Image style transfer
using convolutional neural networks"; used for style retrieval by Matsuo & Yanai 2016). The
average over positions makes it blind to where a mark is; the channels say what the marks are.
The net sees the image minus its blur (:func:`high_pass`): the flat colours and the layout of
the scene, which a style does not fix, drop out, and the marks remain.

``style_vectors`` turns a model's ``style_features(x)`` (a list of B×C×H×W maps, usually its
encoder's first layers) into one vector per image: each layer's Gram matrix, its upper
triangle, signed square roots (the power normalisation of bilinear pooling, which keeps a few
large correlations from drowning the rest), each layer scaled to unit norm so every layer
counts alike.

Trained for style without labels (:func:`views`, :func:`info_nce`): two views of one painting's
marks (its high pass, taken of the whole image so the blur has the image's scale, as in the
analysis), each a random crop of half its side, its colour channels shuffled and its brightness
scaled, must have closer statistics than the views of the other paintings of the batch
(InfoNCE, the loss of SimCLR, Chen et al. 2020, applied to the Gram statistics themselves). A
crop keeps the marks and loses the layout; the shuffled colours make the palette useless; what
two views still share is the way the painting is painted.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.transforms.v2.functional import gaussian_blur

__all__ = ["high_pass", "gram_vector", "precision_at_k", "views", "info_nce"]

# the blur removed by high_pass, as a share of the image side: 2 px at 64 px, 13 px at 416 px,
# about the size of a synthart stroke or dot, so the marks pass and the regions do not
BLUR_SHARE = 2 / 64


_LUMA = (0.299, 0.587, 0.114)


def luminance(x: torch.Tensor) -> torch.Tensor:
    """B×1×H×W: the luminance of B×3×H×W RGB images (Rec. 601 weights), the mean of other channels."""
    return (x * x.new_tensor(_LUMA)[:, None, None]).sum(1, keepdim=True) if x.shape[1] == 3 else x.mean(1, keepdim=True)


def high_pass(x: torch.Tensor) -> torch.Tensor:
    """``x`` (B×C×H×W) minus its Gaussian blur of sigma :data:`BLUR_SHARE` of the side."""
    sigma = max(0.5, BLUR_SHARE * x.shape[-1])
    size = 2 * round(3 * sigma) + 1
    # one axis at a time: the same Gaussian (it is separable), 2·size taps a pixel instead of size²
    rows = gaussian_blur(x, [size, 1], [sigma, 1.0])
    return x - gaussian_blur(rows, [1, size], [1.0, sigma])


def gram_vector(maps: list[torch.Tensor]) -> torch.Tensor:
    """B×D: per layer, the upper triangle of the channels' Gram matrix over positions (signed
    square roots, unit norm per layer), concatenated over the layers."""
    parts = []
    for m in maps:
        f = m.float().flatten(2)  # B×C×HW
        gram = f @ f.transpose(1, 2) / f.shape[-1]
        rows, cols = torch.triu_indices(gram.shape[1], gram.shape[1], device=gram.device)
        g = gram[:, rows, cols]
        g = g.sign() * (g.abs() + 1e-8).sqrt()  # + 1e-8: a finite gradient where a correlation is 0
        parts.append(F.normalize(g, dim=1))
    return torch.cat(parts, 1)


def precision_at_k(points: np.ndarray, labels: np.ndarray, k: int = 10) -> tuple[float, np.ndarray]:
    """The share of each point's ``k`` nearest other points (Euclidean) that share its label,
    averaged over the points: what someone asking for "paintings like this one" gets. Returns
    it with the N×k neighbour indices, nearest first."""
    from sklearn.neighbors import NearestNeighbors

    points, labels = np.asarray(points, dtype=np.float64), np.asarray(labels)
    k = min(k, len(points) - 1)
    if k < 1:
        return float("nan"), np.zeros((len(points), 0), dtype=np.int64)
    # k + 1: each point is its own nearest; ties put it anywhere among its duplicates, so drop it by index
    _, found = NearestNeighbors(n_neighbors=k + 1).fit(points).kneighbors(points)
    neighbours = np.array([[j for j in row if j != i][:k] for i, row in enumerate(found)], dtype=np.int64)
    return float((labels[neighbours] == labels[:, None]).mean()), neighbours


def views(x: torch.Tensor, share: float = 0.5) -> torch.Tensor:
    """A random view of each image of ``x`` (B×C×H×W): one crop of ``share`` of the side (the
    same place for the batch), channels permuted and brightness scaled per image, flipped
    half the time. Draws from torch's global generator, which the runner seeds."""
    b, c, h, w = x.shape
    ch, cw = max(1, round(share * h)), max(1, round(share * w))
    top = int(torch.randint(0, h - ch + 1, ()))
    left = int(torch.randint(0, w - cw + 1, ()))
    v = x[:, :, top : top + ch, left : left + cw]
    order = torch.rand(b, c).argsort(1).to(x.device)
    v = torch.gather(v, 1, order[:, :, None, None].expand(-1, -1, ch, cw))
    v = v * (0.7 + 0.6 * torch.rand(b, 1, 1, 1)).to(x.device)
    return v.flip(-1) if bool(torch.rand(()) < 0.5) else v


def info_nce(a: torch.Tensor, b: torch.Tensor, tau: float) -> torch.Tensor:
    """The NT-Xent loss of SimCLR: row i of ``a`` and of ``b`` (two views of one image) are each
    other's positive among the 2B - 1 others, by cosine similarity over ``tau``."""
    z = F.normalize(torch.cat([a, b]), dim=1)
    sim = z @ z.T / tau
    sim = sim.masked_fill(torch.eye(len(z), dtype=torch.bool, device=z.device), float("-inf"))
    n = len(a)
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
    return F.cross_entropy(sim, target)
