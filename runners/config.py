"""The resolved configuration of a run: defaults in one place, overrides type-checked.

A config is a plain nested dict, the same one that is logged as ``config.json``::

    {"entry": "cond_ae", "seed": 0, "experiment": "cond_ae",
     "model": {"name": "cond_ae", ...model options},
     "task": {"name": "restyle"},
     "data": {"name": "synthart", ...data options, ...dataset options},
     "train": {...train options, ...task options}}

Its keys come from three places: the runner's own defaults below (``DATA``, ``TRAIN``,
``TOP``), and the keyword-only options of the model, task and dataset plugins (read from their
signatures by :func:`registry.options`). Precedence: defaults < the dataset's ``.defaults``
(``data.*`` keys only) < the model's ``.defaults`` < the user's ``key=value`` overrides. Every value is validated before any work starts.
"""

from __future__ import annotations

import difflib
from typing import Annotated, Any, Literal

from pydantic import Field, TypeAdapter, ValidationError

import registry
from registry import Option


class ConfigError(ValueError):
    """A bad command line: an unknown key, a badly typed value, a value out of range."""


def _opt(name: str, annotation: Any, default: Any, help: str) -> Option:
    return Option(name, annotation, default, help)


# -- the runner's own defaults -----------------------------------------------------------------
TOP = [
    _opt("seed", Annotated[int, Field(ge=0)], 0, "seed of every random number (Python, NumPy, torch, loaders)"),
    _opt("seeds", str, "", "comma-separated seeds: one child run per seed under a parent run (e.g. 0,1,2)"),
    _opt("experiment", str, "", "MLflow experiment (default: the entry's name)"),
    _opt("resume", str, "", "run id to continue from its last checkpoint, in the same MLflow run"),
    _opt("data", str, "synthart", "dataset: a registered name (synthart, digits, ...) or a folder path"),
    _opt("task", str, "", "task: a registered name (classify, reconstruct, restyle, ...); default: the model's own"),
]
DATA = [
    _opt("image_size", Annotated[int, Field(ge=8, le=1024)], 64, "side of the square images, in pixels"),
    _opt("augment", bool, True, "random horizontal flips of training images (on the device)"),
    _opt("workers", Annotated[int, Field(ge=0)], 0, "DataLoader worker processes (0: load in the main process)"),
]
TRAIN = [
    _opt("epochs", Annotated[int, Field(gt=0)], 10, "passes over the training set"),
    _opt("batch_size", Annotated[int, Field(gt=0)], 64, "images per step (per process under torchrun)"),
    _opt("lr", Annotated[float, Field(gt=0, le=10)], 1e-3, "peak learning rate of AdamW"),
    _opt("weight_decay", Annotated[float, Field(ge=0)], 1e-4, "AdamW weight decay"),
    _opt("beta1", Annotated[float, Field(ge=0, lt=1)], 0.9, "AdamW's first-moment decay (0.5 for adversarial training)"),
    _opt("warmup_steps", Annotated[int, Field(ge=0)], 0, "linear warm-up steps before the cosine decay"),
    _opt("schedule", Literal["cosine", "constant"], "cosine", "learning-rate schedule after warm-up"),
    _opt("grad_clip", Annotated[float, Field(ge=0)], 0.0, "clip the gradient norm to this (0: off)"),
    _opt("ema", Annotated[float, Field(ge=0, lt=1)], 0.0, "decay of an exponential moving average of the model's "
         "weights, updated every step; evaluation, the test and checkpoints' model use the average (0: off)"),
    _opt("device", str, "auto", "auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:1, mps"),
    _opt("precision", Literal["auto", "fp32", "bf16"], "auto", "auto: bf16 autocast on CUDA, fp32 elsewhere"),
    _opt("compile", bool, False, "torch.compile the model"),
    _opt("deterministic", bool, True, "deterministic algorithms: the same seed gives the same numbers"),
    _opt("max_steps_per_epoch", Annotated[int, Field(ge=0)], 0, "stop each epoch after this many steps (0: the whole set)"),
    _opt("log_every", Annotated[int, Field(gt=0)], 10, "log train/* metrics every N steps"),
    _opt("system_metrics", bool, True, "log MLflow's system metrics (CPU, memory, disk, network; GPU where "
         "present) as system/*, every MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL seconds (10)"),
    _opt("checkpoint_every", Annotated[int, Field(ge=0)], 0, "also checkpoint every N steps within an epoch (0: per epoch only)"),
    _opt("log_model", bool, True, "log the finished run's MLflow model, runs:/<id>/model (runners/pyfunc.py)"),
    _opt("register", str, "", "register that model in the Model Registry under this name, alias @newest"),
]


