"""Style classification: cross-entropy, with a choice of remedies for class imbalance.

``imbalance`` picks one remedy for WikiArt's long tail:

* ``sampler``: draw training items with probability inverse to their class's frequency
  (the runner's weighted draw is O(N) memory, unlike a sampler over an N×N table);
* ``weights``: weigh each class's loss by N / (K · n_c) (scikit-learn's "balanced");
* ``logit_adjust``: add tau · log(prior) to the logits in the training loss only (Menon et al.
  2021, "Long-tail learning via logit adjustment"); the raw logits then estimate the balanced
  posterior, so evaluation and prediction use them unchanged.

Metrics, and the convention for classes absent from a split: ``acc``; ``macro_f1`` averages F1
over the classes that occur in the split's true labels or its predictions (a class predicted
but absent counts as 0, a class neither present nor predicted is left out rather than counted
as a 0 or a 1); ``balanced_acc`` is the mean recall over the classes present in the split.
The per-class table and confusion matrix list every class, absent ones with support 0.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Annotated, ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support
from torch import nn
from torchvision.utils import make_grid

from zoo.task import Task, to_uint8

__all__ = ["Classify", "classification_metrics"]


def classification_metrics(labels: np.ndarray, preds: np.ndarray, num_classes: int) -> dict[str, float]:
    """``acc``, ``macro_f1`` and ``balanced_acc`` under the convention in the module docstring."""
    labels, preds = np.asarray(labels), np.asarray(preds)
    if not len(labels):
        return {}
    occurring = np.union1d(labels, preds)
    cm = confusion_matrix(labels, preds, labels=np.arange(num_classes))
    support = cm.sum(1)
    recall = np.diag(cm)[support > 0] / support[support > 0]
    return {
        "acc": float((labels == preds).mean()),
        "macro_f1": float(f1_score(labels, preds, labels=occurring, average="macro", zero_division=0)),
        "balanced_acc": float(recall.mean()),
    }


def _train_labels(dataset: torch.utils.data.Dataset) -> np.ndarray:
    for name in ("targets", "labels"):
        labels = getattr(dataset, name, None)
        if labels is not None:
            return np.asarray(labels, dtype=np.int64)
    # a plugin dataset without a label array: read them item by item, once
    return np.array([int(dataset[i][1]) for i in range(len(dataset))], dtype=np.int64)


class Classify(Task):
    main_metric: ClassVar[str] = "macro_f1"
    greater_is_better: ClassVar[bool] = True
    headline_metrics: ClassVar[tuple[str, ...]] = ("acc", "macro_f1", "balanced_acc")

    def __init__(
        self,
        *,
        model: nn.Module,
        classes: list[str],
        imbalance: Annotated[
            Literal["none", "sampler", "weights", "logit_adjust"],
            Field(description="class-imbalance remedy: none, sampler, weights (in the loss), logit_adjust"),
        ] = "none",
        logit_tau: Annotated[float, Field(ge=0, description="tau of imbalance=logit_adjust")] = 1.0,
        label_smoothing: Annotated[float, Field(ge=0, lt=1, description="label smoothing of the loss")] = 0.0,
    ) -> None:
        super().__init__(model=model, classes=classes)
        self.imbalance = imbalance
        self.logit_tau = logit_tau
        self.label_smoothing = label_smoothing
        self.class_weights: torch.Tensor | None = None
        self.log_prior: torch.Tensor | None = None

    def setup(self, train_set: torch.utils.data.Dataset, device: torch.device) -> None:
        if self.imbalance not in ("weights", "logit_adjust"):
            return
        counts = np.bincount(_train_labels(train_set), minlength=len(self.classes)).astype(np.float64)
        if self.imbalance == "weights":
            # an empty class is never a target, so its weight never counts; 0 avoids 1/0
            present = max(1, int((counts > 0).sum()))
            weights = np.divide(counts.sum(), present * counts, out=np.zeros_like(counts), where=counts > 0)
            self.class_weights = torch.tensor(weights, dtype=torch.float32, device=device)
        else:
            # an empty class counts as one item: log(0) would make the smoothed loss infinite
            prior = np.maximum(counts, 1) / np.maximum(counts, 1).sum()
            self.log_prior = torch.tensor(np.log(prior), dtype=torch.float32, device=device)

    def sample_weights(self, labels: np.ndarray) -> np.ndarray | None:
        if self.imbalance != "sampler":
            return None
        counts = np.bincount(labels, minlength=len(self.classes))
        return 1.0 / counts[labels]  # every class is drawn equally often; items present have count ≥ 1

    def training_step(self, images: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = self.model(images).float()
        adjusted = logits + self.logit_tau * self.log_prior if self.log_prior is not None else logits
        loss = F.cross_entropy(adjusted, labels, weight=self.class_weights, label_smoothing=self.label_smoothing)
        return {"loss": loss, "acc": (logits.argmax(1) == labels).float().mean()}

    @torch.no_grad()
    def eval_step(self, images: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = self.net(images).float()
        return {"pred": logits.argmax(1), "label": labels,
                "loss": F.cross_entropy(logits, labels, reduction="none")}

    @torch.no_grad()
    def images(self, images: torch.Tensor, labels: torch.Tensor) -> dict[str, np.ndarray]:
        """The validation images framed green where the prediction is right, red where wrong."""
        right = (self.net(images).argmax(1) == labels).cpu()
        x = images.float().cpu()
        x = x[:, :1].expand(-1, 3, -1, -1) if x.shape[1] == 1 else x[:, :3]
        frame = torch.tensor([[0.85, 0.1, 0.1], [0.1, 0.7, 0.2]])[right.long()][:, :, None, None]
        framed = frame.expand(-1, -1, x.shape[2] + 6, x.shape[3] + 6).clone()
        framed[:, :, 3:-3, 3:-3] = x
        return {"predictions": to_uint8(make_grid(framed, nrow=8, padding=2, pad_value=1.0))}

    def eval_metrics(self, outputs: dict[str, np.ndarray]) -> dict[str, float]:
        if not len(outputs.get("label", ())):
            return {}
        metrics = classification_metrics(outputs["label"], outputs["pred"], len(self.classes))
        return {"loss": float(np.mean(outputs["loss"])), **metrics}

    def finalize(self, *, train_set, test_set, out: Path, device: torch.device) -> dict[str, float]:
        """The test set's confusion matrix (plot and table) and per-class scores."""
        labels, preds = self._predict(test_set, device)
        write_report(labels, preds, self.classes, Path(out))
        return {}

    @torch.no_grad()
    def _predict(self, dataset: torch.utils.data.Dataset, device: torch.device) -> tuple[np.ndarray, np.ndarray]:
        self.net.eval()
        labels, preds = [], []
        for x, y in torch.utils.data.DataLoader(dataset, batch_size=256):
            preds.append(self.net(x.to(device)).argmax(1).cpu().numpy())
            labels.append(np.asarray(y))
        return np.concatenate(labels), np.concatenate(preds)


