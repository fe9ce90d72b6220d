"""The embedding analysis (zoo/analysis.py) and the one adapter that reaches into umap-learn's and
numba's private names (zoo/umap_adapter.py): each name it relies on is checked against the
installed libraries, so an upgrade that changes one fails here, not in a run."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch


def test_the_private_names_the_umap_adapter_relies_on_are_still_there():
    import umap
    import umap.umap_
    from numba.core.caching import NullCache
    from numba.core.dispatcher import Dispatcher

    transform = inspect.getsource(umap.UMAP.transform)
    # transform asks this index for the new points' neighbours, and measures them itself when small
    assert "self._knn_search_index.query" in transform and "self._small_data" in transform
    assert "init_graph_transform(" in transform and "self.n_epochs" in transform
    assert list(inspect.signature(umap.umap_.init_graph_transform).parameters) == ["graph", "embedding"]
    # numba: the functions umap-learn leaves uncached, and the switch its cache=True flips
    assert isinstance(umap.umap_.smooth_knn_dist, Dispatcher)
    from zoo.umap_adapter import _cache_jit

    _cache_jit(umap)  # what the adapter does: every dispatcher of the fit's modules caches on disk now
    assert not isinstance(umap.umap_.smooth_knn_dist._cache, NullCache)
    uncached = [name for module in (umap.umap_, umap.layouts, umap.utils) for name, f in vars(module).items()
                if isinstance(f, Dispatcher) and isinstance(f._cache, NullCache)]
    assert not uncached, uncached


def test_new_points_start_where_umaps_own_initialisation_puts_them():
    import scipy.sparse
    import umap.umap_

    from zoo.umap_adapter import _init_graph_transform

    rng = np.random.default_rng(0)
    graph = scipy.sparse.random(300, 80, density=0.05, random_state=0, format="lil", dtype=np.float32)
    graph[3, :] = 0  # no neighbour among the fitted points: NaN
    graph[4, 10], graph[4, 20], graph[4, 30] = 0.5, 1.0, 1.0  # strength 1: the first such neighbour's place
    graph = graph.tocsr()
    graph.eliminate_zeros()
    embedding = rng.normal(size=(80, 2)).astype(np.float32)
    ours, theirs = _init_graph_transform(graph, embedding), umap.umap_.init_graph_transform(graph, embedding)
    assert np.isnan(ours[3]).all() and np.array_equal(ours[4], embedding[20])
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)




@pytest.mark.slow
def test_a_layout_fit_on_a_subsample_places_every_point_the_same_way_twice():
    from zoo.analysis import subsample
    from zoo.umap_adapter import umap_layout

    rng = np.random.default_rng(0)
    points = np.concatenate([rng.normal(c, 0.3, size=(60, 8)) for c in (0, 3, 6)]).astype(np.float32)
    fit = subsample(len(points), 90)
    torch.set_num_threads(1)  # as torchrun starts each rank (conftest resets it after the test)
    first, again = umap_layout(points, fit=fit), umap_layout(points, fit=fit)
    assert torch.get_num_threads() == 1, "the layout leaves torch the threads it was given"
    assert first.shape == (180, 2) and np.isfinite(first).all()
    assert np.array_equal(first, again), "seeded: the same points give the same layout"
    # the points placed by transform (the 90 not fitted) land among their own cluster's
    centres = np.stack([first[i * 60:(i + 1) * 60].mean(0) for i in range(3)])
    nearest = np.linalg.norm(first[:, None] - centres[None], axis=-1).argmin(1)
    assert (nearest == np.repeat(np.arange(3), 60)).mean() > 0.95
