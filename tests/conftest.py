"""Shared fixtures: every test gets its own caches and MLflow store, never the user's."""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

# Under pytest-xdist each worker gets its share of the cores: torch's default (a thread per core
# in every worker and in every run it starts as a subprocess) oversubscribes them, and OpenMP
# threads that wait on each other spin, which made single tests five times slower in the suite
# than alone.
if os.environ.get("PYTEST_XDIST_WORKER_COUNT") and "OMP_NUM_THREADS" not in os.environ:
    from threadpoolctl import threadpool_limits

    _share = max(1, len(os.sched_getaffinity(0)) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))
    os.environ["OMP_NUM_THREADS"] = str(_share)  # what loads from here on, and the subprocesses
    threadpool_limits(_share)  # what has loaded: numpy's BLAS
import torch  # noqa: E402  (after OMP_NUM_THREADS: OpenMP reads it when it loads)

# every test starts with these (a bench run in-process sets its own), so that a run in the test's
# process and one it starts as a subprocess sum floats in the same order
THREADS = torch.get_num_threads()

# Tests that need a system package skip where it is absent; CI sets ARTZOO_REQUIRE_ALL=1 so that
# such a skip fails instead (CI installs every package).
REQUIRE_ALL = os.environ.get("ARTZOO_REQUIRE_ALL") == "1"
REPO = Path(__file__).resolve().parents[1]


def skip_unless(condition: bool, reason: str) -> None:
    """Skip the calling test with ``reason`` unless ``condition``; under CI, fail instead."""
    if condition:
        return
    if REQUIRE_ALL:
        pytest.fail(f"ARTZOO_REQUIRE_ALL=1 but {reason}")
    pytest.skip(reason)


def have(program: str) -> bool:
    return shutil.which(program) is not None


# What a run of the suite may leave in the checkout: caches it is told to keep there (the
# Makefile's NUMBA_CACHE_DIR), bytecode and the install itself. Anything else is a test writing
# outside its temporary folder.
_TREE_CACHES = ("__pycache__", ".pytest_cache", ".numba_cache", ".venv", ".egg-info")


