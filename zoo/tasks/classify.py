"""Style classification: cross-entropy, with a choice of remedies for class imbalance.

``imbalance`` picks one remedy for WikiArt's long tail:

* ``sampler``: draw training items with probability inverse to their class's frequency
  (the runner's weighted draw is O(N) memory, unlike a sampler over an N×N table);
* ``weights``: weigh each class's loss by N / (K · n_c) (scikit-learn's "balanced");
* ``cb``: weigh each class's loss by the inverse of its effective number of samples,
  (1 - beta) / (1 - beta^n_c), normalised to sum to K (Cui et al. 2019, "Class-balanced loss
  based on effective number of samples"); beta → 1 is ``weights``, beta = 0 no weighting;
* ``drw``: deferred re-weighting: plain cross-entropy until epoch ``drw_epoch``, then the
  ``cb`` weights (Cao et al. 2019, the DRW schedule of LDAM-DRW);
* ``logit_adjust``: add tau · log(prior) to the logits in the training loss only (Menon et al.
  2021, "Long-tail learning via logit adjustment"); the raw logits then estimate the balanced
  posterior, so evaluation and prediction use them unchanged. At tau = 1 this is the balanced
  softmax of Ren et al. (2020) exactly (log n_c and log prior differ by a constant), so there is
  no second value for it;
* ``crt``: classifier re-training, the decoupled remedy of Kang et al. (2020): the model trains
  with plain cross-entropy; then, with the served weights frozen, a new last layer is fitted to
  the training split's features (the last linear layer's input, in eval mode) under the
  class-balanced objective: scikit-learn's multinomial logistic regression with
  ``class_weight="balanced"``, which weighs each class's loss as class-balanced draws do in
  expectation and is fitted to convergence rather than for a few epochs; its L2 strength is
  picked on the validation split.

``tau_norm`` (with any remedy, Kang et al.'s τ-normalised classifier) divides each class's logit
by the norm of its weight row to the power τ after training, where a long tail leaves the head
classes' rows longest; ``auto`` picks τ in 0, 0.1, …, 2 by the validation split's main metric
with the served weights. The chosen τ is task state, so every user of the run applies it.

Metrics, and the convention for classes absent from a split: ``acc``; ``macro_f1`` averages F1
over the classes that occur in the split's true labels or its predictions (a class predicted
but absent counts as 0, a class neither present nor predicted is left out rather than counted
as a 0 or a 1); ``balanced_acc`` is the mean recall over the classes present in the split.
``recall_many``, ``recall_medium`` and ``recall_few`` are the mean recalls of the classes with
many, a medium number and few training images (Liu et al. 2019: over 100, 20 to 100 and under
20 of ImageNet-LT's largest class of 1,280; the thresholds scale with this training split's
largest class, :func:`shot_thresholds`); a group with no class present in the split is left out.
The per-class table and confusion matrix list every class, absent ones with support 0.
"""

from __future__ import annotations

import contextlib
import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support
from torch import nn
from torchvision.utils import make_grid

from zoo.metrics import calibration_bins, expected_calibration_error
from zoo.schema import Artifact
from zoo.task import Task, analysis_batch, dry_forward, labels_of, progress, shape_of, to_uint8

__all__ = ["Classify", "classification_metrics", "class_weights", "classifier_head", "shot_groups", "shot_thresholds"]

# Liu et al. (2019) split ImageNet-LT, whose largest class has 1,280 training images, into
# many-shot (over 100), medium-shot (20 to 100) and few-shot (under 20) classes.
_LIU_LARGEST, _LIU_MANY, _LIU_FEW = 1280, 100, 20
SHOT_GROUPS = ("many", "medium", "few")
TAU_GRID = np.round(np.linspace(0, 2, 21), 2)  # tau_norm=auto's candidates; 0 leaves the logits as trained
CRT_C_GRID = (0.01, 0.1, 1.0, 10.0)  # crt's inverse L2 strengths (of standardised features), picked on validation


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


def shot_thresholds(train_counts: np.ndarray) -> tuple[float, float]:
    """(many above, few below): Liu et al.'s 100 and 20, scaled by the largest class's count
    over ImageNet-LT's 1,280, so a preset of another size is cut at the same shares."""
    scale = float(np.max(train_counts)) / _LIU_LARGEST
    return _LIU_MANY * scale, _LIU_FEW * scale


