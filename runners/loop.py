"""The epochs of a run: train, validate, checkpoint, and at the end score the test split.

``fit`` and ``test`` take the run's parts as train() built them: a :class:`zoo.fit.Fitter` (what
trains and how), a :class:`Feed` (the splits and how they are batched), a
:class:`runners.record.Recorder` (where it is written) and the :class:`runners.record.State`.
"""

from __future__ import annotations

import math
import shutil
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from runners import checkpoint, dist, loader
from runners.record import Recorder, State
from runners.tracking import Killed
from zoo import schema
from zoo.fit import Fitter, NonFiniteLoss, channels_last

NUM_PREVIEW = 8  # validation images shown in the per-epoch grids


class Stopped(Killed):
    """SIGTERM or Ctrl-C arrived; the run was checkpointed and marked KILLED."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class Pruned(Killed):
    """Raised by an ``on_epoch`` callback to end a run early (a sweep's pruner): the run is
    checkpointed and marked KILLED, its tag ``zoo.stopped`` says why."""


class StopFlag:
    """Turns SIGTERM (and Ctrl-C) into a flag the loop checks between steps; once ``at_once`` is set
    (the run is past its last checkpoint: the test split, the analysis), into :class:`Stopped` at once."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.at_once = False  # raise Stopped from the handler, wherever the run is, rather than set the flag
        self._old: dict[int, Any] = {}

    def __enter__(self) -> "StopFlag":
        if threading.current_thread() is threading.main_thread():
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


@dataclass(eq=False)
class Feed:
    """The run's splits and how they are batched: each epoch's seeded order over the ranks (by the
    task's sample weights where it gives them), the split's share of each rank for evaluation."""

    sets: dict[str, Any]
    seed: int
    batch_size: int
    workers: int
    steps_per_epoch: int
    device: torch.device
    world: dist.World
    weights: np.ndarray | None = None

    def epoch(self, epoch: int, skip: int):
        """Batches of training epoch ``epoch`` (from 0), the first ``skip`` left out (a resume)."""
        order = dist.epoch_order(len(self.sets["train"]), seed=self.seed, epoch=epoch, world=self.world,
                                 weights=self.weights)
        order = order[: self.steps_per_epoch * self.batch_size]
        gen = torch.Generator().manual_seed(self.seed * 7919 + epoch)
        return loader.batches(self.sets["train"], order, self.batch_size, device=self.device, workers=self.workers,
                              generator=gen, skip=skip, channels_last=channels_last(self.device))

    def evaluation(self, split: str):
        """This rank's share of ``split`` in batches, and the share (to gather the results)."""
        share = dist.eval_share(len(self.sets[split]), self.world)
        return loader.batches(self.sets[split], share, self.batch_size, device=self.device,
                              workers=self.workers), share


def fit(fitter: Fitter, feed: Feed, record: Recorder, state: State, stop: StopFlag, epochs: int,
        on_epoch: Callable[[int, dict[str, float]], None] | None = None) -> None:
    """Train from where ``state`` stands to ``epochs``: each epoch trained, validated, logged and
    checkpointed (``best.pt`` where the task's main metric improved)."""
    main = feed.world.main
    bar = tqdm(range(state.epoch, epochs), desc="epochs", unit="epoch", disable=None if main else True,
               initial=state.epoch, total=epochs)
    if state.epoch == 0 and state.batch == 0 and main:
        # step 0, before training: what MLflow's image card opens on, and where its slider starts
        with torch.random.fork_rng(devices=[feed.device] if feed.device.type == "cuda" else []):
            record.images(preview(fitter, feed), 0)
    for epoch in bar:
        state.epoch = epoch
        train_epoch(fitter, feed, record, state, epoch, epochs, stop)
        if main:
            print(f"epoch {epoch + 1}: validating {len(feed.sets['valid'])} images …", flush=True)
        val = evaluate(fitter, feed, "valid")
        state.batch, state.epoch = 0, epoch + 1
        if not main:
            continue
        record.log(val, step=epoch + 1)
        record.images(preview(fitter, feed), epoch + 1)
        improved = is_best(fitter.task, state, val)
        if improved:
            state.best = val[main_key(fitter.task)]
        state.history.append({"epoch": epoch + 1, **val})
        record.save("last.pt", fitter, state, log=True)
        if improved:
            record.save("best.pt", fitter, state, log=True)
        line = f"epoch {epoch + 1}/{epochs}: " + ", ".join(f"{k}={v:.4g}" for k, v in val.items())
        tqdm.write(line) if bar.disable is False else print(line, flush=True)
        if on_epoch is not None:
            on_epoch(epoch + 1, val)


def train_epoch(fitter: Fitter, feed: Feed, record: Recorder, state: State, epoch: int, epochs: int,
                stop: StopFlag) -> None:
    t, main = record.cfg["train"], feed.world.main
    if hasattr(fitter.task, "on_epoch_start"):  # optional: a plugin task need not subclass Task
        fitter.task.on_epoch_start(epoch, epochs)
    fitter.task.model.train()
    bar = tqdm(feed.epoch(epoch, state.batch), desc=f"epoch {epoch + 1}", unit="batch", leave=False,
               initial=state.batch, total=feed.steps_per_epoch, disable=None if main else True)
    seen, started = 0, time.perf_counter()
    for images, labels in bar:
        try:
            out = fitter.train_step(images, labels)
        except NonFiniteLoss as exc:
            raise FloatingPointError(
                f"{exc} at step {fitter.taken + 1} (epoch {epoch + 1}); the last good checkpoint is "
                f"{record.checkpoint_path('last.pt')}. Lower train.lr or set train.grad_clip.") from None
        state.batch += 1
        seen += len(images)
        loss = out["loss"].item()
        rate = seen * feed.world.size / max(time.perf_counter() - started, 1e-9)
        bar.set_postfix(loss=f"{loss:.4f}", img_s=f"{rate:.0f}")
        if bar.disable and main and state.batch % max(1, feed.steps_per_epoch // 10) == 0:
            # no bar where the output is a log or CI: a line every tenth of the epoch instead
            print(f"epoch {epoch + 1}, batch {state.batch}/{feed.steps_per_epoch}: loss={loss:.4g}, "
                  f"{rate:.0f} images/s", flush=True)
        # every log_every steps, and the last of each epoch: a short run still has its curves
        if main and (fitter.taken % t["log_every"] == 0 or state.batch == feed.steps_per_epoch):
            logs = {schema.train(k): float(v.detach()) for k, v in out.items()}
            lr = fitter.steps["model"].scheduler.get_last_lr()[0]
            record.log({**logs, "train/lr": lr, "train/images_per_s": rate}, fitter.taken)
        if t["checkpoint_every"] and fitter.taken % t["checkpoint_every"] == 0 and main:
            record.save("last.pt", fitter, state, log=False)
        if stop.signum is not None:
            if main:
                record.save("last.pt", fitter, state, log=True)
            raise Stopped(stop.signum)


# -- evaluation -----------------------------------------------------------------------------------


@torch.no_grad()
def evaluate(fitter: Fitter, feed: Feed, split: str) -> dict[str, float]:
    """The task's metrics of ``split`` (``val/...`` for the validation split), every item scored
    once over the ranks, with the weights the run reports."""
    parts: dict[str, list[np.ndarray]] = {}
    batches, share = feed.evaluation(split)
    with fitter.evaluated():
        for images, labels in batches:
            with fitter.autocast:
                out = fitter.task.eval_step(images, labels)
            for k, v in out.items():
                parts.setdefault(k, []).append(v.detach().float().cpu().numpy() if v.is_floating_point()
                                               else v.detach().cpu().numpy())
        outputs = dist.gather({k: np.concatenate(v) for k, v in parts.items()}, share, feed.world)
        prefix = "val" if split == "valid" else split
        metrics = {f"{prefix}/{k}": float(v) for k, v in fitter.task.eval_metrics(outputs).items()}
    if split == "test":  # the number of items scored (under torchrun, every item exactly once), once:
        # per epoch it would only draw a flat line among the validation curves
        metrics["test/count"] = float(len(next(iter(outputs.values()), [])))
    return metrics


def preview(fitter: Fitter, feed: Feed) -> dict[str, np.ndarray]:
    """The task's picture grids of the first validation images, by the weights the run reports."""
    data = feed.sets["valid"]
    n = min(NUM_PREVIEW, len(data))
    if not n:
        return {}
    images, labels = next(loader.batches(data, np.arange(n), n, device=feed.device))
    with fitter.evaluated(), fitter.autocast:
        return fitter.task.images(images, labels)


def test(fitter: Fitter, feed: Feed, record: Recorder, state: State) -> tuple[dict[str, float], int | None]:
    """The test split's metrics (``test/...``) by the weights the run serves, after the task's
    post-hoc step, with the task's closing analysis (rank 0); and when they were logged (ms)."""
    _load_served(fitter, record, feed.world)
    _after_fit(fitter, feed, record, state)
    main = feed.world.main
    if main:
        print(f"scoring the test split ({len(feed.sets['test'])} images) …", flush=True)
    metrics = evaluate(fitter, feed, "test")
    if not main:
        return metrics, None
    # kept in the run folder: if the store is away, the outbox sends them later
    out = record.folder / "outputs"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    with fitter.evaluated():
        extra = fitter.task.finalize(train_set=feed.sets["train"], test_set=feed.sets["test"], out=out,
                                     device=feed.device)
    metrics.update({schema.test(k): float(v) for k, v in extra.items()})
    if record.run:
        record.run.log_artifacts(out)
    # step 0: MLflow's UI charts a metric whose last step is 0 as one bar per run, the view of a
    # final score (at a step ≥ 1, each is a line of one dot)
    tested_at = record.log(metrics, step=0)
    print("test: " + ", ".join(f"{k.removeprefix('test/')}={v:.4g}" for k, v in sorted(metrics.items())), flush=True)
    print(headline_table(type(fitter.task), {k: f"{v:.4g}" for k, v in metrics.items()}), flush=True)
    return metrics, tested_at


def _load_served(fitter: Fitter, record: Recorder, world: dist.World) -> None:
    """Where the task serves ``best.pt`` (zoo/task.py's ``serves``), its weights and task state
    are what the test split scores: the model users load is the model whose scores they read."""
    if getattr(fitter.task, "serves", "best") != "best":
        return
    path = record.checkpoint_path("best.pt")
    state = checkpoint.inference_state(checkpoint.load(path)) if world.main and path.is_file() else None
    state = dist.broadcast(state, world)  # every rank scores its share with the same weights
    if state is None:
        return
    fitter.reported.load_state_dict(state["model"])
    fitter.task.load_state_dict(state["task"])


def _after_fit(fitter: Fitter, feed: Feed, record: Recorder, state: State) -> None:
    """The task's post-hoc step with the served weights (classify's crt and tau_norm, cond_ae's
    dictionary marks), on every rank alike; the task state and the served weights it changes are
    written into the served checkpoint, so that every user of the run loads what the test split
    scores. Where the task asks (``after_fit_all_checkpoints``), the step is taken on the run's
    other checkpoints too, on rank 0, with their own weights."""
    hook = getattr(fitter.task, "after_fit", None)  # optional: a plugin task need not subclass Task

    def apply() -> bool:
        with fitter.evaluated():
            return bool(hook(train_set=feed.sets["train"], valid_set=feed.sets["valid"], device=feed.device))

    if hook is None or not apply():
        return
    # val/<main>_best (what sweeps and benches rank by) is then the served model's score
    state.best = evaluate(fitter, feed, "valid").get(main_key(fitter.task), state.best)
    path = record.served()
    if not feed.world.main or path is None:
        return
    _rewrite(path, fitter, record)
    if not getattr(fitter.task, "after_fit_all_checkpoints", False):
        return
    for other in sorted(path.parent.glob("*.pt")):
        if other != path:
            saved = checkpoint.load(other)
            fitter.reported.load_state_dict(saved["model"])
            fitter.task.load_state_dict(saved["task"])
            if apply():  # a checkpoint the step already holds (a run continued) is left as it is
                _rewrite(other, fitter, record)
    served = checkpoint.load(path)  # the test split scores the served model
    fitter.reported.load_state_dict(served["model"])
    fitter.task.load_state_dict(served["task"])


def _rewrite(path: Path, fitter: Fitter, record: Recorder) -> None:
    """The checkpoint at ``path`` with the fitter's reported weights and task state, written and
    logged again."""
    saved = checkpoint.load(path)
    saved["task"] = fitter.task.state_dict()
    saved["model"] = fitter.reported.state_dict()
    checkpoint.save(path, saved)
    if record.run:
        record.run.log_artifact(path, "checkpoints")


def main_key(task: Any) -> str:
    """The validation metric that picks ``best.pt``: ``val/<task.main_metric>``."""
    return schema.val(task.main_metric)


def is_best(task: Any, state: State, val: dict[str, float]) -> bool:
    value = val.get(main_key(task))
    if value is None or not math.isfinite(value):
        return state.best is None
    if state.best is None:
        return True
    return value > state.best if task.greater_is_better else value < state.best


def headline_table(task_cls: Any, cells: dict[str, str]) -> str:
    """The task's headline test metrics that ``cells`` (``{"test/acc": "0.91", ...}``) holds, as a
    small Markdown table: what a run answers, at a glance, at the end of its output."""
    names = [m for m in getattr(task_cls, "headline_metrics", ()) if schema.test(m) in cells]
    if not names:
        return ""
    width = max(map(len, names))
    rows = [f"| {'test metric':<{width}} | value |", f"|{'-' * (width + 2)}|-------|"]
    rows += [f"| {m:<{width}} | {cells[schema.test(m)]} |" for m in names]
    return "\n".join(rows)
