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


def load(path: Path | str) -> dict[str, Any]:
    """Read a checkpoint as data; a file crafted to run code on load is refused."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(
            f"{path} is not a loadable artzoo checkpoint (it is read with weights_only=True, "
            f"which refuses anything but tensors and plain values): {exc}"
        ) from exc


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