def shot_groups(train_counts: np.ndarray) -> np.ndarray:
    """Each class's group, "many", "medium" or "few", by its number of training images."""
    counts = np.asarray(train_counts, dtype=np.float64)
    many, few = shot_thresholds(counts)
    return np.where(counts > many, "many", np.where(counts < few, "few", "medium"))


def group_recalls(labels: np.ndarray, preds: np.ndarray, train_counts: np.ndarray) -> dict[str, float]:
    """``recall_<group>``: the mean recall of the group's classes present in ``labels``; a group
    without any is left out (not scored as 0)."""
    k = len(train_counts)
    cm = confusion_matrix(labels, preds, labels=np.arange(k))
    support = cm.sum(1)
    recall = np.divide(np.diag(cm), support, out=np.zeros(k), where=support > 0)
    groups = shot_groups(train_counts)
    return {f"recall_{g}": float(recall[(groups == g) & (support > 0)].mean())
            for g in SHOT_GROUPS if ((groups == g) & (support > 0)).any()}


def class_weights(counts: np.ndarray, beta: float | None = None) -> np.ndarray:
    """Per-class loss weights: N / (K · n_c) ("balanced") without ``beta``; with it, the inverse
    effective number (1 - beta) / (1 - beta^n_c) of Cui et al. (2019), normalised to sum to K.
    K counts the classes with training images; an empty class, never a target, gets 0."""
    counts = np.asarray(counts, dtype=np.float64)
    present = counts > 0
    k = max(1, int(present.sum()))
    if beta is None:
        return np.divide(counts.sum(), k * counts, out=np.zeros_like(counts), where=present)
    # 1 - beta^n as -expm1(n log beta): exact for beta near 1, where 1 - beta**n cancels
    effective = -np.expm1(counts * np.log(beta)) / (1 - beta) if beta > 0 else np.ones_like(counts)
    weights = np.divide(1.0, effective, out=np.zeros_like(counts), where=present)
    return weights * k / weights.sum()


def classifier_head(model: nn.Module, example: torch.Tensor | None = None) -> nn.Linear:
    """The linear layer whose output is ``model``'s logits: timm's ``get_classifier()``, else
    the last ``nn.Linear`` registered. With ``example`` (one C×H×W image) that is checked on a
    batch of zeros: a model that changes the logits after that layer is refused by name
    (decoupling re-trains and re-scales that layer)."""
    getter = getattr(model, "get_classifier", None)
    head = getter() if callable(getter) else None
    if not isinstance(head, nn.Linear):
        head = next((m for m in reversed(list(model.modules())) if isinstance(m, nn.Linear)), None)
    if head is not None and example is None:
        return head
    problem = "it has no nn.Linear layer"
    if head is not None:
        with _input_of(head) as seen:
            out, failed = dry_forward(model, torch.zeros(2, *example.shape, device=head.weight.device))
        with torch.no_grad():
            same = not failed and "x" in seen and torch.allclose(head(seen["x"]).float(), out.float(), atol=1e-5)
        if same:
            return head
        problem = failed or f"its output is not that of its last linear layer ({type(head).__name__})"
    raise ValueError(f"train.imbalance=crt and train.tau_norm need a {type(model).__name__} whose logits are its last "
                     f"nn.Linear layer's output (timm's get_classifier()); {problem}")


@contextlib.contextmanager
def _input_of(layer: nn.Module) -> Iterator[dict[str, torch.Tensor]]:
    """While open, the input of ``layer``'s first call lands in the yielded dict as ``"x"``."""
    seen: dict[str, torch.Tensor] = {}
    handle = layer.register_forward_pre_hook(lambda module, args: seen.setdefault("x", args[0]))
    try:
        yield seen
    finally:
        handle.remove()


