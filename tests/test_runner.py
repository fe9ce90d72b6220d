"""Training runs end to end on tiny synthart: the MLflow schema, determinism, resume, statuses."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys

import mlflow
import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient

import registry
from conftest import assert_resumed_as_uninterrupted, cli, run_id_of, wait_for
from runners import checkpoint, config, train

# the MLflow model each finished run logs is tested in test_predict.py; these runs leave it out
TINY = ["train.log_model=false", "data.size=100", "data.image_size=32", "train.epochs=2", "train.batch_size=16", "train.log_every=1"]
BUILTIN_MODELS = [name for name, e in registry.entries("model").items() if e.dist == "artzoo"]
TASK_METRICS = {
    "classify": ["test/acc", "test/macro_f1", "test/balanced_acc", "test/ece", "val/ece"],
    "reconstruct": ["test/mse", "test/psnr", "test/ssim", "test/cluster_nmi_pca", "test/cluster_ari_pca",
                    "test/silhouette_pca", "test/style_cluster_nmi_pca", "test/untrained_style_cluster_nmi_pca",
                    "test/style_p_at_10", "test/code_p_at_10", "train/style_nce"],
    "restyle": ["test/restyle_acc", "test/restyle_psnr_gt", "test/restyle_psnr_gt_baseline", "test/identity_psnr",
                "test/restyle_psnr_gt_resample", "test/restyle_acc_panel_unseen", "test/restyle_texture_ratio",
                "test/restyle_copy_rate", "test/restyle_copy_rate_truth"],
}
# the restyle judge's default 400 training steps are most of a tiny run; a few make the same schema
TASK_OVERRIDES = {"restyle": ["train.judge_steps=40"]}
TASK_ARTIFACTS = {
    "classify": ["plots/confusion_matrix.png", "tables/per_class.csv", "plots/reliability.png"],
    "reconstruct": ["embeddings/test.npz"],
    "restyle": ["restyle/test.npz", "plots/restyle_test.png"],
}


def run(entry: str, *overrides: str) -> dict:
    return train.train(config.resolve(entry, [*TINY, *overrides]))


def artifacts(run_id: str, path: str = "") -> set[str]:
    client, found, todo = MlflowClient(), set(), [path]
    while todo:
        for info in client.list_artifacts(run_id, todo.pop() or None):
            (todo.append(info.path) if info.is_dir else found.add(info.path))
    return found


@pytest.mark.slow
@pytest.mark.parametrize("entry", BUILTIN_MODELS)
def test_each_builtin_entry_leaves_the_schema_in_mlflow(entry):
    result = run(entry, *TASK_OVERRIDES.get(registry.load("model", entry).task, []))
    r = mlflow.get_run(result["run_id"])
    assert r.info.status == "FINISHED"
    task = r.data.tags["zoo.task"]
    assert r.data.tags["zoo.entry"] == entry and r.data.tags["zoo.model"] == entry
    assert r.data.tags["zoo.dataset"] == "synthart"
    classes = json.loads(r.data.tags["zoo.classes"])
    assert classes == sorted(classes) and len(classes) >= 8
    assert {"train.lr", "train.epochs", "data.image_size", "seed"} <= set(r.data.params)
    assert r.data.params["data.image_size"] == "32"
    for name in TASK_METRICS[task]:
        assert name in r.data.metrics, name
        assert np.isfinite(r.data.metrics[name])
    assert "train/loss" in r.data.metrics and f"val/{registry.load('task', task).main_metric}" in r.data.metrics
    if task == "restyle":  # the curve of what a restyle run is for, per epoch
        assert [m.step for m in MlflowClient().get_metric_history(result["run_id"], "val/restyle_acc")] == [1, 2]
    steps = MlflowClient().get_metric_history(result["run_id"], "train/loss")
    assert len(steps) == len({m.step for m in steps}) > 2
    files = artifacts(result["run_id"])
    assert {"config.json", "checkpoints/last.pt", "checkpoints/best.pt", *TASK_ARTIFACTS[task]} <= files
    assert set(registry.load("task", task).artifacts) <= files, "what the task declares (the dashboard's views)"
    # each epoch's grid as MLflow's stepped image (its UI's slider), with the thumbnail it makes, from
    # step 0 (before training) on; and nothing else in images/, where one file that is not stepped
    # makes MLflow's UI show none of the run's images
    stepped = r"images/.+\+step\+(\d+)\+timestamp\+\d+\+[0-9a-f-]+(\+compressed\.webp|\.png)"
    images = [f for f in files if f.startswith("images/")]
    assert all(re.fullmatch(stepped, f) for f in images), images
    assert {int(re.fullmatch(stepped, f).group(1)) for f in images} == {0, 1, 2}, images
    assert any(f.endswith("+compressed.webp") for f in files) and r.data.tags["mlflow.loggedImages"] == "True"
    assert r.inputs.dataset_inputs, "the dataset is logged as a run input"
    ckpt = torch.load(mlflow.artifacts.download_artifacts(run_id=result["run_id"], artifact_path="checkpoints/last.pt"),
                      weights_only=True)
    assert ckpt["epoch"] == 2 and ckpt["run_id"] == result["run_id"]


@pytest.mark.slow
def test_same_seed_gives_identical_metrics_and_another_seed_does_not():
    a = run("cnn", "seed=3")
    b = run("cnn", "seed=3")
    c = run("cnn", "seed=4")
    strip = lambda m: {k: v for k, v in m.items() if k != "run_id"}
    assert strip(a) == strip(b)
    assert strip(a) != strip(c)
    history = [[m.value for m in MlflowClient().get_metric_history(r["run_id"], "train/loss")] for r in (a, b)]
    assert history[0] == history[1]


@pytest.mark.slow
def test_deferred_reweighting_reproduces_bit_for_bit_and_logs_the_shot_recalls():
    # drw: the one remedy whose loss changes mid-run (cb and weights differ from it only in numbers)
    lt = ["data=synthart_lt", "data.size=200", "data.held_out_per_class=3", "data.image_size=16", "seed=1",
          "train.imbalance=drw", "train.epochs=2", "train.drw_epoch=1"]
    a, b = run("cnn", *lt), run("cnn", *lt)
    strip = lambda m: {k: v for k, v in m.items() if k != "run_id"}
    assert strip(a) == strip(b)
    history = [[m.value for m in MlflowClient().get_metric_history(r["run_id"], "train/loss")] for r in (a, b)]
    assert history[0] == history[1]
    # 200 training images, 86 of the largest style down to 1: all three groups are scored
    assert {"test/recall_many", "test/recall_medium", "test/recall_few", "test/shots_few_below"} <= set(a)
    assert {"plots/recall_vs_count.png", "tables/per_class.csv"} <= artifacts(a["run_id"])
    assert mlflow.get_run(a["run_id"]).data.tags["zoo.dataset"] == "synthart_lt"


@pytest.mark.slow
def test_with_ema_the_checkpoint_holds_the_averaged_model_that_the_test_metrics_describe():
    result = run("cnn", "train.ema=0.9", "seed=2")
    served = registry.served_checkpoints({"task": {"name": "classify"}})[0]  # best.pt: what the test split scored
    ckpt = torch.load(mlflow.artifacts.download_artifacts(run_id=result["run_id"], artifact_path=served),
                      weights_only=True)
    test_set = registry.dataset("synthart", split="test", image_size=32, size=100)
    x = torch.stack([test_set[i][0] for i in range(len(test_set))])
    y = torch.as_tensor(test_set.targets)

    def loss_of(weights: dict) -> float:
        net = registry.model("cnn", num_classes=len(test_set.classes), in_chans=3, image_size=32)
        net.load_state_dict(weights)
        with torch.no_grad():
            return float(torch.nn.functional.cross_entropy(net.eval()(x), y))

    assert loss_of(ckpt["model"]) == pytest.approx(result["test/loss"], rel=1e-5)
    # the weights being trained are kept for a resume, and they are not the ones scored
    assert loss_of(checkpoint.trained_state(ckpt)) != pytest.approx(result["test/loss"], rel=1e-3)
    # what the average copies rather than averages (batch norm's counters) is stored once
    assert not [k for k in ckpt["model_raw"] if k.endswith("num_batches_tracked")]


@pytest.mark.slow
def test_sigterm_marks_killed_and_resume_matches_an_uninterrupted_run():
    # with a moving average of the weights, which a resume must restore beside the trained ones
    # (test_reliability's SIGKILL resume covers a run without one)
    args = ["cnn", *TINY, "train.epochs=3", "seed=5", "train.ema=0.9"]
    whole = train.train(config.resolve("cnn", args[1:]))

    proc = cli(*args)
    lines = wait_for(proc, "epoch 1/3")
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, out
    run_id = run_id_of(lines)
    assert mlflow.get_run(run_id).info.status == "KILLED"
    assert "checkpoints/last.pt" in artifacts(run_id)

    # the command line that started it, typed again with resume= appended
    resumed = subprocess.run([sys.executable, "-m", "runners.run", *args, f"resume={run_id}"],
                             capture_output=True, text=True, timeout=300)
    assert_resumed_as_uninterrupted(resumed, run_id, whole)
    steps = [m.step for m in MlflowClient().get_metric_history(run_id, "train/loss")]
    assert sorted(set(steps)) == sorted(steps), "steps continue, never repeat"


@pytest.mark.slow
def test_a_run_shorter_than_log_every_logs_each_epochs_last_step_and_system_metrics(monkeypatch):
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.2")
    result = run("cnn", "train.log_every=1000")
    client = MlflowClient()
    per_epoch = -(-len(registry.dataset("synthart", split="train", image_size=32, size=100)) // 16)
    assert [m.step for m in client.get_metric_history(result["run_id"], "train/loss")] == [per_epoch, 2 * per_epoch]
    logged = mlflow.get_run(result["run_id"]).data.metrics
    assert {"system/cpu_utilization_percentage", "system/system_memory_usage_megabytes"} <= set(logged)
    kind = client.get_experiment_by_name("cnn").tags.get("mlflow.experimentKind")
    assert kind == "custom_model_development", "MLflow's UI opens the experiment on runs, not its GenAI view"

    quiet = run("cnn", "train.epochs=1", "train.system_metrics=false")
    assert not [k for k in mlflow.get_run(quiet["run_id"]).data.metrics if k.startswith("system/")]


def test_experiments_are_marked_as_model_training_and_a_users_own_kind_is_kept():
    from runners.tracking import experiment_id

    client = MlflowClient()
    client.create_experiment("made-by-hand")
    client.create_experiment("genai", tags={"mlflow.experimentKind": "genai_development"})
    for name in ("new", "made-by-hand", "genai"):
        experiment_id(client, name)
    kinds = {n: client.get_experiment_by_name(n).tags.get("mlflow.experimentKind") for n in ("new", "made-by-hand", "genai")}
    assert kinds == {"new": "custom_model_development", "made-by-hand": "custom_model_development",
                     "genai": "genai_development"}


def runner(capsys, *args: str) -> tuple[int, str, str]:
    """``python -m runners.run ARGS`` in this process: its exit status, stdout and stderr."""
    from runners.run import main

    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.slow
def test_an_exception_marks_the_run_failed_with_the_error(with_plugin, capsys):
    code, _, err = runner(capsys, "failnet", *TINY)
    assert code == 1
    assert "failnet broke on purpose" in err
    run = MlflowClient().search_runs([e.experiment_id for e in MlflowClient().search_experiments()])[0]
    assert run.info.status == "FAILED"
    assert "failnet broke on purpose" in run.data.tags["zoo.error"]


@pytest.mark.slow
def test_a_nan_loss_stops_the_run_naming_the_step(with_plugin, capsys):
    code, _, err = runner(capsys, "failnet", "model.nan=true", "model.fail_at=2", *TINY)
    assert code == 1
    assert "at step 2" in err
    run = MlflowClient().search_runs([e.experiment_id for e in MlflowClient().search_experiments()])[0]
    assert run.info.status == "FAILED"


@pytest.mark.slow
def test_a_third_party_model_trains_through_the_runner(with_plugin, capsys):
    code, out, err = runner(capsys, "tinynet", "data=stripes", "train.epochs=6", "train.batch_size=16", "train.lr=0.03")
    assert code == 0, err
    run = mlflow.get_run(out.strip().splitlines()[-1].split()[1])
    assert run.info.status == "FINISHED" and run.data.tags["zoo.model"] == "tinynet"
    assert run.data.metrics["test/acc"] > 0.9


@pytest.mark.slow
def test_a_decoupled_run_serves_the_last_layer_and_tau_its_test_split_scored(capsys):
    """crt and tau_norm act after training: what they pick is in the served checkpoint, so a
    user of the run predicts what the test split scored."""
    from runners import inference
    from zoo.tasks.classify import CRT_C_GRID, TAU_GRID, classification_metrics

    code, out, err = runner(capsys, "cnn", "data=synthart_lt", "data.size=200", "data.held_out_per_class=4",
                            "data.image_size=16", "train.epochs=2", "train.batch_size=32", "train.imbalance=crt",
                            "train.tau_norm=auto", "train.log_model=false", "train.system_metrics=false")
    assert code == 0, err
    run_id = out.strip().splitlines()[-1].split()[1]
    metrics = mlflow.get_run(run_id).data.metrics
    assert metrics["test/crt_C"] in CRT_C_GRID and metrics["test/tau_norm"] in TAU_GRID
    task, cfg, _ = inference.load(run_id)
    assert task.crt_head is not None and task.tau == metrics["test/tau_norm"]
    def predicted(split: str) -> tuple[np.ndarray, np.ndarray]:
        data = registry.dataset_of(cfg, split)
        images = torch.stack([data[i][0] for i in range(len(data))])
        return task.predict(images)["probabilities"].argmax(1), np.asarray(data.labels)

    preds, labels = predicted("test")
    assert (preds == labels).mean() == pytest.approx(metrics["test/acc"])
    # what a sweep ranks this run by is the served model's validation score, not the training's
    preds, labels = predicted("valid")
    served = classification_metrics(labels, preds, len(cfg["classes"]))["macro_f1"]
    assert metrics["val/macro_f1_best"] == pytest.approx(served)


@pytest.mark.slow
def test_a_run_stopped_during_its_analysis_stops_there_and_a_resume_scores_it_as_if_uninterrupted(monkeypatch):
    from zoo.tasks.reconstruct import Reconstruct

    args = ["train.umap=false", "seed=6"]
    whole = run("ae", *args)
    analyse = Reconstruct.finalize

    def stopped_midway(self, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)  # as `kill` or a scheduler would, while the analysis runs
        return analyse(self, **kwargs)

    monkeypatch.setattr(Reconstruct, "finalize", stopped_midway)
    with pytest.raises(train.Stopped) as stopped:
        train.train(config.resolve("ae", [*TINY, *args]))
    run_id = stopped.value.run_id
    assert mlflow.get_run(run_id).info.status == "KILLED"
    assert "test/psnr" not in mlflow.get_run(run_id).data.metrics, "it stopped before its scores"
    monkeypatch.setattr(Reconstruct, "finalize", analyse)
    resumed = train.train(config.resolve("ae", [*TINY, *args, f"resume={run_id}"]))
    assert resumed["run_id"] == run_id and mlflow.get_run(run_id).info.status == "FINISHED"
    scores = [k for k in whole if k.startswith("test/") and not k.endswith("_seconds")]
    assert "test/cluster_nmi_pca" in scores
    assert {k: resumed[k] for k in scores} == {k: whole[k] for k in scores}


@pytest.mark.slow
def test_torchrun_two_cpu_processes_train_one_run(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
         "-m", "runners.run", "cnn", *TINY, "train.imbalance=sampler"],
        capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    run_ids = [line.split()[1] for line in proc.stdout.splitlines() if line.startswith("run_id: ")]
    assert len(run_ids) == 1, "only rank 0 reports"
    # no bar is drawn into a pipe: rank 0 prints the epoch's progress as lines instead, each once
    shown = re.findall(r"^epoch 1, batch (\d+)/(\d+): loss=", proc.stdout, flags=re.M)
    assert shown and [int(b) for b, _ in shown] == list(range(1, int(shown[0][1]) + 1)), proc.stdout[-2000:]
    runs = MlflowClient().search_runs([e.experiment_id for e in MlflowClient().search_experiments()])
    assert len(runs) == 1
    r = runs[0]
    assert r.info.status == "FINISHED" and r.data.tags["zoo.world_size"] == "2"
    test_set = registry.dataset("synthart", split="test", image_size=32, size=100)
    assert len(test_set) % 2, "an odd count: one rank scores one more item"
    assert r.data.metrics["test/count"] == len(test_set), "every test item scored exactly once"


@pytest.mark.slow
def test_torchrun_trains_a_tasks_auxiliary_network_through_its_step_on_every_rank(tmp_path):
    """ae's style network, wrapped in DistributedDataParallel (it uses part of the copy), stepped by
    the runner's step on both ranks: one run, its style loss logged for every step it took."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
         "-m", "runners.run", "ae", *TINY, "train.epochs=1", "train.style_steps=2", "train.style_batch=8",
         "train.umap=false", "train.max_points=60"],
        capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    run_id = next(line.split()[1] for line in proc.stdout.splitlines() if line.startswith("run_id: "))
    style = MlflowClient().get_metric_history(run_id, "train/style_nce")
    assert [m.step for m in style] == [1, 2] and all(np.isfinite(m.value) for m in style)
    ckpt = torch.load(train.runs_root() / run_id / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["task"]["style_step"] == 2 and ckpt["auxiliary"]["style"]["optimizer"]["state"]


@pytest.mark.slow
def test_a_third_party_task_is_chosen_with_task_and_takes_its_parents_options(with_plugin, capsys):
    code, out, err = runner(capsys, "tinynet", "task=focal", "train.gamma=1", "train.imbalance=weights", "data=stripes",
                            "train.epochs=6", "train.batch_size=16", "train.lr=0.03")
    assert code == 0, err
    run = mlflow.get_run(out.strip().splitlines()[-1].split()[1])
    assert run.info.status == "FINISHED" and run.data.tags["zoo.task"] == "focal"
    assert run.data.params["task.name"] == "focal" and float(run.data.params["train.gamma"]) == 1.0
    assert run.data.params["train.imbalance"] == "weights"
    assert run.data.metrics["test/acc"] > 0.9
    code, out, _ = runner(capsys, "tinynet", "task=focal", "--help")
    assert code == 0 and "task focal (chosen with task=; the model's own is classify)" in out
    assert "train.gamma" in out and "train.logit_tau" in out


@pytest.mark.parametrize(("args", "words"), [
    (["cnn", "task=restyle"], ["task restyle cannot train model cnn", "style-conditioned autoencoder",
                               "has no encode or decode", "Leave task= out"]),
    (["ae", "task=classify"], ["task classify cannot train model ae", "B×8 logits", "gives 2×3×32×32"]),
    (["cond_ae", "task=reconstruct"], ["task reconstruct cannot train model cond_ae", "calling it raised TypeError"]),
    (["cnn", "task=clasify"], ["unknown task 'clasify'", "Did you mean classify"]),
    (["tinynet", "data=pixelstripes", "train.log_model=false"], ["dataset plugin 'pixelstripes'", "dtype torch.uint8"]),
    # a plugin task's own check of its settings taken together (Task.config_problem)
    (["tinynet", "task=focal", "train.imbalance=logit_adjust"], ["task focal", "train.imbalance=logit_adjust",
                                                                "focal loss"]),
    (["cond_ae", "train.judge_model=nosuchnet"], ["nosuchnet"]),
])
def test_a_task_or_dataset_that_does_not_fit_is_refused_before_a_run_is_made(with_plugin, capsys, args, words):
    code, _, err = runner(capsys, *args, *(TINY if "data=pixelstripes" not in args else []))
    assert code == 2, err
    for word in words:
        assert word in err, err
    assert "Traceback" not in err
    assert MlflowClient().search_runs([e.experiment_id for e in MlflowClient().search_experiments()]) == []


@pytest.mark.slow
def test_a_restyle_run_stopped_after_an_epoch_resumes_to_the_numbers_of_an_uninterrupted_one():
    # The critic is an auxiliary network of the task: the runner places it and keeps its
    # optimizer in the checkpoint, without which the resumed critic would start its Adam afresh.
    args = ["train.judge_steps=5", "train.umap=false", "seed=4"]
    whole = run("cond_ae", *args)

    def stop_after_the_first(epoch: int, val: dict) -> None:
        if epoch == 1:
            raise train.Pruned("stopped after epoch 1")

    with pytest.raises(train.Pruned) as stopped:
        train.train(config.resolve("cond_ae", [*TINY, *args]), on_epoch=stop_after_the_first)
    run_id = stopped.value.run_id
    assert mlflow.get_run(run_id).info.status == "KILLED"
    ckpt = torch.load(train.runs_root() / run_id / "checkpoints" / "last.pt", weights_only=True)
    critic = ckpt["auxiliary"]["critic"]
    assert set(ckpt["auxiliary"]) == {"critic"} and critic["optimizer"]["state"]  # Adam's moments
    assert critic["scheduler"]["_step_count"] > 1, "its schedule stepped with it (a constant rate)"
    assert "critic" in ckpt["task"]
    # the exemplar tiles are in the averaged model once, not again beside it in the trained one
    assert "exemplars.tiles" in ckpt["model"] and "exemplars.tiles" not in ckpt["model_raw"]

    resumed = train.train(config.resolve("cond_ae", [*TINY, *args, f"resume={run_id}"]))
    assert resumed["run_id"] == run_id and mlflow.get_run(run_id).info.status == "FINISHED"
    scores = [k for k in whole if k.startswith("test/") and not k.endswith("_seconds")]
    assert "test/restyle_acc" in scores
    assert {k: resumed[k] for k in scores} == {k: whole[k] for k in scores}
