"""The one training loop: any model, task and dataset the registry knows, on CPU, GPU or torchrun.

``train(cfg)`` is the callable entry (tests and benchmarks call it); ``runners.run`` only parses
the command line. The task supplies loss, metrics and artifacts (zoo/task.py); this module owns
the device, precision, optimizer, sampling, distribution, checkpoints and MLflow.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import shutil
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

import registry
from runners import checkpoint, dist, loader
from runners.config import ConfigError
from runners.describe import NOTE, describe
from runners.tracking import (Killed, Run, TrackingError, dataset_identity, entry_tags, git_commit, runs_root,
                              tracked_run)

if TYPE_CHECKING:
    from timm.utils import ModelEmaV3

    from zoo.task import Auxiliary

NUM_PREVIEW = 8  # validation images shown in the per-epoch grids


class Stopped(Killed):
    """SIGTERM or Ctrl-C arrived; the run was checkpointed and marked KILLED."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class Pruned(Killed):
    """Raised by an ``on_epoch`` callback to end a run early (a sweep's pruner): the run is
    checkpointed and marked KILLED, its tag ``zoo.stopped`` says why."""


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


def channels_last(device: torch.device) -> bool:
    """Whether training runs in channels-last (NHWC) memory format: on CUDA (tensor cores) and on
    CPUs (oneDNN's convolutions are faster in NHWC; docs/performance.md)."""
    return device.type in ("cuda", "cpu")


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


@dataclass
class _State:
    epoch: int = 0  # the epoch in progress (or next to start)
    step: int = 0  # optimizer steps taken, over the whole run
    batch: int = 0  # batches of `epoch` already trained
    best: float | None = None
    history: list[dict] = field(default_factory=list)


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
    auxiliary = _auxiliary(task, device, world)
    ema = _moving_average(model, t["ema"])
    steps_per_epoch = _steps_per_epoch(len(sets["train"]), t, world)
    optimizer, scheduler = _optimization(model, t, steps_per_epoch * t["epochs"])
    logged = _logged_config(cfg, sets["train"])
    # a checkpoint that cannot be read (or is refused as code) leaves the run as it was
    ckpt = checkpoint.load(_resume_checkpoint(cfg["resume"], world)) if cfg["resume"] else None

    with tracked_run(cfg["experiment"], resume=cfg["resume"], parent=parent,
                     name=name or f"{cfg['entry']}-seed{cfg['seed']}", system_metrics=t["system_metrics"],
                     enabled=world.main) as run:
        run_id = dist.broadcast(run.id if run else None, world)
        if run:
            print(f"started run {run_id}; if it stops, continue it with "
                  f"`python -m runners.run {cfg['entry']} resume={run_id}`", flush=True)
        if ckpt is not None:
            state = _restore(ckpt, model, ema, optimizer, scheduler, task, auxiliary)
        else:
            state = _State()
            if run:
                _log_inputs(run, logged, sets, tags, device, world)
        task.model = _wrapped(model, t, device, world)
        try:
            loop = _Loop(cfg, task, model, optimizer, scheduler, sets, device, world, run, runs_root() / run_id,
                         state, steps_per_epoch, ema, auxiliary, on_epoch)
            with StopFlag() as stop:
                loop.fit(stop)
                # past the last checkpoint a stop ends the run at once: a resume scores the test split again
                stop.at_once = True
                if stop.signum is not None:  # it came during the last validation
                    raise Stopped(stop.signum)
                metrics = loop.test()
            best = {f"{loop.main_key}_best": math.nan if state.best is None else float(state.best)}
            if run:
                # what picked checkpoints/best.pt, and what sweeps rank by
                run.log_metrics(best, step=0, timestamp=loop.tested_at)  # a final score, as the test's
                served = next((n for n in registry.served_checkpoints(logged) if (loop.run_dir / n).is_file()), None)
                note = describe(type(task), logged, metrics, run_id=run_id, served=served or "no checkpoint")
                run.log_tags({NOTE: note})
                if (t["log_model"] or t["register"]) and served:
                    scores = [({k: v for k, v in metrics.items() if k != "test/count"},
                               dataset_identity(sets["test"], logged["data"], "test")),
                              (best, dataset_identity(sets["valid"], logged["data"], "validation"))]
                    _log_model(run, logged, loop.run_dir / served, t["register"], note=note,
                               scores=scores, step=0, timestamp=loop.tested_at)
            return {**metrics, **best, "run_id": run_id}
        except Killed as exc:
            exc.run_id = run_id  # which run a sweep's trial was
            if run and isinstance(exc, Pruned):
                print(f"pruned: {exc}", file=sys.stderr, flush=True)
                with contextlib.suppress(Exception):
                    run.client.set_tag(run.id, "zoo.stopped", f"pruned: {exc}")
            elif run:
                print(f"\nstopped by {exc}; checkpoint saved. Continue with "
                      f"`python -m runners.run {cfg['entry']} resume={run_id}`", file=sys.stderr, flush=True)
            raise
        finally:
            task.model = model


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


