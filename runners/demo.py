"""``make demo``: train the default ``cond_ae`` on synthart, then say where to look.

    python -m runners.demo [key=value ...]     # the overrides of `python -m runners.run cond_ae`

The run itself is ``python -m runners.run cond_ae``'s, with its closing table of headline
numbers; this adds the two commands that show it, with the addresses of this very run.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

from runners import config
from runners.config import ConfigError
from runners.mlflow_app import APP_NAME

ENTRY = "cond_ae"
MLFLOW_UI = "http://127.0.0.1:5000"  # `mlflow ui`'s default address
DASHBOARD = "http://127.0.0.1:8501"  # streamlit's default port; dashboard/.streamlit keeps it on this machine


def main(argv: list[str] | None = None) -> int:
    try:
        cfg = config.resolve(ENTRY, list(sys.argv[1:] if argv is None else argv))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from mlflow.tracking import MlflowClient

    from runners import train

    started = time.perf_counter()
    result = train.train(cfg)
    minutes = (time.perf_counter() - started) / 60
    client = MlflowClient()
    run = client.get_run(result["run_id"])
    print(next_steps(run.info.experiment_id, run.info.run_id, minutes, training_minutes(client, run)))
    return 0


def training_minutes(client, run) -> float:
    """From the run's start to its last training step's metrics: the model's training, without the
    test analysis after it (which trains the judges when their cache is empty)."""
    last = max(m.timestamp for m in client.get_metric_history(run.info.run_id, "train/loss"))
    return (last - run.info.start_time) / 60_000


def next_steps(experiment_id: str, run_id: str, minutes: float, training: float) -> str:
    mlflow, streamlit = _command("mlflow"), _command("streamlit")
    return "\n".join([
        "",
        f"Done in {minutes:.1f} min: {training:.1f} training the model and validating it each epoch, the rest "
        f"scoring it on the test split (the first run here also trains the judges: the first during the first "
        f"validation, the panel's at the end). Look at it, from this folder:",
        f"  {mlflow} ui --app-name {APP_NAME}".ljust(46) + f"  {mlflow_link(experiment_id, run_id)}",
        f"  {streamlit} run dashboard/app.py".ljust(46) + f"  {DASHBOARD}/restyle?run={run_id}",
    ])


def mlflow_link(experiment_id: str, run_id: str) -> str:
    """The run's page in ``mlflow ui``, in its model-training view: MLflow 3.17's UI takes the view
    from the address or from the browser's last choice, not from the experiment's kind tag."""
    return f"{MLFLOW_UI}/#/experiments/{experiment_id}/runs/{run_id}?workflowType=machine_learning"


def _command(name: str) -> str:
    """``name`` as typed here: bare where the shell finds this environment's, else its path
    (``make demo`` runs in .venv without activating it)."""
    mine = Path(sys.executable).parent / name
    if shutil.which(name) == str(mine) or not mine.exists():
        return name
    return os.path.relpath(mine) if mine.is_relative_to(Path.cwd()) else str(mine)


if __name__ == "__main__":
    sys.exit(main())
