"""Sweeps: grids on the command line and Optuna searches, every configuration and trial a real
MLflow run under one parent, on tiny cnn runs of the digits dataset."""

from __future__ import annotations

import contextlib
import io
import json
import signal
import subprocess
import sys

import mlflow
import numpy as np
import optuna
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from conftest import array, postgres, use_store, wait_for
from runners import run as run_cli
from runners import sweep as sweep_cli

TINY = ["data=digits", "data.image_size=16", "train.batch_size=32", "train.log_model=false",
        "train.system_metrics=false"]
GRID = [*TINY, "train.epochs=1", "train.max_steps_per_epoch=1", "train.lr=1e-3,3e-3", "model.width=8,16", "seeds=0,1"]
# seed 10 draws a first trial that learns (4e-3) and a second that cannot (1e-7): which trial is
# pruned must not hang on how floats are summed (trials that all sit at chance tie with the median)
SEARCH = ["--search", "train.lr=loguniform(1e-7,1e-1)", "--trials", "4", "--startup-trials", "1", "seed=10",
          *TINY, "train.epochs=3", "train.max_steps_per_epoch=12"]


def _children(run_id: str) -> list:
    client = MlflowClient()
    exps = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(exps, f"tags.mlflow.parentRunId = '{run_id}'")


def _sweep(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "runners.sweep", "cnn", *args], capture_output=True, text=True,
                          timeout=600, **kw)


def _last_id(out: str) -> str:
    return out.strip().splitlines()[-1].removeprefix("run_id: ")


@pytest.fixture(scope="module")
def swept(tmp_path_factory, empty_store, session_cache):
    """One store holding a grid (2 × 2 configurations, 2 seeds each) and a 4-trial search, both
    made through their command lines' main() in this process (the same code as `python -m`)."""
    folder = tmp_path_factory.mktemp("sweeps")
    with pytest.MonkeyPatch.context() as mp:
        uri = use_store(mp, folder, empty_store, session_cache)
        out = {}
        for name, main, args in (("grid", run_cli.main, ["cnn", *GRID]), ("search", sweep_cli.main, ["cnn", *SEARCH])):
            printed = io.StringIO()
            with contextlib.redirect_stdout(printed):
                status = main(args)
            assert status == 0, printed.getvalue()[-3000:]
            out[name], out[f"{name}_out"] = _last_id(printed.getvalue()), printed.getvalue()
        yield {"uri": uri, **out, "storage": f"sqlite:///{folder / 'optuna.db'}"}