def _auxiliary(task: Any, device: torch.device, world: dist.World) -> dict[str, Auxiliary]:
    """The networks the task trains beside the model, placed, given their optimizers and, under
    torchrun, wrapped in DistributedDataParallel (zoo/task.py's Auxiliary)."""
    from zoo.task import place_auxiliary

    def ddp(module: nn.Module, find_unused_parameters: bool) -> nn.Module:
        return nn.parallel.DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None,
                                                   find_unused_parameters=find_unused_parameters)

    return place_auxiliary(task, device, ddp if world.distributed else None)


def _moving_average(model: nn.Module, decay: float) -> ModelEmaV3 | None:
    if not decay:
        return None
    from timm.utils import ModelEmaV3  # seconds to import: only runs that average pay for it

    # a copy at the first step (timm's decay is 0 there), then the average; it follows the bare
    # module, so compile and DistributedDataParallel wrap only the one being trained
    return ModelEmaV3(model, decay=decay)


def _optimization(model: nn.Module, t: dict, total_steps: int) -> tuple[torch.optim.Optimizer, Any]:
    optimizer = torch.optim.AdamW(model.parameters(), lr=t["lr"], betas=(t["beta1"], 0.999),
                                  weight_decay=t["weight_decay"])
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, _schedule(t, total_steps))


def _resume_checkpoint(run_id: str, world: dist.World) -> Path:
    local = runs_root() / run_id / "checkpoints" / "last.pt"
    if local.exists():
        return local
    if not world.main:
        raise FileNotFoundError(f"no checkpoint at {local}")
    try:
        return Run.attach(run_id, local_root=runs_root()).download("checkpoints/last.pt")
    except TrackingError:
        raise
    except Exception as exc:
        raise FileNotFoundError(
            f"run {run_id} has no checkpoint to resume from (looked in {local} and in its MLflow artifacts)") from exc


def _restore(ckpt: dict, model: nn.Module, ema: ModelEmaV3 | None, optimizer, scheduler, task,
             auxiliary: dict[str, Auxiliary]) -> _State:
    model.load_state_dict(checkpoint.trained_state(ckpt))
    if ema is not None:
        ema.module.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    scheduler.load_state_dict(ckpt["scheduler"])
    task.load_state_dict(ckpt["task"])
    for name, state in ckpt.get("auxiliary", {}).items():
        auxiliary[name].optimizer.load_state_dict(state)
    checkpoint.set_rng_state(ckpt["rng"])
    return _State(ckpt["epoch"], ckpt["step"], ckpt["batch"], ckpt["best"], ckpt.get("history", []))


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
        run.log_dict(unreadable, "data/unreadable.json")


def _wrapped(model: nn.Module, t: dict, device: torch.device, world: dist.World) -> nn.Module:
    """The module the steps train: channels-last, compiled and DistributedDataParallel as set."""
    if channels_last(device):
        model = model.to(memory_format=torch.channels_last)
    if t["compile"]:
        model = torch.compile(model)
    if world.distributed:
        model = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    return model


