"""The runner against real tracking servers on loopback: `mlflow server` on sqlite, and the
team setup from the README, `mlflow server` on PostgreSQL with a served artifact store."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from conftest import free_port, mlflow_server, skip_unless

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
def test_runner_against_an_mlflow_server_on_loopback(tmp_path):
    with mlflow_server(f"sqlite:///{tmp_path / 'server.db'}", tmp_path / "artifacts") as uri:
        run_id = train_against(uri)
        assert_run_complete(uri, run_id)
    assert (tmp_path / "artifacts").exists()


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


def _pg_bin() -> Path | None:
    """The folder of the server tools: Debian keeps initdb and createdb beside pg_ctl, off PATH."""
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    if versions:
        return versions[-1].parent
    found = shutil.which("pg_ctl")
    return Path(found).resolve().parent if found else None  # a symlink on PATH points into them


@contextmanager
def postgres(tmp_path: Path):
    """A throwaway PostgreSQL server on loopback, run as the `postgres` user when we are root."""
    bindir = _pg_bin()
    skip_unless(bindir is not None, "PostgreSQL server binaries (Debian's postgresql) are not installed")
    # pytest's tmp folders are private to their owner; the server may run as another user
    home = Path(tempfile.mkdtemp(prefix="artzoo-pg-"))
    home.chmod(0o777)
    data, port = home / "pgdata", free_port()
    as_user: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        as_user = ["runuser", "-u", "postgres", "--"]
    subprocess.run([*as_user, str(bindir / "initdb"), "-D", str(data), "-U", "artzoo", "--auth=trust", "-E", "UTF8"],
                   check=True, capture_output=True)
    subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-l", str(home / "pg.log"), "-w", "start",
                    "-o", f"-p {port} -k {home} -c listen_addresses=127.0.0.1"], check=True, capture_output=True)
    try:
        subprocess.run([str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "artzoo", "mlflow"],
                       check=True, capture_output=True)
        yield f"postgresql://artzoo@127.0.0.1:{port}/mlflow"
    finally:
        subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"], capture_output=True)
        shutil.rmtree(home, ignore_errors=True)


@pytest.mark.slow
@pytest.mark.postgres
def test_runner_against_the_team_setup_postgres_and_served_artifacts(tmp_path):
    with postgres(tmp_path) as db, mlflow_server(db, tmp_path / "artifacts") as uri:
        run_id = train_against(uri)
        assert_run_complete(uri, run_id)
    assert any((tmp_path / "artifacts").rglob("last.pt")), "artifacts land in the served store"