def schema(entry: str, data: str | None = None, task: str | None = None) -> dict[str, dict[str, Option]]:
    """Every settable key of ``entry`` (with ``data`` as the dataset and ``task`` as the task,
    by default the model's own), grouped as on the CLI."""
    model_name = registry.resolve("model", entry).name
    task_name = task_of(model_name, task)
    data_name, _ = registry.dataset_entry(data or _default(TOP, "data"))
    groups = {
        "": {o.name: o for o in TOP},
        "data": {o.name: o for o in DATA},
        "model": {o.name: o for o in registry.options(registry.load("model", model_name), "model")},
        "train": {o.name: o for o in TRAIN},
    }
    for group, extra in (("train", registry.options(registry.load("task", task_name), "task")),
                         ("data", registry.options(registry.load("dataset", data_name), "dataset"))):
        for o in extra:
            if data_name == registry.FOLDER_DATASET and o.name == "root":
                continue  # the folder's root is the path given as data=
            if o.name in groups[group]:
                raise registry.PluginError(f"option {group}.{o.name} of {task_name if group == 'train' else data_name!r} "
                                           f"clashes with the runner's own {group}.{o.name}; rename it in the plugin")
            groups[group][o.name] = o
    return groups


def task_of(model: str, task: str | None = None) -> str:
    """The registered name of the task that trains ``model``: ``task`` (``task=`` on the command
    line) or else the one the model names in ``.task``."""
    own = registry.load("model", model).task
    if task:
        return registry.resolve("task", task).name
    if own not in registry.entries("task"):
        raise registry.PluginError(f"model {model!r} names task {own!r}, which is not registered")
    return own


def resolve(entry: str, overrides: list[str] | dict[str, str]) -> dict:
    """The full config for ``entry`` with ``key=value`` overrides applied and validated."""
    pairs = _pairs(overrides)
    model_entry = registry.resolve("model", entry)
    builder = registry.load("model", model_entry.name)
    task_name = task_of(model_entry.name, pairs.get("task"))
    model_defaults = {k: str(v) for k, v in getattr(builder, "defaults", {}).items()}
    data = _validate(next(o for o in TOP if o.name == "data"), "data",
                     {**model_defaults, **pairs}.get("data", _default(TOP, "data")))
    merged = {**{k: str(v) for k, v in dataset_defaults(data).items()}, **model_defaults, **pairs}
    groups = schema(model_entry.name, data, task_name)

    cfg: dict[str, Any] = {"entry": model_entry.name}
    for o in groups[""].values():
        cfg[o.name] = o.default
    del cfg["data"]  # data= becomes data.name (and data.root for a folder), set below
    cfg.update(model={"name": model_entry.name}, task={"name": task_name}, data={}, train={})
    for group in ("model", "data", "train"):
        for o in groups[group].values():
            cfg[group][o.name] = o.default

    for key, raw in merged.items():
        if key in ("data", "task"):
            continue
        group, _, name = key.rpartition(".")
        option = groups.get(group, {}).get(name)
        if option is None:
            _refuse_other_task_option(key, raw, model_entry.name, task_name)
            valid = [f"{g}.{n}" if g else n for g, opts in groups.items() for n in opts]
            close = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ConfigError(f"unknown key {key!r}: {hint}see `python -m runners.run {model_entry.name} --help`")
        value = _validate(option, key, raw)
        (cfg if not group else cfg[group])[name] = value

    name, implied = registry.dataset_entry(data)
    cfg["data"] = {"name": name, **implied, **cfg["data"]}
    cfg["experiment"] = cfg["experiment"] or model_entry.name
    if cfg["seeds"]:
        cfg["seeds"] = _validate(_opt("seeds", list[Annotated[int, Field(ge=0)]], [], ""), "seeds", f"[{cfg['seeds']}]")
    _check_consistency(cfg)
    return cfg


