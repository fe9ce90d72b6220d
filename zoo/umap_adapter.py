"""A seeded 2-D UMAP layout, quick on a CPU: the one module that reaches into umap-learn's and
numba's private names.

umap-learn needs help in three places, each behind a name this module owns:

* its neighbour search either compiles pynndescent (~45 s of numba JIT per process) or, below
  4,096 points, calls a Python-level metric 16 million times: scikit-learn's exact search is
  handed to the fit (``precomputed_knn``, public) and to ``transform`` (its private
  ``_knn_search_index``, with ``_small_data`` off);
* ``transform`` starts each new point in a Python loop (``umap.umap_.init_graph_transform``,
  about 2 s per 10,000 points): replaced for the call by the same sums as one sparse product;
* only some of its numba functions are cached: the others are compiled in every process
  (numba's private ``Dispatcher._cache``; ``enable_caching`` is what ``cache=True`` calls).

tests/test_analysis.py checks each of these names against the installed libraries (and the
vectorised start against UMAP's own), so an upgrade that changes one fails there, not in a run.
"""

from __future__ import annotations

import os
import warnings
from unittest import mock

import numpy as np
import torch

from zoo.data import cache_root

SEED = 0  # the layout is seeded: the same points give the same layout
TRANSFORM_EPOCHS = 30  # of UMAP's transform: its own choice beyond 10,000 new points


def umap_layout(points: np.ndarray, fit: np.ndarray | None = None) -> np.ndarray:
    """A seeded 2-D UMAP layout of every point, fit on the points at positions ``fit`` (sorted;
    None: all of them).

    The neighbours are found exactly by scikit-learn (BLAS, no JIT) and handed to UMAP: its own
    search either compiles pynndescent (~45 s of numba JIT per process) or, below 4,096 points,
    calls a Python-level metric 16 million times. PCA initialisation, because the default
    spectral one is slow on a graph of many disconnected components, which is what well
    separated styles give. 200 epochs is UMAP's own choice for large data. Points beyond the
    fit are placed by UMAP's ``transform``, its neighbour queries answered by the
    same exact search (:class:`_ExactIndex`).
    """
    os.environ.setdefault("NUMBA_CACHE_DIR", str(cache_root() / "numba"))
    with warnings.catch_warnings():  # "Tensorflow not installed": only its ParametricUMAP needs it
        warnings.simplefilter("ignore", ImportWarning)
        import umap  # imported late: numba reads NUMBA_CACHE_DIR on import

    _cache_jit(umap)

    # UMAP leaves numba's OpenMP threads at one per core, and torch shares that OpenMP runtime: a
    # process limited to fewer (OMP_NUM_THREADS, torchrun's one per rank) would go on with them all
    threads = torch.get_num_threads()
    try:
        return _layout(umap, points, fit)
    finally:
        torch.set_num_threads(threads)


def _layout(umap, points: np.ndarray, fit: np.ndarray | None) -> np.ndarray:
    from sklearn.neighbors import NearestNeighbors

    fit = np.arange(len(points)) if fit is None else fit
    base = np.ascontiguousarray(points[fit], dtype=np.float32)
    k = min(15, len(base) - 1)
    dists, neighbours = NearestNeighbors(n_neighbors=k).fit(base).kneighbors(base)
    reducer = umap.UMAP(n_components=2, n_neighbors=k, init="pca", n_epochs=200, random_state=SEED,
                        n_jobs=1, precomputed_knn=(neighbours, dists))
    layout = np.empty((len(points), 2), dtype=np.float32)
    with warnings.catch_warnings():  # that there is no search index for .transform: we give one below
        warnings.filterwarnings("ignore", "precomputed_knn", UserWarning)
        layout[fit] = reducer.fit_transform(base)
    rest = np.setdiff1d(np.arange(len(points)), fit)
    if len(rest):
        reducer._knn_search_index = _ExactIndex(base)
        reducer._small_data = False  # else UMAP measures distances itself, through a Python-level metric
        reducer.n_epochs = 3 * TRANSFORM_EPOCHS  # transform optimises for n_epochs // 3
        # UMAP starts each new point at its neighbours' weighted mean in a Python loop over the
        # points (about 2 s per 10,000); the same sums as one sparse product
        with mock.patch.object(umap.umap_, "init_graph_transform", _init_graph_transform):
            layout[rest] = reducer.transform(np.ascontiguousarray(points[rest], dtype=np.float32))
    return layout


def _init_graph_transform(graph, embedding: np.ndarray) -> np.ndarray:
    """umap.umap_.init_graph_transform, vectorised: each new point (a row of the new × fitted
    membership graph) at the weighted mean of its fitted neighbours' positions; at a neighbour's
    position where it has strength 1 (the first such, as UMAP does), NaN where it has none."""
    graph = graph.tocsr()
    sums = np.asarray(graph.sum(axis=1)).ravel()
    with np.errstate(invalid="ignore", divide="ignore"):
        result = np.asarray(graph @ embedding) / sums[:, None]
    rows = np.repeat(np.arange(graph.shape[0]), np.diff(graph.indptr))
    ones = np.flatnonzero(graph.data == 1)
    first, at = np.unique(rows[ones], return_index=True)
    result[first] = embedding[graph.indices[ones[at]]]
    result[np.diff(graph.indptr) == 0] = np.nan
    return result.astype(np.float32)


def _cache_jit(umap) -> None:
    """Let numba cache every compiled function of UMAP's fit and transform in NUMBA_CACHE_DIR.

    umap-learn marks only some of them ``cache=True``; the rest (the fuzzy graph's
    ``smooth_knn_dist`` and ``compute_membership_strengths``, the transform's initialisation)
    were compiled again in every process, about 10 s of a run's analysis
    (docs/performance.md). ``enable_caching`` is what numba's own ``cache=True`` calls."""
    from numba.core.caching import NullCache
    from numba.core.dispatcher import Dispatcher

    for module in (umap.umap_, umap.layouts, umap.utils):
        for function in vars(module).values():
            if isinstance(function, Dispatcher) and isinstance(function._cache, NullCache):
                function.enable_caching()


class _ExactIndex:
    """Answers UMAP's ``transform`` neighbour queries (pynndescent's interface) exactly, with scikit-learn."""

    _angular_trees = False

    def __init__(self, points: np.ndarray) -> None:
        from sklearn.neighbors import NearestNeighbors

        self._search = NearestNeighbors().fit(points)

    def query(self, queries: np.ndarray, k: int, epsilon: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        dists, indices = self._search.kneighbors(queries, n_neighbors=k)
        return indices.astype(np.int32), dists.astype(np.float32)
