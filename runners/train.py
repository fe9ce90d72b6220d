"""One run: any model, task and dataset the registry knows, on CPU, GPU or torchrun.

``train(cfg)`` is the callable entry (tests and benchmarks call it); ``runners.run`` only parses
the command line. It reads top to bottom: build (data, model and task, the :class:`Fitter` that
holds every optimizer, schedule and the moving average), fit and test (runners/loop.py, written
by a :class:`Recorder`: runners/record.py), then the run's description and MLflow model. The task
supplies losses, metrics and artifacts (zoo/task.py).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import torch
from torch import nn

import registry
from runners import checkpoint, dist, loader
from runners.config import ConfigError
from runners.describe import NOTE, describe
from runners.loop import Feed, Pruned, StopFlag, Stopped, fit, test  # noqa: F401  (Pruned: sweeps')
from runners.record import Recorder, State, restore
from runners.tracking import (Killed, Run, TrackingError, dataset_identity, entry_tags, git_commit, runs_root,
                              tracked_run)
from zoo.fit import Fitter, channels_last, place_auxiliary, scheduled
from zoo import schema
from zoo.schema import Artifact, Tag

if TYPE_CHECKING:
    from timm.utils import ModelEmaV3


def pick_device(name: str) -> torch.device:
    if name != "auto":
        device = torch.device(name)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(f"train.device={name} but CUDA is not available here; use train.device=cpu")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def train(cfg: dict, *, parent: str | None = None, name: str | None = None, tags: dict[str, str] | None = None,
          on_epoch: Callable[[int, dict[str, float]], None] | None = None) -> dict[str, Any]:
    """Train and evaluate one run of ``cfg`` (from :func:`runners.config.resolve`).

    ``parent``, ``name`` and ``tags`` place the MLflow run (a seed under its multi-seed parent, a
    sweep's configuration or trial). ``on_epoch(epoch, val_metrics)`` is called after each
    epoch's validation; it may raise :class:`Pruned`. Returns the test metrics, the best
    validation value of the task's main metric (``val/<main_metric>_best``) and ``run_id``. The
    MLflow run ends FINISHED, FAILED (an exception, a non-finite loss) or KILLED (SIGTERM,
    Ctrl-C, :class:`Pruned`; a checkpoint is saved first).
    """
    t = cfg["train"]
    device, world = _device_and_world(t["device"])
    seed_everything(cfg["seed"], t["deterministic"])
    sets = _datasets(cfg, world)
    model, task = _model_and_task(cfg, sets["train"], device)  # the config checked against data and model
    feed = _feed(cfg, sets, task, device, world)
    fitter = build_fitter(cfg, model, task, feed.steps_per_epoch * t["epochs"], device, world)
    logged = _logged_config(cfg, sets["train"])
    # a checkpoint that cannot be read (or is refused as code) leaves the run as it was
    ckpt = checkpoint.load(_resume_checkpoint(cfg["resume"], world)) if cfg["resume"] else None

    with tracked_run(cfg["experiment"], resume=cfg["resume"], parent=parent,
                     name=name or f"{cfg['entry']}-seed{cfg['seed']}", system_metrics=t["system_metrics"],
                     enabled=world.main) as run:
        run_id = dist.broadcast(run.id if run else None, world)
        record = Recorder(run, runs_root() / run_id, cfg)
        if run:
            print(f"started run {run_id}; if it stops, continue it with "
                  f"`python -m runners.run {cfg['entry']} resume={run_id}`", flush=True)
        state = restore(ckpt, fitter) if ckpt is not None else State()
        if ckpt is None and run:
            _log_inputs(run, logged, sets, tags, device, world)
        task.model = _wrapped(model, t, device, world)
        try:
            with _stops_reported(run, run_id, cfg["entry"]), StopFlag() as stop:
                fit(fitter, feed, record, state, stop, t["epochs"], on_epoch)
                # past the last checkpoint a stop ends the run at once: a resume scores the test split again
                stop.at_once = True
                if stop.signum is not None:  # it came during the last validation
                    raise Stopped(stop.signum)
                metrics, tested_at = test(fitter, feed, record, state)
        finally:
            task.model = model
        best = {schema.best(task.main_metric): math.nan if state.best is None else float(state.best)}
        if run:
            _conclude(run, record, type(task), logged, sets, metrics, best, tested_at)
        return {**metrics, **best, "run_id": run_id}


@contextlib.contextmanager
def _stops_reported(run: Run | None, run_id: str, entry: str):
    """A stop (SIGTERM, Ctrl-C, a sweep's pruner) names its run, says how to continue it and why it
    stopped; the run then ends KILLED (runners/tracking.py)."""
    try:
        yield
    except Killed as exc:
        exc.run_id = run_id  # which run a sweep's trial was
        if run and isinstance(exc, Pruned):
            print(f"pruned: {exc}", file=sys.stderr, flush=True)
            with contextlib.suppress(Exception):
                run.client.set_tag(run.id, Tag.STOPPED, f"pruned: {exc}")
        elif run:
            print(f"\nstopped by {exc}; checkpoint saved. Continue with "
                  f"`python -m runners.run {entry} resume={run_id}`", file=sys.stderr, flush=True)
        raise


def _conclude(run: Run, record: Recorder, task_cls: Any, logged: dict, sets: dict, metrics: dict[str, float],
              best: dict[str, float], tested_at: int | None) -> None:
    """The run's last records: the best validation value, its description and its MLflow model."""
    t = logged["train"]
    # what picked checkpoints/best.pt, and what sweeps rank by
    run.log_metrics(best, step=0, timestamp=tested_at)  # a final score, as the test's
    served = record.served()
    note = describe(task_cls, logged, metrics, run_id=run.id,
                    served=str(served.relative_to(record.folder)) if served else "no checkpoint")
    run.log_tags({NOTE: note})
    if (t["log_model"] or t["register"]) and served:
        scores = [({k: v for k, v in metrics.items() if k != "test/count"},
                   dataset_identity(sets["test"], logged["data"], "test")),
                  (best, dataset_identity(sets["valid"], logged["data"], "validation"))]
        _log_model(run, logged, served, t["register"], note=note,
                   scores=scores, step=0, timestamp=tested_at)


# -- the steps of train(), in order ----------------------------------------------------------


def _device_and_world(name: str) -> tuple[torch.device, dist.World]:
    device = pick_device(name)
    world = dist.init(device.type)
    if world.distributed and device.type == "cuda":
        device = torch.device("cuda", world.local_rank)
        torch.cuda.set_device(device)
    return device, world


def _model_and_task(cfg: dict, train_set: Any, device: torch.device) -> tuple[nn.Module, Any]:
    """The model and its task, after what the config says has been checked against the data and
    the model: a mismatch is a ConfigError before any run is made."""
    classes = list(train_set.classes)
    in_chans = int(train_set[0][0].shape[0])
    image_size = cfg["data"]["image_size"]
    task_cls = registry.load("task", cfg["task"]["name"])
    _check_classes(cfg, train_set, task_cls)
    model = build_model(cfg, num_classes=len(classes), in_chans=in_chans, image_size=image_size).to(device)
    problem = task_cls.model_problem(model, num_classes=len(classes), in_chans=in_chans, image_size=image_size)
    if problem:
        raise ConfigError(f"task {cfg['task']['name']} cannot train model {cfg['model']['name']}: {problem}. "
                          f"Leave task= out to train the model's own task ({registry.load('model', cfg['model']['name']).task})")
    task_opts = {o.name: cfg["train"][o.name] for o in registry.options(task_cls, "task")}
    task = task_cls(model=model, classes=classes, **task_opts)
    task.setup(train_set, device)
    return model, task


def _feed(cfg: dict, sets: dict, task: Any, device: torch.device, world: dist.World) -> Feed:
    t = cfg["train"]
    labels = np.asarray(sets["train"].targets) if hasattr(sets["train"], "targets") else None
    return Feed(sets, cfg["seed"], t["batch_size"], cfg["data"]["workers"], _steps_per_epoch(len(sets["train"]), t, world),
                device, world, weights=task.sample_weights(labels) if labels is not None else None)


def build_fitter(cfg: dict, model: nn.Module, task: Any, total_steps: int, device: torch.device,
                 world: dist.World = dist.World()) -> Fitter:
    """What the run trains and how: a Step for the model (AdamW, the warm-up and schedule, the
    gradient clipping of ``train.*``) and for each of the task's auxiliary networks (placed,
    given their optimizers and, under torchrun, wrapped in DistributedDataParallel), the
    moving average, mixed precision and flips (``data.augment``). bench/throughput.py times its
    ``train_step``."""
    t = cfg["train"]
    schedule = _schedule(t, total_steps)
    optimizer = torch.optim.AdamW(model.parameters(), lr=t["lr"], betas=(t["beta1"], 0.999),
                                  weight_decay=t["weight_decay"])

    def ddp(module: nn.Module, find_unused_parameters: bool) -> nn.Module:
        return nn.parallel.DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None,
                                                   find_unused_parameters=find_unused_parameters)

    auxiliary = place_auxiliary(task, device, ddp if world.distributed else None, schedule=schedule,
                                grad_clip=t["grad_clip"])
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" and t["precision"] in ("auto", "bf16")
                else contextlib.nullcontext())
    return Fitter(task, model, {"model": scheduled("model", model.parameters(), optimizer, schedule, t["grad_clip"])},
                  auxiliary, _moving_average(model, t["ema"]), autocast, cfg["data"]["augment"])


