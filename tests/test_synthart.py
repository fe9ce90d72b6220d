"""synthart: deterministic, long-tailed, any size, and style is texture that any scene can take."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score

import registry
from zoo import metrics
from runners import config
from zoo.datasets.synthart import WIKIART_RANK, split_labels

SIZE = 32
TINY = {"size": 64, "image_size": SIZE}  # 64 train, 10 valid, 10 test images
DEFAULT_CLASSES = ["Abstract_Expressionism", "Art_Nouveau_Modern", "Color_Field_Painting", "Cubism",
                   "Impressionism", "Northern_Renaissance", "Pointillism", "Pop_Art"]


def tiny(split: str = "train", **options):
    return registry.dataset("synthart", split=split, **{**TINY, **options})


def digest(dataset) -> str:
    return hashlib.sha256(np.ascontiguousarray(dataset.images[dataset.rows]).tobytes()).hexdigest()


def quarter_psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR after area-downsampling to a quarter of the side, as the restyle task scores."""
    q = lambda x: F.interpolate(x, scale_factor=0.25, mode="area")  # noqa: E731
    return float(metrics.psnr(q(a), q(b)).mean())


def test_items_are_float_images_in_unit_range_with_int_labels():
    ds = tiny()
    image, label = ds[3]
    assert image.shape == (3, SIZE, SIZE) and image.dtype == torch.float32
    assert 0 <= image.min() and image.max() <= 1 and image.std() > 0.02
    assert type(label) is int and 0 <= label < len(ds.classes)
    assert len(ds) == 64 and len(tiny("valid")) == len(tiny("test")) == 10


def test_classes_are_sorted_and_fixed():
    assert tiny().classes == DEFAULT_CLASSES
    assert tiny("test", num_styles=10).classes == sorted([*DEFAULT_CLASSES, "Action_painting", "Post_Impressionism"])
    assert tiny(num_styles=3).classes == ["Cubism", "Impressionism", "Pointillism"]


@pytest.mark.slow
def test_same_seed_same_pixels_in_another_process_and_cache(tmp_path):
    here = tiny("valid", seed=3)
    script = ("import hashlib, numpy as np, registry; "
              "d = registry.dataset('synthart', split='valid', image_size=32, size=64, seed=3); "
              "print(hashlib.sha256(np.ascontiguousarray(d.images[d.rows]).tobytes()).hexdigest(), d.built, list(d.labels))")
    env = dict(os.environ, ARTZOO_CACHE=str(tmp_path / "other_cache"))
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True).stdout
    theirs, built, labels = out.splitlines()[-1].split(maxsplit=2)  # after the cache's own lines
    assert built == "True", "the other process painted its own copy"
    assert theirs == digest(here) and labels.strip() == str(list(here.labels))


def test_seeds_and_splits_paint_different_scenes():
    a, b = tiny("test", seed=0), tiny("test", seed=1)
    assert digest(a) != digest(b)
    train, test = tiny("train"), tiny("test")
    # item 0 of each split, both painted in the same style: different scenes, not just texture
    assert quarter_psnr(train.render(0, 0)[None], test.render(0, 0)[None]) < 16


def test_second_build_reuses_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ARTZOO_CACHE", str(tmp_path / "cache"))
    first, second = tiny("valid"), tiny("valid")
    assert first.built and not second.built
    assert digest(first) == digest(second)
    assert Path(second.images.filename).is_relative_to(tmp_path / "cache")


def test_default_train_split_has_a_wikiart_like_long_tail():
    # counted from the labels alone: nothing is painted
    counts = {s: np.bincount(split_labels(split=s), minlength=8) for s in ("train", "valid", "test")}
    assert counts["train"].sum() >= 2000, "a few thousand training images by default"
    assert counts["train"].max() / counts["train"].min() >= 20
    assert counts["test"].min() >= 10 and counts["valid"].min() >= 10, "every class can be scored"
    impressionism, pointillism = DEFAULT_CLASSES.index("Impressionism"), DEFAULT_CLASSES.index("Pointillism")
    assert counts["train"].argmax() == impressionism and counts["train"].argmin() == pointillism  # as in WikiArt
    assert np.array_equal(np.bincount(tiny(imbalance=1.0).labels), [8] * 8)


