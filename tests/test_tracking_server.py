"""The runner against real tracking servers on loopback: the team setup from the README,
`mlflow server` on PostgreSQL with a served artifact store, and a server that is not there.
(A server on sqlite is the one tests/test_reliability.py takes away mid-run.)"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from mlflow.tracking import MlflowClient

from conftest import free_port, mlflow_server, postgres

TINY = ["train.log_model=false", "data.size=48", "data.image_size=32", "train.epochs=1", "train.batch_size=16"]


def train_against(uri: str) -> str:
    env = dict(os.environ, MLFLOW_TRACKING_URI=uri)
    out = subprocess.run([sys.executable, "-m", "runners.run", "cnn", *TINY], capture_output=True, text=True,
                         env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout.strip().splitlines()[-1].split()[1]


def assert_run_complete(uri: str, run_id: str) -> None:
    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert "test/acc" in run.data.metrics and run.data.tags["zoo.model"] == "cnn"
    names = {a.path for a in client.list_artifacts(run_id, "checkpoints")}
    assert {"checkpoints/last.pt", "checkpoints/best.pt"} <= names


@pytest.mark.slow
def test_unreachable_server_is_a_clear_error_before_training(tmp_path):
    env = dict(os.environ, MLFLOW_TRACKING_URI=f"http://127.0.0.1:{free_port()}")
    start = time.time()
    out = subprocess.run([sys.executable, "-m", "runners.run", "cnn", *TINY], capture_output=True, text=True,
                         env=env, timeout=120)
    assert out.returncode != 0
    assert "does not answer" in out.stderr and "MLFLOW_TRACKING_URI" in out.stderr
    assert "epoch 1" not in out.stdout
    assert time.time() - start < 60


@pytest.mark.slow
@pytest.mark.postgres
def test_runner_against_the_team_setup_postgres_and_served_artifacts(tmp_path):
    with postgres(tmp_path) as db, mlflow_server(db, tmp_path / "artifacts") as uri:
        run_id = train_against(uri)
        assert_run_complete(uri, run_id)
    assert any((tmp_path / "artifacts").rglob("last.pt")), "artifacts land in the served store"
