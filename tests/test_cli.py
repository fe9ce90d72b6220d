"""The runner's command line: list, help, dry-run, and every kind of refused override."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from runners.run import main


def no_runs() -> bool:
    client = MlflowClient()
    return not client.search_runs([e.experiment_id for e in client.search_experiments()])


@pytest.fixture
def cli(capsys):
    """The command line, in process (a subprocess per case would spend its time importing torch)."""

    def call(*args: str) -> subprocess.CompletedProcess:
        code = main(list(args))
        out = capsys.readouterr()
        return subprocess.CompletedProcess(args, code, out.out, out.err)

    return call


def test_python_dash_m_entry_point_works():
    out = subprocess.run([sys.executable, "-m", "runners.run", "--list"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and "cond_ae" in out.stdout


def test_list_shows_every_builtin_with_origin(cli):
    out = cli("--list")
    assert out.returncode == 0, out.stderr
    for name in ("cnn", "timm_net", "ae", "cond_ae", "classify", "reconstruct", "restyle", "synthart", "folder", "digits"):
        line = next(line for line in out.stdout.splitlines() if line.split()[:1] == [name])
        assert "artzoo 0.1.0" in line and "BROKEN" not in line


def test_help_lists_every_key_with_type_default_and_meaning(cli):
    out = cli("cond_ae", "--help")
    assert out.returncode == 0, out.stderr
    text = out.stdout
    for key in ("seed", "data", "data.image_size", "train.epochs", "train.lr", "model.conditioning", "data.num_styles"):
        assert any(line.split()[:1] == [key] for line in text.splitlines()), key
    lr = next(line for line in text.splitlines() if line.split()[:1] == ["train.lr"])
    assert "float" in lr and "learning rate" in lr


def test_dry_run_prints_the_resolved_config_and_runs_nothing(cli, tmp_path):
    out = cli("zoo.cnn", "--dry-run", "train.epochs=3", "data.image_size=32", "seed=7", "train.imbalance=weights")
    assert out.returncode == 0, out.stderr
    cfg = json.loads(out.stdout)
    assert cfg["entry"] == "cnn" and cfg["task"] == {"name": "classify"}
    assert (cfg["train"]["epochs"], cfg["data"]["image_size"], cfg["seed"]) == (3, 32, 7)
    assert cfg["train"]["imbalance"] == "weights" and cfg["data"]["name"] == "synthart"
    assert no_runs()


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.epoch=3", "did you mean 'train.epochs'"),
        ("model.latnt_dim=8", "did you mean 'model.latent_dim'"),
        ("train.epochs=three", "train.epochs"),
        ("train.lr=-0.1", "greater than 0"),
        ("data.image_size=0", "data.image_size"),
        ("train.precision=fp8", "fp32"),
        ("data=/no/such/folder", "does not exist"),
        ("data=nosuchset", "unknown dataset"),
        ("train.epochs", "key=value"),
    ],
)
def test_bad_overrides_are_refused_before_any_work(cli, override, message, tmp_path):
    out = cli("ae", override)
    assert out.returncode == 2
    assert message in out.stderr, out.stderr
    assert "Traceback" not in out.stderr
    assert no_runs()


def test_a_file_given_as_the_dataset_folder_is_refused(cli, tmp_path):
    (tmp_path / "images.zip").write_bytes(b"PK")
    out = cli("cnn", f"data={tmp_path / 'images.zip'}")
    assert out.returncode == 2 and "is a file" in out.stderr


def test_unknown_entry_names_close_matches(cli):
    out = cli("cond_aa")
    assert out.returncode == 2 and "cond_ae" in out.stderr
