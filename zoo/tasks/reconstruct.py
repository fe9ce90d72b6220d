"""Reconstruction: train an autoencoder on pixels, then ask whether its codes cluster by style.

Training minimises the MSE (plus, optionally, ``ssim_weight`` · (1 − SSIM)); evaluation reports
per-item MSE, PSNR and SSIM averaged over the split. At the end the test set is encoded
(``model.encode``, :meth:`Reconstruct.encode_all`) and analysed by zoo/analysis.py (PCA, UMAP,
k-means, precision@10) beside the same analysis of raw pixels as a baseline.

Style: where the model has ``style_features(x)`` (or the task names another network, as restyle
does its critic), the style statistics of zoo/style.py (Gram matrices of its feature maps, of
the image minus its blur) are analysed too: a representation of how a painting is painted
rather than of what it shows. The pixel loss teaches the encoder's first layers to pass colours
and layout, which makes their statistics *worse* at style than those of the same layers
untrained (docs/results.md). So for ``style_steps`` steps a copy of the model, started from the
same weights, is trained beside it on the style statistics alone, without labels (InfoNCE
between two crops of a painting, zoo/style.py), and its statistics are the style embedding
(``style_steps=0``: the trained model's own), beside the same statistics of the *untrained*
network (the weights at the run's start), so the gain from training shows.

Cost is bounded by subsampling where a score allows it: ``max_points`` caps the items encoded
and analysed at all, ``silhouette_points`` the O(N²) silhouette, ``umap_points`` the UMAP fit;
``umap=false`` skips UMAP. bench/embedding_speed.py times it at WikiArt's scale
(docs/performance.md).
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Annotated, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from zoo.analysis import Embedded, analyse, subsample, thumbnails
from zoo.fit import channels_last
from zoo.metrics import psnr, ssim
from zoo.schema import Artifact
from zoo.style import gram_vector, high_pass, info_nce, views
from zoo.task import Auxiliary, Task, analysis_batch, dry_forward, image_grid, progress, shape_of

__all__ = ["Reconstruct"]

# A spatial code (C×H×W, cond_ae's) is analysed on at most this grid, averaged over squares
# beyond it: the same 16×16 as at 64 px, where the grid is the code's own, and not 56×56 (×12
# the numbers, 200 MB of codes for 1,500 paintings) at 224 px. Layout and colour, what a
# spatial code holds, are coarse; its PCA keeps 32 numbers of it either way.
CODE_GRID = 16


class Reconstruct(Task):
    main_metric: ClassVar[str] = "psnr"
    greater_is_better: ClassVar[bool] = True
    uses_labels: ClassVar[bool] = False
    headline_metrics: ClassVar[tuple[str, ...]] = ("psnr", "ssim", "style_cluster_nmi_pca",
                                                   "untrained_style_cluster_nmi_pca", "style_p_at_10",
                                                   "cluster_nmi_pca", "baseline_cluster_nmi_pca")
    artifacts: ClassVar[tuple[str, ...]] = (Artifact.EMBEDDINGS,)
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
        """The test split embedded (:meth:`encode_all`) and analysed (zoo/analysis.py): writes
        ``embeddings/test.npz`` and ``plots/embedding_*.png``, returns the scores."""
        if len(test_set) < 3:
            return {}  # nothing meaningful to cluster
        return analyse(self.encode_all(test_set, device), self.classes, Path(out), umap=self.umap,
                       silhouette_points=self.silhouette_points, umap_points=self.umap_points)

    @torch.no_grad()
    def encode_all(self, dataset, device: torch.device) -> Embedded:
        """The embedded items (at most ``max_points``, a seeded subsample): their codes, labels
        and thumbnails, and their style statistics (``{"style": ..., "untrained_style": ...}``,
        empty without a style network)."""
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
            thumbs.append(thumbnails(x))
            marks = high_pass(x.float()).contiguous(memory_format=layout)
            for name, net in nets.items():
                styles[name].append(gram_vector(net.style_features(marks)).cpu().numpy())
        return Embedded(index, np.concatenate(codes), np.concatenate(labels).astype(np.int64), np.concatenate(thumbs),
                        {name: np.concatenate(v) for name, v in styles.items()})


def _layout(device: torch.device) -> torch.memory_format:
    """NHWC where the runner trains in it (zoo.fit.channels_last)."""
    return torch.channels_last if channels_last(device) else torch.contiguous_format


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


def flat_code(code: torch.Tensor) -> torch.Tensor:
    """B×D code vectors of a batch's codes; a spatial code on at most :data:`CODE_GRID` squares."""
    if code.dim() == 4 and max(code.shape[-2:]) > CODE_GRID:
        code = F.adaptive_avg_pool2d(code, CODE_GRID)
    return code.flatten(1)
