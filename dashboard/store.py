"""What the dashboard reads from MLflow: runs, metric histories, artifacts, and models rebuilt
from a run's ``config.json`` and checkpoint. The only module that talks to MLflow.

The store is found the way the runner finds it (MLflow's own rules: ``MLFLOW_TRACKING_URI``,
else ``sqlite:///mlflow.db`` in the working folder). Every loader takes the tracking URI as its
first argument so that Streamlit's caches never mix two stores.

Artifacts are downloaded once per (run, path) into ``<artzoo cache>/dashboard/`` and read from
there; a path is only ever opened inside that folder, never where a user points.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path
from typing import Any

# MLflow draws a progress bar on the server's terminal for every download.
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

import mlflow
import numpy as np
import pandas as pd
import streamlit as st
from mlflow.entities import Run, ViewType
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

import registry
from zoo.data import cache_root
from zoo.schema import Artifact, Tag

ENDED = {"FINISHED", "FAILED", "KILLED"}
# Runs still training rewrite some artifacts (checkpoints/last.pt); their copies expire after this.
LIVE_SECONDS = 30
_RUN_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class StoreError(RuntimeError):
    """The tracking store cannot be read; the message says where and why."""


def tracking_uri() -> str:
    return mlflow.get_tracking_uri()


def missing_sqlite(uri: str) -> Path | None:
    """The file of a ``sqlite:///`` store that does not exist yet (MLflow would create it)."""
    if not uri.startswith("sqlite:///"):
        return None
    path = Path(uri.removeprefix("sqlite:///"))
    return None if path.exists() else path


@st.cache_resource(show_spinner=False)
def client(uri: str) -> MlflowClient:
    return MlflowClient(tracking_uri=uri)


# -- runs ----------------------------------------------------------------------------------------


@st.cache_data(ttl=15, show_spinner="Reading runs…")
def runs(uri: str) -> pd.DataFrame:
    """One row per run across every experiment, newest first.

    Columns: run_id, name, experiment, entry, model, task, dataset, status, start (UTC
    datetime), duration_s, parent (run id or ""), multi_seed (whether the run is a multi-seed
    parent, which logs ``<metric>_mean`` and ``_std`` over its seeds), sweep ("grid" or "search"
    for a sweep's parent, else ""), then every metric's latest value.
    """
    if missing_sqlite(uri):
        return _frame([])
    _check_server(uri)
    c = client(uri)
    try:
        experiments = {e.experiment_id: e.name for e in c.search_experiments(view_type=ViewType.ACTIVE_ONLY)}
        found: list[Run] = []
        token = None
        while experiments:
            page = c.search_runs(list(experiments), max_results=1000, order_by=["attributes.start_time DESC"],
                                 page_token=token)
            found += page
            token = page.token
            if not token:
                break
    except Exception as exc:  # an unreachable server, a bad URI, a broken database
        raise StoreError(f"cannot read the tracking store {uri}: {type(exc).__name__}: {exc}") from None
    return _frame([_row(r, experiments.get(r.info.experiment_id, "?")) for r in found])


def _check_server(uri: str, timeout: float = 3.0) -> None:
    """Fail fast on a tracking server that does not answer (MLflow itself retries for minutes)."""
    if not uri.startswith(("http://", "https://")):
        return
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout) as reply:
            reply.read()
    except (urllib.error.URLError, OSError) as exc:
        raise StoreError(f"the tracking server at {uri} does not answer ({exc})") from None


def _row(r: Run, experiment: str) -> dict[str, Any]:
    tags, info = r.data.tags, r.info
    now = time.time() * 1000
    end = info.end_time or (now if info.status == "RUNNING" else None)
    return {
        "run_id": info.run_id,
        "name": info.run_name or info.run_id[:8],
        "experiment": experiment,
        "entry": tags.get(Tag.ENTRY, ""),
        "model": tags.get(Tag.MODEL, ""),
        "task": tags.get(Tag.TASK, ""),
        "dataset": tags.get(Tag.DATASET, ""),
        "status": info.status,
        "start": pd.to_datetime(info.start_time, unit="ms", utc=True) if info.start_time else pd.NaT,
        "duration_s": (end - info.start_time) / 1000 if end and info.start_time else np.nan,
        "parent": tags.get(MLFLOW_PARENT_RUN_ID, ""),
        "multi_seed": Tag.SEEDS in tags,
        "sweep": tags.get(Tag.SWEEP, ""),
        **r.data.metrics,
    }


