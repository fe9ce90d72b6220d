"""scikit-learn's bundled handwritten digits: a small real data set for quick checks, no download.

1,797 images of 8×8 pixels with 17 grey levels, light strokes on black, classes "0".."9". They
are upsampled smoothly (bicubic) to the requested size and repeated to three channels, so every
model built for colour images runs on them unchanged. The train/valid/test split (70/15/15,
stratified by digit) is fixed: the same images land in the same split on every machine.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from zoo.data import ImageDataset

FRACTIONS = {"train": 0.70, "valid": 0.15, "test": 0.15}
_SEED = 0  # part of the data set's definition, not a run option: splits never move


def digits(*, split: str, image_size: int) -> ImageDataset:
    """The ``split`` of the digits, as 3×image_size×image_size images in [0, 1]."""
    if split not in FRACTIONS:
        raise ValueError(f"split must be one of {', '.join(FRACTIONS)}, not {split!r}")
    pixels, labels, splits = _load()
    rows = splits[split]
    classes = [str(d) for d in range(10)]
    return ImageDataset(_resize(pixels[rows], image_size), labels[rows], classes, name="digits", split=split)


@functools.cache
def _load() -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    bunch = load_digits()
    labels = bunch.target.astype(np.int64)
    everything = np.arange(len(labels))
    train, rest = train_test_split(
        everything, train_size=FRACTIONS["train"], random_state=_SEED, stratify=labels
    )
    valid, test = train_test_split(rest, test_size=0.5, random_state=_SEED, stratify=labels[rest])
    splits = {"train": np.sort(train), "valid": np.sort(valid), "test": np.sort(test)}
    return bunch.images.astype(np.float32) / 16.0, labels, splits


def _resize(images: np.ndarray, size: int) -> np.ndarray:
    """N×8×8 floats in [0, 1] to N×size×size×3 uint8, bicubic (antialiased when shrinking)."""
    x = torch.from_numpy(images).unsqueeze(1)
    x = F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False, antialias=True)
    grey = x.clamp_(0, 1).mul_(255).round_().to(torch.uint8).squeeze(1).numpy()
    return np.repeat(grey[..., None], 3, axis=-1)
