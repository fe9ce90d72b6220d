"""The one place that discovers, validates and builds artzoo plugins.

Plugins are Python entry points in three groups: ``zoo.models``, ``zoo.tasks`` and
``zoo.datasets``. The entry's name is the name users type. Discovery never imports a plugin;
``load`` does, on first use, and a plugin that fails to import or to meet its contract raises
:class:`PluginError` naming it and the reason, without touching any other plugin.

Contracts (what ``load`` checks):

* model: a callable with keyword-only, type-hinted options, called as
  ``builder(num_classes=..., in_chans=..., image_size=..., **options)`` and returning an
  ``nn.Module``; it names its default task in ``.task`` and may carry ``.defaults``, a dict of
  dotted config overrides (``{"train.epochs": 10}``).
* task: a class built as ``Task(model=..., classes=..., **options)`` with the methods the runner
  drives (:data:`TASK_METHODS`).
* dataset: a callable ``builder(split=..., image_size=..., **options)`` returning a torch
  Dataset of ``(float C×H×W tensor in [0, 1], int label)`` items with ``.classes``; it may carry
  ``.defaults``, a dict of ``data.*`` overrides applied when it is chosen (``{"data.image_size": 32}``).

Options are the builder's keyword-only parameters with defaults, typed by their annotations;
``Annotated[float, pydantic.Field(gt=0, description="...")]`` adds a constraint and a help text.
"""

from __future__ import annotations

import difflib
import functools
import inspect
import os
import types
import typing
import warnings
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any

from zoo.schema import Artifact

GROUPS = {"model": "zoo.models", "task": "zoo.tasks", "dataset": "zoo.datasets"}
# Arguments the runner supplies itself, so they are not user options.
PROVIDED = {
    "model": {"num_classes", "in_chans", "image_size"},
    "task": {"model", "classes"},
    "dataset": {"split", "image_size"},
}
TASK_METHODS = ("training_step", "eval_step", "eval_metrics", "images", "finalize")
# The dataset used for a path given as the dataset name.
FOLDER_DATASET = "folder"


class PluginError(RuntimeError):
    """A plugin is unknown, fails to import, or does not meet its contract."""


@dataclass(frozen=True)
class Entry:
    """One registered plugin, known by name without importing it."""

    kind: str
    name: str
    value: str  # "module:attr"
    dist: str
    version: str

    @property
    def module(self) -> str:
        return self.value.partition(":")[0]

    @property
    def origin(self) -> str:
        return f"{self.dist} {self.version}"


@functools.cache
def entries(kind: str) -> dict[str, Entry]:
    """Every registered plugin of ``kind`` ("model", "task", "dataset"), by name, unloaded."""
    group = GROUPS[kind]
    found: dict[str, Entry] = {}
    for ep in entry_points(group=group):
        dist = ep.dist.name if ep.dist else "?"
        version = ep.dist.version if ep.dist else "?"
        if ep.name in found and found[ep.name].value != ep.value:
            warnings.warn(
                f"{group} entry {ep.name!r} is registered twice ({found[ep.name].origin} and "
                f"{dist} {version}); using the first",
                stacklevel=2,
            )
            continue
        found[ep.name] = Entry(kind, ep.name, ep.value, dist, version)
    return dict(sorted(found.items()))


