"""A trained run, ready to predict: its task and network rebuilt from the run's ``config.json``
and checkpoint, wherever the run is named.

A run is named by its id, ``runs:/<id>`` (a trailing ``/model`` is allowed), or a Model
Registry URI, ``models:/<name>/<version>`` or ``models:/<name>@<alias>``, whose version points
back at the run that logged it. Used by ``python -m runners.predict``, the run's MLflow model
(runners/pyfunc.py) and the dashboard.
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path
from typing import Any

import torch
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

import registry
from runners import checkpoint
from runners.checkpoint import inference_state
from zoo.schema import Artifact

__all__ = ["ModelError", "build", "download", "inference_state", "load", "run_id_of"]

_RUN_ID = re.compile(r"[0-9a-f]{32}")


class ModelError(RuntimeError):
    """A run's model cannot be loaded; the message says why and what to do."""


def run_id_of(ref: str, client: MlflowClient | None = None) -> str:
    """The id of the run that ``ref`` names (see the module's docstring)."""
    client = client or MlflowClient()
    ref = ref.strip()
    try:
        if ref.startswith("models:/"):
            name, _, version = ref.removeprefix("models:/").partition("/")
            if "@" in name and not version:
                name, alias = name.split("@", 1)
                found = client.get_model_version_by_alias(name, alias)
            elif version.isdigit():
                found = client.get_model_version(name, version)
            else:
                raise ModelError(f"{ref!r} is not a registered model: write models:/<name>/<version> "
                                 f"or models:/<name>@<alias>")
            if not found.run_id:
                raise ModelError(f"{ref} was not logged by an artzoo run (its version names no run)")
            return found.run_id
        run_id = ref.removeprefix("runs:/").removesuffix("/model").strip("/")
        if not _RUN_ID.fullmatch(run_id):
            raise ModelError(f"{ref!r} names no run: give a run id (32 hex digits), runs:/<id>, "
                             f"models:/<name>/<version> or models:/<name>@<alias>")
        client.get_run(run_id)
        return run_id
    except MlflowException as exc:
        raise ModelError(f"{ref} is not in the tracking store {client.tracking_uri} "
                         f"({exc.message.splitlines()[0]}); list runs with `mlflow ui` or the dashboard, "
                         f"or set MLFLOW_TRACKING_URI to the store that has it") from None


def download(run_id: str, folder: str, client: MlflowClient | None = None) -> tuple[dict, Path]:
    """The run's config and the path of the checkpoint its task serves (zoo/task.py's ``serves``:
    the one its test metrics score; else the other), downloaded into ``folder``;
    :class:`ModelError` where either is missing."""
    client = client or MlflowClient()
    try:
        cfg = json.loads(Path(client.download_artifacts(run_id, Artifact.CONFIG, folder)).read_text())
    except (MlflowException, OSError, ValueError):
        raise ModelError(f"run {run_id} has no readable config.json: it was not made by runners.run, "
                         f"or its artifacts are gone") from None
    names = {f.path for f in client.list_artifacts(run_id, "checkpoints")}
    choices = registry.served_checkpoints(cfg)
    name = next((n for n in choices if n in names), None)
    if name is None:
        raise ModelError(f"run {run_id} has no checkpoint ({' or '.join(choices)}): it ended before its "
                         f"first epoch did; train it again, or continue it with "
                         f"`python -m runners.run {cfg.get('entry', 'ENTRY')} resume={run_id}`")
    return cfg, Path(client.download_artifacts(run_id, name, folder))


def load(ref: str, device: torch.device | str = "cpu", client: MlflowClient | None = None):
    """``(task, cfg, run_id)``: the task of the run ``ref`` names, its network loaded from the
    checkpoint it serves (:func:`download`) in eval mode on ``device``, and the run's config."""
    client = client or MlflowClient()
    run_id = run_id_of(ref, client)
    with tempfile.TemporaryDirectory(prefix="artzoo-predict-") as tmp:
        cfg, path = download(run_id, tmp, client)
        state = checkpoint.load(path)
    return build(cfg, state, device), cfg, run_id


def build(cfg: dict, state: dict[str, Any], device: torch.device | str = "cpu"):
    """The run's task around its network, weights loaded, in eval mode on ``device``
    (:func:`registry.trained`); :class:`ModelError` where it cannot be rebuilt."""
    try:
        return registry.trained(cfg, state, device)
    except (registry.PluginError, ValueError) as exc:
        raise ModelError(str(exc)) from None
