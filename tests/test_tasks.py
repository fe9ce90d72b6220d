"""The classify and reconstruct tasks: metrics on hand-computed cases, imbalance remedies, reports."""

from __future__ import annotations

import csv
import functools
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import registry
from runners.dist import World, epoch_order
from zoo.tasks.classify import (TAU_GRID, Classify, class_weights, classification_metrics, classifier_head, group_recalls,
                          shot_groups, shot_thresholds)
from zoo.data import ImageDataset
from zoo.metrics import PSNR_MAX, psnr, ssim
from zoo.tasks.reconstruct import Reconstruct
from zoo.task import Auxiliary, Task, place_auxiliary

CPU = torch.device("cpu")


def _labelled(counts: list[int]) -> ImageDataset:
    labels = np.repeat(np.arange(len(counts)), counts)
    images = np.zeros((len(labels), 4, 4, 3), dtype=np.uint8)
    return ImageDataset(images, labels, [f"c{i}" for i in range(len(counts))])


class _Constant(nn.Module):
    """Logits that ignore the image: zeros, or a one-hot vote for one class."""

    def __init__(self, num_classes: int, vote: int | None = None) -> None:
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(num_classes))
        if vote is not None:
            self.logits.data[vote] = 5.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits.expand(len(x), -1)


# -- classify: metrics ------------------------------------------------------------------------


def test_classification_metrics_on_a_known_confusion():
    labels = [0, 0, 0, 0, 0, 0, 1, 1, 2, 2]
    preds = [0, 0, 0, 0, 0, 1, 1, 1, 2, 0]
    # class 0: precision 5/6, recall 5/6; class 1: precision 2/3, recall 1 (F1 0.8);
    # class 2: precision 1, recall 1/2 (F1 2/3)
    m = classification_metrics(np.array(labels), np.array(preds), 3)
    assert m["acc"] == pytest.approx(0.8)
    assert m["macro_f1"] == pytest.approx((5 / 6 + 0.8 + 2 / 3) / 3)
    assert m["balanced_acc"] == pytest.approx((5 / 6 + 1 + 0.5) / 3)


def test_classes_absent_from_a_split_give_no_warning_and_no_nan():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # class 3 is neither present nor predicted: left out, so the scores equal the 3-class ones
        m = classification_metrics(np.array([0, 0, 0, 0, 0, 0, 1, 1, 2, 2]), np.array([0, 0, 0, 0, 0, 1, 1, 1, 2, 0]), 4)
        assert m["macro_f1"] == pytest.approx((5 / 6 + 0.8 + 2 / 3) / 3)
        assert m["balanced_acc"] == pytest.approx((5 / 6 + 1 + 0.5) / 3)
        # class 3 predicted but absent: a false alarm, F1 0; balanced accuracy averages classes present
        m = classification_metrics(np.array([0, 0, 1, 1]), np.array([0, 3, 1, 1]), 4)
        assert m["macro_f1"] == pytest.approx((2 / 3 + 1 + 0) / 3)
        assert m["balanced_acc"] == pytest.approx(0.75)
        assert all(math.isfinite(v) for v in m.values())
        assert classification_metrics(np.array([], dtype=int), np.array([], dtype=int), 4) == {}


def test_eval_step_and_metrics_score_the_model_predictions():
    task = Classify(model=_Constant(3, vote=1), classes=["a", "b", "c"])
    out = task.eval_step(torch.zeros(4, 3, 4, 4), torch.tensor([1, 1, 0, 2]))
    assert out["pred"].tolist() == [1, 1, 1, 1]
    metrics = task.eval_metrics({k: v.numpy() for k, v in out.items()})
    assert metrics["acc"] == 0.5 and metrics["balanced_acc"] == pytest.approx(1 / 3)
    assert metrics["loss"] == pytest.approx(out["loss"].mean().item())


# -- classify: imbalance ----------------------------------------------------------------------


def test_sampler_weights_draw_every_class_about_equally_often():
    data = _labelled([600, 60, 6, 0])
    task = Classify(model=_Constant(4), classes=data.classes, imbalance="sampler")
    weights = task.sample_weights(data.labels)
    per_class = np.bincount(data.labels, weights=weights, minlength=4)
    assert per_class[:3] == pytest.approx([1, 1, 1]) and per_class[3] == 0
    # what the runner then draws: each present class about a third of the epoch
    drawn = data.labels[epoch_order(len(data), seed=0, epoch=0, world=World(), weights=weights)]
    assert np.bincount(drawn, minlength=4)[:3] / len(drawn) == pytest.approx([1 / 3] * 3, abs=0.05)
    assert Classify(model=_Constant(4), classes=data.classes).sample_weights(data.labels) is None