def dataset_defaults(data: str) -> dict[str, Any]:
    """The ``data.*`` defaults a dataset plugin carries as ``.defaults`` (synthart_lt: 32 px)."""
    name, _ = registry.dataset_entry(data)
    return dict(getattr(registry.load("dataset", name), "defaults", {}))


def _refuse_other_task_option(key: str, raw: str, model: str, task: str) -> None:
    """A train.* key of another task (train.imbalance=sampler for an autoencoder) is a conflict
    between the option and the model's task, and is named as one."""
    group, _, name = key.rpartition(".")
    if group != "train":
        return
    owners = []
    for other in registry.entries("task"):
        if other == task:
            continue
        try:
            if any(o.name == name for o in registry.options(registry.load("task", other), "task")):
                owners.append(other)
        except registry.PluginError:
            continue  # a broken plugin is reported by --list, not here
    if not owners:
        return
    task_cls = registry.load("task", task)
    why = " and trains without labels" if not getattr(task_cls, "uses_labels", True) else ""
    raise ConfigError(
        f"{key}={raw} is an option of task {' and '.join(owners)}; model {model} trains task {task}, which has "
        f"no such option{why}. Drop {key}, or pick a model whose task takes it (`python -m runners.run --list`)")


def _check_consistency(cfg: dict) -> None:
    task_cls = registry.load("task", cfg["task"]["name"])
    problem = getattr(task_cls, "config_problem", lambda train: None)(cfg["train"])  # optional for a plugin
    if problem:
        raise ConfigError(f"task {cfg['task']['name']}: {problem}")
    if cfg["resume"] and cfg["seeds"]:
        raise ConfigError("resume= continues one run; it cannot be combined with seeds=")


def _validate(option: Option, key: str, raw: Any) -> Any:
    try:
        if isinstance(raw, str) and _accepts_json(option.annotation) and raw.strip().startswith("["):
            return TypeAdapter(option.annotation).validate_json(raw)
        return TypeAdapter(option.annotation).validate_python(raw, strict=False)
    except ValidationError as exc:
        reason = "; ".join(e["msg"] for e in exc.errors())
        raise ConfigError(f"bad value for {key}: {raw!r} ({reason}; expected {option.type_name})") from None


def _accepts_json(annotation: Any) -> bool:
    return "list" in str(annotation)


def _pairs(overrides: list[str] | dict[str, str]) -> dict[str, str]:
    if isinstance(overrides, dict):
        return dict(overrides)
    pairs = {}
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"expected key=value, got {item!r} (e.g. train.epochs=3)")
        pairs[key.strip()] = value
    return pairs


def _default(options: list[Option], name: str) -> Any:
    return next(o.default for o in options if o.name == name)


def flatten(cfg: dict, prefix: str = "") -> dict[str, Any]:
    """``{"train": {"lr": 1e-3}}`` -> ``{"train.lr": 1e-3}``, as MLflow params."""
    flat = {}
    for key, value in cfg.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def describe(entry: str, data: str | None = None, task: str | None = None) -> str:
    """The ``--help`` text: every key with its type, default and meaning."""
    model_entry = registry.resolve("model", entry)
    builder = registry.load("model", model_entry.name)
    task_name = task_of(model_entry.name, task)
    defaults = {**dataset_defaults(data or _default(TOP, "data")), **getattr(builder, "defaults", {})}
    chosen = "" if task_name == builder.task else f" (chosen with task=; the model's own is {builder.task})"
    lines = [f"usage: python -m runners.run {model_entry.name} [key=value ...]",
             f"model {model_entry.name} ({model_entry.value}, from {model_entry.origin}); task {task_name}{chosen}", ""]
    groups = schema(model_entry.name, data, task_name)
    # the type column shows the choices of a Literal and the range of a Field(gt=..., le=...)
    kinds = {(g, o.name): f"{o.type_name} {o.bounds}".strip() for g, opts in groups.items() for o in opts.values()}
    width = max(map(len, kinds.values()))
    for group, opts in groups.items():
        lines.append(f"{group or 'top-level'} keys:")
        for o in opts.values():
            key = f"{group}.{o.name}" if group else o.name
            default = defaults.get(key, o.default)
            lines.append(f"  {key:<28} {kinds[group, o.name]:<{width}}  default {default!r:<12} {o.help}")
        lines.append("")
    return "\n".join(lines)