class Classify(Task):
    main_metric: ClassVar[str] = "macro_f1"
    greater_is_better: ClassVar[bool] = True
    headline_metrics: ClassVar[tuple[str, ...]] = ("acc", "macro_f1", "balanced_acc", "recall_few")
    artifacts: ClassVar[tuple[str, ...]] = (Artifact.PER_CLASS, Artifact.CONFUSION, Artifact.CONFUSION_PLOT,
                                            Artifact.RELIABILITY_PLOT)
    metric_meanings: ClassVar[dict[str, str]] = {
        "acc": "share of test paintings whose style is predicted right",
        "macro_f1": "F1 score averaged over styles, each style counting alike (the validation metric that picks best.pt)",
        "balanced_acc": "recall averaged over styles: accuracy as if every style were as common; chance {chance}",
        "recall_few": "recall of the styles with the fewest training paintings (under 20/1,280 of the largest's)",
    }

    def __init__(
        self,
        *,
        model: nn.Module,
        classes: list[str],
        imbalance: Annotated[
            Literal["none", "sampler", "weights", "cb", "drw", "logit_adjust", "crt"],
            Field(description="class-imbalance remedy: none; sampler (class-balanced draws); weights (N/(K n_c) in "
                  "the loss); cb (effective-number weights, Cui et al. 2019); drw (plain, then cb weights from "
                  "train.drw_epoch: deferred re-weighting, Cao et al. 2019); logit_adjust (Menon et al. 2021; at "
                  "tau=1 the balanced softmax of Ren et al. 2020); crt (plain, then the last layer re-fitted to the "
                  "frozen features, class-balanced: Kang et al. 2020)"),
        ] = "none",
        logit_tau: Annotated[float, Field(ge=0, description="tau of imbalance=logit_adjust")] = 1.0,
        cb_beta: Annotated[float, Field(ge=0, lt=1, description="beta of the effective number (1-beta^n)/(1-beta) "
                                        "of imbalance=cb and drw")] = 0.999,
        drw_epoch: Annotated[int, Field(ge=0, description="imbalance=drw: the epoch (from 0) whose training first "
                                        "uses the weights; 0: four fifths of train.epochs, as Cao et al.'s 160 "
                                        "of 200")] = 0,
        tau_norm: Annotated[
            Annotated[float, Field(ge=0)] | Literal["auto"],
            Field(description="after training, divide each class's logit by its weight row's norm to this power "
                  "(Kang et al. 2020's tau-normalised classifier); auto: tau in 0..2 picked on the validation split; "
                  "0: off"),
        ] = 0.0,
        label_smoothing: Annotated[float, Field(ge=0, lt=1, description="label smoothing of the loss")] = 0.0,
    ) -> None:
        super().__init__(model=model, classes=classes)
        self.imbalance = imbalance
        self.logit_tau = logit_tau
        self.cb_beta = cb_beta
        self.drw_epoch = drw_epoch
        self.tau_norm = tau_norm
        self.tau = 0.0  # the tau applied to the logits (tau_norm's value, or the one auto picked)
        self.crt_head: dict[str, torch.Tensor] | None = None  # imbalance=crt: the re-fitted last layer
        self.label_smoothing = label_smoothing
        self.train_counts = np.zeros(len(self.classes), dtype=np.int64)
        self.class_weights: torch.Tensor | None = None  # the weights of the loss now (drw: from its epoch on)
        self._weights: torch.Tensor | None = None
        self.log_prior: torch.Tensor | None = None

    @classmethod
    def model_problem(cls, model: nn.Module, *, num_classes: int, in_chans: int, image_size: int) -> str | None:
        out, failed = dry_forward(model, torch.zeros(2, in_chans, image_size, image_size))
        if failed or not isinstance(out, torch.Tensor) or tuple(out.shape) != (2, num_classes):
            return (f"it needs a model that maps B×{in_chans}×{image_size}×{image_size} images to B×{num_classes} "
                    f"logits, one per class; on a batch of 2 this model {failed or 'gives ' + shape_of(out)}")
        return None

    def setup(self, train_set: torch.utils.data.Dataset, device: torch.device) -> None:
        self.train_counts = np.bincount(labels_of(train_set), minlength=len(self.classes))
        counts = self.train_counts.astype(np.float64)
        if self.imbalance in ("weights", "cb", "drw"):
            beta = None if self.imbalance == "weights" else self.cb_beta
            self._weights = torch.tensor(class_weights(counts, beta), dtype=torch.float32, device=device)
            self.class_weights = None if self.imbalance == "drw" else self._weights
        elif self.imbalance == "logit_adjust":
            # an empty class counts as one item: log(0) would make the smoothed loss infinite
            prior = np.maximum(counts, 1) / np.maximum(counts, 1).sum()
            self.log_prior = torch.tensor(np.log(prior), dtype=torch.float32, device=device)
        if self.imbalance == "crt" or self.tau_norm:
            classifier_head(self.net, train_set[0][0])  # refused before training, not after it

    def on_epoch_start(self, epoch: int, epochs: int) -> None:
        if self.imbalance == "drw":
            start = self.drw_epoch or (4 * epochs) // 5
            if start >= epochs:
                raise ValueError(f"train.drw_epoch={self.drw_epoch} but training has {epochs} epochs (0 to "
                                 f"{epochs - 1}): the weights would never be used; give a smaller train.drw_epoch")
            self.class_weights = self._weights if epoch >= start else None

    @classmethod
    def config_problem(cls, train: dict) -> str | None:
        if train.get("imbalance") == "sampler" and not cls.uses_labels:
            return "train.imbalance=sampler draws batches by class label, but it trains without labels; use train.imbalance=none"
        if train.get("imbalance") == "drw" and train.get("drw_epoch", 0) >= train["epochs"]:
            return (f"train.drw_epoch={train['drw_epoch']} but train.epochs={train['epochs']}: imbalance=drw would "
                    f"never use its weights; give train.drw_epoch below {train['epochs']} (0: four fifths in)")
        return None

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

    def _head_input(self, images: torch.Tensor) -> torch.Tensor:
        with _input_of(classifier_head(self.net)) as seen:
            self.net(images)
        return seen["x"]

    def _head(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The last layer's weight and bias in use: crt's re-fitted one, else the model's."""
        if self.crt_head is not None:
            return self.crt_head["weight"], self.crt_head["bias"]
        head = classifier_head(self.net)
        bias = head.bias if head.bias is not None else torch.zeros(head.out_features, device=head.weight.device)
        return head.weight.detach().float(), bias.detach().float()

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """The logits every evaluation and prediction uses: the model's, from crt's re-fitted
        last layer where there is one, tau-normalised where a tau is set."""
        if self.crt_head is None and not self.tau:
            return self.net(images).float()
        weight, bias = (t.to(images.device) for t in self._head())
        if self.crt_head is None:
            logits = self.net(images).float()
        else:
            logits = F.linear(self._head_input(images).float(), weight, bias)
        return logits / weight.norm(dim=1).clamp_min(1e-12).pow(self.tau) if self.tau else logits

    @torch.no_grad()
    def _features(self, dataset, device: torch.device) -> tuple[np.ndarray, np.ndarray]:
        """The last layer's input for every item of ``dataset`` (eval mode), and the labels."""
        self.net.eval()
        features, labels = [], []
        batches = torch.utils.data.DataLoader(dataset, batch_size=analysis_batch(dataset, 256))
        for x, y in progress(batches, "last-layer features", unit="batch"):
            features.append(self._head_input(x.to(device)).float().cpu().numpy())
            labels.append(np.asarray(y))
        return np.concatenate(features), np.concatenate(labels)

    def _score(self, labels: np.ndarray, logits: np.ndarray) -> float:
        return classification_metrics(labels, logits.argmax(1), len(self.classes)).get(self.main_metric, -np.inf)

    def after_fit(self, *, train_set, valid_set, device: torch.device) -> bool:
        """After training, with the served weights: crt's last layer (its L2 strength picked on
        ``valid_set`` by the main metric) and tau_norm's tau (auto: picked on ``valid_set``, the
        smallest of equals). True where the task state changed."""
        if self.imbalance != "crt" and not self.tau_norm:
            return False
        self.crt_head, self.tau = None, (0.0 if self.tau_norm == "auto" else float(self.tau_norm))
        if self.imbalance == "crt" or self.tau_norm == "auto":  # a tau given alone needs no features
            valid_x, valid_y = self._features(valid_set, device)
            if self.imbalance == "crt":
                self.crt_head = self._refit(*self._features(train_set, device), valid_x, valid_y, device)
            if self.tau_norm == "auto":
                weight, bias = (t.cpu().numpy() for t in self._head())
                logits = valid_x @ weight.T + bias
                norms = np.maximum(np.linalg.norm(weight, axis=1), 1e-12)
                scores = [self._score(valid_y, logits / norms**t) for t in TAU_GRID]
                self.tau = float(TAU_GRID[int(np.argmax(scores))])
        return True

    def _refit(self, x: np.ndarray, y: np.ndarray, valid_x: np.ndarray, valid_y: np.ndarray,
               device: torch.device) -> dict[str, torch.Tensor]:
        """crt's last layer: balanced multinomial logistic regression on standardised features,
        folded back to act on the raw features; classes without training items get -inf-like
        logits (they are never predicted, as with the model's own layer)."""
        from sklearn.linear_model import LogisticRegression
        from sklearn.preprocessing import StandardScaler

        scaler = StandardScaler().fit(x)
        present = np.unique(y)
        best, best_score = None, -np.inf
        for c in CRT_C_GRID:
            fit = LogisticRegression(C=c, class_weight="balanced", max_iter=1000).fit(scaler.transform(x), y)
            coef = fit.coef_ if len(present) > 2 else np.vstack([-fit.coef_, fit.coef_]) / 2
            intercept = fit.intercept_ if len(present) > 2 else np.array([-fit.intercept_[0], fit.intercept_[0]]) / 2
            weight = np.zeros((len(self.classes), x.shape[1]))
            bias = np.full(len(self.classes), -1e4)
            weight[present] = coef / scaler.scale_
            bias[present] = intercept - weight[present] @ scaler.mean_
            score = self._score(valid_y, valid_x @ weight.T + bias)
            if score > best_score:
                best, best_score = (weight, bias, c), score
        weight, bias, c = best
        return {"weight": torch.tensor(weight, dtype=torch.float32, device=device),
                "bias": torch.tensor(bias, dtype=torch.float32, device=device), "C": torch.tensor(c, dtype=torch.float64)}

    def state_dict(self) -> dict:
        return {"tau": self.tau, "crt_head": self.crt_head}

    def load_state_dict(self, state: dict) -> None:
        self.tau = float(state.get("tau", 0.0))  # a checkpoint from before tau_norm and crt has neither
        self.crt_head = state.get("crt_head")

    @torch.no_grad()
    def eval_step(self, images: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = self.logits(images)
        confidence, pred = logits.softmax(1).max(1)
        return {"pred": pred, "label": labels, "confidence": confidence,
                "loss": F.cross_entropy(logits, labels, reduction="none")}

    @torch.no_grad()
    def predict(self, images: torch.Tensor, **options) -> dict[str, np.ndarray]:
        """``probabilities``: B×classes, the softmax of :meth:`logits` (crt's layer, tau_norm;
        logit adjustment and class weights shape training only)."""
        return {"probabilities": self.logits(images).softmax(1).cpu().numpy()}

    @torch.no_grad()
    def images(self, images: torch.Tensor, labels: torch.Tensor) -> dict[str, np.ndarray]:
        """The validation images framed green where the prediction is right, red where wrong."""
        right = (self.logits(images).argmax(1) == labels).cpu()
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
        metrics.update(group_recalls(outputs["label"], outputs["pred"], self.train_counts))
        if "confidence" in outputs:  # a subclass's eval_step may not give it
            metrics["ece"] = expected_calibration_error(outputs["confidence"], outputs["label"] == outputs["pred"])
        return {"loss": float(np.mean(outputs["loss"])), **metrics}

    def finalize(self, *, train_set, test_set, out: Path, device: torch.device) -> dict[str, float]:
        """The test set's confusion matrix (plot and table), per-class scores, and each class's
        recall against its training count; returns the shot groups' thresholds."""
        labels, preds, confidence = self._predict(test_set, device)
        write_report(labels, preds, self.classes, Path(out), train_counts=self.train_counts)
        _plot_reliability(confidence, labels == preds, Path(out) / Artifact.RELIABILITY_PLOT)
        many, few = shot_thresholds(self.train_counts)
        post_hoc = {**({"tau_norm": self.tau} if self.tau_norm else {}),
                    **({"crt_C": float(self.crt_head["C"])} if self.crt_head is not None else {})}
        return {"shots_many_above": many, "shots_few_below": few, **post_hoc}

    @torch.no_grad()
    def _predict(self, dataset: torch.utils.data.Dataset,
                 device: torch.device) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Labels, predictions and the predictions' softmax probabilities."""
        self.net.eval()
        labels, preds, confidence = [], [], []
        for x, y in torch.utils.data.DataLoader(dataset, batch_size=analysis_batch(dataset, 256)):
            top, pred = self.logits(x.to(device)).softmax(1).max(1)
            preds.append(pred.cpu().numpy())
            confidence.append(top.cpu().numpy())
            labels.append(np.asarray(y))
        return np.concatenate(labels), np.concatenate(preds), np.concatenate(confidence)


def write_report(labels: np.ndarray, preds: np.ndarray, classes: list[str], out: Path,
                 train_counts: np.ndarray | None = None) -> None:
    """``plots/confusion_matrix.png``, ``tables/confusion.csv`` and ``tables/per_class.csv``;
    with ``train_counts``, the table's training counts and shot groups and
    ``plots/recall_vs_count.png``."""
    everything = np.arange(len(classes))
    cm = confusion_matrix(labels, preds, labels=everything)
    (out / "tables").mkdir(parents=True, exist_ok=True)
    (out / "plots").mkdir(parents=True, exist_ok=True)
    with open(out / Artifact.CONFUSION, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["true \\ predicted", *classes])
        writer.writerows([name, *row] for name, row in zip(classes, cm.tolist()))
    precision, recall, f1, support = precision_recall_fscore_support(labels, preds, labels=everything, zero_division=0)
    rows = [[c, f"{p:.4f}", f"{r:.4f}", f"{s:.4f}", int(n)] for c, p, r, s, n in zip(classes, precision, recall, f1, support)]
    header = ["class", "precision", "recall", "f1", "support"]
    if train_counts is not None:
        header += ["train_count", "shots"]
        rows = [[*row, int(n), g] for row, n, g in zip(rows, train_counts, shot_groups(train_counts))]
    with open(out / Artifact.PER_CLASS, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    _plot_confusion(cm, classes, out / Artifact.CONFUSION_PLOT)
    if train_counts is not None:
        _plot_recall_vs_count(recall, support, np.asarray(train_counts), classes, out / "plots" / "recall_vs_count.png")


def _plot_recall_vs_count(recall: np.ndarray, support: np.ndarray, train_counts: np.ndarray, classes: list[str],
                          path: Path) -> None:
    from matplotlib.figure import Figure

    scored = support > 0  # a class without test images has no recall to show
    groups = shot_groups(train_counts)
    many, few = shot_thresholds(train_counts)
    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.add_subplot()
    colours = {"many": "tab:blue", "medium": "tab:orange", "few": "tab:red"}
    for g in SHOT_GROUPS:
        pick = scored & (groups == g)
        if pick.any():
            ax.scatter(np.maximum(train_counts[pick], 1), recall[pick], s=40, color=colours[g],
                       label=f"{g}-shot ({int(pick.sum())})", zorder=3)
    # labels above and below in turn, by count: neighbours at the same recall do not overprint
    for rank, i in enumerate(i for i in np.argsort(train_counts, kind="stable") if scored[i]):
        ax.annotate(classes[i], (max(int(train_counts[i]), 1), recall[i]), xytext=(4, 4 if rank % 2 else -10),
                    textcoords="offset points", fontsize=7)
    for x in (few, many):
        ax.axvline(x, color="0.6", lw=0.8, ls="--", zorder=1)
    ax.set_xscale("log")
    ax.set_ylim(-0.03, 1.05)
    ax.set_xlabel("training images of the class (log scale)")
    ax.set_ylabel("test recall")
    ax.set_title(f"recall by class against its training count (few < {few:.0f} ≤ medium ≤ {many:.0f} < many)")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3, which="both")
    fig.savefig(path, dpi=120)


def _plot_reliability(confidence: np.ndarray, correct: np.ndarray, path: Path, bins: int = 15) -> None:
    """The reliability diagram: accuracy against confidence per bin, the diagonal being calibrated."""
    from matplotlib.figure import Figure

    count, mean_conf, accuracy = calibration_bins(confidence, correct, bins)
    edges = np.linspace(0, 1, bins + 1)
    fig = Figure(figsize=(5, 5), layout="constrained")
    ax = fig.add_subplot()
    used = count > 0
    ax.bar(edges[:-1][used], accuracy[used], width=1 / bins, align="edge", edgecolor="black", label="accuracy")
    ax.plot([0, 1], [0, 1], "k--", label="calibrated")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence (top softmax probability)")
    ax.set_ylabel("accuracy")
    ax.set_title(f"reliability, test split: ECE {expected_calibration_error(confidence, correct, bins):.3f}")
    ax.legend(loc="upper left")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


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