def test_class_weights_are_balanced_and_zero_for_an_empty_class():
    data = _labelled([6, 2, 0, 2])
    task = Classify(model=_Constant(4), classes=data.classes, imbalance="weights")
    task.setup(data, CPU)
    # N / (classes present · n_c): 10 / (3 · n_c)
    assert task.class_weights.tolist() == pytest.approx([10 / 18, 10 / 6, 0, 10 / 6])
    # every present class then carries the same total weight
    per_class = np.bincount(data.labels, weights=task.class_weights.numpy()[data.labels])
    assert per_class[[0, 1, 3]] == pytest.approx([10 / 3] * 3)
    loss = task.training_step(torch.zeros(10, 3, 4, 4), torch.as_tensor(data.labels))["loss"]
    assert loss.item() == pytest.approx(math.log(4))  # zero logits: every item costs log(4)


def test_logit_adjustment_adds_tau_log_prior_in_training_only():
    data = _labelled([6, 2, 0, 2])
    task = Classify(model=_Constant(4), classes=data.classes, imbalance="logit_adjust", logit_tau=1.0)
    task.setup(data, CPU)
    labels = torch.as_tensor(data.labels)
    loss = task.training_step(torch.zeros(10, 3, 4, 4), labels)["loss"]
    # zero logits, so the adjusted ones are log prior; the empty class counts as one item
    prior = np.array([6, 2, 1, 2]) / 11
    expected = -np.mean(np.log(prior[data.labels] / prior.sum()))
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    # evaluation sees the raw logits
    assert task.eval_step(torch.zeros(10, 3, 4, 4), labels)["loss"].mean().item() == pytest.approx(math.log(4))
    smoothed = Classify(model=_Constant(4), classes=data.classes, imbalance="logit_adjust", label_smoothing=0.1)
    smoothed.setup(data, CPU)
    assert torch.isfinite(smoothed.training_step(torch.zeros(10, 3, 4, 4), labels)["loss"])


def test_balanced_softmax_is_cross_entropy_when_the_classes_are_balanced():
    data = _labelled([3, 3, 3])
    logits = torch.tensor([[2.0, -1.0, 0.5]])
    model = _Constant(3)
    model.logits.data = logits[0].clone()
    labels = torch.as_tensor(data.labels)
    plain = Classify(model=model, classes=data.classes)
    balanced = Classify(model=model, classes=data.classes, imbalance="logit_adjust")  # tau=1: Ren et al.'s loss
    balanced.setup(data, CPU)
    x = torch.zeros(9, 3, 4, 4)
    assert balanced.training_step(x, labels)["loss"].item() == pytest.approx(plain.training_step(x, labels)["loss"].item())
    # and on a long tail it is cross-entropy of logits + log n_c
    tail = _labelled([8, 2, 1])
    balanced.setup(tail, CPU)
    y = torch.as_tensor(tail.labels)
    shifted = logits[0] + torch.log(torch.tensor([8.0, 2.0, 1.0]))
    expected = -torch.log_softmax(shifted, 0)[y].mean().item()
    assert balanced.training_step(torch.zeros(11, 3, 4, 4), y)["loss"].item() == pytest.approx(expected, rel=1e-5)


def test_effective_number_weights_match_cui_et_al():
    counts = np.array([100, 10, 1, 0])
    beta = 0.9
    effective = (1 - beta ** counts[:3]) / (1 - beta)  # (1 - beta^n) / (1 - beta)
    inverse = 1 / effective
    assert class_weights(counts, beta).tolist() == pytest.approx([*(inverse * 3 / inverse.sum()), 0.0])
    # beta = 0 weighs every class alike; beta -> 1 tends to the "balanced" N / (K n_c), up to scale
    assert class_weights(counts, 0.0)[:3] == pytest.approx([1, 1, 1])
    near_one, balanced = class_weights(counts, 1 - 1e-9), class_weights(counts)
    assert near_one[:3] / near_one[0] == pytest.approx(balanced[:3] / balanced[0], rel=1e-5)
    # the loss of imbalance=cb is the weighted mean of the items' cross-entropies
    data = _labelled([6, 2, 1])
    task = Classify(model=_Constant(3, vote=0), classes=data.classes, imbalance="cb", cb_beta=0.5)
    task.setup(data, CPU)
    w = class_weights(np.array([6, 2, 1]), 0.5)
    per_item = -torch.log_softmax(torch.tensor([5.0, 0.0, 0.0]), 0).numpy()[data.labels]
    expected = (w[data.labels] * per_item).sum() / w[data.labels].sum()
    assert task.training_step(torch.zeros(9, 3, 4, 4), torch.as_tensor(data.labels))["loss"].item() == pytest.approx(expected, rel=1e-5)


