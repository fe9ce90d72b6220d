"""Any timm backbone as a style classifier, its head sized to the dataset's classes.

``pretrained`` is ``false`` (random init), ``true`` (timm downloads the weights, where the
network allows) or the path of a local weights file: a state dict, a timm/torch checkpoint that
holds one under ``state_dict`` or ``model`` (an artzoo ``checkpoints/*.pt`` included), or a
``.safetensors`` file. A local file's classifier is dropped when its shape differs from ours
(the head is trained afresh), its first convolution adapted when the channel count differs;
any other mismatch is an error rather than a silently half-loaded network.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Annotated

import timm
from pydantic import Field
from timm.models import adapt_input_conv, load_state_dict
from torch import nn

__all__ = ["timm_net"]


def _check_backbone(name: str) -> None:
    if timm.is_model(name):
        return
    close = difflib.get_close_matches(name, timm.list_models(), n=5, cutoff=0.5)
    hint = f" Close names: {', '.join(close)}." if close else ""
    raise ValueError(f"timm has no backbone {name!r}.{hint} List them with timm.list_models('*{name[:4]}*').")


def _load_local(model: nn.Module, path: Path) -> None:
    if not path.is_file():
        raise FileNotFoundError(
            f"model.pretrained={str(path)!r} is neither true/false nor an existing weights file")
    state = load_state_dict(str(path), weights_only=True)
    own = model.state_dict()
    cfg = model.pretrained_cfg
    heads = (cfg.get("classifier"),) if isinstance(cfg.get("classifier"), str) else tuple(cfg.get("classifier") or ())
    head_keys = {k for k in own if any(k.startswith(h + ".") for h in heads)}
    first = f"{cfg.get('first_conv')}.weight"
    if first in state and first in own and state[first].shape[1] != own[first].shape[1]:
        state[first] = adapt_input_conv(own[first].shape[1], state[first], base_chans=state[first].shape[1])
    for k in head_keys:
        if k in state and state[k].shape != own[k].shape:
            del state[k]  # a head for other classes: ours starts afresh
    wrong = [k for k in state if k in own and state[k].shape != own[k].shape]
    result = model.load_state_dict({k: v for k, v in state.items() if k not in wrong}, strict=False)
    missing = [k for k in result.missing_keys if k not in head_keys]
    if wrong or missing or result.unexpected_keys:
        problems = [f"{label}: {', '.join(keys[:5])}{' ...' if len(keys) > 5 else ''}"
                    for label, keys in (("shape differs", wrong), ("missing", missing),
                                        ("not in the model", result.unexpected_keys)) if keys]
        raise ValueError(f"{path} does not hold weights for timm backbone {cfg.get('architecture')!r} "
                         f"({'; '.join(problems)})")


def _build(backbone: str, *, download: bool, image_size: int, **kwargs) -> nn.Module:
    try:
        return timm.create_model(backbone, pretrained=download, img_size=image_size, **kwargs)
    except TypeError as exc:
        if "img_size" not in str(exc):
            raise
        # only transformer-style backbones are built for one input size; CNNs take any size
        return timm.create_model(backbone, pretrained=download, **kwargs)


def _create_timm_net(backbone: str, pretrained: str, **kwargs) -> nn.Module:
    _check_backbone(backbone)
    download = pretrained.lower() == "true"
    try:
        model = _build(backbone, download=download, **kwargs)
    except Exception as exc:
        if not download:
            raise
        raise RuntimeError(f"could not download pretrained weights for {backbone!r} ({type(exc).__name__}: "
                           f"{exc}); set model.pretrained=false or the path of a local weights file") from exc
    if pretrained.lower() not in ("true", "false"):
        _load_local(model, Path(pretrained).expanduser())
    return model


def timm_net(
    *,
    num_classes: int,
    in_chans: int = 3,
    image_size: int = 64,
    backbone: Annotated[str, Field(min_length=1, description="timm model name (timm.list_models())")] = "resnet18",
    pretrained: Annotated[str, Field(min_length=1, description="false, true (download) or a local weights file")] = "false",
    drop_rate: Annotated[float, Field(ge=0, lt=1, description="dropout before the classifier")] = 0.0,
) -> nn.Module:
    """A timm backbone with a ``num_classes`` head."""
    return _create_timm_net(backbone, pretrained, image_size=image_size, num_classes=num_classes,
                            in_chans=in_chans, drop_rate=drop_rate)


timm_net.task = "classify"
timm_net.defaults = {"train.epochs": 10}
