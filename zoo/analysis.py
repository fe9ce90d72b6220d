"""Do a test split's embeddings cluster by style? The analysis of embeddings/test.npz, for any task
that embeds images (``zoo.tasks.reconstruct.Reconstruct.finalize``, and restyle's through it).

Each embedding (the code, the pixels, the style statistics trained and untrained) is analysed
the same way (:func:`analyse`):

* PCA: projected on its :data:`PCA_DIMS` leading principal components; k-means (k = number of
  classes) runs there and the silhouette is measured there; the first two components are what
  the plot shows.
* UMAP (the code and the style statistics): from those PCA dimensions down to 2
  (zoo/umap_adapter.py); k-means, the silhouette and the plot all use the same 2-D layout, which
  is what a user looks at. The layout is fit on a seeded subsample of at most ``umap_points``
  items; UMAP's own ``transform`` places the others into it.
* search by style: precision@10, the share of each test image's 10 nearest test neighbours (in
  its PCA space) that share its style (``*_p_at_10``).

The pixel baseline is the PCA analysis of 16×16 thumbnails (PCA's leading components are
low-frequency, so the thumbnail loses little of them, at a fraction of the cost of full-size
pixels: NMI 0.024 at 16 px against 0.025 at 32 px on synthart's test split). Every score says on
how many items it was computed (``embedding_points``, ``silhouette_points``, ``umap_fit_points``).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from zoo.metrics import cluster_scores
from zoo.schema import Artifact, embedding_metric, precision_metric
from zoo.style import precision_at_k
from zoo.task import phase, to_uint8
from zoo.umap_adapter import SEED, umap_layout

PCA_DIMS = 32  # k-means and silhouette space of the PCA analysis
THUMB = 32  # side of the thumbnails saved for the dashboard
PIXELS = 16  # side of the pixel baseline: the thumbnails averaged over 2×2 squares
NEIGHBOURS = 10  # the k of precision@k, and the neighbours saved for the dashboard


@dataclass
class Embedded:
    """A split's embedded items: their positions in it, codes (N×D), labels, 32 px thumbnails
    (N×32×32×3 uint8) and style statistics by name (``style``, ``untrained_style``; none for a
    model without a style network)."""

    index: np.ndarray
    codes: np.ndarray
    labels: np.ndarray
    thumbs: np.ndarray
    styles: dict[str, np.ndarray]


def analyse(embedded: Embedded, classes: list[str], out: Path, *, umap: bool, silhouette_points: int,
            umap_points: int) -> dict[str, float]:
    """Write ``embeddings/test.npz`` and ``plots/embedding_{pca,umap}.png``; return the scores.

    The npz holds (N = embedded test items, k = :data:`NEIGHBOURS`): ``codes`` (N×D float32,
    a spatial code on at most zoo.tasks.reconstruct.CODE_GRID squares),
    ``labels`` (N), ``index`` (their positions in the test set), ``classes`` (unicode),
    ``thumbs`` (N×32×32×3 uint8), and per embedding E — ``code`` (named without a prefix
    for the code's arrays), ``style``, ``untrained_style``, ``baseline`` (the pixels) —
    ``[E_]pca`` and ``[E_]umap`` (N×2 float32), ``kmeans_[E_]pca`` and ``kmeans_[E_]umap``
    (N), ``neighbours_E`` (N×k, nearest first); and ``style`` and ``untrained_style``
    (N×32: the style statistics in their PCA space, scaled to unit length). UMAP runs for the
    code and the style (not the two baselines) and is absent with ``umap=False``; the style
    arrays are absent for a model without style features. ``kmeans_baseline`` is the pixels' PCA
    k-means.
    """
    started = time.perf_counter()
    index, codes, labels, thumbs, styles = (embedded.index, embedded.codes, embedded.labels, embedded.thumbs,
                                            embedded.styles)
    arrays: dict[str, np.ndarray] = {"codes": codes, "labels": labels, "index": index,
                                     "classes": np.array(classes, dtype=str), "thumbs": thumbs}
    # how many items each score used: the embedded items, the silhouette's subsample, the UMAP fit
    metrics: dict[str, float] = {"embedding_points": len(codes), "silhouette_points": min(len(codes), silhouette_points)}
    if umap:
        metrics["umap_fit_points"] = min(len(codes), umap_points)
    shrink = THUMB // PIXELS
    pixels = thumbs.reshape(len(thumbs), PIXELS, shrink, PIXELS, shrink, -1).mean((2, 4), dtype=np.float32) / 255
    pixels = pixels.reshape(len(pixels), -1)
    # (metric and array prefix, name, points, with UMAP): the code's names keep no prefix
    spaces = [("", "code", codes, umap), ("baseline_", "baseline", pixels, False)]
    spaces += [(f"{name}_", name, points, umap and name == "style") for name, points in styles.items()]
    for prefix, name, points, with_umap in spaces:
        scores, found = _space(points, labels, len(classes), with_umap, sphere=name in styles,
                               silhouette_points=silhouette_points, umap_points=umap_points)
        metrics[precision_metric(name)] = scores.pop("p_at_10")
        metrics.update({embedding_metric(name, score, space): v for (score, space), v in scores.items()})
        arrays[f"neighbours_{name}"] = found.pop("neighbours")
        reduced = found.pop("reduced")
        if name in styles:
            arrays[name] = reduced
        for key, value in found.items():  # pca, umap, kmeans_pca, kmeans_umap
            arrays[key.replace("kmeans_", f"kmeans_{prefix}") if key.startswith("kmeans_") else prefix + key] = value
    arrays["kmeans_baseline"] = arrays.pop("kmeans_baseline_pca")  # its name from before the style spaces

    (out / Artifact.EMBEDDINGS).parent.mkdir(parents=True, exist_ok=True)
    np.savez(out / Artifact.EMBEDDINGS, **arrays)
    (out / "plots").mkdir(parents=True, exist_ok=True)
    for prefix, embedding, what in (("", "code", "codes"), ("style_", "style", "style statistics")):
        for space in ("pca", "umap"):
            if f"{prefix}{space}" in arrays:
                nmi = metrics[embedding_metric(embedding, "cluster_nmi", space)]
                scatter_plot(arrays[f"{prefix}{space}"], labels, classes, out / "plots" / f"embedding_{prefix}{space}.png",
                             title=f"test {what}, {space.upper()} (NMI {nmi:.2f})")
    metrics["embedding_seconds"] = time.perf_counter() - started
    return metrics


def _space(points: np.ndarray, labels: np.ndarray, k: int, with_umap: bool, *, sphere: bool,
           silhouette_points: int, umap_points: int) -> tuple[dict, dict]:
    """One embedding: k-means scores in its PCA space (and in UMAP's 2-D layout) by (score, space),
    its precision@10 there (``p_at_10``), and the arrays to save (names without the embedding's
    prefix).

    ``sphere``: the PCA projection is scaled back to unit length, so distances there rank
    as cosine similarities do. The style statistics (trained and untrained alike) are
    compared by cosine, in training and in the Gram-matrix literature, so they are
    clustered and searched on the sphere; the code and the pixels are MSE spaces."""
    reduced = pca_reduce(points, PCA_DIMS)
    if sphere:
        reduced = reduced / np.maximum(np.linalg.norm(reduced, axis=1, keepdims=True), 1e-12)
    scores, assigned = cluster_scores(reduced, labels, k=k, seed=SEED, silhouette_points=silhouette_points)
    metrics: dict = _named(scores, "pca")
    metrics["p_at_10"], neighbours = precision_at_k(reduced, labels, NEIGHBOURS)
    arrays = {"reduced": reduced.astype(np.float32), "pca": reduced[:, :2].astype(np.float32),
              "kmeans_pca": assigned, "neighbours": neighbours}
    if with_umap:
        with phase(f"UMAP layout of {len(reduced)} points (the first run here compiles UMAP: about half a minute)"):
            layout = umap_layout(reduced, fit=subsample(len(reduced), umap_points))
        scores, arrays["kmeans_umap"] = cluster_scores(layout, labels, k=k, seed=SEED, silhouette_points=silhouette_points)
        arrays["umap"] = layout.astype(np.float32)
        metrics.update(_named(scores, "umap"))
    return metrics, arrays


def _named(scores: dict[str, float], space: str) -> dict[tuple[str, str], float]:
    return {("cluster_nmi", space): scores["nmi"], ("cluster_ari", space): scores["ari"],
            ("silhouette", space): scores["silhouette"]}


def subsample(n: int, cap: int | None, seed: int = SEED) -> np.ndarray:
    """Sorted positions of a seeded random subsample of ``cap`` of ``n`` items; all when ``n <= cap``."""
    if cap is None or n <= cap:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, cap, replace=False))


def pca_reduce(points: np.ndarray, dims: int) -> np.ndarray:
    from sklearn.decomposition import PCA

    return PCA(n_components=min(dims, *points.shape), random_state=SEED).fit_transform(points)


def thumbnails(x: torch.Tensor) -> np.ndarray:
    """32 px thumbnails of B×C×H×W images, B×32×32×3 uint8 (grey repeated into three channels)."""
    x = F.interpolate(x.float(), size=(THUMB, THUMB), mode="bilinear", antialias=True, align_corners=False)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    return to_uint8(x[:, :3])


def scatter_plot(points: np.ndarray, labels: np.ndarray, classes: list[str], path: Path, *, title: str) -> None:
    from matplotlib import colormaps
    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend

    fig = Figure(figsize=(8, 6), layout="constrained")
    ax = fig.add_subplot()
    cmap = colormaps["tab10" if len(classes) <= 10 else "tab20" if len(classes) <= 20 else "turbo"]
    size = max(2.0, min(12.0, 3000 / max(1, len(points))))
    for c, name in enumerate(classes):
        mine = labels == c
        if mine.any():
            color = cmap(c / max(1, len(classes) - 1)) if cmap.N > 20 else cmap(c % cmap.N)
            ax.scatter(points[mine, 0], points[mine, 1], s=size, color=color, label=f"{name} ({mine.sum()})",
                       alpha=0.7, linewidths=0)
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(loc="center left", bbox_to_anchor=(1, 0.5), fontsize=7, markerscale=8 / math.sqrt(size),
              frameon=False, title="true style")
    fig.savefig(path, dpi=120)
