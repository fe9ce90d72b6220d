"""cond_ae's promises: a content code without fine texture, labels that change the painting, blends."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import registry
from zoo.restyle import TextureStats


def _model(**options) -> torch.nn.Module:
    torch.manual_seed(0)
    return registry.model("cond_ae", num_classes=4, image_size=32, **options).eval()


def test_texture_finer_than_the_lowpass_square_never_reaches_the_code():
    model = _model(lowpass=4)
    x = torch.rand(2, 3, 32, 32) * 0.5 + 0.25
    # a checkerboard of period 2: zero mean over every 4×4 square, the finest brush texture
    checker = ((torch.arange(32)[:, None] + torch.arange(32)[None, :]) % 2).float() * 0.4 - 0.2
    with torch.no_grad():
        assert torch.allclose(model.encode(x), model.encode(x + checker), atol=1e-6)
        # while layout and colour at the square's scale do reach it
        assert not torch.allclose(model.encode(x), model.encode(x.flip(-1)), atol=1e-3)
    unfiltered = _model(lowpass=1)
    with torch.no_grad():
        assert not torch.allclose(unfiltered.encode(x), unfiltered.encode(x + checker), atol=1e-3)


def test_an_image_size_the_lowpass_cannot_divide_is_refused_by_name():
    with pytest.raises(ValueError, match="lowpass"):
        registry.model("cond_ae", num_classes=4, image_size=30, lowpass=4, stages=1)


@pytest.mark.parametrize("conditioning", ["concat", "cin"])
def test_the_label_changes_the_painting(conditioning):
    model = _model(conditioning=conditioning, noise=False)
    with torch.no_grad():
        for module in model.modules():  # an untrained decoder's styles start equal: make them differ
            if hasattr(module, "scale") and module.scale.dim() == 2:
                module.scale.normal_(1, 0.5)
                module.shift.normal_(0, 0.5)
        code = model.encode(torch.rand(1, 3, 32, 32))
        a, b = model.decode(code, torch.tensor([0])), model.decode(code, torch.tensor([1]))
    assert a.shape == b.shape == (1, 3, 32, 32) and 0 <= a.min() and a.max() <= 1
    assert (a - b).abs().mean() > 1e-3


def test_a_cin_blend_mixes_the_two_styles_parameters():
    model = _model(conditioning="cin", noise=False)
    with torch.no_grad():
        for module in model.modules():
            if hasattr(module, "scale") and module.scale.dim() == 2:
                module.scale.normal_(1, 0.5)
                module.shift.normal_(0, 0.5)
        code = model.encode(torch.rand(1, 3, 32, 32))
        pure = model.decode(code, torch.tensor([[1.0, 0, 0, 0]]))
        label = model.decode(code, torch.tensor([0]))
        half = model.decode(code, torch.tensor([[0.5, 0.5, 0, 0]]))
        other = model.decode(code, torch.tensor([1]))
    assert torch.allclose(pure, label, atol=1e-6), "one-hot weights are the label"
    assert (half - label).abs().mean() > 1e-3 and (half - other).abs().mean() > 1e-3
    with pytest.raises(ValueError, match="4"):
        model.decode(code, torch.tensor([[0.5, 0.5]]))


def test_texture_statistics_tell_synthart_styles_apart():
    """The style loss's statistics differ far more between styles than within one."""
    data = registry.dataset("synthart", split="test", image_size=32, size=400)
    labels = np.asarray(data.targets)
    stats = TextureStats(3)
    means, spread = [], []
    for style in np.unique(labels)[:4]:
        x = torch.stack([data[int(i)][0] for i in np.flatnonzero(labels == style)[:6]])
        with torch.no_grad():
            gram = stats(x)[0]
        means.append(gram.mean(0))
        spread.append((gram - gram.mean(0)).pow(2).mean())
    means = torch.stack(means)
    between = (means - means.mean(0)).pow(2).mean()
    assert between > 2 * torch.stack(spread).mean()


def test_restyle_finalize_keeps_what_re_judging_needs_and_scores_a_faithful_resample(tmp_path, monkeypatch):
    monkeypatch.setenv("ARTZOO_CACHE", str(tmp_path / "cache"))
    train = registry.dataset("synthart", split="train", image_size=32, size=100)
    test = registry.dataset("synthart", split="test", image_size=32, size=100)
    model = registry.model("cond_ae", num_classes=len(train.classes), image_size=32)
    task = registry.task("restyle", model=model, classes=train.classes, judge_steps=20, umap=False)
    scores = task.finalize(train_set=train, test_set=test, out=tmp_path, device=torch.device("cpu"))
    saved = np.load(tmp_path / "restyle" / "test.npz", allow_pickle=False)
    n = len(test)
    assert saved["images"].shape == saved["restyled"].shape == saved["ground_truth"].shape == (n, 32, 32, 3)
    assert (saved["targets"] != saved["labels"]).all() and list(saved["classes"]) == train.classes
    i = 3
    truth = test.render(i, int(saved["targets"][i])).mul(255).round().byte().permute(1, 2, 0).numpy()
    assert (saved["ground_truth"][i] == truth).all()
    # the truth painted again with other marks is far closer to it than the unchanged input
    # but it is another painting, not the truth scored against itself
    assert scores["restyle_psnr_gt_baseline"] + 1 < scores["restyle_psnr_gt_resample"] < 45
    assert 0 <= scores["restyle_acc"] <= 1 and np.isfinite(scores["restyle_psnr_gt"])