def test_deferred_reweighting_is_plain_until_its_epoch_then_uses_the_cb_weights():
    data = _labelled([6, 2, 1])
    x, y = torch.zeros(9, 3, 4, 4), torch.as_tensor(data.labels)
    plain = Classify(model=_Constant(3, vote=0), classes=data.classes).training_step(x, y)["loss"].item()
    cb = Classify(model=_Constant(3, vote=0), classes=data.classes, imbalance="cb")
    cb.setup(data, CPU)
    weighted = cb.training_step(x, y)["loss"].item()
    assert weighted != pytest.approx(plain)
    drw = Classify(model=_Constant(3, vote=0), classes=data.classes, imbalance="drw", drw_epoch=2)
    drw.setup(data, CPU)
    losses = []
    for epoch in range(4):
        drw.on_epoch_start(epoch, 4)
        losses.append(drw.training_step(x, y)["loss"].item())
    assert losses == pytest.approx([plain, plain, weighted, weighted])
    # drw_epoch=0: four fifths in, the 160th of 200 epochs in Cao et al.
    default = Classify(model=_Constant(3, vote=0), classes=data.classes, imbalance="drw")
    default.setup(data, CPU)
    switched = []
    for epoch in range(10):
        default.on_epoch_start(epoch, 10)
        switched.append(default.class_weights is not None)
    assert switched == [False] * 8 + [True] * 2
    # after a resume the epoch in progress decides, whatever came before
    default.on_epoch_start(3, 10)
    assert default.class_weights is None


