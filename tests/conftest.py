"""Shared fixtures: every test gets its own caches and MLflow store, never the user's."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

# Tests that need a system package skip where it is absent; CI sets ARTZOO_REQUIRE_ALL=1 so that
# such a skip fails instead (CI installs every package).
REQUIRE_ALL = os.environ.get("ARTZOO_REQUIRE_ALL") == "1"


def skip_unless(condition: bool, reason: str) -> None:
    """Skip the calling test with ``reason`` unless ``condition``; under CI, fail instead."""
    if condition:
        return
    if REQUIRE_ALL:
        pytest.fail(f"ARTZOO_REQUIRE_ALL=1 but {reason}")
    pytest.skip(reason)


def have(program: str) -> bool:
    return shutil.which(program) is not None


@pytest.fixture(scope="session")
def session_cache(tmp_path_factory) -> Path:
    """One decode cache for the whole session, so tests share rendered datasets."""
    return tmp_path_factory.mktemp("artzoo_cache")


@pytest.fixture(autouse=True)
def _isolated_env(session_cache: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("ARTZOO_CACHE", str(session_cache))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("NUMBA_CACHE_DIR", os.environ.get("NUMBA_CACHE_DIR", "/tmp/artzoo_numba_cache"))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.chdir(tmp_path)