def _frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    base = ["run_id", "name", "experiment", "entry", "model", "task", "dataset", "status", "start", "duration_s",
            "parent", "multi_seed", "sweep"]
    frame = pd.DataFrame(rows)
    for col in base:
        if col not in frame:
            frame[col] = pd.Series(dtype="datetime64[ns, UTC]" if col == "start" else object)
    # Known by its structure, never by a metric's name: any run may log a metric ending in _mean.
    # A parent of runs is a multi-seed run unless it is a sweep (of configurations or trials).
    frame["sweep"] = frame["sweep"].fillna("")
    frame["multi_seed"] = frame["multi_seed"].astype(bool) | (frame["run_id"].isin(frame["parent"]) & (frame["sweep"] == ""))
    return frame[base + sorted(c for c in frame.columns if c not in base)]


@st.cache_data(ttl=15, show_spinner=False)
def run_info(uri: str, run_id: str) -> dict[str, Any] | None:
    """Params, tags, latest metrics and status of one run, or None if the store has no such run."""
    try:
        r = client(uri).get_run(_check_id(run_id))
    except MlflowException:
        return None
    return {"params": dict(r.data.params), "tags": dict(r.data.tags), "metrics": dict(r.data.metrics),
            "status": r.info.status, "name": r.info.run_name or run_id[:8]}


@st.cache_data(ttl=15, show_spinner=False)
def history(uri: str, run_id: str, key: str) -> pd.DataFrame:
    """Every logged value of one metric: columns step, value."""
    points = client(uri).get_metric_history(_check_id(run_id), key)
    return pd.DataFrame({"step": [m.step for m in points], "value": [m.value for m in points]}).sort_values("step")


# -- artifacts -----------------------------------------------------------------------------------


@st.cache_data(ttl=15, show_spinner=False)
def artifact_paths(uri: str, run_id: str) -> list[str]:
    """Every artifact file of a run (relative paths), sorted; empty when it has none."""
    c, found, todo = client(uri), [], [""]
    try:
        while todo:
            for info in c.list_artifacts(_check_id(run_id), todo.pop() or None):
                (todo.append(info.path) if info.is_dir else found.append(info.path))
    except (MlflowException, OSError):
        return []
    return sorted(found)


def artifact_cache(uri: str) -> Path:
    """Where this store's artifacts are kept on this machine."""
    return cache_root() / "dashboard" / hashlib.sha256(uri.encode()).hexdigest()[:16]


def artifact(uri: str, run_id: str, path: str) -> Path | None:
    """The local copy of one artifact, downloaded on first use; None if the run lacks it.

    A run that has ended never changes, so its copies never go stale; while a run trains,
    copies are refreshed after :data:`LIVE_SECONDS` (it rewrites ``checkpoints/last.pt``).
    """
    root = artifact_cache(uri) / _check_id(run_id)
    local = (root / path).resolve()
    if Path(path).is_absolute() or ".." in Path(path).parts or not local.is_relative_to(root.resolve()):
        raise ValueError(f"artifact path {path!r} leaves the run's artifact folder")
    info = run_info(uri, run_id)
    ended = info is None or info["status"] in ENDED
    if local.is_file() and (ended or time.time() - local.stat().st_mtime < LIVE_SECONDS):
        return local
    if path not in artifact_paths(uri, run_id):
        return None
    root.mkdir(parents=True, exist_ok=True)
    # Download beside the final place and rename: two sessions may fetch the same file at once.
    with tempfile.TemporaryDirectory(dir=root, prefix=".download-") as tmp:
        try:
            fetched = Path(client(uri).download_artifacts(run_id, path, tmp))
        except (MlflowException, OSError):
            return None
        local.parent.mkdir(parents=True, exist_ok=True)
        os.replace(fetched, local)
    return local