def _moving_average(model: nn.Module, decay: float) -> ModelEmaV3 | None:
    if not decay:
        return None
    from timm.utils import ModelEmaV3  # seconds to import: only runs that average pay for it

    # a copy at the first step (timm's decay is 0 there), then the average; it follows the bare
    # module, so compile and DistributedDataParallel wrap only the one being trained
    return ModelEmaV3(model, decay=decay)


def _resume_checkpoint(run_id: str, world: dist.World) -> Path:
    local = runs_root() / run_id / Artifact.LAST
    if local.exists():
        return local
    if not world.main:
        raise FileNotFoundError(f"no checkpoint at {local}")
    try:
        # a file's download lands under its own name: into checkpoints/, where training goes on
        return Run.attach(run_id, local_root=runs_root()).download(Artifact.LAST, local.parent)
    except TrackingError:
        raise
    except Exception as exc:
        raise FileNotFoundError(
            f"run {run_id} has no checkpoint to resume from (looked in {local} and in its MLflow artifacts)") from exc


def _logged_config(cfg: dict, train_set: Any) -> dict:
    """The run's config.json: the resolved config and what the data decided."""
    classes = list(train_set.classes)
    return {**cfg, "num_classes": len(classes), "in_chans": int(train_set[0][0].shape[0]), "classes": classes}


