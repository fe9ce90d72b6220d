"""Style statistics (zoo/style.py): blind to where a texture lies, and precision@k by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import registry
from zoo.style import gram_vector, high_pass, info_nce, precision_at_k, views


def _texture(block: int, seed: int, side: int = 128) -> torch.Tensor:
    """Random colour squares of ``block`` px over a ``side`` px canvas: one kind of mark."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand(3, side // block, side // block, generator=g).repeat_interleave(block, 1).repeat_interleave(block, 2)


def test_the_statistics_do_not_care_where_a_texture_lies_only_what_it_is():
    torch.manual_seed(0)
    net = registry.model("ae", num_classes=2, in_chans=3, image_size=64).eval()
    windows = [(0, 0), (13, 7), (50, 61), (64, 64)]  # four places in each texture, odd offsets too
    fine, coarse = _texture(1, seed=1), _texture(4, seed=2)
    images = torch.stack([t[:, r : r + 64, c : c + 64] for t in (fine, coarse) for r, c in windows])
    kind = np.repeat([0, 1], len(windows))
    with torch.no_grad():
        v = gram_vector(net.style_features(high_pass(images)))
    d = torch.cdist(v, v).numpy()
    np.fill_diagonal(d, np.inf)
    assert (kind[d.argmin(1)] == kind).all(), "each window's nearest is a window of its own texture"
    same = d[(kind[:, None] == kind[None]) & np.isfinite(d)].mean()
    other = d[kind[:, None] != kind[None]].mean()
    assert same < 0.7 * other
    # a flat picture has no marks: the image minus its blur is zero everywhere
    assert high_pass(torch.full((1, 3, 32, 32), 0.3)).abs().max() < 1e-5


def test_gram_vector_is_the_upper_triangle_with_signed_roots_and_unit_norm_per_layer():
    maps = [torch.tensor([[[[1.0, -1.0]], [[2.0, 0.0]]]])]  # one image, 2 channels, 1×2 positions
    # Gram / positions: [[1, 1], [1, 2]]; upper triangle (1, 1, 2) -> signed roots (1, 1, √2) -> unit norm
    expected = torch.tensor([1.0, 1.0, 2**0.5]) / 2
    assert gram_vector(maps)[0].tolist() == pytest.approx(expected.tolist())
    two = gram_vector(maps + [torch.ones(1, 3, 2, 2)])
    assert two.shape == (1, 3 + 6) and two[0, 3:].norm().item() == pytest.approx(1.0)


def test_precision_at_k_by_hand():
    # two tight groups on a line; the point at 2.0 is labelled 1 but sits with the 0s
    points = np.array([[0.0], [1.0], [2.0], [10.0], [11.0], [12.0]])
    labels = np.array([0, 0, 1, 1, 1, 1])
    p, neighbours = precision_at_k(points, labels, k=2)
    # neighbours: 0->(1,2) 1/2; 1->(0,2) 1/2; 2->(1,0) 0; 3->(4,5) 1; 4->(3,5) 1; 5->(4,3) 1
    assert p == pytest.approx((0.5 + 0.5 + 0 + 1 + 1 + 1) / 6)
    assert neighbours[3].tolist() == [4, 5] and 2 not in neighbours[2]
    # duplicates: a point is never its own neighbour, even when tied at distance 0
    same = np.zeros((4, 2))
    _, found = precision_at_k(same, np.array([0, 0, 1, 1]), k=3)
    assert all(i not in row for i, row in enumerate(found))


def test_views_crop_half_the_side_and_keep_each_images_colours_up_to_order_and_brightness():
    torch.manual_seed(0)
    x = torch.rand(4, 3, 32, 32)
    v = views(x)
    assert v.shape == (4, 3, 16, 16)
    # every view is a 16×16 window of its own image with the channels reordered and one gain
    for i in range(4):
        found = False
        for top in range(17):
            for left in range(17):
                for flip in (False, True):
                    window = x[i, :, top : top + 16, left : left + 16]
                    window = window.flip(-1) if flip else window
                    for order in ([0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]):
                        gain = v[i].sum() / window[order].sum()
                        found |= torch.allclose(v[i], window[order] * gain, atol=1e-5)
        assert found, i


def test_info_nce_by_hand():
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    # each row's positive is its twin (cosine 1), its two others are orthogonal (cosine 0)
    expected = -math.log(math.e / (math.e + 2))
    assert info_nce(a, a.clone(), tau=1.0).item() == pytest.approx(expected)
    assert info_nce(a, a.clone(), tau=0.1).item() < 0.01  # a low temperature: the twin wins outright
    assert info_nce(a, a.flip(0), tau=1.0).item() > expected  # twins swapped: the positives are the far ones