@pytest.mark.slow
def test_a_two_by_two_grid_with_two_seeds_is_one_parent_four_configurations_and_eight_seed_runs(swept, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", swept["uri"])
    parent = mlflow.get_run(swept["grid"])
    assert parent.info.status == "FINISHED" and parent.data.tags["zoo.sweep"] == "grid"
    assert json.loads(parent.data.tags["zoo.sweep_keys"]) == ["train.lr", "model.width"]
    configs = _children(swept["grid"])
    assert len(configs) == 4
    assert {tuple(json.loads(c.data.tags["zoo.sweep_config"]).values()) for c in configs} == {
        ("1e-3", "8"), ("1e-3", "16"), ("3e-3", "8"), ("3e-3", "16")}
    table = pd.read_csv(mlflow.artifacts.download_artifacts(run_id=swept["grid"], artifact_path="sweep.csv"))
    assert len(table) == 4 and table["best"].sum() == 1
    for config in configs:  # each configuration is a multi-seed parent (seeds=), as a lone seeds= run is
        seeds = _children(config.info.run_id)
        assert sorted(s.data.tags["zoo.seed"] for s in seeds) == ["0", "1"]
        assert all(s.info.status == "FINISHED" for s in seeds) and config.data.tags["zoo.seeds"] == "[0, 1]"
        row = table[table["run_id"] == config.info.run_id].iloc[0]
        for metric in ("test/acc", "test/macro_f1"):
            values = [s.data.metrics[metric] for s in seeds]
            assert row[f"{metric}_mean"] == config.data.metrics[f"{metric}_mean"] == pytest.approx(np.mean(values))
            assert row[f"{metric}_std"] == config.data.metrics[f"{metric}_std"] == pytest.approx(np.std(values, ddof=1))
    # each configuration's output closes with its headline over the seeds
    last = configs[0]
    accs = [s.data.metrics["test/acc"] for s in _children(last.info.run_id)]
    assert f"| acc          | {np.mean(accs):.4g} ± {np.std(accs, ddof=1):.2g} |" in swept["grid_out"]
    best = table.loc[table["val/macro_f1_best_mean"].idxmax()]
    assert bool(best["best"]) and parent.data.tags["zoo.sweep_best_run"] == best["run_id"]
    assert parent.data.metrics["test/macro_f1"] == pytest.approx(best["test/macro_f1_mean"])
    assert "grid: 4 configurations × 2 seeds = 8 runs" in swept["grid_out"]
    assert "| best |" in swept["grid_out"], "the closing table marks the best configuration"


def test_a_grid_is_checked_whole_before_any_run(capsys):
    assert run_cli.main(["cnn", *TINY, "model.width=8,0"]) == 2
    err = capsys.readouterr().err
    assert "model.width=0" in err and "model.width" in err
    assert run_cli.main(["cnn", *TINY, "train.lr=1e-3,0.001"]) == 2
    assert "the same config" in capsys.readouterr().err
    big = ["cnn", *TINY, "train.lr=1e-4,3e-4,1e-3,3e-3,1e-2", "model.width=8,16,32"]
    assert run_cli.main(big) == 2
    err = capsys.readouterr().err
    assert "15 runs" in err and "--yes" in err
    assert run_cli.main([*big, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert len(json.loads(out[: out.rindex("]") + 1])) == 15 and "15 configurations" in out
    assert MlflowClient().search_runs([e.experiment_id for e in MlflowClient().search_experiments()]) == []


@pytest.mark.slow
def test_a_search_prunes_trials_that_fall_behind_and_its_parent_holds_the_best(swept, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", swept["uri"])
    parent = mlflow.get_run(swept["search"])
    study = optuna.load_study(study_name=parent.data.tags["zoo.study"], storage=swept["storage"])
    assert len(study.trials) == 4
    runs = {c.info.run_id: c for c in _children(swept["search"])}
    assert len(runs) == 4 and "FAILED" not in {r.info.status for r in runs.values()}
    pruned = [t for t in study.trials if t.state == optuna.trial.TrialState.PRUNED]
    hopeless = [t.number for t in study.trials if t.params["train.lr"] < 1e-6]
    assert hopeless and set(hopeless) <= {t.number for t in pruned}, \
        "the search prunes a trial whose learning rate learns nothing"
    for trial in study.trials:
        run = runs[trial.user_attrs["mlflow_run"]]
        if trial in pruned:
            assert run.info.status == "KILLED" and run.data.tags["zoo.stopped"].startswith("pruned: val/macro_f1")
        else:
            assert run.info.status == "FINISHED"
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["zoo.best_trial"] == str(study.best_trial.number)
    assert parent.data.tags["zoo.sweep_best_run"] == study.best_trial.user_attrs["mlflow_run"]
    assert parent.data.metrics["best_value"] == pytest.approx(study.best_value)
    best_run = runs[study.best_trial.user_attrs["mlflow_run"]]
    assert max(m.value for m in MlflowClient().get_metric_history(best_run.info.run_id, "val/macro_f1")) == \
        pytest.approx(study.best_value)
    files = {a.path for a in MlflowClient().list_artifacts(swept["search"], "optuna")}
    assert {"optuna/optimization_history.json", "optuna/optimization_history.html"} <= files


@pytest.mark.parametrize("spec, says", [
    ("train.lrr=uniform(0,1)", "unknown key 'train.lrr'"),
    ("train.lr=normal(0,1)", "expected KEY=DIST"),
    ("model.dropout=loguniform(0,0.5)", "positive low bound"),
    ("train.lr=uniform(0.1,0.01)", "low bound must be below"),
    ("model.width=uniform(8,32)", "use int(8,32)"),
    ("train.imbalance=choice(none,oversampled)", "train.imbalance"),
    ("train.lr=uniform(1e-4,20)", "train.lr"),
])
def test_a_bad_search_is_refused_before_any_trial_naming_the_key(spec, says, capsys):
    assert sweep_cli.main(["cnn", "--search", spec, *TINY]) == 2
    assert says in capsys.readouterr().err
    assert MlflowClient().search_runs([e.experiment_id for e in MlflowClient().search_experiments()]) == []


def _shared_study_done(storage: str, outs: list[str], trials: int) -> list:
    """The checks of a study that workers finished together: every trial ran exactly once, in
    its own child run of the one parent, and nothing is left RUNNING. Returns the trials."""
    assert all("== trial" in out for out in outs), "every worker ran trials"
    study = optuna.load_study(study_name="shared", storage=storage)
    ran = [t for t in study.trials if not (t.user_attrs.get("surplus") or t.user_attrs.get("stopped"))]
    assert len(ran) == trials and all(t.state.name in ("COMPLETE", "PRUNED") for t in ran)
    client = MlflowClient()
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert "RUNNING" not in {r.info.status for r in runs}
    parents = [r for r in runs if r.data.tags.get("zoo.sweep") == "search"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    assert {t.user_attrs["mlflow_run"] for t in ran} == {r.info.run_id for r in children}, "each trial once"
    assert len(children) == trials
    return ran


def _workers(args: list[str], n: int = 2) -> list[str]:
    workers = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(n)]
    outs = [w.communicate(timeout=600)[0] for w in workers]
    assert [w.returncode for w in workers] == [0] * n, outs[0][-2000:] + outs[-1][-2000:]
    return outs


@pytest.mark.slow
def test_a_search_stopped_by_sigterm_is_finished_by_two_workers_on_one_sqlite_storage(tmp_path):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    args = [sys.executable, "-m", "runners.sweep", "cnn", "--search", "train.lr=loguniform(1e-4,3e-2)",
            "--trials", "4", "--study", "shared", "--storage", storage, *TINY, "train.epochs=2",
            "train.max_steps_per_epoch=6", "train.checkpoint_every=2"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_for(proc, "== trial 1")
    lines = wait_for(proc, "epoch 1/2")
    stopped = next(line.split()[2].rstrip(";") for line in lines if line.startswith("started run "))
    proc.send_signal(signal.SIGTERM)
    rest = proc.communicate(timeout=120)[0]
    assert proc.returncode == 128 + signal.SIGTERM, rest[-2000:]
    client = MlflowClient()
    assert client.get_run(stopped).info.status == "KILLED"
    parent = client.get_run(client.get_run(stopped).data.tags["mlflow.parentRunId"])
    assert parent.info.status == "KILLED"

    # started again, by two workers at once: they continue the study rather than start over
    outs = _workers(args)
    assert sum(f"(continues run {stopped})" in out for out in outs) == 1
    assert not any("== trial 0:" in out for out in outs), "the finished trial is not run again"
    ran = _shared_study_done(storage, outs, trials=4)
    assert stopped in {t.user_attrs["mlflow_run"] for t in ran}
    assert client.get_run(stopped).info.status in ("FINISHED", "KILLED")  # KILLED only if pruned
    epochs = [m.step for m in client.get_metric_history(stopped, "val/macro_f1")]
    assert epochs == sorted(set(epochs)) and epochs[0] == 1, "the stopped run continued, each epoch once"


@pytest.mark.slow
@pytest.mark.postgres
def test_two_workers_share_one_study_on_postgresql(tmp_path):
    with postgres(tmp_path) as db:
        args = [sys.executable, "-m", "runners.sweep", "cnn", "--search", "train.lr=loguniform(1e-4,3e-2)",
                "--trials", "6", "--study", "shared", "--storage", db, *TINY, "train.epochs=1",
                "train.max_steps_per_epoch=1"]
        _shared_study_done(db, _workers(args), trials=6)


@pytest.mark.slow
def test_the_dashboard_shows_each_sweep_as_one_row_with_its_table_and_plots(swept, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from conftest import REPO

    monkeypatch.setenv("MLFLOW_TRACKING_URI", swept["uri"])
    at = AppTest.from_file(str(REPO / "dashboard" / "app.py"), default_timeout=120)
    at.switch_page("views/runs.py").run()
    assert not at.exception, [e.value for e in at.exception]
    table = at.dataframe[0].value
    assert set(table["id"]) == {swept["grid"], swept["search"]}, "the runs inside sweeps are folded into them"
    labels = [e.label for e in at.expander]
    assert any("grid · 4 configurations" in label for label in labels)
    assert any("search · 4 trials" in label for label in labels)
    grid_table = next(d.value for d in at.dataframe[1:] if "model.width" in d.value)
    assert (grid_table[""] == "★ best").sum() == 1 and len(grid_table) == 4
    at.toggle[0].set_value(True).run()
    assert len(at.dataframe[0].value) == 2 + 4 + 8 + 4, "every run, shown on demand"

    page = AppTest.from_file(str(REPO / "dashboard" / "app.py"), default_timeout=120)
    page.query_params["run"] = swept["search"]
    page.switch_page("views/run.py").run()
    assert not page.exception, [e.value for e in page.exception]
    heads = [h.value for h in page.subheader]
    assert "A search of 4 trials" in heads and "Optimization history" in heads
    charts = [json.loads(c.proto.spec) for c in page.get("plotly_chart")]
    assert any(c["layout"].get("title", {}).get("text") == "Optimization History Plot" for c in charts)

    grid = AppTest.from_file(str(REPO / "dashboard" / "app.py"), default_timeout=120)
    grid.query_params["run"] = swept["grid"]
    grid.switch_page("views/run.py").run()
    assert not grid.exception, [e.value for e in grid.exception]
    assert "Recall by class against its training count" in [h.value for h in grid.subheader]
    chart = next(json.loads(c.proto.spec) for c in grid.get("plotly_chart") if "configuration" in c.proto.spec)
    assert len(chart["data"]) == 4, "every configuration on one figure"
    # a configuration's line: its seeds' mean recall of each class, by the class's training count
    config = _children(swept["grid"])[0]
    seeds = [pd.read_csv(mlflow.artifacts.download_artifacts(run_id=r.info.run_id, artifact_path="tables/per_class.csv"))
             for r in _children(config.info.run_id)]
    line = next(t for t in chart["data"] if t["name"] == "lr={}, model.width={}".format(
        *json.loads(config.data.tags["zoo.sweep_config"]).values()))
    expected = pd.concat(seeds).groupby("class").agg(train_count=("train_count", "first"), recall=("recall", "mean"))
    expected = expected.sort_values("train_count", kind="stable")
    shown = sorted(zip(array(line["x"]).tolist(), np.round(array(line["y"]), 6).tolist()))
    assert shown == sorted(zip(expected["train_count"].tolist(), np.round(expected["recall"], 6).tolist()))