def _log_inputs(run: Run, logged: dict, sets: dict, tags: dict[str, str] | None, device: torch.device,
                world: dist.World) -> None:
    """A new run's params, tags, config.json (``logged``), datasets and unreadable files."""
    run.log_config(logged, {**_tags(logged, device, world), **(tags or {})})
    for split, ds in sets.items():
        run.log_dataset(ds, logged["data"], {"train": "training", "valid": "validation", "test": "test"}[split])
    unreadable = {split: [{"path": p, "reason": r} for p, r in ds.skipped]
                  for split, ds in sets.items() if getattr(ds, "skipped", None)}
    if unreadable:
        run.log_dict(unreadable, Artifact.UNREADABLE)


def _wrapped(model: nn.Module, t: dict, device: torch.device, world: dist.World) -> nn.Module:
    """The module the steps train: channels-last, compiled and DistributedDataParallel as set."""
    if channels_last(device):
        model = model.to(memory_format=torch.channels_last)
    if t["compile"]:
        model = torch.compile(model)
    if world.distributed:
        model = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    return model


def _datasets(cfg: dict, world: dist.World) -> dict[str, Any]:
    def build() -> dict[str, Any]:
        return {split: registry.dataset_of(cfg, split) for split in ("train", "valid", "test")}

    # rank 0 fills the decode cache first; the others then only read it
    if world.distributed and not world.main:
        torch.distributed.barrier()
    sets = build()
    if world.distributed and world.main:
        torch.distributed.barrier()
    if world.main:
        for ds in sets.values():
            if hasattr(ds, "summary"):
                print(ds.summary(), flush=True)
    if len(sets["train"]) == 0:
        skipped = len(getattr(sets["train"], "skipped", ()))
        raise ConfigError(f"data={cfg['data'].get('root') or cfg['data']['name']}: its training split has no "
                          f"readable images" + (f" ({skipped} skipped as unreadable, listed above)" if skipped else "")
                          + "; give a dataset with training images")
    return sets