def _points(counts: list[int], seed: int) -> ImageDataset:
    """Two overlapping Gaussian classes, their features in the first two pixels' red values
    (scaled into uint8), the other pixels zero."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(counts)), counts)
    centres = np.array([[-1.0, 0.0], [1.0, 0.5], [0.0, -1.0]])[: len(counts)]
    points = centres[labels] + rng.normal(scale=0.9, size=(len(labels), 2))
    images = np.zeros((len(labels), 2, 2, 3), dtype=np.uint8)
    images[:, 0, :2, 0] = np.clip(points * 40 + 128, 0, 255)
    return ImageDataset(images, labels, [f"c{i}" for i in range(len(counts))])


def _linear(k: int) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(12, k))


def test_crt_refits_the_last_layer_class_balanced_and_leaves_the_model_as_trained():
    train, valid = _points([300, 30, 6], seed=0), _points([60, 60, 60], seed=1)
    model = _linear(3)
    with torch.no_grad():  # a head that says the largest class almost always, as plain training on the tail does
        model[1].weight.zero_()
        model[1].bias.copy_(torch.tensor([3.0, 0.0, -1.0]))
    trained = {k: v.clone() for k, v in model.state_dict().items()}
    task = Classify(model=model, classes=train.classes, imbalance="crt")
    task.setup(train, CPU)
    x, y = torch.stack([valid[i][0] for i in range(len(valid))]), torch.as_tensor(valid.labels)
    before = classification_metrics(valid.labels, task.eval_step(x, y)["pred"].numpy(), 3)["balanced_acc"]
    assert task.after_fit(train_set=train, valid_set=valid, device=CPU) is True
    after = classification_metrics(valid.labels, task.eval_step(x, y)["pred"].numpy(), 3)["balanced_acc"]
    assert before == pytest.approx(1 / 3) and after > 0.6
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in trained.items()), "the model's own layer is kept"
    # the layer is scikit-learn's balanced logistic regression on standardised features, folded back
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    features = np.stack([train[i][0].flatten().numpy() for i in range(len(train))])
    fit = make_pipeline(StandardScaler(), LogisticRegression(C=float(task.crt_head["C"]), class_weight="balanced",
                                                             max_iter=1000)).fit(features, train.labels)
    np.testing.assert_allclose(task.logits(x).numpy(), fit.decision_function(x.flatten(1).numpy()), atol=1e-3)
    # the task state carries it: a run's user (predict, the MLflow model) gets the same predictions
    again = Classify(model=model, classes=train.classes, imbalance="crt")
    again.load_state_dict(task.state_dict())
    assert np.array_equal(again.predict(x)["probabilities"], task.predict(x)["probabilities"])
    assert Classify(model=model, classes=train.classes).predict(x)["probabilities"].argmax(1).tolist() == [0] * len(x)


def test_tau_norm_divides_each_logit_by_its_rows_norm_and_auto_picks_tau_on_validation():
    train, valid = _points([300, 30, 6], seed=0), _points([60, 60, 60], seed=1)
    model = _linear(3)
    with torch.no_grad():  # rows towards the class centres, the head class's 4× longest, as a long tail leaves it
        model[1].weight.zero_()
        model[1].weight[:, :2] = torch.tensor([[-4.0, 0.0], [1.0, 0.5], [0.0, -1.0]])
        model[1].bias.copy_(-model[1].weight.sum(1) * 128 / 255)  # about the features' centre
    x, y = torch.stack([valid[i][0] for i in range(len(valid))]), torch.as_tensor(valid.labels)
    raw = model(x)
    norms = model[1].weight.norm(dim=1)
    fixed = Classify(model=model, classes=train.classes, tau_norm=1.0)
    fixed.setup(train, CPU)
    assert fixed.after_fit(train_set=train, valid_set=valid, device=CPU) and fixed.tau == 1.0
    torch.testing.assert_close(fixed.logits(x), raw / norms)
    auto = Classify(model=model, classes=train.classes, tau_norm="auto")
    auto.setup(train, CPU)
    auto.after_fit(train_set=train, valid_set=valid, device=CPU)
    scores = [classification_metrics(valid.labels, (raw / norms**t).argmax(1).numpy(), 3)["macro_f1"] for t in TAU_GRID]
    assert auto.tau == TAU_GRID[int(np.argmax(scores))] and auto.tau > 0, "the first of the best on validation"
    assert max(scores) > scores[0], "this head is helped by the normalisation"
    plain = Classify(model=model, classes=train.classes)
    assert plain.after_fit(train_set=train, valid_set=valid, device=CPU) is False and plain.tau == 0


def test_decoupling_refuses_a_model_whose_logits_are_not_its_last_linear_layers():
    class Doubled(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(12, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return 2 * self.fc(x.flatten(1))

    example = torch.zeros(3, 2, 2)
    assert classifier_head(_linear(3), example) is not None
    with pytest.raises(ValueError, match="Doubled whose logits are its last nn.Linear layer's output"):
        classifier_head(Doubled(), example)
    data = _points([5, 5, 5], seed=0)
    with pytest.raises(ValueError, match="_Constant .* has no nn.Linear layer"):
        Classify(model=_Constant(3), classes=data.classes, imbalance="crt").setup(data, CPU)


def test_shot_groups_scale_with_the_largest_class_and_absent_groups_are_left_out():
    counts = np.array([1280, 500, 100, 60, 20, 19, 5])
    assert shot_thresholds(counts) == (100, 20)  # Liu et al.'s, at ImageNet-LT's largest class
    assert shot_groups(counts).tolist() == ["many", "many", "medium", "medium", "medium", "few", "few"]
    assert shot_thresholds(counts * 2) == (200, 40)
    assert shot_groups(counts * 2).tolist() == shot_groups(counts).tolist()
    # test labels of classes 0, 1 (many) and 6 (few) only: no medium group, rather than a 0
    labels = np.array([0, 0, 0, 0, 1, 1, 6, 6, 6])
    preds = np.array([0, 0, 0, 1, 1, 1, 6, 0, 2])
    recalls = group_recalls(labels, preds, counts)
    assert recalls == pytest.approx({"recall_many": (3 / 4 + 1) / 2, "recall_few": 1 / 3})
    task = Classify(model=_Constant(7), classes=[f"c{i}" for i in range(7)])
    task.setup(_labelled(counts.tolist()), CPU)
    metrics = task.eval_metrics({"label": labels, "pred": preds, "loss": np.zeros(9)})
    assert "recall_medium" not in metrics and metrics["recall_few"] == pytest.approx(1 / 3)


def test_classify_finalize_writes_the_confusion_matrix_and_per_class_table():
    test_set = registry.dataset("digits", split="test", image_size=8)
    task = Classify(model=_Constant(10, vote=3), classes=test_set.classes)
    train_set = _labelled([1280, 640, 320, 160, 80, 40, 20, 10, 5, 0])
    task.setup(train_set, CPU)
    assert task.finalize(train_set=train_set, test_set=test_set, out=Path("out"), device=CPU) == {
        "shots_many_above": 100, "shots_few_below": 20}
    counts = test_set.class_counts()
    with open("out/tables/confusion.csv") as f:
        rows = list(csv.reader(f))
    assert rows[0][1:] == test_set.classes
    assert [r[0] for r in rows[1:]] == test_set.classes
    matrix = np.array([[int(v) for v in r[1:]] for r in rows[1:]])
    assert (matrix[:, 3] == counts).all() and matrix.sum() == counts.sum()  # everything predicted "3"
    with open("out/tables/per_class.csv") as f:
        table = {r["class"]: r for r in csv.DictReader(f)}
    assert int(table["3"]["support"]) == counts[3] and float(table["3"]["recall"]) == 1.0
    assert float(table["3"]["precision"]) == pytest.approx(counts[3] / counts.sum(), abs=1e-4)
    assert float(table["5"]["f1"]) == 0.0
    assert [int(table[c]["train_count"]) for c in test_set.classes] == [1280, 640, 320, 160, 80, 40, 20, 10, 5, 0]
    assert [table[c]["shots"] for c in test_set.classes] == ["many"] * 4 + ["medium"] * 3 + ["few"] * 3
    for plot in ("confusion_matrix", "recall_vs_count"):
        with Image.open(f"out/plots/{plot}.png") as image:
            assert image.size[0] > 300 and image.size[1] > 300


# -- reconstruct: image quality ---------------------------------------------------------------


def test_psnr_on_known_inputs():
    x = torch.rand(3, 3, 16, 16) * 0.8 + 0.1
    assert psnr(x, x).tolist() == [PSNR_MAX] * 3  # identical: capped, never inf
    assert psnr(x + 0.1, x).tolist() == pytest.approx([20.0] * 3, abs=1e-3)  # MSE 0.01
    torch.manual_seed(0)
    noisy = x + 0.05 * torch.randn(3, 3, 64, 64)[..., :16, :16]
    assert psnr(noisy, x).tolist() == pytest.approx([-20 * math.log10(0.05)] * 3, abs=0.5)  # ≈ 26 dB
    assert psnr(x * 255 + 25.5, x * 255, data_range=255).tolist() == pytest.approx([20.0] * 3, abs=1e-3)


def test_ssim_on_known_inputs():
    x = torch.rand(2, 3, 32, 32)
    assert ssim(x, x).tolist() == pytest.approx([1.0, 1.0])
    # flat images: only the luminance term remains, (2·a·b + C1) / (a² + b² + C1)
    a, b, c1 = torch.full((1, 3, 16, 16), 0.25), torch.full((1, 3, 16, 16), 0.75), 0.01**2
    assert ssim(a, b).item() == pytest.approx((2 * 0.25 * 0.75 + c1) / (0.25**2 + 0.75**2 + c1), rel=1e-5)
    torch.manual_seed(0)
    scores = [ssim((x + s * torch.randn_like(x)).clamp(0, 1), x).mean().item() for s in (0.02, 0.1, 0.3)]
    assert 1 > scores[0] > scores[1] > scores[2]
    assert ssim(torch.rand(2, 1, 8, 8), torch.rand(2, 1, 8, 8)).shape == (2,)  # smaller than the window
    with pytest.raises(ValueError, match="same shape"):
        ssim(x, x[:, :, :16])


def test_reconstruct_eval_and_preview_grid():
    data = registry.dataset("digits", split="valid", image_size=16)
    images = torch.stack([data[i][0] for i in range(4)])
    model = registry.model("ae", num_classes=10, image_size=16, width=4, latent_dim=64).eval()
    task = Reconstruct(model=model, classes=data.classes, ssim_weight=0.5)
    out = task.eval_step(images, torch.zeros(4, dtype=torch.long))
    with torch.no_grad():
        assert out["psnr"].tolist() == pytest.approx(psnr(model(images), images).tolist(), abs=1e-4)
    metrics = task.eval_metrics({k: v.numpy() for k, v in out.items()})
    assert metrics["psnr"] == pytest.approx(out["psnr"].mean().item(), abs=1e-4)
    assert metrics["loss"] == pytest.approx(metrics["mse"] + 0.5 * (1 - metrics["ssim"]), rel=1e-5)
    grid = task.images(images, torch.zeros(4, dtype=torch.long))["reconstruction"]
    assert grid.dtype == np.uint8 and grid.shape == (2 + 2 * 18, 2 + 4 * 18, 3)  # 2 rows of 4, 2 px padding
    # the top-left tile is the first input
    assert np.abs(grid[2:18, 2:18, 0] / 255 - images[0, 0].numpy()).max() <= 1 / 255


# -- reconstruct: the embedding analysis ------------------------------------------------------


@pytest.mark.slow
def test_reconstruct_finalize_saves_embeddings_without_pickles_and_scores_in_range():
    train_set = registry.dataset("digits", split="train", image_size=16)
    test_set = registry.dataset("digits", split="test", image_size=16)
    torch.manual_seed(0)
    model = registry.model("ae", num_classes=10, image_size=16, width=8, latent_dim=64)
    task = Reconstruct(model=model, classes=test_set.classes, max_points=200, silhouette_points=150)
    task.setup(train_set, CPU)  # keeps the untrained network, the style statistics' baseline
    metrics = task.finalize(train_set=train_set, test_set=test_set, out=Path("out"), device=CPU)

    for space in ("pca", "umap"):
        assert 0 <= metrics[f"cluster_nmi_{space}"] <= 1
        assert -0.5 <= metrics[f"cluster_ari_{space}"] <= 1
        assert -1 <= metrics[f"silhouette_{space}"] <= 1
        assert Path(f"out/plots/embedding_{space}.png").stat().st_size > 10_000
    # the baseline finds the digits' real structure in raw pixels
    assert metrics["baseline_cluster_nmi_pca"] > 0.5
    assert metrics["embedding_points"] == 200  # 270 test digits, subsampled as asked

    with np.load("out/embeddings/test.npz", allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    n = 200
    assert arrays["codes"].shape == (n, 64)
    assert list(arrays["classes"]) == test_set.classes
    index = arrays["index"]
    assert len(np.unique(index)) == n and index.max() < len(test_set)
    assert (arrays["labels"] == test_set.labels[index]).all()
    for key in ("pca", "umap"):
        assert arrays[key].shape == (n, 2) and np.isfinite(arrays[key]).all()
    for key in ("kmeans_pca", "kmeans_umap", "kmeans_baseline"):
        assert arrays[key].shape == (n,) and set(arrays[key]) <= set(range(10))
    assert arrays["thumbs"].shape == (n, 32, 32, 3) and arrays["thumbs"].dtype == np.uint8
    # the style statistics (and the untrained network's), analysed like the code, and search by style
    for prefix in ("style_", "untrained_style_"):
        assert 0 <= metrics[f"{prefix}cluster_nmi_pca"] <= 1 and -1 <= metrics[f"{prefix}silhouette_pca"] <= 1
        assert arrays[prefix.rstrip("_")].shape == (n, 32) and arrays[f"{prefix}pca"].shape == (n, 2)
        assert arrays[f"kmeans_{prefix}pca"].shape == (n,)
    assert arrays["style_umap"].shape == (n, 2) and "style_cluster_nmi_umap" in metrics
    assert "untrained_style_umap" not in arrays and arrays["baseline_pca"].shape == (n, 2)
    for name in ("code", "style", "untrained_style", "baseline"):
        assert 0 <= metrics[f"{name}_p_at_10"] <= 1
        near = arrays[f"neighbours_{name}"]
        assert near.shape == (n, 10) and (near != np.arange(n)[:, None]).all()
        share = (arrays["labels"][near] == arrays["labels"][:, None]).mean()
        assert share == pytest.approx(metrics[f"{name}_p_at_10"])
    assert metrics["baseline_p_at_10"] > 0.6  # digits are their pixels: neighbours in pixel space mostly agree
    assert Path("out/plots/embedding_style_pca.png").exists()
    # a thumbnail is its test image, shrunk
    first = torch.nn.functional.interpolate(test_set[int(index[0])][0][None], size=(32, 32), mode="bilinear")
    assert np.abs(arrays["thumbs"][0, ..., 0] / 255 - first[0, 0].numpy()).mean() < 0.05


def test_subsample_is_seeded_sorted_and_whole_below_the_cap():
    from zoo.analysis import subsample

    assert (subsample(5, 10) == np.arange(5)).all() and (subsample(5, None) == np.arange(5)).all()
    picked = subsample(1000, 100)
    assert len(picked) == 100 and (np.diff(picked) > 0).all() and picked.max() < 1000
    assert (subsample(1000, 100) == picked).all() and not (subsample(1000, 100, seed=1) == picked).all()


def test_a_spatial_code_is_analysed_on_the_same_grid_at_any_image_size():
    """cond_ae's code is a map of the image (a quarter of its side): at 224 px it would be 12
    times the numbers it is at 64 px; the analysis and embeddings/test.npz keep 64 px's grid."""
    from zoo.tasks.reconstruct import CODE_GRID, flat_code

    torch.manual_seed(0)
    model = registry.model("cond_ae", num_classes=3, image_size=64).eval()
    task = Reconstruct(model=model, classes=["a", "b", "c"])
    widths = {}
    for side in (64, 224):
        images = torch.rand(3, 3, side, side)
        codes = task.encode_all(torch.utils.data.TensorDataset(images, torch.zeros(3, dtype=torch.long)), CPU).codes
        with torch.no_grad():  # what embeddings/test.npz and a user's own image (predict) get alike
            # (up to rounding: the analysis folds batch norms into the convolutions)
            np.testing.assert_allclose(task.embeddings(images)["code"], codes, atol=1e-4)
            grid = model.encode(images).shape[-1]
        widths[side] = codes.shape[1]
        assert (grid == CODE_GRID) == (side == 64)
    assert widths[224] == widths[64] == model.encode(torch.rand(1, 3, 64, 64)).flatten(1).shape[1]
    # a 16×16 grid of averages: uniform code squares keep their values
    blocks = torch.arange(CODE_GRID**2, dtype=torch.float).reshape(1, 1, CODE_GRID, CODE_GRID)
    assert torch.equal(flat_code(blocks.repeat_interleave(4, -1).repeat_interleave(4, -2)), blocks.flatten(1))