class StopFlag:
    """Turns SIGTERM (and Ctrl-C) into a flag the loop checks between steps; once ``at_once`` is set
    (the run is past its last checkpoint: the test split, the analysis), into :class:`Stopped` at once."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.at_once = False  # raise Stopped from the handler, wherever the run is, rather than set the flag
        self._old: dict[int, Any] = {}

    def __enter__(self) -> "StopFlag":
        if threading_main():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.signum = signum
        if self.at_once:
            raise Stopped(signum)

    def __exit__(self, *exc: Any) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


def threading_main() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


@dataclass
class _Loop:
    cfg: dict
    task: Any
    model: nn.Module  # the bare module (checkpoints, evaluation)
    optimizer: torch.optim.Optimizer
    scheduler: Any
    sets: dict
    device: torch.device
    world: dist.World
    run: Run | None
    run_dir: Path
    state: _State
    steps_per_epoch: int
    ema: ModelEmaV3 | None = None  # the weights' moving average (train.ema): what is evaluated and reported
    auxiliary: dict[str, Auxiliary] = field(default_factory=dict)  # the task's other networks (their optimizers)
    on_epoch: Callable[[int, dict[str, float]], None] | None = None
    tested_at: int | None = field(default=None, init=False)  # when the test metrics were logged (ms)

    def __post_init__(self) -> None:
        t = self.cfg["train"]
        self.t = t
        self.autocast = (torch.autocast("cuda", dtype=torch.bfloat16)
                         if self.device.type == "cuda" and t["precision"] in ("auto", "bf16")
                         else contextlib.nullcontext())
        labels = np.asarray(self.sets["train"].targets) if hasattr(self.sets["train"], "targets") else None
        self.weights = self.task.sample_weights(labels) if labels is not None else None
        self.main_key = f"val/{self.task.main_metric}"

    # -- training ---------------------------------------------------------------------------
    def fit(self, stop: StopFlag) -> None:
        s, t = self.state, self.t
        epochs = tqdm(range(s.epoch, t["epochs"]), desc="epochs", unit="epoch", disable=None if self.world.main else True,
                      initial=s.epoch, total=t["epochs"])
        if s.epoch == 0 and s.batch == 0 and self.world.main:
            # step 0, before training: what MLflow's image card opens on, and where its slider starts
            with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
                self._log_images(0)
        for epoch in epochs:
            s.epoch = epoch
            self._train_epoch(epoch, stop)
            if self.world.main:
                print(f"epoch {epoch + 1}: validating {len(self.sets['valid'])} images …", flush=True)
            val = self.evaluate("valid")
            self.state.batch = 0
            self.state.epoch = epoch + 1
            if self.world.main:
                self._log(val, step=epoch + 1)
                self._log_images(epoch + 1)
                improved = self._is_best(val)
                if improved:
                    s.best = val[self.main_key]
                s.history.append({"epoch": epoch + 1, **val})
                self._save("last.pt", log=True)
                if improved:
                    self._save("best.pt", log=True)
                line = f"epoch {epoch + 1}/{t['epochs']}: " + ", ".join(f"{k}={v:.4g}" for k, v in val.items())
                tqdm.write(line) if epochs.disable is False else print(line, flush=True)
                if self.on_epoch is not None:
                    self.on_epoch(epoch + 1, val)

    def _train_epoch(self, epoch: int, stop: StopFlag) -> None:
        s, t = self.state, self.t
        if hasattr(self.task, "on_epoch_start"):  # optional: a plugin task need not subclass Task
            self.task.on_epoch_start(epoch, t["epochs"])
        order = dist.epoch_order(len(self.sets["train"]), seed=self.cfg["seed"], epoch=epoch, world=self.world,
                                 weights=self.weights)
        order = order[: self.steps_per_epoch * t["batch_size"]]
        gen = torch.Generator().manual_seed(self.cfg["seed"] * 7919 + epoch)
        batches = loader.batches(self.sets["train"], order, t["batch_size"], device=self.device,
                                 workers=self.cfg["data"]["workers"], generator=gen, skip=s.batch,
                                 channels_last=channels_last(self.device))
        self.task.model.train()
        bar = tqdm(batches, desc=f"epoch {epoch + 1}", unit="batch", leave=False, initial=s.batch,
                   total=self.steps_per_epoch, disable=None if self.world.main else True)
        seen, started = 0, time.perf_counter()
        for images, labels in bar:
            if self.cfg["data"]["augment"]:
                images = random_flips(images)
            with self.autocast:
                out = self.task.training_step(images, labels)
            loss = out["loss"]
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"the loss became {loss.item()} at step {s.step + 1} (epoch {epoch + 1}); the last good "
                    f"checkpoint is {self.run_dir / 'checkpoints' / 'last.pt'}. Lower train.lr or set train.grad_clip.")
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if t["grad_clip"]:
                nn.utils.clip_grad_norm_(self.model.parameters(), t["grad_clip"])
            self.optimizer.step()
            self.scheduler.step()
            s.step += 1
            if self.ema is not None:
                self.ema.update(self.model, step=s.step)
            s.batch += 1
            seen += len(images)
            rate = seen * self.world.size / max(time.perf_counter() - started, 1e-9)
            bar.set_postfix(loss=f"{loss.item():.4f}", img_s=f"{rate:.0f}")
            if bar.disable and self.world.main and s.batch % max(1, self.steps_per_epoch // 10) == 0:
                # no bar where the output is a log or CI: a line every tenth of the epoch instead
                print(f"epoch {epoch + 1}, batch {s.batch}/{self.steps_per_epoch}: loss={loss.item():.4g}, "
                      f"{rate:.0f} images/s", flush=True)
            # every log_every steps, and the last of each epoch: a short run still has its curves
            if self.world.main and (s.step % t["log_every"] == 0 or s.batch == self.steps_per_epoch):
                logs = {f"train/{k}": float(v.detach()) for k, v in out.items()}
                self._log({**logs, "train/lr": self.scheduler.get_last_lr()[0], "train/images_per_s": rate}, s.step)
            if t["checkpoint_every"] and s.step % t["checkpoint_every"] == 0 and self.world.main:
                self._save("last.pt", log=False)
            if stop.signum is not None:
                if self.world.main:
                    self._save("last.pt", log=True)
                raise Stopped(stop.signum)

    # -- evaluation -------------------------------------------------------------------------
    @contextlib.contextmanager
    def _evaluated(self):
        """The task sees the model it is scored with: the moving average where train.ema is on."""
        net = self.ema.module if self.ema is not None else self.model
        trained, self.task.model = self.task.model, net
        try:
            yield net.eval()
        finally:
            self.task.model = trained

    @torch.no_grad()
    def evaluate(self, split: str) -> dict[str, float]:
        with self._evaluated():
            return self._evaluate(split)

    def _evaluate(self, split: str) -> dict[str, float]:
        data = self.sets[split]
        share = dist.eval_share(len(data), self.world)
        parts: dict[str, list[np.ndarray]] = {}
        for images, labels in loader.batches(data, share, self.t["batch_size"], device=self.device,
                                             workers=self.cfg["data"]["workers"]):
            with self.autocast:
                out = self.task.eval_step(images, labels)
            for k, v in out.items():
                parts.setdefault(k, []).append(v.detach().float().cpu().numpy() if v.is_floating_point()
                                               else v.detach().cpu().numpy())
        outputs = {k: np.concatenate(v) for k, v in parts.items()}
        outputs = dist.gather(outputs, share, self.world)
        prefix = "val" if split == "valid" else split
        metrics = {f"{prefix}/{k}": float(v) for k, v in self.task.eval_metrics(outputs).items()}
        if split == "test":  # the number of items scored (under torchrun, every item exactly once), once:
            # per epoch it would only draw a flat line among the validation curves
            metrics["test/count"] = float(len(next(iter(outputs.values()), [])))
        return metrics

    def test(self) -> dict[str, float]:
        """The test split's metrics (``test/...``), logged with one timestamp (``tested_at``)."""
        self._load_served()
        self._after_fit()
        if self.world.main:
            print(f"scoring the test split ({len(self.sets['test'])} images) …", flush=True)
        metrics = self.evaluate("test")
        if self.world.main:
            # kept in the run folder: if the store is away, the outbox sends them later
            out = self.run_dir / "outputs"
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir(parents=True)
            with self._evaluated():
                extra = self.task.finalize(train_set=self.sets["train"], test_set=self.sets["test"], out=out,
                                           device=self.device)
            metrics.update({f"test/{k}": float(v) for k, v in extra.items()})
            if self.run:
                self.run.log_artifacts(out)
            # step 0: MLflow's UI charts a metric whose last step is 0 as one bar per run, the view
            # of a final score (at a step ≥ 1, each is a line of one dot)
            self.tested_at = self._log(metrics, step=0)
            print("test: " + ", ".join(f"{k.removeprefix('test/')}={v:.4g}" for k, v in sorted(metrics.items())),
                  flush=True)
            print(headline_table(type(self.task), {k: f"{v:.4g}" for k, v in metrics.items()}), flush=True)
        return metrics

    def _load_served(self) -> None:
        """Where the task serves ``best.pt`` (zoo/task.py's ``serves``), its weights and task state
        are what the test split scores: the model users load is the model whose scores they read."""
        if getattr(self.task, "serves", "best") != "best":
            return
        path = self.run_dir / "checkpoints" / "best.pt"
        state = checkpoint.inference_state(checkpoint.load(path)) if self.world.main and path.is_file() else None
        state = dist.broadcast(state, self.world)  # every rank scores its share with the same weights
        if state is None:
            return
        (self.ema.module if self.ema is not None else self.model).load_state_dict(state["model"])
        self.task.load_state_dict(state["task"])

    def _after_fit(self) -> None:
        """The task's post-hoc step with the served weights (classify's crt and tau_norm), on
        every rank alike; the task state it changes is written into the served checkpoint, so
        that every user of the run loads what the test split scores."""
        hook = getattr(self.task, "after_fit", None)  # optional: a plugin task need not subclass Task
        if hook is None:
            return
        with self._evaluated():
            if not hook(train_set=self.sets["train"], valid_set=self.sets["valid"], device=self.device):
                return
        # val/<main>_best (what sweeps and benches rank by) is then the served model's score
        self.state.best = self.evaluate("valid").get(self.main_key, self.state.best)
        path = next((self.run_dir / n for n in registry.served_checkpoints(self.cfg) if (self.run_dir / n).is_file()),
                    None)
        if self.world.main and path is not None:
            state = checkpoint.load(path)
            state["task"] = self.task.state_dict()
            checkpoint.save(path, state)
            if self.run:
                self.run.log_artifact(path, "checkpoints")

    # -- bookkeeping ------------------------------------------------------------------------
    def _is_best(self, val: dict[str, float]) -> bool:
        value = val.get(self.main_key)
        if value is None or not math.isfinite(value):
            return self.state.best is None
        if self.state.best is None:
            return True
        return value > self.state.best if self.task.greater_is_better else value < self.state.best

    def _log(self, metrics: dict[str, float], step: int) -> int | None:
        """Log ``metrics`` at ``step``; their timestamp (ms), None where nothing is recorded."""
        return self.run.log_metrics(metrics, step) if self.run else None

    def _log_images(self, epoch: int) -> None:
        data = self.sets["valid"]
        n = min(NUM_PREVIEW, len(data))
        if not n:
            return
        images, labels = next(loader.batches(data, np.arange(n), n, device=self.device))
        with self._evaluated(), self.autocast:
            grids = self.task.images(images, labels)
        for name, grid in grids.items():
            if self.run:
                self.run.log_step_image(grid, key=name, step=epoch)

    def _save(self, name: str, *, log: bool) -> None:
        path = self.run_dir / "checkpoints" / name
        reported = (self.ema.module if self.ema is not None else self.model).state_dict()
        checkpoint.save(path, {
            # "model" is what the run reports (and the dashboard and judges load); with train.ema,
            # "model_raw" holds the weights being trained where they differ, which a resume continues from
            "model": reported,
            **({"model_raw": checkpoint.trained_weights(self.model.state_dict(), reported)}
               if self.ema is not None else {}),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "task": self.task.state_dict(),
            "auxiliary": {name: aux.optimizer.state_dict() for name, aux in self.auxiliary.items()},
            "rng": checkpoint.rng_state(),
            "epoch": self.state.epoch,
            "step": self.state.step,
            "batch": self.state.batch,
            "best": self.state.best,
            "history": self.state.history,
            "run_id": self.run.id if self.run else "",
            "config": json.dumps(self.cfg),
        })
        if log and self.run:
            self.run.log_artifact(path, "checkpoints")