def _check_classes(cfg: dict, train_set: Any, task_cls: Any) -> None:
    """A task that learns from labels needs at least two classes with training images."""
    if not getattr(task_cls, "uses_labels", True):
        return
    classes = list(train_set.classes)
    targets = getattr(train_set, "targets", None)
    present = [classes[i] for i in np.unique(np.asarray(targets))] if targets is not None else classes
    if len(present) >= 2:
        return
    data = cfg["data"].get("root") or cfg["data"]["name"]
    found = f"only {present[0]!r}" if present else "none"
    raise ConfigError(
        f"data={data}: its training split has {len(present)} class with images ({found}); task "
        f"{cfg['task']['name']} (of model {cfg['model']['name']}) learns from labels and needs at least 2 "
        f"classes with training images")


def build_model(cfg: dict, **provided: Any) -> nn.Module:
    """The model of a run's config (``provided``: what the data decides: num_classes, in_chans,
    image_size). A builder that refuses its options (say an image size it cannot take) is a
    config error naming the keys and values it was given, before any run is made."""
    try:
        return registry.model_of(cfg, **provided)
    except ValueError as exc:
        given = ", ".join([f"data.image_size={provided['image_size']}",
                           *(f"model.{k}={v}" for k, v in cfg["model"].items() if k != "name")])
        raise ConfigError(f"model {cfg['model']['name']} cannot be built with {given}: {exc}") from None


def _steps_per_epoch(n: int, t: dict, world: dist.World) -> int:
    per_rank = -(-n // world.size)
    steps = loader.num_batches(per_rank, t["batch_size"])
    return min(steps, t["max_steps_per_epoch"]) if t["max_steps_per_epoch"] else steps


def _schedule(t: dict, total: int):
    warmup = t["warmup_steps"]

    def factor(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        if t["schedule"] == "constant":
            return 1.0
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def _tags(logged: dict, device: torch.device, world: dist.World) -> dict[str, str]:
    """The run's tags, from its config.json (``logged``) and where it trains."""
    tags = {
        **entry_tags(logged),
        Tag.CLASSES: json.dumps(logged["classes"]),
        Tag.DEVICE: f"{device.type}" + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""),
        Tag.WORLD_SIZE: str(world.size),
        Tag.SEED: str(logged["seed"]),
    }
    commit = git_commit()
    if commit:
        tags["git.commit"] = commit
    return tags


def _log_model(run: Run, cfg: dict, path: Path, register: str, *, note: str,
               scores: list[tuple[dict[str, float], tuple[str, str]]], step: int, timestamp: int) -> None:
    """The run's MLflow model (runners/pyfunc.py) from the checkpoint at ``path``, with the run's
    description and its scores (``(metrics, (dataset name, digest))`` pairs, as the run logged
    them at ``step`` and ``timestamp``), and its registration; a store that refuses them costs the
    run nothing, and the command to do it later is printed."""
    from mlflow.tracking import MlflowClient

    from runners import pyfunc

    later = f"`python -m runners.pyfunc {run.id}" + (f" --register {register}`" if register else "`")
    print(f"logging the MLflow model runs:/{run.id}/model from {path.parent.name}/{path.name} …", flush=True)
    # the machine's samples taken while MLflow holds the model as the active one would be filed
    # under it as if they were its scores
    run.stop_system_metrics()
    try:
        info = pyfunc.log_model(run.id, cfg, path)
        for metrics, dataset in scores:
            run.log_metrics(metrics, step, timestamp=timestamp, model_id=info.model_id, dataset=dataset)
        MlflowClient().set_logged_model_tags(info.model_id, {NOTE: note})
        if register:
            print(f"registered {pyfunc.register(info.model_uri, register)} (alias @{pyfunc.ALIAS})", flush=True)
    except Exception as exc:  # the run's results are logged already; the model can follow
        print(f"warning: the run's MLflow model was not logged ({type(exc).__name__}: {exc}); log it with {later}",
              file=sys.stderr, flush=True)