@pytest.mark.slow
def test_reconstruct_finalize_caps_umap_fit_and_silhouette_and_logs_the_counts():
    test_set = registry.dataset("digits", split="test", image_size=8)
    torch.manual_seed(0)
    model = registry.model("ae", num_classes=10, image_size=8, width=4, latent_dim=64)
    task = Reconstruct(model=model, classes=test_set.classes, max_points=200, silhouette_points=50, umap_points=60)
    metrics = task.finalize(train_set=test_set, test_set=test_set, out=Path("out"), device=CPU)
    # every score says how many items it used: 200 embedded, the silhouette on 50, UMAP fit on 60
    assert (metrics["embedding_points"], metrics["silhouette_points"], metrics["umap_fit_points"]) == (200, 50, 60)
    with np.load("out/embeddings/test.npz", allow_pickle=False) as z:
        layout, kmeans = z["umap"], z["kmeans_umap"]
    # the 140 items outside the fit are placed into the layout too: every item has a position
    assert layout.shape == (200, 2) and np.isfinite(layout).all() and kmeans.shape == (200,)
    assert -1 <= metrics["silhouette_umap"] <= 1 and 0 <= metrics["cluster_nmi_umap"] <= 1
    # seeded: the same codes give the same layout and scores
    again = task.finalize(train_set=test_set, test_set=test_set, out=Path("again"), device=CPU)
    with np.load("again/embeddings/test.npz", allow_pickle=False) as z:
        assert np.array_equal(z["umap"], layout)
    assert {k: v for k, v in again.items() if k != "embedding_seconds"} == {
        k: v for k, v in metrics.items() if k != "embedding_seconds"}