def headline_table(task_cls: Any, cells: dict[str, str]) -> str:
    """The task's headline test metrics that ``cells`` (``{"test/acc": "0.91", ...}``) holds, as a
    small Markdown table: what a run answers, at a glance, at the end of its output."""
    names = [m for m in getattr(task_cls, "headline_metrics", ()) if f"test/{m}" in cells]
    if not names:
        return ""
    width = max(map(len, names))
    rows = [f"| {'test metric':<{width}} | value |", f"|{'-' * (width + 2)}|-------|"]
    rows += [f"| {m:<{width}} | {cells[f'test/{m}']} |" for m in names]
    return "\n".join(rows)


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


def random_flips(images: torch.Tensor) -> torch.Tensor:
    """Each image of the batch mirrored left-right with probability 1/2 (data.augment)."""
    mask = torch.rand(images.shape[0], device="cpu") < 0.5
    return torch.where(mask.to(images.device)[:, None, None, None], images.flip(-1), images)


def _tags(logged: dict, device: torch.device, world: dist.World) -> dict[str, str]:
    """The run's tags, from its config.json (``logged``) and where it trains."""
    tags = {
        **entry_tags(logged),
        "zoo.classes": json.dumps(logged["classes"]),
        "zoo.device": f"{device.type}" + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""),
        "zoo.world_size": str(world.size),
        "zoo.seed": str(logged["seed"]),
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
