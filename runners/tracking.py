"""What a run leaves in MLflow (the schema in DESIGN.md), written by rank 0 only.

The store follows MLflow's own rules: ``MLFLOW_TRACKING_URI``, else ``sqlite:///mlflow.db`` in
the working folder, so ``mlflow ui`` and the dashboard started there see the same runs.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
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
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME

from runners.config import flatten

PARAM_MAX = 6000  # MLflow's limit on a param value
# Fail fast when a tracking server is away (MLflow's own default retries for minutes); the
# outbox keeps what could not be sent. A user's own settings win.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "15")


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
    """One MLflow run being written: params, tags, metrics, artifacts, status.

    Every write that fails because the store is unreachable is kept in an outbox
    (``<run folder>/outbox.jsonl``, beside the local checkpoints) and training carries on; the
    outbox is sent as soon as the store answers again, at the end of the run, or by
    ``python -m runners.sync RUN_ID``.
    """

    RETRY_S = 20.0  # while offline, try the store again at most this often

    def __init__(self, run_id: str, local: Path | None = None) -> None:
        self.id = run_id
        self.client = MlflowClient()
        self.local = local
        self._offline_since: float | None = None
        self._last_try = 0.0

    @classmethod
    def start(cls, experiment: str, *, name: str | None = None, parent: str | None = None,
              resume: str | None = None, local_root: Path | None = None) -> "Run":
        client = MlflowClient()
        if resume:
            client.update_run(resume, status="RUNNING")
            run_id = resume
        else:
            exp = client.get_experiment_by_name(experiment)
            exp_id = exp.experiment_id if exp else client.create_experiment(experiment)
            tags = {MLFLOW_RUN_NAME: name} if name else {}
            if parent:
                tags[MLFLOW_PARENT_RUN_ID] = parent
            run_id = client.create_run(exp_id, tags=tags).info.run_id
        return cls(run_id, local_root / run_id if local_root else None)

    # -- writes (through the outbox) ---------------------------------------------------------
    def log_config(self, cfg: dict, tags: dict[str, str]) -> None:
        params = [[k, _param_value(v)] for k, v in flatten(cfg).items()]
        for i in range(0, len(params), 100):
            self._write("batch", params=params[i : i + 100])
        self._write("batch", tags=[[k, str(v)] for k, v in tags.items()])
        self.log_dict(cfg, "config.json")

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        now = int(time.time() * 1000)
        batch = [[k, float(v), now, step] for k, v in metrics.items() if np.isfinite(v)]
        for i in range(0, len(batch), 500):
            self._write("batch", metrics=batch[i : i + 500])

    def log_dict(self, data: dict, path: str) -> None:
        file = self._local_file(path)
        file.write_text(json.dumps(data, indent=2, default=str))
        self.log_artifact(file, str(Path(path).parent) if Path(path).parent != Path(".") else None)

    def log_image(self, image: np.ndarray, path: str) -> None:
        from PIL import Image

        file = self._local_file(path)
        Image.fromarray(image).save(file)
        self.log_artifact(file, str(Path(path).parent))

    def log_artifact(self, file: Path, path: str | None = None) -> None:
        self._write("artifact", file=str(file), path=path)

    def log_artifacts(self, folder: Path, path: str | None = None) -> None:
        if any(folder.iterdir()):
            self._write("artifacts", folder=str(folder), path=path)

    def end(self, status: str) -> None:
        self._write("status", status=status)

    def log_dataset(self, dataset: Any, cfg_data: dict, context: str) -> None:
        """The dataset as a run input, with a digest of its labels and its source options."""
        labels = np.asarray(getattr(dataset, "labels", getattr(dataset, "targets", [])))
        digest = hashlib.sha256(json.dumps(cfg_data, sort_keys=True, default=str).encode() + labels.tobytes()).hexdigest()[:16]
        source = CodeDatasetSource({"dataset": cfg_data["name"], **{k: str(v) for k, v in cfg_data.items()}})
        mlflow_ds = MetaDataset(source, name=f"{cfg_data['name']}-{context}", digest=digest)
        try:
            with _active(self.id):
                mlflow.log_input(mlflow_ds, context=context)
        except Exception as exc:  # a missing input record is no reason to stop training
            print(f"warning: could not log the {context} dataset as a run input: {exc}", file=sys.stderr)

    def download(self, path: str) -> Path:
        dest = Path(tempfile.mkdtemp(prefix="artzoo-"))
        return Path(mlflow.artifacts.download_artifacts(run_id=self.id, artifact_path=path, dst_path=str(dest)))

    # -- the outbox ----------------------------------------------------------------------------
    @property
    def outbox(self) -> Path | None:
        return self.local / "outbox.jsonl" if self.local else None

    @property
    def offline(self) -> bool:
        return self._offline_since is not None

    def _write(self, op: str, **payload: Any) -> None:
        if self.offline and not self.flush(force=False):
            self._keep(op, payload)
            return
        try:
            self._send(op, payload)
        except Exception as exc:
            if self.outbox is None or not unreachable(exc):
                raise
            self._keep(op, payload)
            if not self.offline:
                self._offline_since = self._last_try = time.time()
                print(f"warning: the tracking store does not answer ({type(exc).__name__}); training goes on, "
                      f"and what the run logs is kept in {self.outbox} until it answers again",
                      file=sys.stderr, flush=True)

    def _send(self, op: str, p: dict) -> None:
        if op == "batch":
            self.client.log_batch(
                self.id,
                metrics=[Metric(k, v, ts, step) for k, v, ts, step in p.get("metrics", [])],
                params=[Param(k, v) for k, v in p.get("params", [])],
                tags=[RunTag(k, v) for k, v in p.get("tags", [])],
            )
        elif op == "artifact":
            self.client.log_artifact(self.id, p["file"], p["path"])
        elif op == "artifacts":
            self.client.log_artifacts(self.id, p["folder"], p["path"])
        elif op == "status":
            self.client.set_terminated(self.id, status=p["status"])
        else:
            raise ValueError(f"unknown outbox record {op!r}")

    def _keep(self, op: str, payload: dict) -> None:
        self.outbox.parent.mkdir(parents=True, exist_ok=True)
        with self.outbox.open("a") as f:
            f.write(json.dumps({"op": op, **payload}) + "\n")

    def flush(self, *, force: bool = True) -> bool:
        """Send what the outbox holds; True when it is empty afterwards."""
        if self.outbox is None or not self.outbox.exists():
            self._offline_since = None
            return True
        if not force and time.time() - self._last_try < self.RETRY_S:
            return False
        self._last_try = time.time()
        records = [json.loads(line) for line in self.outbox.read_text().splitlines() if line.strip()]
        for i, record in enumerate(records):
            try:
                self._send(record["op"], record)
            except Exception as exc:
                if not unreachable(exc):
                    raise
                _rewrite(self.outbox, records[i:])
                return False
        self.outbox.unlink()
        if self.offline:
            print(f"the tracking store answers again; sent {len(records)} kept record(s)", file=sys.stderr, flush=True)
        self._offline_since = None
        return True

    def _local_file(self, path: str) -> Path:
        root = self.local if self.local else Path(tempfile.mkdtemp(prefix="artzoo-"))
        file = root / "logged" / path
        file.parent.mkdir(parents=True, exist_ok=True)
        return file


class _active:
    """Make ``run_id`` the active fluent run for a call that only exists in the fluent API."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id

    def __enter__(self) -> None:
        mlflow.start_run(run_id=self.run_id)

    def __exit__(self, *exc) -> None:
        # leave the run's status alone: the runner sets it at the end
        mlflow.end_run(status="RUNNING")


def unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` means the store is away (worth keeping the write for later), not a bad write."""
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return True
    text = str(exc)
    # MLflow wraps transport failures of its REST client, and a busy sqlite file, in MlflowException
    return isinstance(exc, MlflowException) and any(
        s in text for s in ("failed with exception", "Max retries exceeded", "database is locked"))


def _rewrite(path: Path, records: list[dict]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in records))
    os.replace(tmp, path)


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