def test_reconstruct_finalize_without_umap_leaves_its_arrays_out():
    test_set = registry.dataset("digits", split="test", image_size=8)
    model = registry.model("ae", num_classes=10, image_size=8, width=4, latent_dim=64)
    task = Reconstruct(model=model, classes=test_set.classes, umap=False)
    metrics = task.finalize(train_set=test_set, test_set=test_set, out=Path("out"), device=CPU)
    assert not any("umap" in k for k in metrics) and "cluster_nmi_pca" in metrics
    with np.load("out/embeddings/test.npz", allow_pickle=False) as z:
        assert "umap" not in z.files and "kmeans_umap" not in z.files and len(z["codes"]) == len(test_set)
    assert not Path("out/plots/embedding_umap.png").exists()


def test_the_style_network_is_a_copy_trained_on_its_own_for_its_steps_and_checkpointed():
    data = registry.dataset("digits", split="train", image_size=16)
    x, y = torch.stack([data[i][0] for i in range(32)]), torch.as_tensor(data.labels[:32])

    def task_of(seed: int) -> Reconstruct:
        torch.manual_seed(seed)
        model = registry.model("ae", num_classes=10, image_size=16, width=8, latent_dim=64)
        task = Reconstruct(model=model, classes=data.classes, style_steps=3)
        task.setup(data, CPU)
        place_auxiliary(task, CPU)
        return task

    task = task_of(0)
    start = {k: v.clone() for k, v in task.net.named_parameters()}
    losses = [task.training_step(x, y).get("style_nce") for _ in range(4)]
    assert task.style_step == 3 and all(v is not None for v in losses[:3]) and losses[3] is None
    # the style steps leave the autoencoder alone (its own optimizer is the runner's)
    assert all(torch.equal(v, start[k]) for k, v in task.net.named_parameters())
    # the copy moved from the start; the untrained baseline kept it
    moved = dict(task.style_net.named_parameters())
    kept = dict(task._untrained.named_parameters())
    assert any(not torch.equal(moved[k], start[k]) for k in start)
    assert all(torch.equal(kept[k], start[k]) for k in start)
    assert task.style_network() is task.style_net
    # a resume restores the trained copy and its step count (its optimizer is the runner's to keep)
    again = task_of(0)
    again.load_state_dict(task.state_dict())
    assert again.style_step == 3
    assert all(torch.equal(v, moved[k]) for k, v in again.style_net.named_parameters())
    assert "style_nce" not in again.training_step(x, y)
    # style_steps=0: the statistics are the trained model's own
    torch.manual_seed(0)
    plain = Reconstruct(model=registry.model("ae", num_classes=10, image_size=16, width=8, latent_dim=64),
                        classes=data.classes, style_steps=0)
    plain.setup(data, CPU)
    assert plain.style_network() is plain.net and "style_nce" not in plain.training_step(x, y)


