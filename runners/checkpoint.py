"""Checkpoints: written atomically, read back as data only (``torch.load(weights_only=True)``).

A checkpoint holds what an exact resume needs: model, optimizer, scheduler and task state, the
random number generators, the epoch and step reached, and the MLflow run id. Everything in it
is a tensor or a plain Python value, so the safe unpickler accepts it and nothing in it can run
code on load.
"""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch


def save(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` through a temporary file and a rename: never half-written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)  # the rename itself survives a power loss
    # a writer killed mid-save (SIGKILL, power loss) left its temporary file: never read, now removed
    for stale in path.parent.glob(f".{path.name}.*"):
        stale.unlink(missing_ok=True)


def inference_state(state: dict[str, Any]) -> dict[str, Any]:
    """The part of a checkpoint that prediction needs: the reported weights and the task's state
    (a style network, a critic), not the optimizers' moments or the random generators."""
    return {"model": state["model"], "task": state.get("task", {})}


def trained_weights(raw: dict[str, torch.Tensor], reported: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``raw`` (the weights being trained, beside the ``reported`` moving average) less the tensors
    that equal the reported ones: buffers the average copies rather than averages (an exemplar
    bank of tiles, counters) are then stored once, not twice."""
    return {k: v for k, v in raw.items()
            if not (k in reported and v.dtype == reported[k].dtype and v.shape == reported[k].shape
                    and torch.equal(v, reported[k]))}


def trained_state(state: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The weights being trained that a checkpoint holds (:func:`trained_weights` undone)."""
    raw = state.get("model_raw")
    return state["model"] if raw is None else {**state["model"], **raw}


def auxiliary_states(state: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The steps of a task's auxiliary networks as a checkpoint keeps them, ``{name: {"optimizer":
    ..., "scheduler": ...}}``, from any of the layouts checkpoints have had: an optimizer's state
    alone per name (before schedules), or inside the task state as ``<name>_opt`` (before the
    runner stepped them; a critic's as ``critic_opt``, a style network's as ``style_opt``)."""
    found = {}
    for name, saved in state.get("auxiliary", {}).items():
        found[name] = saved if "optimizer" in saved else {"optimizer": saved, "scheduler": None}
    for key, saved in state.get("task", {}).items():
        name = key.removesuffix("_opt")
        if key.endswith("_opt") and saved and name not in found:
            found[name] = {"optimizer": saved, "scheduler": None}
    return found


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # not every file system syncs a folder
    finally:
        os.close(fd)


def load(path: Path | str) -> dict[str, Any]:
    """Read a checkpoint as data; a file crafted to run code on load is refused, never run."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(
            f"{path} is not a loadable artzoo checkpoint ({_why(exc)}); checkpoints are read as data only "
            f"(torch.load with weights_only=True), so a file that names code to run on load is refused, never run"
        ) from exc


def _why(exc: Exception) -> str:
    """The line of torch's refusal that says what was refused (not its advice to load unsafely)."""
    text = str(exc)
    for line in text.splitlines():
        line = line.strip()
        if line.startswith(("Trying to load unsupported GLOBAL", "Unsupported")):
            return line.rstrip(".")
    if "Weights only load failed" in text:
        return "it holds something other than tensors and plain values"
    return text.splitlines()[0].rstrip(".") if text else type(exc).__name__


def rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": (np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(_tuples(state["python"]))
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _tuples(value: Any) -> Any:
    # the safe unpickler may hand back lists where random.setstate wants tuples
    return tuple(_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value