def test_the_long_tail_preset_has_wikiarts_shape_and_balanced_held_out_splits():
    lt = config.resolve("cnn", ["data=synthart_lt"])["data"]
    assert lt["image_size"] == 32, "the preset's own image size, a data.* default of the dataset"
    assert config.resolve("cnn", ["data=synthart_lt", "data.image_size=48"])["data"]["image_size"] == 48
    assert config.resolve("cnn", [])["data"]["image_size"] == 64, "the default synthart is unchanged"
    options = {k: lt[k] for k in ("seed", "size", "imbalance", "held_out_per_class")}
    counts = {s: np.bincount(split_labels(split=s, num_styles=10, **options), minlength=10)
              for s in ("train", "valid", "test")}
    train = dict(zip(sorted(WIKIART_RANK), counts["train"]))
    assert len(train) >= 10 and min(train.values()) > 0
    assert max(train.values()) / min(train.values()) >= 100
    ranked = [train[c] for c in WIKIART_RANK]
    assert ranked == sorted(ranked, reverse=True), "largest to smallest in WikiArt's order of movements"
    for split in ("valid", "test"):  # every style scored on the same number of images, at least 30
        assert len(set(counts[split])) == 1 and counts[split][0] >= 30, split
    ds = registry.dataset("synthart_lt", split="test", image_size=16, size=200, held_out_per_class=3)
    assert ds.name == "synthart_lt" and len(ds.classes) == 10 and ds.class_counts().tolist() == [3] * 10
    assert ds[0][0].shape == (3, 16, 16)


def test_labels_match_the_built_dataset():
    assert np.array_equal(tiny("test", seed=5).labels, split_labels(split="test", seed=5, size=64))


def test_render_in_own_style_is_the_item():
    ds = tiny("test")
    for i in range(len(ds)):
        image, label = ds[i]
        assert torch.equal(ds.render(i, label), image)
        assert torch.equal(ds.render(i, ds.classes[label]), image)


def test_restyle_keeps_the_scene_and_another_texture_sample_differs_only_in_texture():
    ds = tiny("test", size=400)  # 60 test scenes
    n = 24
    own = torch.stack([ds[i][0] for i in range(n)])
    elsewhere = torch.stack([ds.render(i, (ds.labels[i] + 1) % len(ds.classes)) for i in range(n)])
    resampled = torch.stack([ds.render(i, int(ds.labels[i]), texture=1) for i in range(n)])
    other_scene = own.roll(1, 0)
    restyled, between = quarter_psnr(own, elsewhere), quarter_psnr(own, other_scene)
    assert restyled > between + 10, f"a restyle should keep layout and colour: {restyled:.1f} vs {between:.1f} dB"
    assert not torch.equal(resampled, own), "texture=1 is an independent sample"
    assert quarter_psnr(own, resampled) > between + 12


def test_style_is_not_colour():
    # 50 paintings per style; the mean colour of a painting must not give its style away
    ds = registry.dataset("synthart", split="train", image_size=SIZE, size=400, imbalance=1.0, seed=2)
    mean_rgb = np.asarray(ds.images, dtype=np.float32)[ds.rows].mean((1, 2))
    accuracy = cross_val_score(LogisticRegression(max_iter=2000), mean_rgb, ds.labels, cv=5).mean()
    assert accuracy < 0.25, f"mean colour predicts style with accuracy {accuracy:.2f} (chance 0.125)"


def test_paints_at_416_px_the_same_scene():
    big = registry.dataset("synthart", split="test", image_size=416, size=54)  # 8 test images
    small = registry.dataset("synthart", split="test", image_size=64, size=54)
    assert big[0][0].shape == (3, 416, 416)
    for i in (0, 1):
        a = F.interpolate(big.render(i, i)[None], size=16, mode="area")
        b = F.interpolate(small.render(i, i)[None], size=16, mode="area")
        assert float(metrics.psnr(a, b)) > 20, "the same scene and style at any size"


def test_bad_options_are_refused_by_name():
    with pytest.raises(ValueError, match="split must be one of"):
        registry.load("dataset", "synthart")(split="val", image_size=SIZE)
    with pytest.raises(ValueError, match="size=4 is too small for 8 styles"):
        tiny(size=4)
    with pytest.raises(ValueError, match="num_styles must be between"):
        tiny(num_styles=11)
    ds = tiny("test")
    with pytest.raises(ValueError, match="unknown style 'Baroque'.*Pointillism"):
        ds.render(0, "Baroque")
    with pytest.raises(ValueError, match="out of range"):
        ds.render(0, 8)
