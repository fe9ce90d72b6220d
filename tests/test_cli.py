"""The runner's command line: list, help, dry-run, and every kind of refused override."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile

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


@pytest.mark.slow
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


def test_help_shows_each_keys_range_and_choices_a_plugins_too(cli, with_plugin):
    def line(entry: str, key: str, *args: str) -> str:
        out = cli(entry, "--help", *args)
        assert out.returncode == 0, out.stderr
        return next(line for line in out.stdout.splitlines() if line.split()[:1] == [key])

    assert "float (0, 10]" in line("cnn", "train.lr")
    assert "float [0, 1)" in line("cnn", "model.dropout")
    assert "int >= 0" in line("cnn", "seed")
    remedies = line("cnn", "train.imbalance")
    assert "none|sampler|weights|cb|drw|logit_adjust|crt" in remedies
    for paper in ("Cui et al. 2019", "Cao et al. 2019", "Menon et al. 2021", "Ren et al. 2020", "Kang et al. 2020"):
        assert paper in remedies, paper
    assert "float >= 0|auto" in line("cnn", "train.tau_norm")  # a number or a word: each with its range
    assert "float [0, 1)" in line("cnn", "train.cb_beta") and "int >= 0" in line("cnn", "train.drw_epoch")
    assert "default 32" in line("cnn", "data.image_size", "data=synthart_lt")  # the preset's own default
    assert "int > 0" in line("tinynet", "model.width")  # the plugin's Field(gt=0)


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
        ("train.imbalance=drw train.drw_epoch=15", "never use its weights"),
    ],
)
def test_bad_overrides_are_refused_before_any_work(cli, override, message, tmp_path):
    out = cli("ae" if "imbalance" not in override else "cnn", *override.split())
    assert out.returncode == 2
    assert message in out.stderr, out.stderr
    assert "Traceback" not in out.stderr
    assert no_runs()


def test_a_file_given_as_the_dataset_folder_is_refused(cli, tmp_path):
    (tmp_path / "images.zip").write_bytes(b"PK")
    out = cli("cnn", f"data={tmp_path / 'images.zip'}")
    assert out.returncode == 2 and "is a file" in out.stderr


def test_a_training_split_with_no_readable_image_is_refused_by_name(cli, tmp_path):
    from images import PALETTE, solid

    for c, name in enumerate(("Cubism", "Pop_Art")):
        (tmp_path / "art" / "train" / name).mkdir(parents=True)
        (tmp_path / "art" / "train" / name / "broken.jpg").write_bytes(b"")  # every training file unreadable
        solid(tmp_path / "art" / "test" / name / "fine.png", PALETTE[c])
    out = cli("cnn", f"data={tmp_path / 'art'}", "data.image_size=16")
    assert out.returncode == 2, out.stderr
    assert f"data={tmp_path / 'art'}: its training split has no readable images (2 skipped" in out.stderr
    assert "Traceback" not in out.stderr and no_runs()


def test_unknown_entry_names_close_matches(cli):
    out = cli("cond_aa")
    assert out.returncode == 2 and "cond_ae" in out.stderr


def _stopped_run(*overrides: str) -> str:
    """A run as the runner leaves it in the store when stopped (its config.json), without training."""
    from runners import config
    from runners.tracking import Run, runs_root

    run = Run.start("cnn", local_root=runs_root())
    run.log_config(config.resolve("cnn", list(overrides)), {"zoo.entry": "cnn"})
    run.end("KILLED")
    return run.id


def test_resume_takes_the_starting_command_line_again_and_refuses_what_differs(cli, tmp_path, monkeypatch):
    run_id = _stopped_run("seed=5", "train.epochs=3", "train.lr=0.001", "data.size=200")
    temporary = tmp_path / "resume-tmp"
    temporary.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temporary))  # what reading the run's config leaves behind
    same = cli("cnn", "seed=5", "train.epochs=3", "train.lr=1e-3", "data=synthart", "data.size=200",
               f"resume={run_id}", "--dry-run")
    assert same.returncode == 0, same.stderr
    cfg = json.loads(same.stdout)
    assert (cfg["resume"], cfg["seed"], cfg["train"]["epochs"], cfg["data"]["size"]) == (run_id, 5, 3, 200)

    changed = cli("cnn", "seed=6", "train.epochs=3", "train.lr=0.01", f"resume={run_id}")
    assert changed.returncode == 2
    assert "seed is 5 in the run, 6 here" in changed.stderr
    assert "train.lr is 0.001 in the run, 0.01 here" in changed.stderr
    assert "train.epochs" not in changed.stderr, "only the keys that differ are named"

    other = cli("ae", f"resume={run_id}")
    assert other.returncode == 2 and "is a run of cnn" in other.stderr
    assert MlflowClient().get_run(run_id).info.status == "KILLED", "a refused resume leaves the run as it was"
    assert not any(temporary.iterdir()), "reading a run's config.json leaves no temporary folder behind"


@pytest.mark.slow
def test_the_demo_ends_with_its_headline_numbers_and_where_to_look(capsys):
    from runners import demo

    code = demo.main(["data.size=100", "data.image_size=16", "train.epochs=1", "train.batch_size=16",
                      "train.judge_steps=10", "train.umap=false"])
    out = capsys.readouterr()
    assert code == 0, out.out + out.err
    run = MlflowClient().search_runs([MlflowClient().get_experiment_by_name("cond_ae").experiment_id])[0]
    lines = out.out.splitlines()
    table = [line for line in lines if line.startswith("| ")]
    assert [row.split("|")[1].strip() for row in table[1:]] == [
        "restyle_acc", "restyle_acc_panel", "restyle_acc_panel_unseen", "restyle_texture_ratio", "restyle_copy_rate",
        "restyle_psnr_gt", "restyle_psnr_gt_baseline", "identity_psnr"]
    assert float(table[1].split("|")[2]) == pytest.approx(run.data.metrics["test/restyle_acc"], abs=1e-4)
    # no long phase of the analysis passes in silence, in a log as on a terminal (the judges are
    # cached for the session only when no other test trained them first: at most these lines)
    phases = ["scoring the test split (", "restyling the ", "embedding ", "logging the MLflow model runs:/"]
    after = lines[next(i for i, line in enumerate(lines) if line.startswith("epoch 1/1")):]
    starts = [next((i for i, line in enumerate(after) if line.startswith(p)), None) for p in phases]
    assert None not in starts and starts == sorted(starts), (phases, after)
    tail = "\n".join(lines[lines.index(table[-1]):])
    # the training part ends with the last training step, before the test analysis
    training = demo.training_minutes(MlflowClient(), run)
    assert 0 < training < (run.info.end_time - run.info.start_time) / 60_000
    assert re.search(rf"Done in [0-9.]+ min: {training:.1f} training the model", tail), tail
    assert f"/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}?workflowType=machine_learning" in tail
    assert f"http://127.0.0.1:8501/restyle?run={run.info.run_id}" in tail and "streamlit run dashboard/app.py" in tail