@st.cache_data(show_spinner=False, max_entries=64)
def arrays(uri: str, run_id: str, path: str) -> dict[str, np.ndarray] | None:
    """A run's ``.npz`` artifact as arrays (never unpickled), or None if absent or unreadable."""
    local = artifact(uri, run_id, path)
    if local is None:
        return None
    try:
        with np.load(local, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile):
        return None


@st.cache_data(show_spinner=False)
def config(uri: str, run_id: str) -> dict[str, Any] | None:
    """The run's resolved ``config.json``, or None if absent or unreadable."""
    local = artifact(uri, run_id, Artifact.CONFIG)
    if local is None:
        return None
    try:
        return json.loads(local.read_text())
    except (OSError, ValueError):
        return None


@st.cache_data(show_spinner=False)
def table(uri: str, run_id: str, path: str) -> pd.DataFrame | None:
    """A CSV artifact (``tables/*.csv``), first column as the index; None if absent or unreadable."""
    local = artifact(uri, run_id, path)
    if local is None:
        return None
    try:
        # class names stay text: the digits' "0".."9" are names, not numbers
        frame = pd.read_csv(local, converters={0: str})
        return frame.set_index(frame.columns[0])
    except (OSError, ValueError, IndexError, pd.errors.ParserError):
        return None


# -- models --------------------------------------------------------------------------------------


class ModelError(RuntimeError):
    """A run's model cannot be rebuilt; the message says why."""


@st.cache_resource(show_spinner="Loading the model…", max_entries=8)
def task(uri: str, run_id: str) -> tuple[Any, dict[str, Any]]:
    """The run's task around its trained network, on the CPU in eval mode
    (:func:`registry.trained`), from ``config.json`` and the checkpoint its task serves (the
    one its test metrics score: registry.served_checkpoints), with the config: what its ``predict``
    answers. Raises :class:`ModelError` naming what is missing."""
    import torch

    cfg = config(uri, run_id)
    if cfg is None:
        raise ModelError("the run has no readable config.json")
    files = artifact_paths(uri, run_id)
    choices = registry.served_checkpoints(cfg)
    name = next((p for p in choices if p in files), None)
    ckpt = artifact(uri, run_id, name) if name else None
    if ckpt is None:
        raise ModelError(f"the run has no checkpoint ({' or '.join(choices)})")
    try:
        # A checkpoint is data, never code: no pickled objects are accepted.
        return registry.trained(cfg, torch.load(ckpt, map_location="cpu", weights_only=True)), cfg
    except (registry.PluginError, ValueError) as exc:
        raise ModelError(str(exc)) from None
    except (OSError, RuntimeError) as exc:
        raise ModelError(f"{name} cannot be read ({type(exc).__name__}: {exc})") from None


def clear() -> None:
    """Forget listings, metrics and models, which change while a run trains (downloaded files of
    ended runs never change and stay)."""
    for loader in (runs, run_info, history, artifact_paths, task):
        loader.clear()


def _check_id(run_id: str) -> str:
    if not _RUN_ID.match(run_id):
        raise ValueError(f"{run_id!r} is not a run id")
    return run_id



def in_sweep(frame: pd.DataFrame) -> pd.Series:
    """Which runs belong to a sweep: its configurations and trials, and their seed runs."""
    sweeps = set(frame.loc[frame["sweep"] != "", "run_id"])
    parent = dict(zip(frame["run_id"], frame["parent"]))
    member = set()
    for run_id in frame["run_id"]:
        up, seen = parent.get(run_id, ""), 0
        while up and seen < 3:  # a seed run's parent is a configuration, whose parent is the sweep
            if up in sweeps:
                member.add(run_id)
                break
            up, seen = parent.get(up, ""), seen + 1
    return frame["run_id"].isin(member)
