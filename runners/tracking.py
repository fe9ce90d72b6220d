"""What a run leaves in MLflow (the schema in DESIGN.md), written by rank 0 only.

The store follows MLflow's own rules: ``MLFLOW_TRACKING_URI``, else ``sqlite:///mlflow.db`` in
the working folder, so ``mlflow ui`` and the dashboard started there see the same runs.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
from mlflow.data.code_dataset_source import CodeDatasetSource
from mlflow.data.meta_dataset import MetaDataset
from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME

from runners.config import flatten

PARAM_MAX = 6000  # MLflow's limit on a param value


class TrackingError(RuntimeError):
    """The tracking store cannot be reached or written."""


def check_store(timeout: float = 5.0) -> str:
    """The tracking URI, after checking that a remote server answers (a clear error if not)."""
    uri = mlflow.get_tracking_uri()
    if uri.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout) as reply:
                reply.read()
        except (urllib.error.URLError, OSError) as exc:
            raise TrackingError(
                f"the MLflow tracking server at {uri} does not answer ({exc}); start it, or unset "
                f"MLFLOW_TRACKING_URI to use the local store sqlite:///mlflow.db"
            ) from None
    return uri


class Run:
    """One MLflow run being written: params, tags, metrics, artifacts, status."""

    def __init__(self, run_id: str) -> None:
        self.id = run_id
        self.client = MlflowClient()

    @classmethod
    def start(cls, experiment: str, *, name: str | None = None, parent: str | None = None,
              resume: str | None = None) -> "Run":
        client = MlflowClient()
        if resume:
            client.update_run(resume, status="RUNNING")
            return cls(resume)
        exp = client.get_experiment_by_name(experiment)
        exp_id = exp.experiment_id if exp else client.create_experiment(experiment)
        tags = {MLFLOW_RUN_NAME: name} if name else {}
        if parent:
            tags[MLFLOW_PARENT_RUN_ID] = parent
        return cls(client.create_run(exp_id, tags=tags).info.run_id)

    def log_config(self, cfg: dict, tags: dict[str, str]) -> None:
        params = [Param(k, _param_value(v)) for k, v in flatten(cfg).items()]
        for i in range(0, len(params), 100):
            self.client.log_batch(self.id, params=params[i : i + 100])
        self.client.log_batch(self.id, tags=[RunTag(k, str(v)) for k, v in tags.items()])
        self.log_dict(cfg, "config.json")

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step) for k, v in metrics.items() if np.isfinite(v)]
        for i in range(0, len(batch), 500):
            self.client.log_batch(self.id, metrics=batch[i : i + 500])

    def log_dict(self, data: dict, path: str) -> None:
        self.client.log_dict(self.id, data, path)

    def log_artifacts(self, folder: Path, path: str | None = None) -> None:
        if any(folder.iterdir()):
            self.client.log_artifacts(self.id, str(folder), path)

    def log_artifact(self, file: Path, path: str | None = None) -> None:
        self.client.log_artifact(self.id, str(file), path)

    def log_image(self, image: np.ndarray, path: str) -> None:
        self.client.log_image(self.id, image, artifact_file=path)

    def log_dataset(self, dataset: Any, cfg_data: dict, context: str) -> None:
        """The dataset as a run input, with a digest of its labels and its source options."""
        labels = np.asarray(getattr(dataset, "labels", getattr(dataset, "targets", [])))
        digest = hashlib.sha256(json.dumps(cfg_data, sort_keys=True, default=str).encode() + labels.tobytes()).hexdigest()[:16]
        source = CodeDatasetSource({"dataset": cfg_data["name"], **{k: str(v) for k, v in cfg_data.items()}})
        mlflow_ds = MetaDataset(source, name=f"{cfg_data['name']}-{context}", digest=digest)
        with _active(self.id):
            mlflow.log_input(mlflow_ds, context=context)

    def end(self, status: str) -> None:
        self.client.set_terminated(self.id, status=status)

    def download(self, path: str) -> Path:
        dest = Path(tempfile.mkdtemp(prefix="artzoo-"))
        return Path(mlflow.artifacts.download_artifacts(run_id=self.id, artifact_path=path, dst_path=str(dest)))


class _active:
    """Make ``run_id`` the active fluent run for a call that only exists in the fluent API."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id

    def __enter__(self) -> None:
        mlflow.start_run(run_id=self.run_id)

    def __exit__(self, *exc) -> None:
        # leave the run's status alone: the runner sets it at the end
        mlflow.end_run(status="RUNNING")


def _param_value(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, (list, dict)) else str(value)
    return text if len(text) <= PARAM_MAX else text[: PARAM_MAX - 3] + "..."


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None
