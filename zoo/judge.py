"""The judge of restyles: a style classifier trained on the training split alone, never part of
any training loss, that says which style a restyled image is painted in (``test/restyle_acc``).

It is built and trained with a fixed, seeded recipe on its own random stream, so every model it
scores meets the same judge, and kept in the cache folder, keyed by the recipe, a fingerprint of
the data and (on a CPU) the thread count: the runs of several seeds or models on one dataset
train it once, and a fresh cache gives the judge a cached one was. A classify run's
checkpoint can stand in for it (:func:`load_judge`).
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import registry
from zoo.data import cache_root
from zoo.fit import Step
from zoo.task import labels_of, progress

SEED = 0
VERSION = 3  # part of the cache key: bump when the same recipe gives another judge
RECIPE = {"batch": 64, "lr": 2e-3, "shift": 4}  # the fixed training recipe, for every judge model
TRAINING = "training the judge"  # how its phase line opens (bench/scale.py keeps that phase apart)
# a judge model's options where they differ from its defaults; timm_net: timm's smallest ResNet
# (0.4 M weights), another architecture than cnn's that trains in seconds on a CPU and still calls
# every real synthart test image right (docs/results.md)
MODEL_OPTIONS = {"cnn": {"width": 16}, "timm_net": {"backbone": "test_resnet.r160_in1k"}}


def train_judge(train_set, num_classes: int, device: torch.device, *, steps: int, model: str = "cnn") -> nn.Module:
    """The registered classifier ``model`` trained on ``train_set`` for ``steps`` steps,
    class-balanced, with flips and shifts; from the cache where it was trained before."""
    x0 = train_set[0][0]
    options = MODEL_OPTIONS.get(model, {})
    labels = torch.as_tensor(labels_of(train_set))
    recipe = {**RECIPE, **options, "version": VERSION, "model": model, "steps": steps, "classes": num_classes,
              "data": fingerprint(train_set)}
    if device.type == "cpu":  # the thread count changes how floats are summed, so the judge's last digits
        recipe["threads"] = torch.get_num_threads()
    key = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:20]
    path = cache_root() / "judges" / f"{model}-{key}.pt"
    counts = torch.bincount(labels, minlength=num_classes).clamp_min(1).float()
    gen = torch.Generator().manual_seed(SEED)
    # the whole judge, its first weights included, comes from its own stream: not from whatever
    # the caller's global generator holds, which differs between the runs that share the cache
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(SEED)
        judge = registry.model(model, num_classes=num_classes, in_chans=x0.shape[0], image_size=x0.shape[-1],
                               **options).to(device, memory_format=torch.channels_last)  # oneDNN's fast layout
        if path.exists():
            judge.load_state_dict(torch.load(path, map_location=device, weights_only=True))
            return judge.eval()
        opt = torch.optim.AdamW(judge.parameters(), lr=RECIPE["lr"], weight_decay=1e-4)
        step = Step(f"judge {model}", list(judge.parameters()), opt,
                    torch.optim.lr_scheduler.OneCycleLR(opt, RECIPE["lr"], total_steps=max(1, steps), pct_start=0.15))
        judge.train()
        for _ in progress(range(steps), f"{TRAINING} {model} ({steps} steps, then cached in {path.parent})",
                          unit="step"):
            idx = torch.multinomial(1 / counts[labels], RECIPE["batch"], replacement=True, generator=gen).numpy()
            x = augment(torch.stack([train_set[int(i)][0] for i in idx]), gen).to(device)
            x = x.contiguous(memory_format=torch.channels_last)
            step(F.cross_entropy(judge(x), labels[idx].to(device)))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    torch.save(judge.state_dict(), tmp)
    os.replace(tmp, path)  # never a half-written judge for a concurrent run to read
    return judge.eval()


def load_judge(path: str, classes: list[str], device: torch.device) -> nn.Module:
    """The classifier of a classify run's checkpoint (``{"model": state_dict, "config": ...}``)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or "model" not in state or "config" not in state:
        raise ValueError(f"judge {path!r} is not a classify run's checkpoint (a dict with 'model' and 'config'); "
                         f"give checkpoints/best.pt of a `python -m runners.run cnn` run, or leave judge empty")
    cfg: dict[str, Any] = json.loads(state["config"]) if isinstance(state["config"], str) else state["config"]
    known = cfg.get("classes")
    if known is not None and list(known) != list(classes):
        raise ValueError(f"judge {path!r} was trained on the classes {known}, but this dataset has {classes}")
    judge = registry.model_of(cfg, num_classes=len(classes), in_chans=cfg.get("in_chans", 3))
    try:
        judge.load_state_dict(state["model"])
    except RuntimeError as exc:
        raise ValueError(f"judge {path!r} does not fit {len(classes)} classes: {exc}") from exc
    return judge.to(device).eval()


def fingerprint(dataset) -> str:
    """A hash of the labels and of up to 256 evenly spaced items' pixels: changes with the data."""
    h = hashlib.sha256(labels_of(dataset).tobytes())
    for i in np.linspace(0, len(dataset) - 1, min(256, len(dataset))).astype(int):
        h.update(dataset[int(i)][0].mul(255).round().byte().numpy().tobytes())
    return h.hexdigest()


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random horizontal flips and shifts of up to RECIPE["shift"] px (reflected borders)."""
    s = RECIPE["shift"]
    flip = torch.rand(len(x), generator=gen) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    padded = F.pad(x, (s, s, s, s), mode="reflect")
    dx, dy = torch.randint(0, 2 * s + 1, (2, len(x)), generator=gen).tolist()
    h, w = x.shape[-2:]
    return torch.stack([p[:, i : i + h, j : j + w] for p, i, j in zip(padded, dy, dx)])