def write_report(labels: np.ndarray, preds: np.ndarray, classes: list[str], out: Path) -> None:
    """``plots/confusion_matrix.png``, ``tables/confusion.csv`` and ``tables/per_class.csv``."""
    everything = np.arange(len(classes))
    cm = confusion_matrix(labels, preds, labels=everything)
    (out / "tables").mkdir(parents=True, exist_ok=True)
    (out / "plots").mkdir(parents=True, exist_ok=True)
    with open(out / "tables" / "confusion.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["true \\ predicted", *classes])
        writer.writerows([name, *row] for name, row in zip(classes, cm.tolist()))
    precision, recall, f1, support = precision_recall_fscore_support(labels, preds, labels=everything, zero_division=0)
    with open(out / "tables" / "per_class.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["class", "precision", "recall", "f1", "support"])
        writer.writerows([c, f"{p:.4f}", f"{r:.4f}", f"{s:.4f}", int(n)]
                         for c, p, r, s, n in zip(classes, precision, recall, f1, support))
    _plot_confusion(cm, classes, out / "plots" / "confusion_matrix.png")


def _plot_confusion(cm: np.ndarray, classes: list[str], path: Path) -> None:
    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend

    support = cm.sum(1, keepdims=True)
    rates = np.divide(cm, support, out=np.zeros(cm.shape), where=support > 0)  # rows: recall per class
    k = len(classes)
    side = max(4.0, 0.45 * k + 2)
    fig = Figure(figsize=(side + 1, side), layout="constrained")
    ax = fig.add_subplot()
    im = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(im, ax=ax, shrink=0.8, label="share of the true class")
    ax.set_xticks(range(k), classes, rotation=90)
    ax.set_yticks(range(k), [f"{c} ({n})" for c, n in zip(classes, support[:, 0])])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true (test items)")
    ax.set_title("confusion matrix, normalised by true class")
    if k <= 20:  # beyond that the numbers overlap; the colours still read
        for i, j in np.ndindex(k, k):
            if cm[i, j]:
                ax.text(j, i, f"{rates[i, j]:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if rates[i, j] > 0.5 else "black")
    fig.savefig(path, dpi=120)