def test_the_analysis_copy_folds_batch_norm_into_the_convolutions_and_leaves_the_model_alone():
    from zoo.tasks.reconstruct import _inference_copy

    torch.manual_seed(0)
    model = registry.model("ae", num_classes=10, image_size=16, width=8, latent_dim=64)
    model(torch.rand(8, 3, 16, 16))  # training mode: the batch norms gather statistics to fold
    model.eval()
    x = torch.rand(4, 3, 16, 16)
    copy = _inference_copy(model, CPU, torch.contiguous_format)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in copy.modules())
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()) > 0
    with torch.no_grad():
        torch.testing.assert_close(copy.encode(x), model.encode(x), rtol=1e-4, atol=1e-5)
        for a, b in zip(copy.style_features(x), model.style_features(x)):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_image_grid_puts_item_i_in_row_i_and_its_k_th_picture_in_column_k():
    from zoo.task import image_grid

    cells = torch.zeros(2, 3, 1, 4, 5)  # 2 items, 3 pictures each, grey 4×5
    for i in range(2):
        for k in range(3):
            cells[i, k] = (i * 3 + k) / 10
    grid = image_grid(cells)
    assert grid.shape == (2 * 4, 3 * 5, 3) and grid.dtype == np.uint8
    for i in range(2):
        for k in range(3):
            block = grid[i * 4 : (i + 1) * 4, k * 5 : (k + 1) * 5]
            assert (block == round((i * 3 + k) / 10 * 255)).all()


