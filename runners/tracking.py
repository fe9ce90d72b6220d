"""What a run leaves in MLflow (the schema in docs/design.md), written by rank 0 only.

The store follows MLflow's own rules: ``MLFLOW_TRACKING_URI``, else ``sqlite:///mlflow.db`` in
the working folder, so ``mlflow ui`` and the dashboard started there see the same runs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
import traceback
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
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
from zoo.schema import Artifact, Tag

PARAM_MAX = 6000  # MLflow's limit on a param value
# Fail fast when a tracking server is away (MLflow's own default retries for minutes); the
# outbox keeps what could not be sent. A user's own settings win.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "15")


HEARTBEAT_S = 30.0  # a training process touches <run folder>/heartbeat.json this often
LOCKED_RETRY_S = 60.0  # how long a write waits out a sqlite file that another process holds


def entry_tags(cfg: dict) -> dict[str, str]:
    """What a run is of: the tags the dashboard and the MLflow UI group runs by."""
    return {Tag.ENTRY: cfg["entry"], Tag.MODEL: cfg["model"]["name"], Tag.TASK: cfg["task"]["name"],
            Tag.DATASET: cfg["data"]["name"]}


def runs_root() -> Path:
    """Local run folders (checkpoints first land here): ``$ARTZOO_RUNS``, else ./artzoo_runs."""
    return Path(os.environ.get("ARTZOO_RUNS", "artzoo_runs")).resolve()


class TrackingError(RuntimeError):
    """The tracking store cannot be reached or written."""


class Killed(Exception):
    """A stop that was asked for (SIGTERM, Ctrl-C, a sweep's pruner): the run it ends is KILLED,
    not FAILED, and can be resumed."""


@contextmanager
def tracked_run(experiment: str, *, name: str | None = None, parent: str | None = None,
                resume: str | None = None, system_metrics: bool = False, enabled: bool = True) -> Iterator[Run | None]:
    """A run for the block: started in ``experiment`` (or, with ``resume``, that run reopened),
    its heartbeat kept, and ended by how the block ends: FINISHED; KILLED by a :class:`Killed`
    or Ctrl-C; FAILED by any other exception, its traceback logged (``error.txt``, tag
    ``zoo.error``). What the store did not take stays in the run's outbox, and is reported.

    ``enabled=False`` (a torchrun rank other than 0) yields None and records nothing.
    """
    if not enabled:
        yield None
        return
    check_store()
    run = Run.start(experiment, name=name, parent=parent, resume=resume, local_root=runs_root())
    run.start_heartbeat()
    if system_metrics:
        run.start_system_metrics()
    try:
        yield run
    except (Killed, KeyboardInterrupt):
        run.end("KILLED")
        report_outbox(run)
        raise
    except BaseException as exc:
        with suppress(Exception):
            run.client.set_tag(run.id, Tag.ERROR, f"{type(exc).__name__}: {exc}"[:5000])
            run.client.log_text(run.id, "".join(traceback.format_exception(exc)), "error.txt")
        run.end("FAILED")
        report_outbox(run)
        raise
    run.end(run.final_status)
    report_outbox(run)


def report_outbox(run: Run) -> None:
    """Send what the run's outbox holds; if the store is still away, say where it is kept."""
    if not run.flush():
        print(f"the tracking store is still away: this run's records are kept in {run.outbox}; "
              f"send them with `python -m runners.sync {run.id}`", file=sys.stderr, flush=True)


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
        self._logged: dict[str, int] = {}  # on resume: the highest step already in the store, per metric
        self._beating: tuple[threading.Event, threading.Thread] | None = None
        self._system: Any = None  # MLflow's SystemMetricsMonitor, while it samples
        self.final_status = "FINISHED"  # what tracked_run ends the run with when its block ends normally

    @classmethod
    def start(cls, experiment: str, *, name: str | None = None, parent: str | None = None,
              resume: str | None = None, local_root: Path | None = None) -> "Run":
        """A new run in ``experiment`` (or, with ``resume``, :meth:`attach` plus :meth:`reopen`)."""
        if resume:
            run = cls.attach(resume, local_root=local_root)
            run.reopen()
            return run
        client = MlflowClient()
        exp_id = experiment_id(client, experiment)
        tags = {MLFLOW_RUN_NAME: name} if name else {}
        if parent:
            tags[MLFLOW_PARENT_RUN_ID] = parent
        run_id = _retry_locked(lambda: client.create_run(exp_id, tags=tags)).info.run_id
        return cls(run_id, local_root / run_id if local_root else None)

    @classmethod
    def attach(cls, run_id: str, *, local_root: Path | None = None) -> "Run":
        """An existing run, to continue it; its status is left alone until :meth:`reopen`.

        Refuses a run that a live process on this machine still trains (its heartbeat), and
        first sends what an earlier process kept in the outbox, so that records stay in order.
        """
        run = cls(run_id, local_root / run_id if local_root else None)
        beat = run.heartbeat()
        if beat and beat_alive(beat) and beat.get("pid") != os.getpid():
            raise TrackingError(
                f"run {run_id} is still being trained by process {beat['pid']} on this machine "
                f"(heartbeat {time.time() - beat['time']:.0f} s ago); stop it before resuming")
        run.flush()
        return run

    def reopen(self) -> None:
        """Mark the run RUNNING again and remember the last step logged for each metric.

        A process that died (SIGKILL, power loss) may have logged steps after its last
        checkpoint; resuming repeats those steps, and their metrics are not logged a second time
        (on the CPU a resumed step gives the very same numbers), so no step appears twice.
        """
        self._write("status_running")
        self._logged = self._last_steps()

    def _last_steps(self) -> dict[str, int]:
        try:
            data = self.client.get_run(self.id).data
        except Exception as exc:
            if unreachable(exc):
                return {}
            raise
        # once per resume: a history per key, through MLflow's public client
        return {k: max(m.step for m in self.client.get_metric_history(self.id, k)) for k in data.metrics}

    # -- writes (through the outbox) ---------------------------------------------------------
    def log_config(self, cfg: dict, tags: dict[str, str]) -> None:
        params = [[k, _param_value(v)] for k, v in flatten(cfg).items()]
        for i in range(0, len(params), 100):
            self._write("batch", params=params[i : i + 100])
        self.log_tags(tags)
        self.log_dict(cfg, Artifact.CONFIG)

    def log_metrics(self, metrics: dict[str, float], step: int, *, timestamp: int | None = None,
                    model_id: str | None = None, dataset: tuple[str, str] | None = None) -> int:
        """Log ``metrics`` at ``step``; returns their timestamp (ms). With ``model_id`` (a logged
        model of this run) and ``dataset`` (its name and digest: :func:`dataset_identity`), they
        are the model's scores on that dataset too: logged again with the timestamp they had, they
        add nothing to the run's own history (MLflow keeps one of a key, step, time and value)."""
        now = timestamp or int(time.time() * 1000)
        model = [model_id, *(dataset or (None, None))] if model_id else []
        batch = [[k, float(v), now, step, *model] for k, v in metrics.items()
                 if np.isfinite(v) and (model_id or step > self._logged.get(k, -(2**62)))]
        for i in range(0, len(batch), 500):
            self._write("batch", metrics=batch[i : i + 500])
        return now

    def log_dict(self, data: dict, path: str) -> None:
        self.log_text(json.dumps(data, indent=2, default=str), path)

    def log_text(self, text: str, path: str) -> None:
        file = self._local_file(path)
        file.write_text(text)
        self.log_artifact(file, str(Path(path).parent) if Path(path).parent != Path(".") else None)

    def log_tags(self, tags: dict[str, str]) -> None:
        self._write("batch", tags=[[k, str(v)] for k, v in tags.items()])

    def log_step_image(self, image: np.ndarray, key: str, step: int) -> None:
        """``image`` (H×W×3 uint8) as MLflow's image ``key`` at ``step``: what the MLflow UI's image
        slider steps through (``images/<key>+step+<step>+...png``; dashboard/ui.py reads them)."""
        from PIL import Image

        file = self._local_file(f"images/{key}-step{step}.png")
        Image.fromarray(image).save(file)
        self._write("image", file=str(file), key=key, step=step, timestamp=int(time.time() * 1000))

    def log_artifact(self, file: Path, path: str | None = None) -> None:
        self._write("artifact", file=str(file), path=path)

    def log_artifacts(self, folder: Path, path: str | None = None) -> None:
        if any(folder.iterdir()):
            self._write("artifacts", folder=str(folder), path=path)

    def end(self, status: str) -> None:
        self.stop_heartbeat()
        self.stop_system_metrics()
        self._write("status", status=status)

    # -- MLflow's system metrics (the UI's "System metrics" tab) -----------------------------
    def start_system_metrics(self) -> None:
        """Sample CPU, memory, disk and network use (and GPU, where NVIDIA's library finds one)
        with MLflow's own monitor, logged as ``system/*`` every
        ``MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL`` seconds (10 by default), from a thread.
        A resumed run continues its steps; a store that is away only costs the samples."""
        if self._system is not None:
            return
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

        logging.getLogger("mlflow.system_metrics").setLevel(logging.WARNING)  # not a line per start and stop
        try:
            self._system = SystemMetricsMonitor(self.id, resume_logging=True, tracking_uri=mlflow.get_tracking_uri())
            self._system.start()
        except Exception as exc:  # the samples are a help, never a reason to stop training
            self._system = None
            print(f"warning: no system metrics for this run: {type(exc).__name__}: {exc}", file=sys.stderr)

    def stop_system_metrics(self) -> None:
        if self._system is None:
            return
        self._system.finish()  # logs the samples it holds
        self._system = None

    # -- the heartbeat: how `runners.sync --mark-stale` tells a live run from a dead one ------
    @property
    def heartbeat_file(self) -> Path | None:
        return self.local / "heartbeat.json" if self.local else None

    def heartbeat(self) -> dict | None:
        """The last heartbeat of the process training this run on this machine, if any."""
        return read_heartbeat(self.heartbeat_file) if self.heartbeat_file else None

    def start_heartbeat(self, every: float = HEARTBEAT_S) -> None:
        """Write ``heartbeat.json`` (pid, host, time) now, then every ``every`` seconds from a
        thread, so that it keeps beating through long evaluations; it stops with the process."""
        if self.heartbeat_file is None or self._beating is not None:
            return
        file, stop = self.heartbeat_file, threading.Event()

        def beat() -> None:
            try:
                _write_json(file, {"pid": os.getpid(), "host": socket.gethostname(), "time": time.time()})
            except OSError:
                pass  # a full disk must not stop training; the beat is only a hint

        def loop() -> None:
            while not stop.wait(every):
                beat()

        beat()
        thread = threading.Thread(target=loop, name=f"artzoo-heartbeat-{self.id}", daemon=True)
        thread.start()
        self._beating = (stop, thread)

    def stop_heartbeat(self) -> None:
        """Stop beating and remove the heartbeat: the run is no longer being trained here."""
        if self._beating is None:
            return
        stop, thread = self._beating
        stop.set()
        thread.join(timeout=5)
        self._beating = None
        self.heartbeat_file.unlink(missing_ok=True)

    def log_dataset(self, dataset: Any, cfg_data: dict, context: str) -> None:
        """The dataset as a run input, with a digest of its labels and its source options."""
        name, digest = dataset_identity(dataset, cfg_data, context)
        source = CodeDatasetSource({"dataset": cfg_data["name"], **{k: str(v) for k, v in cfg_data.items()}})
        mlflow_ds = MetaDataset(source, name=name, digest=digest)
        try:
            with _active(self.id):
                mlflow.log_input(mlflow_ds, context=context)
        except Exception as exc:  # a missing input record is no reason to stop training
            print(f"warning: could not log the {context} dataset as a run input: {exc}", file=sys.stderr)

    def download(self, path: str, dest: Path) -> Path:
        """The run's artifact ``path``, downloaded under ``dest`` (which the caller owns)."""
        dest.mkdir(parents=True, exist_ok=True)
        return Path(mlflow.artifacts.download_artifacts(run_id=self.id, artifact_path=path, dst_path=str(dest)))

    # -- the outbox ----------------------------------------------------------------------------
    @property
    def outbox(self) -> Path | None:
        return self.local / "outbox.jsonl" if self.local else None

    @property
    def offline(self) -> bool:
        return self._offline_since is not None

    def _write(self, op: str, **payload: Any) -> None:
        # What an outbox holds goes first (kept while offline, or by an earlier process of this
        # run): a record never overtakes an older one, so a kept status cannot land last.
        if self._pending() and not self.flush(force=not self.offline):
            self._keep(op, payload)
            self._went_offline()
            return
        try:
            self._send(op, payload)
        except Exception as exc:
            if self.outbox is None or not unreachable(exc):
                raise
            self._keep(op, payload)
            self._went_offline(exc)

    def _pending(self) -> bool:
        return self.outbox is not None and self.outbox.exists()

    def _went_offline(self, exc: BaseException | None = None) -> None:
        if self.offline:
            return
        self._offline_since = self._last_try = time.time()
        why = f" ({type(exc).__name__})" if exc else ""
        print(f"warning: the tracking store does not answer{why}; training goes on, and what the run "
              f"logs is kept in {self.outbox} until it answers again (or send it later with "
              f"`python -m runners.sync {self.id}`)", file=sys.stderr, flush=True)

    def _send(self, op: str, p: dict) -> None:
        _retry_locked(lambda: self._send_once(op, p))

    def _send_once(self, op: str, p: dict) -> None:
        if op == "batch":
            self.client.log_batch(
                self.id,
                metrics=[_metric(*m) for m in p.get("metrics", [])],
                params=[Param(k, v) for k, v in p.get("params", [])],
                tags=[RunTag(k, v) for k, v in p.get("tags", [])],
            )
        elif op == "image":
            from PIL import Image

            with Image.open(p["file"]) as image:
                self.client.log_image(self.id, image.copy(), key=p["key"], step=p["step"], timestamp=p["timestamp"],
                                      synchronous=True)
        elif op == "artifact":
            self.client.log_artifact(self.id, p["file"], p["path"])
        elif op == "artifacts":
            self.client.log_artifacts(self.id, p["folder"], p["path"])
        elif op == "status":
            self.client.set_terminated(self.id, status=p["status"])
        elif op == "status_running":
            self.client.update_run(self.id, status="RUNNING")
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
        records = _read_outbox(self.outbox)
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
        if self.local is None:
            raise TrackingError(f"run {self.id} was opened to read; it has no local folder to write {path} in")
        file = self.local / "logged" / path
        file.parent.mkdir(parents=True, exist_ok=True)
        return file


def _read_outbox(path: Path) -> list[dict]:
    """The outbox's records; a line cut short by a crash mid-append is dropped, with a warning."""
    records = []
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            print(f"warning: {path} line {number} is cut short (the process died while writing it); "
                  f"skipped: {line[:80]!r}", file=sys.stderr, flush=True)
    return records


def dataset_identity(dataset: Any, cfg_data: dict, context: str) -> tuple[str, str]:
    """The name and digest a split is logged under (a run input, a model's scores on it): the
    dataset's name and the split's context, and a digest of its labels and its source options."""
    labels = np.asarray(getattr(dataset, "labels", getattr(dataset, "targets", [])))
    digest = hashlib.sha256(json.dumps(cfg_data, sort_keys=True, default=str).encode() + labels.tobytes()).hexdigest()[:16]
    return f"{cfg_data['name']}-{context}", digest


def _metric(key: str, value: float, timestamp: int, step: int, model_id: str | None = None,
            dataset_name: str | None = None, dataset_digest: str | None = None) -> Metric:
    """An outbox record as MLflow's Metric (the model's fields absent from older records)."""
    return Metric(key, value, timestamp, step, model_id=model_id, dataset_name=dataset_name,
                  dataset_digest=dataset_digest)


# What an experiment holds, for MLflow: model training, not GenAI (traces, prompts). MLflow 3.17's
# UI does not read it (runners/mlflow_app.py sets the view); its search and later UIs do.
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")


def experiment_id(client: MlflowClient, name: str) -> str:
    """The id of experiment ``name``, made if needed and marked as model training; two processes
    making it at once both get it."""
    key, kind = EXPERIMENT_KIND
    exp = _retry_locked(lambda: client.get_experiment_by_name(name))
    if exp is None:
        try:
            return _retry_locked(lambda: client.create_experiment(name, tags={key: kind}))
        except MlflowException:
            exp = client.get_experiment_by_name(name)  # another process made it first
            if exp is None:
                raise
    if exp.tags.get(key) is None:  # made by an older artzoo, or by hand: a user's own kind is kept
        _retry_locked(lambda: client.set_experiment_tag(exp.experiment_id, key, kind))
    return exp.experiment_id


def _retry_locked(call, wait: float = LOCKED_RETRY_S):
    """``call()``, waiting out "database is locked": a sqlite store written by several processes
    at once admits one writer at a time, and the others' writes wait their turn."""
    deadline, pause = time.monotonic() + wait, 0.05
    while True:
        try:
            return call()
        except MlflowException as exc:
            if "database is locked" not in str(exc) or time.monotonic() > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 1.0)


# -- heartbeats ----------------------------------------------------------------------------------


def read_heartbeat(file: Path) -> dict | None:
    try:
        beat = json.loads(file.read_text())
        return beat if isinstance(beat, dict) and {"pid", "host", "time"} <= set(beat) else None
    except (OSError, ValueError):
        return None


def beat_alive(beat: dict, every: float = HEARTBEAT_S) -> bool:
    """Whether a heartbeat comes from a live process on this machine (one that beat recently:
    an old beat whose pid is alive is a pid the system has since given to another process)."""
    if beat.get("host") != socket.gethostname() or time.time() - beat["time"] > 3 * every + 60:
        return False
    return pid_alive(int(beat["pid"]))


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (dead, not yet reaped by its parent) is not alive
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


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