def resolve(kind: str, name: str) -> Entry:
    """The entry registered as ``name``, or whose module path is ``name`` (``zoo.models.cond_ae``),
    or that path without its group's folder (``zoo.cond_ae``, as the built-ins were laid out before
    zoo/models/, zoo/tasks/ and zoo/datasets/)."""
    known = entries(kind)
    if name in known:
        return known[name]
    by_module = [e for e in known.values() if name in (e.module, _without_group_folder(e.module))]
    if len(by_module) == 1:
        return by_module[0]
    close = difflib.get_close_matches(name, list(known) + [e.module for e in known.values()], n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    listed = [f"{n} (broken)" if _broken(kind, n) else n for n in known]
    raise PluginError(
        f"unknown {kind} {name!r}.{hint} Registered {kind}s: {', '.join(listed) or '(none)'}. "
        f"Run `python -m runners.run --list` to see every plugin and why a broken one fails."
    )


def _without_group_folder(module: str) -> str:
    """``zoo.models.cond_ae`` as ``zoo.cond_ae``; other paths as they are."""
    parts = module.split(".")
    return ".".join(parts[:1] + parts[2:]) if len(parts) == 3 and parts[1] in ("models", "tasks", "datasets") else module


def _broken(kind: str, name: str) -> bool:
    try:
        load(kind, name)
    except PluginError:
        return True
    return False


@functools.cache
def load(kind: str, name: str) -> Any:
    """Import the plugin and check its contract; a failure names the plugin and the reason."""
    entry = resolve(kind, name)
    try:
        obj = EntryPoint(entry.name, entry.value, GROUPS[kind]).load()
    except Exception as exc:  # any import-time failure is the plugin's, not ours
        raise PluginError(
            f"{kind} plugin {entry.name!r} ({entry.value}, from {entry.origin}) failed to "
            f"import: {type(exc).__name__}: {exc}"
        ) from exc
    problem = _contract_problem(kind, obj)
    if problem:
        raise PluginError(
            f"{kind} plugin {entry.name!r} ({entry.value}, from {entry.origin}) does not meet "
            f"the {kind} contract: {problem}"
        )
    return obj


def _contract_problem(kind: str, obj: Any) -> str | None:
    if not callable(obj):
        return f"{obj!r} is not callable"
    try:
        params = _signature(obj).parameters
    except (TypeError, ValueError) as exc:
        return f"its signature cannot be read ({exc})"
    accepts_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    missing = [p for p in sorted(PROVIDED[kind]) if p not in params and not accepts_any]
    if missing:
        return f"it must accept the keyword argument(s) {', '.join(missing)}"
    if kind == "model":
        task = getattr(obj, "task", None)
        if not isinstance(task, str):
            return "it must name its default task as a string attribute `.task` (e.g. 'classify')"
        if not isinstance(getattr(obj, "defaults", {}), dict):
            return "`.defaults` must be a dict of dotted config overrides"
    if kind == "dataset":
        defaults = getattr(obj, "defaults", {})
        if not isinstance(defaults, dict) or not all(isinstance(k, str) and k.startswith("data.") for k in defaults):
            return "`.defaults` must be a dict of data.* config overrides (e.g. {'data.image_size': 32})"
    if kind == "task":
        absent = [m for m in TASK_METHODS if not callable(getattr(obj, m, None))]
        if absent:
            return f"it lacks the method(s) {', '.join(absent)}"
    return None


def errors() -> dict[tuple[str, str], str]:
    """Every plugin that fails to load, with the reason; the others are unaffected."""
    failed = {}
    for kind in GROUPS:
        for name in entries(kind):
            try:
                load(kind, name)
            except PluginError as exc:
                failed[kind, name] = str(exc)
    return failed


# -- options -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Option:
    """One user-settable keyword of a plugin, read from its signature."""

    name: str
    annotation: Any  # the full annotation, constraints included; validate with pydantic
    default: Any
    help: str

    @property
    def type_name(self) -> str:
        base = typing.get_args(self.annotation)[0] if _is_annotated(self.annotation) else self.annotation
        if typing.get_origin(base) is typing.Literal:
            return "|".join(str(a) for a in typing.get_args(base))
        if typing.get_origin(base) in (typing.Union, types.UnionType):  # each member with its own range
            members = (Option(self.name, a, None, "") for a in typing.get_args(base))
            return "|".join(f"{m.type_name} {m.bounds}".strip() for m in members)
        return getattr(base, "__name__", None) or str(base).replace("typing.", "")

    @property
    def bounds(self) -> str:
        """The range that ``Field(gt=, ge=, lt=, le=)`` allows: ``> 0``, ``[0, 1)``; '' if none."""
        found: dict[str, Any] = {}
        for meta in self.annotation.__metadata__ if _is_annotated(self.annotation) else ():
            for item in [meta, *getattr(meta, "metadata", ())]:  # pydantic's FieldInfo holds annotated_types
                for name in ("gt", "ge", "lt", "le"):
                    if getattr(item, name, None) is not None:
                        found[name] = getattr(item, name)
        low = ("(", found["gt"]) if "gt" in found else ("[", found["ge"]) if "ge" in found else None
        high = (found["lt"], ")") if "lt" in found else (found["le"], "]") if "le" in found else None
        if low and high:
            return f"{low[0]}{low[1]}, {high[0]}{high[1]}"
        if low:
            return f"{'>' if low[0] == '(' else '>='} {low[1]}"
        if high:
            return f"{'<' if high[1] == ')' else '<='} {high[0]}"
        return ""


def options(obj: Any, kind: str) -> list[Option]:
    """The keyword-only options of a plugin builder (what users set as ``model.x=...`` etc.).

    For a class (a task), an ``__init__`` that takes ``**options`` passes them on to its base
    class, so the bases' options are collected too, along the MRO, until an ``__init__``
    without ``**``; a subclass's own option of the same name wins."""
    found: dict[str, Option] = {}
    for fn in _option_sources(obj):
        hints = typing.get_type_hints(fn, include_extras=True)
        for p in inspect.signature(fn).parameters.values():
            if (p.kind is not p.KEYWORD_ONLY or p.name in PROVIDED[kind] or p.default is p.empty
                    or p.name in found):
                continue
            annotation = hints.get(p.name, type(p.default) if p.default is not None else Any)
            found[p.name] = Option(p.name, annotation, p.default, _help(annotation))
    return list(found.values())


def _option_sources(obj: Any) -> list[Any]:
    if not inspect.isclass(obj):
        return [obj]
    sources = []
    for cls in obj.__mro__:
        init = cls.__dict__.get("__init__")
        if init is None:
            continue
        sources.append(init)
        if not any(p.kind is p.VAR_KEYWORD for p in inspect.signature(init).parameters.values()):
            break
    return sources


def _signature(obj: Any) -> inspect.Signature:
    return inspect.signature(obj.__init__ if inspect.isclass(obj) else obj)


def _is_annotated(annotation: Any) -> bool:
    return typing.get_origin(annotation) is typing.Annotated


def _help(annotation: Any) -> str:
    if not _is_annotated(annotation):
        return ""
    for meta in annotation.__metadata__:
        if isinstance(meta, str):
            return meta
        if getattr(meta, "description", None):
            return meta.description
    return ""


# -- builders ----------------------------------------------------------------------------------


def model(name: str, *, num_classes: int, in_chans: int = 3, image_size: int = 64, **options: Any):
    """Build a registered model."""
    return load("model", name)(num_classes=num_classes, in_chans=in_chans, image_size=image_size, **options)


def task(name: str, *, model: Any, classes: list[str], **options: Any):
    """Build a registered task around a model."""
    return load("task", name)(model=model, classes=classes, **options)


def model_of(cfg: dict, **provided: Any):
    """The untrained network a run's config names, with its ``model.*`` options. ``provided``
    (num_classes, in_chans, image_size) overrides what the config recorded (config.json keeps
    ``num_classes`` and ``in_chans``; a config before training has only ``data.image_size``)."""
    given = {"image_size": cfg["data"]["image_size"],
             **{k: cfg[k] for k in ("num_classes", "in_chans") if k in cfg}, **provided}
    return model(cfg["model"]["name"], **given, **{k: v for k, v in cfg["model"].items() if k != "name"})


def dataset_of(cfg: dict, split: str):
    """The ``split`` of the dataset a run's config names, with its ``data.*`` options (the keys the
    runner reads itself, ``augment`` and ``workers``, left out): what the run trained and scored on."""
    data = cfg["data"]
    options = {k: v for k, v in data.items() if k not in ("name", "augment", "workers", "image_size")}
    return dataset(data["name"], split=split, image_size=data["image_size"], **options)


def served_checkpoints(cfg: dict) -> tuple[str, str]:
    """The artifact path of the checkpoint a run of ``cfg`` is scored on its test split with and
    served from (its task's ``serves``: zoo/task.py), then the other's, for a run that lacks it.
    Best first where the task's plugin is gone: building it will then say what is missing."""
    try:
        serves = getattr(load("task", cfg["task"]["name"]), "serves", "best")
    except (PluginError, KeyError, TypeError):
        serves = "best"
    names = (Artifact.BEST, Artifact.LAST)
    return names[::-1] if serves == "last" else names


def trained(cfg: dict, state: dict[str, Any], device: Any = "cpu"):
    """A trained run's task around its network, rebuilt from the run's ``config.json`` (``cfg``)
    and a checkpoint's ``state`` (``model`` weights, ``task`` state), in eval mode on ``device``:
    what ``Task.predict`` is called on. ``setup`` is not called. Raises :class:`PluginError`
    for a plugin that is gone or broken, ValueError for a checkpoint that does not fit."""
    import torch
    from torch import nn

    try:
        net = model_of(cfg)
        net.load_state_dict(state["model"])
        task_cls = load("task", cfg["task"]["name"])
        task_options = {o.name: cfg["train"][o.name] for o in options(task_cls, "task")
                        if o.name in cfg["train"]}
        built = task_cls(model=net.eval().to(device), classes=cfg["classes"], **task_options)
        built.load_state_dict(state.get("task", {}))
    except PluginError:
        raise
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise ValueError(f"the checkpoint does not fit the model in config.json ({type(exc).__name__}: {exc})") from None
    # the networks a task keeps beside the model (a style copy, a critic) follow it to the device
    for value in vars(built).values():
        if isinstance(value, nn.Module):
            value.eval().to(torch.device(device))
    return built


def dataset_entry(name_or_path: str | os.PathLike) -> tuple[str, dict[str, Any]]:
    """The dataset plugin for a name or a folder path, and the options that the path implies."""
    text = os.fspath(name_or_path)
    if text in entries("dataset"):
        return text, {}
    if os.sep in text or Path(text).exists() or text.startswith((".", "~")):
        path = Path(text).expanduser()
        if not path.exists():
            raise PluginError(f"dataset folder {text!r} does not exist")
        if not path.is_dir():
            raise PluginError(f"dataset {text!r} is a file; give the folder that holds the images")
        return FOLDER_DATASET, {"root": str(path.resolve())}
    return resolve("dataset", text).name, {}


def dataset(name_or_path: str | os.PathLike, split: str = "train", image_size: int = 64, **options: Any):
    """A registered dataset (by name) or a folder of images (by path), as a torch Dataset."""
    if split not in ("train", "valid", "test"):
        raise ValueError(f"split must be 'train', 'valid' or 'test', not {split!r}")
    name, implied = dataset_entry(name_or_path)
    built = load("dataset", name)(split=split, image_size=image_size, **implied, **options)
    problem = _dataset_problem(built, image_size)
    if problem:
        entry = resolve("dataset", name)
        raise PluginError(
            f"dataset plugin {name!r} ({entry.value}, from {entry.origin}) does not meet the dataset contract "
            f"(split {split!r}): {problem}. A dataset's items are (float C×H×W tensor in [0, 1] with "
            f"H = W = image_size, int label), and it has .classes, a list of class names"
        )
    return built


def _dataset_problem(ds: Any, image_size: int) -> str | None:
    """What is wrong with a built dataset, judged by its ``.classes`` and its first item; None if nothing."""
    import numpy as np
    import torch

    classes = getattr(ds, "classes", None)
    if not isinstance(classes, (list, tuple)) or not classes or not all(isinstance(c, str) for c in classes):
        return f"it has no .classes list of class names (got {type(classes).__name__})"
    try:
        if len(ds) == 0:
            return None
        item = ds[0]
    except Exception as exc:  # the plugin's own failure, named as such
        return f"reading its first item failed: {type(exc).__name__}: {exc}"
    if not isinstance(item, (tuple, list)) or len(item) != 2:
        return f"its first item is a {type(item).__name__}, not an (image, label) pair"
    image, label = item
    if not isinstance(image, torch.Tensor):
        return f"its first image is a {type(image).__name__}, not a torch.Tensor"
    if not image.is_floating_point():
        return f"its first image has dtype {image.dtype}; give float values in [0, 1] (uint8 / 255)"
    if image.dim() != 3 or tuple(image.shape[1:]) != (image_size, image_size):
        return (f"its first image has shape {tuple(image.shape)}, not C×{image_size}×{image_size} "
                f"(channels first, resized to image_size)")
    low, high = float(image.min()), float(image.max())
    if low < 0 or high > 1:
        return f"its first image has values in [{low:.3g}, {high:.3g}], not in [0, 1]"
    if isinstance(label, torch.Tensor) and label.dim() == 0 and not label.is_floating_point():
        label = int(label)
    if isinstance(label, bool) or not isinstance(label, (int, np.integer)):
        return f"its first label is a {type(label).__name__}, not an int class index"
    if not 0 <= int(label) < len(classes):
        return f"its first label is {int(label)}, outside 0..{len(classes) - 1} (one per class in .classes)"
    return None
