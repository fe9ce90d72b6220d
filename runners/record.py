"""Where a run is written: its MLflow run (metrics, stepped images, artifacts) and its checkpoints.

Rank 0 records; under torchrun the other ranks hold a :class:`Recorder` that writes nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import registry
from runners import checkpoint
from runners.tracking import Run
from zoo.fit import Fitter


@dataclass
class State:
    """Where training stands, as a checkpoint keeps it (the steps taken are the fitter's)."""

    epoch: int = 0  # the epoch in progress (or next to start)
    batch: int = 0  # batches of `epoch` already trained
    best: float | None = None  # the best validation value of the task's main metric so far
    history: list[dict] = field(default_factory=list)


@dataclass(eq=False)
class Recorder:
    run: Run | None  # None: the store is not written (another rank's recorder)
    folder: Path  # the run's local folder (checkpoints/, outputs/)
    cfg: dict

    def log(self, metrics: dict[str, float], step: int) -> int | None:
        """Log ``metrics`` at ``step``; their timestamp (ms), None where nothing is recorded."""
        return self.run.log_metrics(metrics, step) if self.run else None

    def images(self, grids: dict[str, np.ndarray], step: int) -> None:
        """Picture grids as MLflow's stepped images (its UI's slider over the epochs)."""
        for name, grid in grids.items():
            if self.run:
                self.run.log_step_image(grid, key=name, step=step)

    def checkpoint_path(self, name: str) -> Path:
        return self.folder / "checkpoints" / name

    def served(self) -> Path | None:
        """The checkpoint the run serves (registry.served_checkpoints), where it has been written."""
        return next((self.folder / n for n in registry.served_checkpoints(self.cfg) if (self.folder / n).is_file()),
                    None)

    def save(self, name: str, fitter: Fitter, state: State, *, log: bool) -> None:
        """``checkpoints/<name>``: the fitter's weights, steps and task state, where training stands,
        the random streams and the config; logged to MLflow where ``log``."""
        path = self.checkpoint_path(name)
        reported = fitter.reported.state_dict()
        model = fitter.steps["model"]
        checkpoint.save(path, {
            # "model" is what the run reports (and the dashboard and judges load); with train.ema,
            # "model_raw" holds the weights being trained where they differ, which a resume continues from
            "model": reported,
            **({"model_raw": checkpoint.trained_weights(fitter.model.state_dict(), reported)}
               if fitter.ema is not None else {}),
            "optimizer": model.optimizer.state_dict(),
            "scheduler": model.scheduler.state_dict(),
            "task": fitter.task.state_dict(),
            "auxiliary": {n: aux.step.state_dict() for n, aux in fitter.auxiliary.items()},
            "rng": checkpoint.rng_state(),
            "epoch": state.epoch,
            "step": fitter.taken,
            "batch": state.batch,
            "best": state.best,
            "history": state.history,
            "run_id": self.run.id if self.run else "",
            "config": json.dumps(self.cfg),
        })
        if log and self.run:
            self.run.log_artifact(path, "checkpoints")


def restore(ckpt: dict, fitter: Fitter) -> State:
    """A checkpoint's training state into ``fitter`` (weights, moving average, every step's
    optimizer and schedule, the task state, the random streams); where training stood."""
    fitter.model.load_state_dict(checkpoint.trained_state(ckpt))
    if fitter.ema is not None:
        fitter.ema.module.load_state_dict(ckpt["model"])
    fitter.steps["model"].load_state_dict({"optimizer": ckpt["optimizer"], "scheduler": ckpt["scheduler"]})
    fitter.task.load_state_dict(ckpt["task"])
    for name, state in checkpoint.auxiliary_states(ckpt).items():
        fitter.auxiliary[name].step.load_state_dict(state)
    checkpoint.set_rng_state(ckpt["rng"])
    fitter.taken = ckpt["step"]
    return State(ckpt["epoch"], ckpt["batch"], ckpt["best"], ckpt.get("history", []))