def _tree() -> set[str] | None:
    """``git status`` of the checkout, entry by entry (ignored files too), or None outside git."""
    try:
        status = subprocess.run(["git", "status", "--porcelain", "--ignored"], cwd=REPO, capture_output=True,
                                text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if status.returncode:
        return None
    return {line for line in status.stdout.splitlines() if not any(c in line for c in _TREE_CACHES)}


def pytest_sessionstart(session: pytest.Session) -> None:
    if not hasattr(session.config, "workerinput"):  # the controller, once, not each xdist worker
        session.config._artzoo_tree = _tree()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the suite if it left anything in the checkout: tests write under their temporary
    folders only."""
    before = getattr(session.config, "_artzoo_tree", None)
    after = _tree() if before is not None else None
    left = sorted(after - before) if after is not None else []
    if left:
        session.config.get_terminal_writer().line(
            "\nthe test suite changed the checkout (tests write only under their temporary folders):\n  "
            + "\n  ".join(left), red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups (make test: --dist loadgroup)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that share a module-scoped fixture (a store filled by training) run on one xdist
    worker, so that the fixture is built once rather than on every worker that gets one of them."""
    for item in items:
        info = getattr(item, "_fixtureinfo", None)
        shared = info and any(d.scope == "module" for defs in info.name2fixturedefs.values() for d in defs)
        if shared:
            item.add_marker(pytest.mark.xdist_group(item.module.__name__))


@pytest.fixture(scope="session")
def session_cache(tmp_path_factory) -> Path:
    """One decode cache for the whole session, so tests share rendered datasets."""
    return tmp_path_factory.mktemp("artzoo_cache")


@pytest.fixture(scope="session")
def empty_store(tmp_path_factory) -> Path:
    """An MLflow sqlite store with its tables made: copying it saves each test the migrations."""
    from mlflow.tracking import MlflowClient

    path = tmp_path_factory.mktemp("mlflow_template") / "mlflow.db"
    # the Default experiment keeps its artifacts under the folder it was made in: this one, never
    # the working tree the suite was started from
    with contextlib.chdir(path.parent):
        MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture(autouse=True)
def _isolated_env(session_cache: Path, empty_store: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("ARTZOO_CACHE", str(session_cache))
    shutil.copy(empty_store, tmp_path / "mlflow.db")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("NUMBA_CACHE_DIR", os.environ.get("NUMBA_CACHE_DIR", "/tmp/artzoo_numba_cache"))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.chdir(tmp_path)
    _temporary_files_in(tmp_path, monkeypatch)
    torch.set_num_threads(THREADS)


def _temporary_files_in(folder: Path, mp: pytest.MonkeyPatch) -> None:
    """In-process temporary folders under ``folder``: MLflow leaves the ones it downloads
    artifacts and models into (a checkpoint, a restyler's 31 MB model), which would otherwise
    pile up in /tmp outside pytest's rotation."""
    (folder / "tmp").mkdir(exist_ok=True)
    mp.setattr(tempfile, "tempdir", str(folder / "tmp"))


def use_store(mp: pytest.MonkeyPatch, folder: Path, template: Path, cache: Path) -> str:
    """A module's own store and caches in ``folder`` (a copy of the ``empty_store`` template), set
    through ``mp`` for fixtures that outlive one test; returns the tracking URI."""
    shutil.copy(template, folder / "mlflow.db")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    mp.setenv("MLFLOW_TRACKING_URI", uri)
    mp.setenv("ARTZOO_CACHE", str(cache))
    mp.setenv("ARTZOO_RUNS", str(folder / "artzoo_runs"))
    mp.setenv("NUMBA_CACHE_DIR", os.environ.get("NUMBA_CACHE_DIR", "/tmp/artzoo_numba_cache"))
    mp.setenv("MPLBACKEND", "Agg")
    mp.chdir(folder)
    _temporary_files_in(folder, mp)
    return uri


PLUGIN_PKG = REPO / "tests" / "plugins" / "artzoo-tinynet"


@pytest.fixture(scope="session")
def plugin_site(tmp_path_factory) -> Path:
    """The third-party package tests/plugins/artzoo-tinynet, pip-installed into its own folder.

    A real build and install, leaving a real ``.dist-info`` with entry points: put the folder on
    ``sys.path`` (the ``with_plugin`` fixture) or ``PYTHONPATH`` (subprocesses) to install it.
    """
    return install_plugin(tmp_path_factory.mktemp("plugin_site"), tmp_path_factory.mktemp("plugin_source"))


def install_plugin(site: Path, scratch: Path) -> Path:
    """pip-install tests/plugins/artzoo-tinynet into ``site``, built from a copy in ``scratch``."""
    # Built from a private copy: setuptools writes build/ into the source tree, and under
    # pytest-xdist two workers building the shared tree at once could remove each other's files
    # (an install with the entry points but without the module).
    source = scratch / PLUGIN_PKG.name
    shutil.copytree(PLUGIN_PKG, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
         "--no-compile", "--target", str(site), str(source)],
        check=True, capture_output=True, text=True,
    )
    return site


@contextmanager
def plugin_installed(plugin_site: Path, monkeypatch: pytest.MonkeyPatch):
    """The plugin package installed in this process inside the block (``monkeypatch`` undoes the path)."""
    import registry

    monkeypatch.syspath_prepend(str(plugin_site))
    registry.entries.cache_clear()
    registry.load.cache_clear()
    try:
        yield plugin_site
    finally:
        registry.entries.cache_clear()
        registry.load.cache_clear()
        for name in ("tinynet", "tinynet_broken"):
            sys.modules.pop(name, None)


@pytest.fixture
def with_plugin(plugin_site: Path, monkeypatch):
    """The plugin package installed in this process for the duration of a test."""
    with plugin_installed(plugin_site, monkeypatch):
        yield plugin_site


def plugin_env(plugin_site: Path) -> dict[str, str]:
    """Environment for a subprocess that sees the plugin package."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(plugin_site), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


# -- the runner as a subprocess ------------------------------------------------------------------


def cli(*args: str, env=None, **kw) -> subprocess.Popen:
    """``python -m runners.run ARGS`` started in the background, stdout and stderr in one pipe."""
    return subprocess.Popen([sys.executable, "-m", "runners.run", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env, **kw)


def wait_for(proc: subprocess.Popen, text: str, timeout: float = 240) -> list[str]:
    """The lines ``proc`` printed up to and including the first one holding ``text``."""
    lines, deadline = [], time.time() + timeout
    while time.time() < deadline:
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            break
        lines.append(line)
        if text in line:
            return lines
    raise AssertionError(f"{text!r} never printed:\n{''.join(lines)}")


def run_id_of(lines: list[str]) -> str:
    return next(line.split()[2].rstrip(";") for line in lines if line.startswith("started run "))


# -- a real tracking server on loopback ------------------------------------------------------------

MLFLOW = str(Path(sys.executable).with_name("mlflow"))


def assert_resumed_as_uninterrupted(resumed: subprocess.CompletedProcess, run_id: str, whole: dict) -> None:
    """A resume ended well, in the same run, with the uninterrupted run's test scores exactly."""
    import mlflow

    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert resumed.stdout.strip().splitlines()[-1] == f"run_id: {run_id}"
    r = mlflow.get_run(run_id)
    assert r.info.status == "FINISHED"
    for key, value in whole.items():
        if key.startswith("test/"):
            assert r.data.metrics[key] == value, key


def array(value) -> np.ndarray:
    """A Plotly data array: a list, or the typed array ({"dtype", "bdata", "shape"}) Plotly 6 sends."""
    if isinstance(value, dict) and "bdata" in value:
        flat = np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]))
        return flat.reshape([int(n) for n in str(value.get("shape", len(flat))).split(",")])
    return np.asarray(value)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MlflowServer:
    """``mlflow server`` on 127.0.0.1 as a subprocess that a test can stop and start again on the
    same port with the same stores, as an administrator restarting it would."""

    def __init__(self, backend: str, artifacts: Path, port: int | None = None, app_name: str | None = None) -> None:
        self.backend, self.artifacts, self.port = backend, artifacts, port or free_port()
        self.app = ["--app-name", app_name] if app_name else []
        self.uri = f"http://127.0.0.1:{self.port}"
        self.log = artifacts.parent / f"mlflow-server-{self.port}.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 120) -> "MlflowServer":
        with open(self.log, "a") as log:
            self.proc = subprocess.Popen(
                [MLFLOW, "server", "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1",
                 "--backend-store-uri", self.backend, "--artifacts-destination", str(self.artifacts), *self.app],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                # no background job runner (MLflow's GenAI jobs): nothing here uses it, and its
                # worker processes would compete with the training for the CPU
                env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return self
            except OSError:
                assert self.proc.poll() is None, self.log.read_text()
                time.sleep(0.5)
        raise AssertionError(f"mlflow server did not listen on {self.port} within {timeout} s:\n{self.log.read_text()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, 15)
            self.proc.wait(timeout=30)
        self.proc = None


@contextmanager
def mlflow_server(backend: str, artifacts: Path, app_name: str | None = None):
    """A running server's URI for the duration of the block (``mlflow ui`` is ``mlflow server``)."""
    server = MlflowServer(backend, artifacts, app_name=app_name)
    try:
        yield server.start().uri
    finally:
        server.stop()


# -- a throwaway PostgreSQL server ------------------------------------------------------------------


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
    home = Path(tempfile.mkdtemp(prefix="artzoo-pg-", dir=os.environ.get("TMPDIR") or "/tmp"))  # not a test's folder
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
