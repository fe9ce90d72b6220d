"""A user's own picture, restyled or reconstructed at its own size and aspect ratio.

Training sees squares of the run's image size; a user's photo is any H×W. What a task paints
(``restyled``, ``reconstruction``: the image outputs of its ``predict``) is made at the picture's
size, in one of two ways, chosen by the model:

* a model that takes any size declares ``size_multiple`` (cond_ae: the side of its code's
  squares): the picture is padded to that multiple (edge pixels repeated), painted whole, and
  cropped back;
* any other model (ae pools to a fixed grid and upsamples to the run's size) paints tiles of the
  run's size, which are stitched together: each tile is the kind of input it was trained on.

A restyle's marks have a scale (``mark_scale``): painted at the picture's own resolution, the
marks of a model trained at 64 px are as many pixels wide as in training, so tiny on a 1000 px
photo. ``"auto"`` (the default) keeps them as large, relative to the picture, as in training:
the marks are painted on the picture brought to the run's size (its short side) and enlarged
to the picture, over the colours and layout painted at full resolution; ``1`` paints them at
their trained size in pixels. A 64 px picture of a 64 px run is painted exactly as before.

Pictures larger than :data:`MAX_PIXELS` are refused, with the cap named, before any work: a
restyle's memory grows with the pixels.
"""

from __future__ import annotations

import inspect

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["MAX_PIXELS", "PictureTooLarge", "as_tensor", "is_picture", "mark_scale_of", "paints_marks",
           "predict_picture"]

# The largest picture painted, in pixels: a 12 MP phone photo (4000×3000) with room to spare. A
# cond_ae restyle of 16 MP at mark scale 1 peaks near 2 GB (docs/performance.md).
MAX_PIXELS = 16_777_216
TILES_PER_BATCH = 64  # tiles of the run's size painted per forward, for a model that tiles


class PictureTooLarge(ValueError):
    """A picture over :data:`MAX_PIXELS`; the message names the cap and what to do."""


def as_tensor(pixels: np.ndarray, in_chans: int) -> torch.Tensor:
    """H×W×3 (or N×H×W×3) uint8 pixels as a C×H×W (N×C×H×W) float tensor in [0, 1], one grey
    channel for a model of ``in_chans`` 1: what a task's ``predict`` takes."""
    x = torch.from_numpy(np.ascontiguousarray(pixels)).movedim(-1, -3).float().div(255)
    return x.mean(-3, keepdim=True) if in_chans == 1 else x


def is_picture(value, like: torch.Tensor) -> bool:
    """Whether a ``predict`` output is a batch of pictures of ``like``'s size (B×C×H×W), not a
    code or an embedding."""
    return np.ndim(value) == 4 and tuple(np.shape(value)[2:]) == tuple(like.shape[2:])


def paints_marks(task) -> bool:
    """Whether the task's ``predict`` takes ``mark_scale`` (a restyle)."""
    return _takes(task, "mark_scale")


def _takes(task, option: str) -> bool:
    predict = getattr(task, "predict", None)
    return predict is not None and option in inspect.signature(predict).parameters


def mark_scale_of(value: str | float | None, height: int, width: int, image_size: int) -> float:
    """``mark_scale`` as a number: ``"auto"`` (or None) is the picture's short side over the run's
    image size, never below 1; a number is itself (≥ 1)."""
    if value in (None, "auto"):
        return max(1.0, min(height, width) / image_size)
    scale = float(value)
    if not scale >= 1:
        raise ValueError(f"mark_scale must be auto or a number ≥ 1 (1: marks at their trained size), not {value!r}")
    return scale


def check_size(height: int, width: int) -> None:
    """Refuse a picture over :data:`MAX_PIXELS`, naming the cap and how to paint it smaller."""
    if height * width > MAX_PIXELS:
        raise PictureTooLarge(
            f"the picture is {width}×{height} = {height * width:,} pixels, over the {MAX_PIXELS:,} a restyle at its own "
            f"size is allowed (its memory grows with the pixels); paint it smaller: --size N (its short side), "
            f"e.g. --size {int((MAX_PIXELS * min(height, width) / max(height, width)) ** 0.5)}")


@torch.no_grad()
def predict_picture(task, picture: torch.Tensor, image_size: int, **options) -> dict[str, np.ndarray]:
    """The image outputs of ``task.predict`` for one picture (1×C×H×W in [0, 1], any size) at
    its size: ``{"restyled": 1×C×H×W}`` and the like (other outputs are left out: a code's shape
    would follow the picture's). ``options`` go to ``predict`` (``style=``, ``seed=``);
    ``mark_scale`` (``"auto"``, default, or a number) only to a task that paints marks."""
    height, width = picture.shape[-2:]
    check_size(height, width)
    scale = options.pop("mark_scale", "auto")
    if paints_marks(task):
        options["mark_scale"] = mark_scale_of(scale, height, width, image_size)
    if _takes(task, "embed"):
        options["embed"] = False  # a code's shape would follow the picture's: only images are kept
    multiple = getattr(task.net, "size_multiple", None)
    if multiple:
        padded = _padded(picture, multiple)
        return {k: v[..., :height, :width] for k, v in task.predict(padded, **options).items() if is_picture(v, padded)}
    return _tiled(task, picture, image_size, options)


def _padded(x: torch.Tensor, multiple: int) -> torch.Tensor:
    h, w = x.shape[-2:]
    return F.pad(x, (0, -w % multiple, 0, -h % multiple), mode="replicate")


def _tiled(task, picture: torch.Tensor, size: int, options: dict) -> dict[str, np.ndarray]:
    """Paint ``picture`` as tiles of ``size``: padded to whole tiles, cut, painted, stitched."""
    c, (height, width) = picture.shape[1], picture.shape[-2:]
    padded = _padded(picture, size)
    rows, cols = padded.shape[-2] // size, padded.shape[-1] // size
    tiles = F.unfold(padded, size, stride=size).transpose(1, 2).reshape(-1, c, size, size)  # row by row
    painted: dict[str, list[np.ndarray]] = {}
    for start in range(0, len(tiles), TILES_PER_BATCH):
        batch = tiles[start : start + TILES_PER_BATCH]
        per_tile = {k: _expanded(v, len(batch)) for k, v in options.items()}
        for key, value in task.predict(batch, **per_tile).items():
            if is_picture(value, batch):
                painted.setdefault(key, []).append(np.asarray(value))
    out = {}
    for key, parts in painted.items():
        grid = torch.from_numpy(np.concatenate(parts))  # tiles × C' × size × size
        folded = F.fold(grid.flatten(1).T[None], (rows * size, cols * size), size, stride=size)
        out[key] = folded[..., :height, :width].numpy()
    return out


def _expanded(value, n: int):
    """A per-image option (a style label or blend of the one picture) repeated for ``n`` tiles."""
    if isinstance(value, torch.Tensor) and value.dim() >= 1 and len(value) == 1:
        return value.expand(n, *value.shape[1:])
    return value


def read_exemplars(sources, image_size: int, in_chans: int) -> tuple[torch.Tensor | None, list[tuple[object, str]]]:
    """A user's own paintings (paths or bytes) read at the run's size, as training tiles were: an
    N×C×S×S batch for ``CondAE.use_exemplars`` (None if none is readable), and each unreadable
    source with its reason."""
    from zoo.data import UnreadableImage
    from zoo.imageio import read_image

    read, skipped = [], []
    for source in sources:
        try:
            read.append(as_tensor(read_image(source, image_size), in_chans))
        except UnreadableImage as exc:
            skipped.append((source, str(exc)))
    return (torch.stack(read) if read else None), skipped
