"""The digits dataset: scikit-learn's handwritten digits, resized, in a fixed stratified split."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.datasets import load_digits

import registry


def test_digits_splits_are_fixed_disjoint_stratified_and_complete():
    splits = {s: registry.dataset("digits", split=s, image_size=32) for s in ("train", "valid", "test")}
    assert {s: len(ds) for s, ds in splits.items()} == {"train": 1257, "valid": 270, "test": 270}
    for ds in splits.values():
        assert ds.classes == [str(d) for d in range(10)]
        counts = ds.class_counts()
        assert counts.max() - counts.min() <= 6  # each split holds every digit in proportion
    # Same images, same split, every time: compare with a fresh build.
    again = registry.dataset("digits", split="valid", image_size=32)
    assert torch.equal(again[17][0], splits["valid"][17][0]) and again[17][1] == splits["valid"][17][1]
    # Every one of the 1,797 digits is in exactly one split.
    flat = {s: {ds.images[i].tobytes() for i in range(len(ds))} for s, ds in splits.items()}
    assert len(flat["train"] | flat["valid"] | flat["test"]) == sum(len(f) for f in flat.values())


def test_digit_images_are_smoothly_resized_three_channel_copies_of_the_originals():
    ds = registry.dataset("digits", split="test", image_size=32)
    image, label = ds[0]
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32 and isinstance(label, int)
    assert torch.equal(image[0], image[1]) and torch.equal(image[1], image[2])
    assert 0 <= image.min() and image.max() <= 1
    # Upsampled smoothly: many grey levels, not 17 blocky ones.
    assert len(torch.unique(image[0])) > 40
    # Shrunk back to 8×8 it is one of scikit-learn's digits, with that digit's label.
    small = torch.nn.functional.interpolate(image[:1, None], size=(8, 8), mode="area")[0, 0].numpy() * 16
    originals = load_digits()
    distances = np.abs(originals.images - small).mean(axis=(1, 2))
    assert distances.min() < 1.0 and originals.target[distances.argmin()] == label
