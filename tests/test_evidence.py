"""Restyle scores that share nothing with what they score (zoo/evidence.py): judges trained on
paintings no restyler saw, a texture distance from a fixed network, and copies of training tiles."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import registry
from zoo import evidence


@pytest.fixture
def art(tmp_path, monkeypatch):
    monkeypatch.setenv("ARTZOO_CACHE", str(tmp_path / "cache"))
    return registry.dataset("synthart", split="train", image_size=32, size=200)


def _uint8(dataset, rows) -> np.ndarray:
    return np.stack([dataset[int(i)][0].mul(255).round().byte().permute(1, 2, 0).numpy() for i in rows])


def test_unseen_paintings_keep_the_styles_and_counts_and_share_no_painting(art):
    unseen = art.unseen()
    assert isinstance(art, evidence.Unseen) and unseen.classes == art.classes and unseen.name == art.name
    assert np.array_equal(np.bincount(unseen.targets), np.bincount(art.targets))
    assert unseen[0][0].shape == art[0][0].shape
    ours = {_uint8(art, [i]).tobytes() for i in range(len(art))}
    assert not any(_uint8(unseen, [i]).tobytes() in ours for i in range(len(unseen)))
    assert np.array_equal(_uint8(art.unseen(), range(5)), _uint8(unseen, range(5))), "the same seed again"
    test = registry.dataset("synthart", split="test", image_size=32, size=200)
    assert np.array_equal(_uint8(test.unseen(), range(5)), _uint8(unseen, range(5))), "from any split, the training one"


def test_training_paintings_themselves_are_copies_and_fresh_ones_of_the_style_are_not(art, monkeypatch):
    style = art.classes.index("Impressionism")  # free strokes: no two paintings share a tile by chance
    rows = np.flatnonzero(np.asarray(art.targets) == style)[:12]
    own = _uint8(art, rows)
    targets = np.full(len(rows), style)
    assert (evidence.copy_rates(own, targets, art) == 1).all()
    assert (evidence.copy_rates(own[:, :, ::-1].copy(), targets, art) == 1).all(), "mirrored, still copies"
    fresh = _uint8(art.unseen(), np.flatnonzero(np.asarray(art.unseen().targets) == style)[:12])
    rates = evidence.copy_rates(fresh, targets, art)
    assert rates.mean() < 0.2
    monkeypatch.setattr(evidence, "SOURCE_PIXELS", 3 * 32 * 32)  # searched three paintings at a time, as at 224 px
    assert np.array_equal(evidence.copy_rates(fresh, targets, art), rates)
    assert (evidence.copy_rates(own, targets, art) == 1).all()
    flat = np.full((2, 32, 32, 3), 128, np.uint8)  # no marks: nothing to copy, no rate
    assert np.isnan(evidence.copy_rates(flat, np.full(2, style), art)).all()


def test_the_texture_probe_is_fixed_and_tells_a_styles_marks_from_another_styles(art):
    torch.manual_seed(1)
    probe = evidence.TextureProbe()
    torch.manual_seed(2)  # whatever the caller's random state, the same network
    assert all(torch.equal(a, b) for a, b in zip(probe.state_dict().values(), evidence.TextureProbe().state_dict().values()))
    items = range(0, len(art), 2)
    truth = torch.stack([art[i][0] for i in items])
    again = torch.stack([art.render(i, art[i][1], texture=1) for i in items])  # the same painting, other marks
    other = torch.stack([art.render(i, (art[i][1] + 1) % len(art.classes)) for i in items])  # another style's marks
    assert probe.distance(truth, truth).abs().max() < 1e-5
    # for every style: two samples of its marks are nearer than its marks and another style's
    styles = np.array([art[i][1] for i in items])
    near, far = probe.distance(again, truth), probe.distance(other, truth)
    for style in np.unique(styles):
        assert near[styles == style].mean() < 0.7 * far[styles == style].mean(), art.classes[style]
    blurred = F.avg_pool2d(truth, 2).repeat_interleave(2, 2).repeat_interleave(2, 3)  # marks gone
    assert probe.distance(blurred, truth).mean() > 2 * near.mean()


def test_the_structure_score_sees_outlines_on_the_scenes_boundaries_and_not_elsewhere(art):
    pop = art.classes.index("Pop_Art")  # dark outlines round every region of the scene
    items = range(0, len(art), 10)
    truth = torch.stack([art.render(i, pop) for i in items])
    again = torch.stack([art.render(i, pop, texture=1) for i in items])  # the same outlines, other marks
    shuffled = torch.roll(truth, 1, 0)  # Pop_Art's outlines of other scenes: copied from elsewhere
    assert torch.allclose(evidence.structure(truth, truth), torch.ones(len(truth)), atol=1e-5)
    assert evidence.structure(again, truth).mean() > evidence.structure(shuffled, truth).mean() + 0.3