def test_the_calibration_error_is_small_for_honest_confidence_and_the_gap_for_overconfidence():
    from zoo.metrics import calibration_bins, expected_calibration_error

    rng = np.random.default_rng(0)
    confidence = rng.uniform(0.05, 1.0, 200_000)
    honest = rng.random(confidence.size) < confidence  # right as often as it says
    assert expected_calibration_error(confidence, honest) < 0.01
    sure = np.full(1000, 0.99)  # 99 % sure, right half the time
    assert expected_calibration_error(sure, np.arange(1000) % 2 == 0) == pytest.approx(0.49)
    count, mean_conf, accuracy = calibration_bins(np.array([0.15, 0.12, 0.95]), np.array([1, 0, 1]), bins=10)
    assert count.tolist() == [0, 2, 0, 0, 0, 0, 0, 0, 0, 1] and accuracy[1] == 0.5 and mean_conf[9] == 0.95


def test_a_plugin_task_that_steps_its_auxiliary_network_itself_still_trains():
    """The contract before the runner stepped auxiliary networks: the task backpropagates and steps
    ``aux.optimizer`` itself. It still trains, beside the model's step."""
    from zoo.fit import Fitter, Step

    class OldContract(Task):
        def __init__(self, **options):
            super().__init__(**options)
            self.critic = torch.nn.Linear(4, 1)
            self._critic = Auxiliary(self.critic, functools.partial(torch.optim.SGD, lr=0.1))

        def auxiliary(self):
            return {"critic": self._critic}

        def training_step(self, images, labels):
            x = images.flatten(1)[:, :4]
            opt = self._critic.optimizer
            opt.zero_grad()
            self._critic.train(x).pow(2).mean().backward()
            opt.step()  # the old contract's own step
            return {"loss": (self.model(x) - 1).pow(2).mean()}

    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    task = OldContract(model=model, classes=["a", "b"])
    auxiliary = place_auxiliary(task, CPU)
    fitter = Fitter(task, model, {"model": Step("model", list(model.parameters()),
                                                torch.optim.SGD(model.parameters(), lr=0.1))}, auxiliary)
    critic, weights = task.critic.weight.detach().clone(), model.weight.detach().clone()
    fitter.train_step(torch.rand(8, 3, 4, 4), torch.zeros(8, dtype=torch.long))
    assert not torch.equal(task.critic.weight, critic) and not torch.equal(model.weight, weights)
    assert fitter.taken == 1


@pytest.mark.parametrize("follows", [False, True])
def test_an_auxiliary_network_follows_the_models_schedule_only_where_it_says_so(follows):
    class WithCritic(Task):
        def auxiliary(self):
            return {"critic": self._critic}

    task = WithCritic(model=torch.nn.Linear(2, 1), classes=["a", "b"])
    task._critic = Auxiliary(torch.nn.Linear(2, 1), functools.partial(torch.optim.SGD, lr=0.1), scheduled=follows)
    critic = place_auxiliary(task, CPU, schedule=lambda step: 0.5 ** (step + 1), grad_clip=1e-3)["critic"]
    for _ in range(2):
        critic.step(critic.train(torch.ones(4, 2)).sum() * 100)
    assert critic.step.scheduler.get_last_lr()[0] == pytest.approx(0.1 * 0.5 ** 3 if follows else 0.1)
    grads = torch.cat([p.grad.flatten() for p in task._critic.module.parameters()])
    assert grads.norm() == pytest.approx(1e-3, rel=1e-3), "the run's gradient clipping applies to it too"
