"""Reconstruction: train an autoencoder on pixels, then ask whether its codes cluster by style.

Training minimises the MSE (plus, optionally, ``ssim_weight`` · (1 − SSIM)); evaluation reports
per-item MSE, PSNR and SSIM averaged over the split. At the end the test set is encoded
(``model.encode``) and the codes are judged against the true styles, beside the same analysis
of raw pixels as a baseline:

* PCA: the codes are projected on their :data:`PCA_DIMS` leading principal components; k-means
  (k = number of classes) runs there and the silhouette is measured there; the first two
  components are what the plot shows.
* UMAP: from those PCA dimensions down to 2; k-means, the silhouette and the plot all use
  the same 2-D layout, which is what a user looks at. The layout is fit on a seeded subsample
  of at most ``umap_points`` items; UMAP's own ``transform`` then places the others into it
  (each starts at the weighted mean of its fitted neighbours and moves for a third of the
  epochs, the fitted points held still), so every embedded item has a position.
* baseline: the same PCA analysis of the pixels of 16×16 thumbnails (PCA's leading
  components are low-frequency, so the thumbnail loses little of them, at a fraction of the
  cost of full-size pixels: NMI 0.024 at 16 px against 0.025 at 32 px on synthart's test
  split, 0.040 against 0.048 on synthart_lt's, for a quarter of the numbers to decompose).
* style: where the model has ``style_features(x)`` (or the task names another network, as
  restyle does its critic), the style statistics of zoo/style.py (Gram matrices of its feature
  maps, of the image minus its blur): a representation of how a painting is painted rather than
  of what it shows. The pixel loss teaches the encoder's first layers to pass colours and
  layout, which makes their statistics *worse* at style than those of the same layers untrained
  (docs/results.md). So for ``style_steps`` steps a copy of the model, started from the same
  weights, is trained beside it on the style statistics alone, without labels (InfoNCE between
  two crops of a painting, zoo/style.py), and its statistics are the style embedding
  (``style_steps=0``: the trained model's own). The same analysis, PCA and UMAP, beside the
  same statistics of the *untrained* network (the weights at the run's start, same
  architecture and seed), so the gain from training shows.
* search by style: for every embedding, precision@10 — the share of each test image's 10
  nearest test neighbours (in its PCA space) that share its style (``*_p_at_10``).

Everything is saved in ``embeddings/test.npz`` without pickles (see :meth:`Reconstruct.finalize`).
Cost is bounded by subsampling where a score allows it, and every score says on how many items
it was computed (logged as ``test/embedding_points``, ``test/silhouette_points`` and
``test/umap_fit_points``; the caps are the ``train.*`` params of the same names):
``max_points`` caps the items encoded and analysed at all, ``silhouette_points`` the O(N²)
silhouette, ``umap_points`` the UMAP fit; ``umap=false`` skips UMAP. K-means, NMI and ARI use
every embedded item. bench/embedding_speed.py times it at WikiArt's scale (docs/performance.md).
"""

from __future__ import annotations

import copy
import functools
import math
import os
import time
import warnings
from unittest import mock
from pathlib import Path
from typing import Annotated, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from zoo.data import cache_root
from zoo.metrics import cluster_scores, psnr, ssim
from zoo.style import gram_vector, high_pass, info_nce, precision_at_k, views
from zoo.task import Auxiliary, Task, analysis_batch, dry_forward, image_grid, phase, progress, shape_of, to_uint8

__all__ = ["Reconstruct"]

PCA_DIMS = 32  # k-means and silhouette space of the PCA analysis
# A spatial code (C×H×W, cond_ae's) is analysed on at most this grid, averaged over squares
# beyond it: the same 16×16 as at 64 px, where the grid is the code's own, and not 56×56 (×12
# the numbers, 200 MB of codes for 1,500 paintings) at 224 px. Layout and colour, what a
# spatial code holds, are coarse; its PCA keeps 32 numbers of it either way.
CODE_GRID = 16
THUMB = 32  # side of the thumbnails saved for the dashboard
PIXELS = 16  # side of the pixel baseline: the thumbnails averaged over 2×2 squares
SEED = 0  # subsampling, PCA, UMAP and k-means are seeded: the same codes give the same scores
NEIGHBOURS = 10  # the k of precision@k, and the neighbours saved for the dashboard
TRANSFORM_EPOCHS = 30  # of UMAP's transform: its own choice beyond 10,000 new points


