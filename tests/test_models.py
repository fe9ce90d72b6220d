"""Every registered model trains one step with its default task; the built-ins' own promises."""

from __future__ import annotations

import pytest
import torch

import registry
from zoo.task import place_auxiliary

# Smaller than the defaults so that one CPU step is quick; any other model runs at its defaults.
TINY_OPTIONS = {"cnn": {"width": 8}, "ae": {"width": 8, "latent_dim": 64}, "timm_net": {"backbone": "test_resnet"}}


@pytest.fixture(scope="module")
def digits_batch():
    data = registry.dataset("digits", split="train", image_size=32)
    images, labels = zip(*(data[i] for i in range(8)))
    return data, torch.stack(images), torch.tensor(labels)


@pytest.mark.parametrize("name", list(registry.entries("model")))
def test_model_trains_one_step_with_its_default_task(name, digits_batch):
    data, images, labels = digits_batch
    torch.manual_seed(0)
    builder = registry.load("model", name)  # a broken plugin fails here, with its reason
    model = registry.model(name, num_classes=len(data.classes), in_chans=3, image_size=32, **TINY_OPTIONS.get(name, {}))
    task = registry.task(builder.task, model=model, classes=data.classes)
    task.setup(data, torch.device("cpu"))
    place_auxiliary(task, torch.device("cpu"))  # its critic or style network, as the runner places them
    model.train()
    out = task.training_step(images, labels)
    assert out["loss"].ndim == 0 and torch.isfinite(out["loss"])
    out["loss"].backward()
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    no_grad = [n for n, p in trainable.items() if p.grad is None]
    assert not no_grad, f"{name}: no gradient reaches {no_grad[:5]}"
    assert all(torch.isfinite(p.grad).all() for p in trainable.values())
    assert any(p.grad.abs().sum() > 0 for p in trainable.values())


def test_cnn_adds_stages_for_larger_images_and_classifies_64_and_416_px():
    for size, stages in ((64, 4), (416, 7)):
        model = registry.model("cnn", num_classes=5, image_size=size).eval()
        assert len(model.stages) == stages
        with torch.no_grad():
            features = model.forward_features(torch.rand(1, 3, size, size))
            logits = model(torch.rand(2, 3, size, size))
        assert features.shape[-1] == 4  # every size ends on a ~4×4 map before pooling
        assert logits.shape == (2, 5)


def test_ae_code_is_compact_and_the_decoder_returns_the_input_shape_in_0_1():
    model = registry.model("ae", num_classes=3, image_size=64).eval()
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        code = model.encode(x)
        image = model.decode(code)
    assert code.shape == (2, model.latent_dim)
    assert model.latent_dim <= 64 * 64 * 3 / 12  # the benchmark's compression bound
    assert image.shape == x.shape and 0 <= image.min() and image.max() <= 1
    assert torch.equal(model(x), image)


def test_ae_mirrors_odd_sizes_back_to_the_input_size():
    # 416 px passes through a 13 px map: plain doubling on the way back would give 512
    model = registry.model("ae", num_classes=3, in_chans=1, image_size=416, width=4, latent_dim=64).eval()
    with torch.no_grad():
        assert model(torch.rand(1, 1, 416, 416)).shape == (1, 1, 416, 416)


def test_timm_net_unknown_backbone_error_lists_close_names():
    with pytest.raises(ValueError, match="resnet_18") as info:
        registry.model("timm_net", num_classes=3, backbone="resnet_18")
    assert "resnet18" in str(info.value)


def test_timm_net_loads_a_local_weights_file_and_sizes_the_head_to_the_classes(tmp_path):
    torch.manual_seed(0)
    source = registry.model("timm_net", num_classes=10, backbone="test_resnet")
    torch.save(source.state_dict(), tmp_path / "weights.pt")
    # the runner's checkpoints keep the state dict under "model"; that loads too
    torch.save({"model": source.state_dict(), "epoch": 3}, tmp_path / "last.pt")
    for file in ("weights.pt", "last.pt"):
        model = registry.model("timm_net", num_classes=4, backbone="test_resnet", pretrained=str(tmp_path / file))
        loaded = model.state_dict()
        backbone = {k: v for k, v in source.state_dict().items() if not k.startswith("fc.")}
        assert backbone and all(torch.equal(loaded[k], v) for k, v in backbone.items())
        assert model.get_classifier().out_features == 4


def test_timm_net_refuses_weights_of_another_architecture_and_a_missing_file(tmp_path):
    torch.save(registry.model("timm_net", num_classes=3, backbone="test_vit", image_size=32).state_dict(),
               tmp_path / "vit.pt")
    with pytest.raises(ValueError, match="vit.pt.*test_resnet"):
        registry.model("timm_net", num_classes=3, backbone="test_resnet", pretrained=str(tmp_path / "vit.pt"))
    with pytest.raises(FileNotFoundError, match="nowhere.pt"):
        registry.model("timm_net", num_classes=3, backbone="test_resnet", pretrained=str(tmp_path / "nowhere.pt"))


def test_timm_net_builds_transformers_for_the_image_size():
    model = registry.model("timm_net", num_classes=3, backbone="test_vit", image_size=48).eval()
    with torch.no_grad():
        assert model(torch.rand(1, 3, 48, 48)).shape == (1, 3)