class Reconstruct(Task):
    main_metric: ClassVar[str] = "psnr"
    greater_is_better: ClassVar[bool] = True
    uses_labels: ClassVar[bool] = False
    headline_metrics: ClassVar[tuple[str, ...]] = ("psnr", "ssim", "style_cluster_nmi_pca",
                                                   "untrained_style_cluster_nmi_pca", "style_p_at_10",
                                                   "cluster_nmi_pca", "baseline_cluster_nmi_pca")
    metric_meanings: ClassVar[dict[str, str]] = {
        "psnr": "dB between each test painting and its reconstruction; higher is closer",
        "ssim": "structural similarity of the reconstruction to the painting, 0 to 1",
        "style_cluster_nmi_pca": "how well k-means on the style statistics finds the styles (NMI: 0 chance, 1 perfect)",
        "untrained_style_cluster_nmi_pca": "the same of the style network before training: what training added",
        "style_p_at_10": "share of each painting's 10 nearest by style statistics that share its style",
        "cluster_nmi_pca": "how well k-means on the content code finds the styles (low: the code holds the scene)",
        "baseline_cluster_nmi_pca": "the same of raw pixels",
    }
    metric_bounds: ClassVar[dict[str, tuple[str | None, str | None]]] = {
        "style_cluster_nmi_pca": ("untrained_style_cluster_nmi_pca", None),
        "cluster_nmi_pca": ("baseline_cluster_nmi_pca", None),
    }

    def __init__(
        self,
        *,
        model: nn.Module,
        classes: list[str],
        ssim_weight: Annotated[float, Field(ge=0, description="weight of the (1 - SSIM) loss term")] = 0.0,
        umap: Annotated[bool, Field(description="also embed the test codes with UMAP")] = True,
        max_points: Annotated[int, Field(gt=1, description="test items embedded (a seeded subsample beyond)")] = 20000,
        silhouette_points: Annotated[int, Field(gt=1, description="items the O(N²) silhouette is computed on")] = 2000,
        umap_points: Annotated[int, Field(gt=15, description="items the UMAP layout is fit on (a seeded subsample); "
                                                             "UMAP's transform places the rest")] = 4000,
        style_steps: Annotated[int, Field(ge=0, description="training steps of the style network (a copy of the "
                                                            "model's style layers trained contrastively on their Gram "
                                                            "statistics, no labels), one per step from the first; 0: "
                                                            "the style statistics are the trained model's own")] = 1250,
        style_tau: Annotated[float, Field(gt=0, description="temperature of the style network's InfoNCE loss")] = 0.3,
        style_lr: Annotated[float, Field(gt=0, description="learning rate of the style network")] = 2e-3,
        style_batch: Annotated[int, Field(gt=1, description="images of each batch (its first) the style network "
                                                            "trains on, two views of each")] = 32,
    ) -> None:
        super().__init__(model=model, classes=classes)
        self.ssim_weight = ssim_weight
        self.umap = umap
        self.max_points = max_points
        self.silhouette_points = silhouette_points
        self.umap_points = umap_points
        self.style_steps = style_steps
        self.style_tau = style_tau
        self.style_lr = style_lr
        self.style_batch = style_batch
        self._untrained: nn.Module | None = None
        self.style_net: nn.Module | None = None  # the contrastively trained copy
        self._style: Auxiliary | None = None  # its training (the runner places and wraps it)
        self.style_step = 0

    @classmethod
    def model_problem(cls, model: nn.Module, *, num_classes: int, in_chans: int, image_size: int) -> str | None:
        x = torch.zeros(2, in_chans, image_size, image_size)
        if not callable(getattr(model, "encode", None)):
            return "it needs a model with encode(images) -> codes (the embeddings it analyses); this one has none"
        out, failed = dry_forward(model, x)
        if failed or not isinstance(out, torch.Tensor) or out.shape != x.shape:
            return (f"it needs a model whose forward(images) is their reconstruction, B×{in_chans}×{image_size}×"
                    f"{image_size}; on a batch of 2 this model {failed or 'gives ' + shape_of(out)}")
        return None

    def setup(self, train_set: torch.utils.data.Dataset, device: torch.device) -> None:
        # the style network as the run starts (seeded, not yet trained): the baseline of the style
        # statistics. A resume rebuilds the same start from the same seed before its checkpoint loads.
        net = self.style_network()
        self._untrained = copy.deepcopy(net).eval() if net is not None else None
        if net is not None and net is self.net and self.style_steps:
            self.style_net = copy.deepcopy(net).train()
            # only its style layers get gradients: the rest of the copy is never used
            self._style = Auxiliary(self.style_net, functools.partial(torch.optim.AdamW, lr=self.style_lr),
                                    forward=_StyleFeatures(self.style_net), find_unused_parameters=True)

    def auxiliary(self) -> dict[str, Auxiliary]:
        return {"style": self._style} if self._style is not None else {}

    def style_network(self) -> nn.Module | None:
        """The network whose ``style_features(x)`` (a list of B×C×H×W maps) the style statistics
        are taken of: the contrastively trained copy where there is one, else the model's own
        where it has them; None for no style embedding."""
        if self.style_net is not None:
            return self.style_net
        return self.net if callable(getattr(self.net, "style_features", None)) else None

    def _train_style(self, images: torch.Tensor) -> torch.Tensor:
        """One step of the style network: two views of each image, InfoNCE on their statistics."""
        features = self._style.train
        # the blur is taken of the whole image, so its scale is the image's, as in the analysis
        marks = high_pass(images[: self.style_batch].float())
        # both views in one forward: DistributedDataParallel expects one forward per backward
        pair = features(torch.cat([views(marks), views(marks)]).contiguous(memory_format=_layout(marks.device)))
        loss = info_nce(*pair.chunk(2), self.style_tau)
        self._style.step(loss)
        self.style_step += 1
        return loss.detach()

    def state_dict(self) -> dict:
        if self.style_net is None:
            return {}
        return {"style_net": self.style_net.state_dict(), "style_step": self.style_step}

    def load_state_dict(self, state: dict) -> None:
        if "style_net" not in state:
            return
        if self.style_net is None:  # inference: no setup, only the trained copy's weights
            self.style_net = copy.deepcopy(self.net).eval()
        self.style_net.load_state_dict(state["style_net"])
        self.style_step = state["style_step"]

    # -- training and evaluation ------------------------------------------------------------
    def loss(self, recon: torch.Tensor, images: torch.Tensor) -> dict[str, torch.Tensor]:
        mse = F.mse_loss(recon.float(), images.float())
        if not self.ssim_weight:
            return {"loss": mse, "mse": mse}
        dissim = 1 - ssim(recon, images).mean()
        return {"loss": mse + self.ssim_weight * dissim, "mse": mse, "ssim": 1 - dissim}

    def training_step(self, images: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        style = {}
        if self.style_net is not None and self.style_step < self.style_steps:
            # before the model's forward: its activations and the model's are never held at once
            style["style_nce"] = self._train_style(images)
        return {**self.loss(self.model(images), images), **style}

    @torch.no_grad()
    def eval_step(self, images: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        recon = self.net(images).float()
        return {"mse": (recon - images).pow(2).flatten(1).mean(1), "psnr": psnr(recon, images),
                "ssim": ssim(recon, images)}

    def eval_metrics(self, outputs: dict[str, np.ndarray]) -> dict[str, float]:
        if not len(outputs.get("mse", ())):
            return {}
        metrics = {k: float(np.mean(outputs[k])) for k in ("mse", "psnr", "ssim")}
        if self.ssim_weight:  # else the loss is the mse, logged already
            metrics["loss"] = metrics["mse"] + self.ssim_weight * (1 - metrics["ssim"])
        return metrics

    @torch.no_grad()
    def images(self, images: torch.Tensor, labels: torch.Tensor) -> dict[str, np.ndarray]:
        """Inputs in the top row, their reconstructions below."""
        recon = self.net(images).float().clamp(0, 1)
        return {"reconstruction": image_grid(torch.stack([images.float(), recon]), padding=2)}

    @torch.no_grad()
    def predict(self, images: torch.Tensor, *, embed: bool = True, **options) -> dict[str, np.ndarray]:
        """``code`` (B×D, what the analysis clusters), ``style_embedding`` (B×S, the style
        statistics, where the model has a style network) and ``reconstruction`` (B×C×H×W in
        [0, 1]); ``embed=False``: the reconstruction alone."""
        out = self.embeddings(images) if embed else {}
        out["reconstruction"] = self.net(images).float().clamp(0, 1).cpu().numpy()
        return out

    @torch.no_grad()
    def embeddings(self, images: torch.Tensor) -> dict[str, np.ndarray]:
        """What a user's images are in the analysed spaces: ``code`` (B×D, :meth:`embed` as
        :func:`flat_code` flattens it) and, where the task has a :meth:`style_network`,
        ``style_embedding`` (B×S, its style statistics)."""
        labels = torch.zeros(len(images), dtype=torch.long, device=images.device)  # unused by the code
        out = {"code": flat_code(self.embed(self.net, images, labels)).float().cpu().numpy()}
        style = self.style_network()
        if style is not None:
            out["style_embedding"] = gram_vector(style.eval().style_features(high_pass(images.float()))).cpu().numpy()
        return out

    # -- the embedding analysis -------------------------------------------------------------
    def embed(self, net: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The code vectors that are analysed (B×D), by ``net`` (the model, ready for inference);
        a subclass may encode differently."""
        return net.encode(images)

    def finalize(self, *, train_set, test_set, out: Path, device: torch.device) -> dict[str, float]:
        """Write ``embeddings/test.npz`` and ``plots/embedding_{pca,umap}.png``; return the scores.

        The npz holds (N = embedded test items, k = :data:`NEIGHBOURS`): ``codes`` (N×D float32,
        a spatial code on at most :data:`CODE_GRID` squares),
        ``labels`` (N), ``index`` (their positions in the test set), ``classes`` (unicode),
        ``thumbs`` (N×32×32×3 uint8), and per embedding E — ``code`` (named without a prefix
        for the code's arrays), ``style``, ``untrained_style``, ``baseline`` (the pixels) —
        ``[E_]pca`` and ``[E_]umap`` (N×2 float32), ``kmeans_[E_]pca`` and ``kmeans_[E_]umap``
        (N), ``neighbours_E`` (N×k, nearest first); and ``style`` and ``untrained_style``
        (N×32: the style statistics in their PCA space, scaled to unit length). UMAP runs for the code and the style
        (not the two baselines) and is absent with ``umap=false``; the style arrays are absent
        for a model without style features. ``kmeans_baseline`` is the pixels' PCA k-means.
        """
        if len(test_set) < 3:
            return {}  # nothing meaningful to cluster
        out = Path(out)
        started = time.perf_counter()
        index, codes, labels, thumbs, styles = self.encode_all(test_set, device)
        arrays: dict[str, np.ndarray] = {"codes": codes, "labels": labels, "index": index,
                                         "classes": np.array(self.classes, dtype=str), "thumbs": thumbs}
        # how many items each score used: the embedded items, the silhouette's subsample, the UMAP fit
        metrics: dict[str, float] = {"embedding_points": len(codes),
                                     "silhouette_points": min(len(codes), self.silhouette_points)}
        if self.umap:
            metrics["umap_fit_points"] = min(len(codes), self.umap_points)
        shrink = THUMB // PIXELS
        pixels = thumbs.reshape(len(thumbs), PIXELS, shrink, PIXELS, shrink, -1).mean((2, 4), dtype=np.float32) / 255
        pixels = pixels.reshape(len(pixels), -1)
        # (metric and array prefix, name, points, with UMAP): the code's names keep no prefix
        spaces = [("", "code", codes, self.umap), ("baseline_", "baseline", pixels, False)]
        spaces += [(f"{name}_", name, points, self.umap and name == "style") for name, points in styles.items()]
        for prefix, name, points, with_umap in spaces:
            scores, found = self._analyse(points, labels, with_umap, sphere=name in styles)
            metrics.update({f"{prefix}{k}": v for k, v in scores.items()})
            metrics[f"{name}_p_at_10"] = metrics.pop(f"{prefix}p_at_10")
            arrays[f"neighbours_{name}"] = found.pop("neighbours")
            reduced = found.pop("reduced")
            if name in styles:
                arrays[name] = reduced
            for key, value in found.items():  # pca, umap, kmeans_pca, kmeans_umap
                arrays[key.replace("kmeans_", f"kmeans_{prefix}") if key.startswith("kmeans_") else prefix + key] = value
        arrays["kmeans_baseline"] = arrays.pop("kmeans_baseline_pca")  # its name from before the style spaces

        (out / "embeddings").mkdir(parents=True, exist_ok=True)
        np.savez(out / "embeddings" / "test.npz", **arrays)
        (out / "plots").mkdir(parents=True, exist_ok=True)
        for prefix, what in (("", "codes"), ("style_", "style statistics")):
            for name in ("pca", "umap"):
                if f"{prefix}{name}" in arrays:
                    nmi = metrics[f"{prefix}cluster_nmi_{name}"]
                    scatter_plot(arrays[f"{prefix}{name}"], labels, self.classes,
                             out / "plots" / f"embedding_{prefix}{name}.png",
                             title=f"test {what}, {name.upper()} (NMI {nmi:.2f})")
        metrics["embedding_seconds"] = time.perf_counter() - started
        return metrics

    def _analyse(self, points: np.ndarray, labels: np.ndarray, with_umap: bool,
                 sphere: bool = False) -> tuple[dict, dict]:
        """One embedding: k-means scores in its PCA space (and in UMAP's 2-D layout), its
        precision@10 there, and the arrays to save (names without the embedding's prefix).

        ``sphere``: the PCA projection is scaled back to unit length, so distances there rank
        as cosine similarities do. The style statistics (trained and untrained alike) are
        compared by cosine, in training and in the Gram-matrix literature, so they are
        clustered and searched on the sphere; the code and the pixels are MSE spaces."""
        k = len(self.classes)
        reduced = pca_reduce(points, PCA_DIMS)
        if sphere:
            reduced = reduced / np.maximum(np.linalg.norm(reduced, axis=1, keepdims=True), 1e-12)
        scores, assigned = cluster_scores(reduced, labels, k=k, seed=SEED, silhouette_points=self.silhouette_points)
        metrics = _named(scores, "pca")
        metrics["p_at_10"], neighbours = precision_at_k(reduced, labels, NEIGHBOURS)
        arrays = {"reduced": reduced.astype(np.float32), "pca": reduced[:, :2].astype(np.float32),
                  "kmeans_pca": assigned, "neighbours": neighbours}
        if with_umap:
            with phase(f"UMAP layout of {len(reduced)} points (the first run here compiles UMAP: about half a minute)"):
                layout = umap_layout(reduced, fit_points=self.umap_points)
            scores, arrays["kmeans_umap"] = cluster_scores(layout, labels, k=k, seed=SEED,
                                                           silhouette_points=self.silhouette_points)
            arrays["umap"] = layout.astype(np.float32)
            metrics.update(_named(scores, "umap"))
        return metrics, arrays

    @torch.no_grad()
    def encode_all(self, dataset, device: torch.device) -> tuple:
        """The codes, labels and thumbnails of the embedded items, and their style statistics
        (``{"style": ..., "untrained_style": ...}``, empty without a style network)."""
        index = subsample(len(dataset), self.max_points)
        layout = _layout(device)
        model = _inference_copy(self.net, device, layout)
        trained = self.style_network()
        nets = {"style": trained, "untrained_style": self._untrained} if trained is not None else {}
        if trained is not None and self._untrained is None:  # finalize without setup: no baseline
            del nets["untrained_style"]
        nets = {name: _inference_copy(net, device, layout) for name, net in nets.items()}
        codes, labels, thumbs = [], [], []
        styles: dict[str, list[np.ndarray]] = {name: [] for name in nets}
        subset = torch.utils.data.Subset(dataset, index.tolist())
        batches = torch.utils.data.DataLoader(subset, batch_size=analysis_batch(subset, 256))
        for x, y in progress(batches, f"embedding {len(index)} test images", unit="batch"):
            x, y = x.to(device).contiguous(memory_format=layout), torch.as_tensor(y).to(device)
            codes.append(flat_code(self.embed(model, x, y)).float().cpu().numpy())
            labels.append(y.cpu().numpy())
            thumbs.append(_thumbnails(x))
            marks = high_pass(x.float()).contiguous(memory_format=layout)
            for name, net in nets.items():
                styles[name].append(gram_vector(net.style_features(marks)).cpu().numpy())
        return (index, np.concatenate(codes), np.concatenate(labels).astype(np.int64), np.concatenate(thumbs),
                {name: np.concatenate(v) for name, v in styles.items()})


def _layout(device: torch.device) -> torch.memory_format:
    """NHWC where the runner trains in it: oneDNN and cuDNN convolve it about twice as fast
    (docs/performance.md)."""
    return torch.channels_last if device.type in ("cpu", "cuda") else torch.contiguous_format


def _inference_copy(net: nn.Module, device: torch.device, layout: torch.memory_format) -> nn.Module:
    """An eval copy of ``net`` with every batch norm that follows a convolution in a Sequential
    (torchvision's Conv2dNormActivation) folded into that convolution: the same outputs, up to
    rounding, one pass over the feature maps fewer per layer (the analysis's convolutions run
    about 1.6 times as fast on a CPU). ``net`` itself is left as it is."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    net = copy.deepcopy(net).eval().to(device, memory_format=layout)
    for block in net.modules():
        if isinstance(block, nn.Sequential):
            for i in range(len(block) - 1):
                if isinstance(block[i], nn.Conv2d) and isinstance(block[i + 1], nn.BatchNorm2d):
                    block[i] = fuse_conv_bn_eval(block[i], block[i + 1])
                    block[i + 1] = nn.Identity()
    return net


class _StyleFeatures(nn.Module):
    """A network's style statistics as its forward (what DistributedDataParallel wraps)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return gram_vector(self.net.style_features(x))


def _named(scores: dict[str, float], space: str) -> dict[str, float]:
    return {f"cluster_nmi_{space}": scores["nmi"], f"cluster_ari_{space}": scores["ari"],
            f"silhouette_{space}": scores["silhouette"]}


def flat_code(code: torch.Tensor) -> torch.Tensor:
    """B×D code vectors of a batch's codes; a spatial code on at most :data:`CODE_GRID` squares."""
    if code.dim() == 4 and max(code.shape[-2:]) > CODE_GRID:
        code = F.adaptive_avg_pool2d(code, CODE_GRID)
    return code.flatten(1)


def pca_reduce(points: np.ndarray, dims: int) -> np.ndarray:
    from sklearn.decomposition import PCA

    return PCA(n_components=min(dims, *points.shape), random_state=SEED).fit_transform(points)


def subsample(n: int, cap: int | None, seed: int = SEED) -> np.ndarray:
    """Sorted positions of a seeded random subsample of ``cap`` of ``n`` items; all when ``n <= cap``."""
    if cap is None or n <= cap:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, cap, replace=False))


def umap_layout(points: np.ndarray, fit_points: int | None = None) -> np.ndarray:
    """A seeded 2-D UMAP layout of every point, fit on at most ``fit_points`` of them.

    The neighbours are found exactly by scikit-learn (BLAS, no JIT) and handed to UMAP: its own
    search either compiles pynndescent (~45 s of numba JIT per process) or, below 4,096 points,
    calls a Python-level metric 16 million times. PCA initialisation, because the default
    spectral one is slow on a graph of many disconnected components, which is what well
    separated styles give. 200 epochs is UMAP's own choice for large data. Points beyond the
    fit's subsample are placed by UMAP's ``transform``, its neighbour queries answered by the
    same exact search (:class:`_ExactIndex`).
    """
    os.environ.setdefault("NUMBA_CACHE_DIR", str(cache_root() / "numba"))
    with warnings.catch_warnings():  # "Tensorflow not installed": only its ParametricUMAP needs it
        warnings.simplefilter("ignore", ImportWarning)
        import umap  # imported late: numba reads NUMBA_CACHE_DIR on import
    from sklearn.neighbors import NearestNeighbors

    _cache_jit(umap)

    fit = subsample(len(points), fit_points)
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


def _thumbnails(x: torch.Tensor) -> np.ndarray:
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
