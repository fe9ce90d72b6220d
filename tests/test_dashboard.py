"""The dashboard, rendered by Streamlit's AppTest against stores filled by real runs of the runner.

One store holds a tiny run of every built-in entry plus a multi-seed group; another holds a run
that failed (a third-party model that breaks on purpose) and one that was stopped mid-training;
the third is empty. Training is the slow part, so each store is filled once per module.
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import mlflow
from mlflow.tracking import MlflowClient
from PIL import Image
from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage
from streamlit.testing.v1 import AppTest

import registry
from conftest import REPO, array, free_port, plugin_env, plugin_installed, use_store
from images import png_header
from zoo.schema import Artifact

APP = REPO / "dashboard" / "app.py"
PAGES = ["views/runs.py", "views/run.py", "views/clusters.py", "views/restyle.py"]
TIMEOUT = 90  # a cold page imports torch, plotly and umap on a busy CI machine
# Tiny runs on scikit-learn's digits: a few steps, 16 px, yet every artifact of the schema.
TINY = ["train.log_model=false", "data=digits", "data.image_size=16", "train.epochs=1", "train.batch_size=32", "train.max_steps_per_epoch=3",
        "train.log_every=1"]
EXTRA = {"ae": ["train.epochs=2", "train.max_points=120"], "cond_ae": ["train.judge_steps=10"]}
BUILTIN_MODELS = [name for name, e in registry.entries("model").items() if e.dist == "artzoo"]


# -- stores ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def filled(tmp_path_factory, session_cache, empty_store) -> dict[str, str]:
    """A store with one finished run per built-in entry (by name) and a two-seed group ("seeds")."""
    from runners import config, seeds, train

    folder = tmp_path_factory.mktemp("filled_store")
    with pytest.MonkeyPatch.context() as mp:
        uri = use_store(mp, folder, empty_store, session_cache)
        ids = {entry: train.train(config.resolve(entry, TINY + EXTRA.get(entry, [])))["run_id"]
               for entry in BUILTIN_MODELS}
        ids["seeds"] = seeds.train_seeds(config.resolve("cnn", [*TINY, "seeds=0,1"]))["run_id"]
    return {"uri": uri, **ids}


@pytest.fixture(scope="module")
def broken(tmp_path_factory, session_cache, empty_store, plugin_site) -> dict[str, str]:
    """A store with a FAILED run (failnet raises at its 2nd step) and a KILLED cond_ae run."""
    folder = tmp_path_factory.mktemp("broken_store")
    with pytest.MonkeyPatch.context() as mp:
        uri = use_store(mp, folder, empty_store, session_cache)
        # in this process (a subprocess costs its imports); test_runner checks the exit status
        from runners.run import main

        with plugin_installed(plugin_site, mp):
            assert main(["failnet", "model.fail_at=2", *TINY]) == 1
        env = plugin_env(plugin_site)
        # SIGTERM once the first epoch is logged: the run keeps its checkpoint and early images
        # but never reaches its test evaluation (no scores, no restyle/test.npz, no embeddings).
        proc = subprocess.Popen([sys.executable, "-m", "runners.run", "cond_ae", *TINY, *EXTRA["cond_ae"],
                                 "train.epochs=200", "train.max_steps_per_epoch=1"],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("epoch 1/"):
                proc.send_signal(signal.SIGTERM)
                break
        out = proc.communicate(timeout=300)[0]
        assert proc.returncode == 128 + signal.SIGTERM, "".join(lines) + out
    by_status = {r.info.status: r.info.run_id for r in MlflowClient(uri).search_runs(
        [e.experiment_id for e in MlflowClient(uri).search_experiments()])}
    return {"uri": uri, "failed": by_status["FAILED"], "killed": by_status["KILLED"]}


# -- rendering -----------------------------------------------------------------------------------


@pytest.fixture
def media(monkeypatch) -> dict[str, bytes]:
    """The bytes behind every image URL a page shows (AppTest keeps only the URLs)."""
    seen: dict[str, bytes] = {}
    original = MemoryMediaFileStorage.get_url

    def get_url(self, file_id: str) -> str:
        url = original(self, file_id)
        seen[url] = self.get_file(file_id).content
        return url

    monkeypatch.setattr(MemoryMediaFileStorage, "get_url", get_url)
    return seen


@pytest.fixture
def open_page(monkeypatch):
    """Open a page as a user does: ``?run=<id>`` in the URL, as the Runs page links it."""

    def open_(uri: str, page: str, run_id: str | None = None) -> AppTest:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
        if run_id:
            at.query_params["run"] = run_id
        at.switch_page(page).run()
        assert not at.exception, [e.value for e in at.exception]
        return at

    return open_


def picture(at: AppTest, media: dict[str, bytes], caption: str) -> np.ndarray:
    """The pixels of the image shown with a caption that starts with ``caption``."""
    for element in at.image:
        for url, cap in zip(element.value, element.captions):
            if cap.startswith(caption):
                return np.asarray(Image.open(io.BytesIO(media[url])).convert("RGB"))
    raise AssertionError(f"no image captioned {caption!r}; captions: {[c for e in at.image for c in e.captions]}")


def figure(chart) -> dict:
    """The Plotly figure a chart element sends to the browser."""
    return json.loads(chart.proto.spec)


def texts(at: AppTest) -> str:
    return "\n".join(e.value for kind in ("info", "warning", "error", "markdown", "caption", "code")
                     for e in getattr(at, kind))


# -- the filled store ------------------------------------------------------------------------------


@pytest.mark.slow
def test_every_page_renders_for_every_run(filled, open_page):
    for run_id in [v for k, v in filled.items() if k != "uri"]:
        for page in PAGES:
            at = open_page(filled["uri"], page, run_id)
            assert not at.error, (page, run_id, [e.value for e in at.error])
            if page != PAGES[0]:
                assert at.sidebar.selectbox[0].value == run_id, "the ?run= link picks the run"


@pytest.mark.slow
def test_runs_table_lists_every_run_with_its_scores_and_the_seed_group(filled, open_page):
    at = open_page(filled["uri"], PAGES[0])
    table = at.dataframe[0].value.set_index("id")
    client = MlflowClient(filled["uri"])
    runs = {r.info.run_id: r for r in client.search_runs([e.experiment_id for e in client.search_experiments()])}
    assert sorted(table.index) == sorted(runs) and len(runs) == len(BUILTIN_MODELS) + 3
    assert set(table["model"]) == set(BUILTIN_MODELS) and set(table["status"]) == {"FINISHED"}
    for entry, metric in [("cnn", "test/acc"), ("ae", "test/cluster_nmi_pca"), ("cond_ae", "test/restyle_acc")]:
        assert table.loc[filled[entry], metric] == pytest.approx(runs[filled[entry]].data.metrics[metric])

    kids = [r.data.metrics["test/acc"] for r in runs.values() if r.data.tags.get("mlflow.parentRunId") == filled["seeds"]]
    assert len(kids) == 2 and table.loc[filled["seeds"], "seeds"] == "2 seeds (mean)"
    assert table.loc[filled["seeds"], "test/acc"] == pytest.approx(np.mean(kids))
    assert (table["seeds"] == f"in {runs[filled['seeds']].info.run_name}").sum() == 2
    group = at.expander[0].dataframe[0].value.set_index("metric")
    assert group.loc["test/acc", "mean ± std"] == f"{np.mean(kids):.4g} ± {np.std(kids, ddof=1):.2g}"


@pytest.mark.slow
def test_selected_runs_overlay_their_curves(filled, open_page):
    at = open_page(filled["uri"], PAGES[0])
    ids = list(at.dataframe[0].value["id"])
    rows = [ids.index(filled["cnn"]), ids.index(filled["ae"])]
    at.session_state["runs_table"] = {"selection": {"rows": rows, "columns": [], "cells": []}}
    at.run()
    assert not at.exception
    chart = figure(at.get("plotly_chart")[0])
    assert len(chart["data"]) == 2 and chart["layout"]["yaxis"]["title"]["text"] == "train/loss"
    cnn = next(t for t in chart["data"] if filled["cnn"][:6] in t["name"])
    history = sorted(MlflowClient(filled["uri"]).get_metric_history(filled["cnn"], "train/loss"), key=lambda m: m.step)
    assert np.allclose(array(cnn["y"]), [m.value for m in history]) and len(history) == 3


@pytest.mark.slow
def test_run_page_shows_a_classifiers_scores_confusion_matrix_and_per_class_table(filled, open_page):
    at = open_page(filled["uri"], "views/run.py", filled["cnn"])
    scores = MlflowClient(filled["uri"]).get_run(filled["cnn"]).data.metrics
    shown = {m.label: m.value for m in at.metric}
    assert shown["acc"] == f"{scores['test/acc']:.4g}" and "macro_f1" in shown and "balanced_acc" in shown
    curves = next(m for m in at.multiselect if m.label == "Curves")  # curves, not the one-number best
    assert "train/loss" in curves.value and "val/macro_f1" in curves.value
    assert "val/macro_f1_best" in curves.options and "val/macro_f1_best" not in curves.value
    classes = [str(d) for d in range(10)]
    per_class = at.tabs[2].dataframe[0].value
    assert list(per_class["class"]) == classes
    assert list(per_class.columns) == ["class", "precision", "recall", "f1", "support", "train_count", "shots"]
    assert per_class["support"].sum() == scores["test/count"]
    train_counts = registry.dataset("digits", split="train", image_size=16).class_counts()
    assert per_class["train_count"].tolist() == train_counts.tolist()
    confusion = figure(next(c for c in at.get("plotly_chart") if "confusion" in c.proto.id))
    assert array(confusion["data"][0]["z"]).sum() == scores["test/count"]
    # beside it, each class's test recall against its training count, on a log axis
    by_count = figure(next(c for c in at.get("plotly_chart") if "recall_vs_count" in c.proto.id))
    assert by_count["layout"]["xaxis"]["type"] == "log"
    points = {name: (x, y) for trace in by_count["data"] for name, x, y in zip(trace["text"], array(trace["x"]), array(trace["y"]))}
    assert points == {c: (n, pytest.approx(r)) for c, n, r in zip(classes, train_counts, per_class["recall"])}
    params = at.tabs[3].dataframe[0].value
    assert dict(zip(params["key"], params["value"]))["data.image_size"] == "16"


@pytest.mark.slow
def test_run_page_of_a_multi_seed_group_shows_mean_and_std_and_links_its_seeds(filled, open_page):
    at = open_page(filled["uri"], "views/run.py", filled["seeds"])
    metrics = MlflowClient(filled["uri"]).get_run(filled["seeds"]).data.metrics
    assert at.subheader[0].value == "Over 2 seeds (mean ± std)"
    shown = {m.label: m.value for m in at.metric}
    assert shown["acc"] == f"{metrics['test/acc_mean']:.4g} ± {metrics['test/acc_std']:.2g}"
    assert [link.label for link in at.get("page_link")] == ["cnn-seed0", "cnn-seed1"]


@pytest.mark.slow
def test_a_tasks_headline_metrics_lead_its_runs_table_and_run_page(filled, open_page):
    from zoo.tasks.restyle import Restyle

    metrics = MlflowClient(filled["uri"]).get_run(filled["cond_ae"]).data.metrics
    assert "test/psnr" in metrics and "train/g_rec" in metrics  # what misled the old pages
    headline = [m for m in Restyle.headline_metrics if f"test/{m}" in metrics]
    assert headline[0] == "restyle_acc"

    at = open_page(filled["uri"], PAGES[0])
    next(m for m in at.multiselect if m.label == "Model").set_value(["cond_ae"]).run()
    columns = list(at.dataframe[0].value.columns)
    assert columns[columns.index("seeds") + 1 : -1] == [f"test/{m}" for m in headline]

    at = open_page(filled["uri"], "views/run.py", filled["cond_ae"])
    assert at.subheader[0].value == "Test scores", "one run, not a seed group"
    assert [m.label for m in at.metric] == headline  # the headline as tiles, whole names, each with what it says
    assert any(c.value.startswith("share of the test paintings") and c.value.endswith("chance 0.1")
               for c in at.caption), "ten digits: chance is one in ten"
    rest = at.expander[0].dataframe[0].value  # the other scores, in a table
    assert "psnr" in list(rest["test metric"]) and "restyle_acc" not in list(rest["test metric"])
    # its Classes tab: the per-style table, not a word on confusion matrices
    per_style = at.tabs[2].dataframe[0].value
    assert {"style", "panel", "acc_cnn"} <= set(per_style.columns)


@pytest.mark.slow
def test_run_page_slides_over_the_epochs_of_an_image_grid(filled, media, open_page):
    at = open_page(filled["uri"], "views/run.py", filled["ae"])
    slider = at.select_slider(key="epoch_reconstruction")
    assert slider.options == ["0", "1", "2"] and slider.value == 2  # from the model before training on
    last = picture(at, media, "reconstruction, epoch 2")
    slider.set_value(0).run()
    untrained = picture(at, media, "reconstruction, before training")
    slider.set_value(1).run()
    first = picture(at, media, "reconstruction, epoch 1")
    assert first.shape == last.shape and not np.array_equal(first, last) and not np.array_equal(untrained, first)


@pytest.mark.slow
def test_clusters_page_compares_the_embeddings_and_finds_similar_paintings(filled, media, open_page, tmp_path):
    at = open_page(filled["uri"], "views/clusters.py", filled["ae"])
    metrics = MlflowClient(filled["uri"]).get_run(filled["ae"]).data.metrics
    scores = at.dataframe[0].value
    assert list(scores.index) == ["style statistics", "content code", "untrained network's style statistics",
                                  "raw pixels"]
    for row, prefix, name in [("style statistics", "style_", "style"), ("content code", "", "code"),
                              ("raw pixels", "baseline_", "baseline")]:
        assert scores.loc[row, "NMI (PCA)"] == f"{metrics[f'test/{prefix}cluster_nmi_pca']:.3f}"
        assert scores.loc[row, "precision@10"] == f"{metrics[f'test/{name}_p_at_10']:.3f}"
    # UMAP lays out the code and the style statistics only: the baselines' cells are a dash, not "None"
    assert list(scores["NMI (UMAP)"][2:]) == ["–", "–"]
    # the style statistics first, compared with the pixels in the same space
    assert at.metric[0].label == "NMI (PCA)" and at.metric[0].value == f"{metrics['test/style_cluster_nmi_pca']:.4g}"
    gap = metrics["test/style_cluster_nmi_pca"] - metrics["test/baseline_cluster_nmi_pca"]
    assert at.metric[0].proto.delta == f"{gap:+.3f} vs pixels (PCA)"
    scatter = figure(at.get("plotly_chart")[0])
    assert sum(len(array(t["x"])) for t in scatter["data"]) == 120  # train.max_points
    assert {t["name"] for t in scatter["data"]} == {str(d) for d in range(10)}

    # similar paintings: the ten nearest of the one asked about, in the chosen embedding
    emb = np.load(mlflow.artifacts.download_artifacts(run_id=filled["ae"], artifact_path="embeddings/test.npz",
                                                      tracking_uri=filled["uri"], dst_path=str(tmp_path)),
                  allow_pickle=False)
    at.selectbox(key="query_style").set_value(5).run()
    near = emb["neighbours_style"][5]
    captions = [c for e in at.image for c in e.captions if re.match(r"\d+\. ", c)]
    assert captions[:10] == [f"{r + 1}. {emb['labels'][i]}" + (" ✓" if emb["labels"][i] == emb["labels"][5] else "")
                             for r, i in enumerate(near)]
    share = int((emb["labels"][near] == emb["labels"][5]).sum())
    assert f"{share} of 10 share its style" in texts(at)
    # a point clicked on the layout is the painting asked about (the chart's selection, as the browser sends it)
    at.session_state["scatter_style_pca_style"] = {"selection": {"points": [{"customdata": [17]}],
                                                                 "point_indices": [17], "box": [], "lasso": []}}
    at.run()
    assert at.selectbox(key="query_style").value == 17
    captions = [c for e in at.image for c in e.captions if re.match(r"\d+\. ", c)]
    assert captions[0] == f"1. {emb['labels'][emb['neighbours_style'][17][0]]}" + (
        " ✓" if emb["labels"][emb["neighbours_style"][17][0]] == emb["labels"][17] else "")

    at.radio[0].set_value("code").run()
    at.radio[1].set_value("umap").run()
    at.radio[2].set_value("k-means cluster").run()
    assert not at.exception and at.metric[0].value == f"{metrics['test/cluster_nmi_umap']:.4g}"
    assert not at.metric[0].proto.delta, "no pixels' UMAP to compare with: no gap shown against their PCA"
    scatter = figure(at.get("plotly_chart")[0])
    assert all(t["name"].startswith("cluster ") for t in scatter["data"])
    members = [c for e in at.image for c in e.captions if " · c" in c]
    assert members
    assert picture(at, media, members[0]).shape == (32, 32, 3)


@pytest.mark.slow
def test_restyle_page_repaints_a_test_image_live_and_blends_two_styles(filled, media, open_page):
    at = open_page(filled["uri"], "views/restyle.py", filled["cond_ae"])
    source = picture(at, media, "source")
    assert source.shape == (16, 16, 3)
    at.selectbox(key="target").set_value(3).run()
    pure3 = picture(at, media, "3 · live")
    assert pure3.shape == (16, 16, 3) and not np.array_equal(pure3, source)
    at.selectbox(key="target").set_value(7).run()
    pure7 = picture(at, media, "7 · live")
    assert not np.array_equal(pure3, pure7), "the label changes the picture"

    at.selectbox(key="blend").set_value(3).run()
    at.slider(key="share").set_value(0.5).run()
    half = picture(at, media, "50% 7 + 50% 3 · live")  # a blend is named by what each style weighs
    assert not np.array_equal(half, pure7) and not np.array_equal(half, pure3)
    at.slider(key="share").set_value(0.1).run()
    assert picture(at, media, "90% 7 + 10% 3 · live").shape == (16, 16, 3)
    at.slider(key="share").set_value(0.0).run()
    assert np.array_equal(picture(at, media, "100% 7 + 0% 3 · live"), pure7)
    assert at.download_button[0].label == "Download"
    # every style in a strip, as `runners.predict --style all` writes them
    strip = [c for e in at.image for c in e.captions if c.endswith(" · every style")]
    assert strip == [f"{s} · every style" for s in range(10)]
    assert np.array_equal(picture(at, media, "7 · every style"), pure7)


@pytest.mark.slow
def test_restyle_page_shows_the_ground_truth_of_the_style_chosen(media, open_page, tmp_path):
    from runners import config, train
    from zoo.tasks.restyle import render_all
    from zoo.task import to_uint8

    run_id = train.train(config.resolve("cond_ae", ["data.size=64", "data.image_size=16", "train.epochs=1",
                                                    "train.max_steps_per_epoch=2", "train.judge_steps=5",
                                                    "train.umap=false", "train.log_model=false"]))["run_id"]
    logged = np.load(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="restyle/test.npz",
                                                         dst_path=str(tmp_path)))
    classes = [str(c) for c in logged["classes"]]
    cfg = json.loads(Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="config.json",
                                                              dst_path=str(tmp_path))).read_text())
    test = registry.dataset_of(cfg, "test")
    at = open_page(os.environ["MLFLOW_TRACKING_URI"], "views/restyle.py", run_id)
    at.number_input(key="item").set_value(2).run()
    own = int(logged["targets"][2])
    other = next(s for s in range(len(classes)) if s not in (own, int(logged["labels"][2])))
    for style, logged_shown in ((other, False), (own, True)):
        at.selectbox(key="target").set_value(style).run()
        truth = picture(at, media, f"ground truth · {classes[style]}")
        np.testing.assert_array_equal(truth, to_uint8(render_all(test, [2], [style]))[0])  # the scene, in that style
        if style == own:  # the very truth the run scored its own restyle against
            np.testing.assert_array_equal(truth, logged["ground_truth"][2])
        captions = [c for e in at.image for c in e.captions]
        assert (f"logged · {classes[style]}" in captions) == logged_shown, "the run's own restyle, for its style only"


@pytest.mark.slow
def test_restyle_page_shows_each_judges_accuracy_per_target_style(filled, open_page):
    at = open_page(filled["uri"], "views/restyle.py", filled["cond_ae"])
    table = next(d.value for d in at.dataframe if "panel" in d.value.columns)
    metrics = MlflowClient(filled["uri"]).get_run(filled["cond_ae"]).data.metrics
    judges = sorted(k.removeprefix("test/restyle_acc_by_") for k in metrics if k.startswith("test/restyle_acc_by_"))
    assert judges == ["cnn", "timm_net"], "the default panel: two judges of different architectures"
    assert (table["panel"] == table[["acc_cnn", "acc_timm_net"]].min(axis=1)).all()
    assert metrics["test/restyle_acc_panel"] == pytest.approx(table["panel"].mean(), abs=1e-4)
    chart = figure(next(c for c in at.get("plotly_chart") if "acc_by_style" in c.proto.id))
    bars = {t["name"]: (list(t["y"]), array(t["x"])) for t in chart["data"]}
    assert bars.keys() == {"cnn", "timm_net"}
    styles, accs = bars["timm_net"]
    assert styles == list(table["style"]) and np.allclose(accs, table["acc_timm_net"])


@pytest.mark.slow
def test_restyle_page_shows_the_unseen_judges_and_the_marks_evidence_per_style(open_page):
    from runners import config, train

    run_id = train.train(config.resolve("cond_ae", ["train.log_model=false", "data.size=100", "data.image_size=16",
                                                    "train.epochs=1", "train.max_steps_per_epoch=3",
                                                    "train.judge_steps=10", "train.umap=false"]))["run_id"]
    at = open_page(os.environ["MLFLOW_TRACKING_URI"], "views/restyle.py", run_id)
    table = next(d.value for d in at.dataframe if "panel_unseen" in d.value.columns)
    assert (table["panel_unseen"] == table[["acc_unseen_cnn", "acc_unseen_timm_net"]].min(axis=1)).all()
    accs = figure(next(c for c in at.get("plotly_chart") if "acc_by_style" in c.proto.id))
    assert {t["name"] for t in accs["data"]} == {"cnn", "timm_net", "unseen_cnn", "unseen_timm_net"}
    marks = figure(next(c for c in at.get("plotly_chart") if "marks_by_style" in c.proto.id))
    bars = {t["name"]: (list(t["y"]), array(t["x"])) for t in marks["data"]}
    assert bars.keys() == {"texture_ratio", "texture_ratio_resample", "copy_rate", "copy_rate_truth"}
    styles, ratios = bars["texture_ratio"]
    assert styles == list(table["style"]) and np.allclose(ratios, table["texture_ratio"])
    assert any("never saw" in c.value for c in at.caption) and any("copy_rate_truth" in c.value for c in at.caption)


@pytest.mark.slow
def test_restyle_page_paints_a_styles_marks_from_the_users_own_paintings(filled, media, open_page, tmp_path):
    from runners.inference import load
    from zoo.task import to_uint8

    at = open_page(filled["uri"], "views/restyle.py", filled["cond_ae"])
    at.selectbox(key="target").set_value(3).run()
    live = [c for e in at.image for c in e.captions if "live" in c][0]
    before = picture(at, media, live)
    flat = []  # paintings without marks, and a file that is none
    for colour in ((200, 30, 30), (30, 30, 200)):
        png = io.BytesIO()
        Image.fromarray(np.full((24, 24, 3), colour, np.uint8)).save(png, "PNG")
        flat.append((f"{colour}.png", png.getvalue(), "image/png"))
    at.file_uploader(key="exemplars").set_value([*flat, ("notes.png", b"not a picture", "image/png")]).run()
    assert not at.exception
    assert any("1 of the 3 files are not pictures" in w.value for w in at.warning)
    classes = json.loads(MlflowClient(filled["uri"]).get_run(filled["cond_ae"]).data.tags["zoo.classes"])
    own = picture(at, media, f"{classes[3]} · marks from your 2 paintings")
    saved = mlflow.artifacts.download_artifacts(run_id=filled["cond_ae"], artifact_path="restyle/test.npz",
                                                tracking_uri=filled["uri"], dst_path=str(tmp_path / "saved"))
    with np.load(saved, allow_pickle=False) as logged:  # the test image the page shows first
        x = torch.from_numpy(logged["images"][0]).permute(2, 0, 1)[None].float() / 255
    task, _, _ = load(filled["cond_ae"], client=MlflowClient(filled["uri"]))
    with torch.no_grad():  # flat paintings carry no marks: the smooth image alone is painted
        smooth = to_uint8(task.net.smooth(task.net.encode(x), torch.tensor([3])).clamp(0, 1))[0]
    assert np.abs(own.astype(int) - smooth).max() <= 1 and not np.array_equal(own, before)
    assert np.array_equal(picture(at, media, live), before), "the run's own model is left as it was"


@pytest.mark.slow
def test_restyle_page_takes_an_uploaded_picture_and_refuses_a_broken_one(filled, media, open_page):
    at = open_page(filled["uri"], "views/restyle.py", filled["cond_ae"])
    at.radio(key="source").set_value("your own picture").run()
    photo = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (60, 90, 3), dtype=np.uint8)).save(photo, "JPEG")
    at.file_uploader[0].upload("holiday.jpg", photo.getvalue(), "image/jpeg").run()
    assert not at.exception and not at.error
    assert picture(at, media, "your picture").shape == (60, 90, 3)  # as it is, not the run's 16×16
    captions = [c for e in at.image for c in e.captions if "live" in c]
    assert len(captions) == 2, captions  # the marks as large as in training, relative to it, and at 16 px
    assert "marks as in training (×3.75)" in captions[0] and "marks at their trained size (×1)" in captions[1]
    auto, fine = (picture(at, media, c) for c in captions)
    assert auto.shape == fine.shape == (60, 90, 3) and not np.array_equal(auto, fine)
    assert [b.label for b in at.download_button] == ["Download", "Download"]
    assert at.selectbox(key="side").options == ["its own size (90×60)"]  # nothing above its own size

    from sklearn.datasets import load_sample_image

    photo = io.BytesIO()
    Image.fromarray(load_sample_image("china.jpg")[:300, :450]).save(photo, "JPEG")
    at.file_uploader[0].upload("china.jpg", photo.getvalue(), "image/jpeg").run()
    assert at.selectbox(key="side").options == ["its own size (450×300)", "256 px on its short side"]
    at.selectbox(key="side").set_value(256).run()
    assert picture(at, media, "your picture").shape == (256, 384, 3)
    assert picture(at, media, next(c for e in at.image for c in e.captions if "live" in c)).shape == (256, 384, 3)

    at.file_uploader[0].upload("notes.png", b"these are not pixels", "image/png").run()
    assert not at.exception
    assert "notes.png cannot be used: not an image" in at.error[0].value


@pytest.mark.slow
def test_restyle_page_caps_uploads_in_bytes_and_refuses_a_decompression_bomb(filled, open_page):
    at = open_page(filled["uri"], "views/restyle.py", filled["cond_ae"])
    at.radio(key="source").set_value("your own picture").run()
    assert at.file_uploader[0].proto.max_upload_size_mb == 20
    # 81 megapixels declared in a 100-byte PNG: over the page's cap (64 MP, under Pillow's own
    # bomb limit), refused before a pixel is decoded
    at.file_uploader[0].upload("bomb.png", png_header(9_000, 9_000), "image/png").run()
    assert not at.exception
    assert "bomb.png cannot be used: too large: 9000×9000 = 81,000,000 pixels, over the limit of 64,000,000" \
        in at.error[0].value


@pytest.mark.slow
def test_artifacts_are_downloaded_once_into_the_cache_and_never_outside_it(filled):
    from dashboard import store

    uri, run_id = filled["uri"], filled["cnn"]
    first = store.artifact(uri, run_id, "tables/per_class.csv")
    assert first.is_relative_to(store.artifact_cache(uri)) and first.read_text().startswith("class,")
    stamp = first.stat().st_mtime_ns
    assert store.artifact(uri, run_id, "tables/per_class.csv").stat().st_mtime_ns == stamp
    assert store.artifact(uri, run_id, "tables/nothing.csv") is None
    for bad in ("../../../etc/passwd", "/etc/passwd"):
        with pytest.raises(ValueError, match="leaves the run's artifact folder"):
            store.artifact(uri, run_id, bad)
    with pytest.raises(ValueError, match="not a run id"):
        store.artifact(uri, "../x", "config.json")


# -- runs logged by hand ---------------------------------------------------------------------------


def logged_run(name: str, task: str, metrics: dict[str, float], files: dict[str, str] | None = None) -> str:
    """A finished run in the test's own store, made with MLflow's client alone (no training)."""
    client = MlflowClient()
    run_id = client.create_run("0", run_name=name, tags={"zoo.task": task, "zoo.model": "handmade"}).info.run_id
    for key, value in metrics.items():
        client.log_metric(run_id, key, value)
    for path, text in (files or {}).items():
        local = Path(run_id) / path
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_text(text)
        client.log_artifact(run_id, str(local), str(Path(path).parent))
    client.set_terminated(run_id)
    return run_id


def test_a_metric_named_like_a_seed_mean_is_an_ordinary_metric(open_page):
    uri = os.environ["MLFLOW_TRACKING_URI"]
    run_id = logged_run("single", "restyle", {"train/g_texture_mean": 0.5, "test/foo_mean": 0.25,
                                              "test/restyle_acc": 0.75})
    at = open_page(uri, "views/run.py", run_id)
    assert [h.value for h in at.subheader][:1] == ["Test scores"]
    assert {m.label: m.value for m in at.metric} == {"restyle_acc": "0.75"}
    rest = at.expander[0].dataframe[0].value
    assert dict(zip(rest["test metric"], rest["value"])) == {"foo_mean": "0.25"}

    at = open_page(uri, PAGES[0])
    more = next(m for m in at.multiselect if m.label == "More metric columns")
    assert more.options == ["test/foo_mean"]
    more.set_value(["test/foo_mean"]).run()
    row = at.dataframe[0].value.set_index("id").loc[run_id]
    assert row["seeds"] == "" and row["test/foo_mean"] == 0.25 and row["test/restyle_acc"] == 0.75
    assert "Multi-seed runs" not in [h.value for h in at.header]


def test_a_headline_score_says_what_doing_nothing_and_a_perfect_answer_score(open_page):
    run_id = logged_run("bounded", "restyle", {"test/restyle_psnr_gt": 24.5, "test/restyle_psnr_gt_baseline": 23.95,
                                               "test/restyle_psnr_gt_resample": 25.78})
    at = open_page(os.environ["MLFLOW_TRACKING_URI"], "views/run.py", run_id)
    caption = next(c.value for c in at.caption if c.value.startswith("dB between a restyle and the true painting"))
    assert caption.endswith("higher is closer; baseline 23.95, ceiling 25.78")


def test_a_run_whose_task_is_not_installed_shows_its_scores_sorted(open_page):
    run_id = logged_run("elsewhere", "nosuchtask", {"test/b": 2.0, "test/a": 1.0})
    at = open_page(os.environ["MLFLOW_TRACKING_URI"], "views/run.py", run_id)
    assert not at.metric and list(at.expander[0].dataframe[0].value["test metric"]) == ["a", "b"]


def test_a_link_to_a_run_the_store_lacks_says_so(open_page):
    logged_run("newer", "classify", {"test/acc": 0.6})
    at = open_page(os.environ["MLFLOW_TRACKING_URI"], "views/run.py", "0" * 32)
    assert f"No run `{'0' * 32}` in this tracking store" in at.warning[0].value


def test_a_run_id_link_opens_the_run_and_the_url_is_rewritten_to_run():
    older = logged_run("older", "classify", {"test/acc": 0.5})
    logged_run("newer", "classify", {"test/acc": 0.6})
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.query_params["run_id"] = older
    at.switch_page("views/run.py").run()
    assert not at.exception
    assert at.sidebar.selectbox[0].value == older and at.title[0].value == "older"
    assert dict(at.query_params) == {"run": older}


def test_the_per_class_table_shows_whole_class_names(open_page):
    names = ["horizontal", "vertical", "Abstract_Expressionism"]
    csv = "class,precision,recall,f1,support\n" + "".join(f"{n},0.5,0.5,0.5,10\n" for n in names)
    run_id = logged_run("styles", "classify", {"test/acc": 0.5}, {"tables/per_class.csv": csv})
    table = open_page(os.environ["MLFLOW_TRACKING_URI"], "views/run.py", run_id).tabs[2].dataframe[0]
    assert list(table.value["class"]) == names
    assert json.loads(table.proto.columns)["class"]["width"] == "large", "wide enough for a style's name"


# -- failed, killed and empty --------------------------------------------------------------------


@pytest.mark.slow
def test_a_failed_run_shows_its_error_and_what_it_has(broken, open_page):
    at = open_page(broken["uri"], "views/run.py", broken["failed"])
    assert "failnet broke on purpose" in at.error[0].value
    assert "No test scores" in texts(at)
    for page in ("views/clusters.py", "views/restyle.py"):
        at = open_page(broken["uri"], page, broken["failed"])
        assert not at.error or "failnet broke on purpose" in at.error[0].value


@pytest.mark.slow
def test_a_killed_run_shows_its_curves_and_can_still_restyle_an_upload(broken, media, open_page):
    uri, run_id = broken["uri"], broken["killed"]
    at = open_page(uri, "views/run.py", run_id)
    assert "stopped before its end" in at.warning[0].value and f"resume={run_id}" in at.warning[0].value
    assert at.get("plotly_chart"), "the curves logged before the stop"
    grid = picture(at, media, "restyle, epoch 1")
    assert grid.shape[1] > 16 * 11  # the source, then each of 10 styles, and the rows' names left of them

    at = open_page(uri, "views/clusters.py", run_id)
    assert "has no `embeddings/test.npz`" in texts(at) and "checkpoints/" in texts(at)

    at = open_page(uri, "views/restyle.py", run_id)
    assert at.radio(key="source").options == ["your own picture"], "no logged test images to choose from"
    photo = io.BytesIO()
    Image.new("RGB", (40, 40), (200, 30, 30)).save(photo, "PNG")
    at.file_uploader[0].upload("red.png", photo.getvalue(), "image/png").run()
    restyled = next(c for e in at.image for c in e.captions if "live" in c)
    assert picture(at, media, restyled).shape == (40, 40, 3)  # at the upload's own size


@pytest.mark.parametrize("page", PAGES)
def test_an_empty_store_says_how_to_make_the_first_run(page, tmp_path, open_page):
    at = open_page(f"sqlite:///{tmp_path / 'mlflow.db'}", page)  # the test's own store: made, but empty
    assert "python -m runners.run cond_ae" in [c.value for c in at.code]
    missing = tmp_path / "nowhere" / "mlflow.db"
    at = open_page(f"sqlite:///{missing}", page)
    assert "python -m runners.run cond_ae" in [c.value for c in at.code]
    assert not missing.parent.exists(), "looking must not create a store"


def test_an_unreachable_tracking_server_is_named_without_a_traceback(open_page):
    port = free_port()  # closed again: nothing listens there
    at = open_page(f"http://127.0.0.1:{port}", "views/run.py")
    assert f"the tracking server at http://127.0.0.1:{port} does not answer" in at.error[0].value


def _listening(port: int) -> set[str]:
    """The local addresses with a socket listening on ``port`` (from /proc/net/tcp and tcp6)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, _, hex_port = local.partition(":")
            if state == "0A" and int(hex_port, 16) == port:
                found.add(address)
    return found


@pytest.mark.slow
def test_the_served_dashboard_listens_on_this_machine_only(tmp_path):
    # Started from another folder, as `streamlit run dashboard/app.py` from anywhere: the
    # settings beside app.py (dashboard/.streamlit/config.toml) still apply.
    import tomllib

    settings = tomllib.loads((REPO / "dashboard" / ".streamlit" / "config.toml").read_text())["server"]
    assert settings["address"] == "127.0.0.1" and settings["maxUploadSize"] == 20
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(APP), "--server.port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path)
    try:
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if "URL:" in line or proc.poll() is not None:
                break
        deadline = time.time() + 30
        while not _listening(port) and time.time() < deadline:
            time.sleep(0.2)
        assert _listening(port) == {"0100007F"}, ("".join(lines), _listening(port))  # 127.0.0.1, nothing else
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_pages_choose_what_to_show_by_what_a_task_declares_not_by_its_name(with_plugin):
    from dashboard import ui

    assert ui.reports("restyle", "test/restyle_acc") and not ui.reports("reconstruct", "test/restyle_acc")
    # a third party's classify subclass gets the classifier's views
    assert ui.reports("focal", "test/acc") and not ui.reports("focal", "test/restyle_acc")
    assert not ui.reports("nosuchtask", "test/acc")
    # and their views by the artifacts a task declares it writes
    assert ui.writes("restyle", Artifact.RESTYLES) and not ui.writes("reconstruct", Artifact.RESTYLES)
    assert ui.writes("reconstruct", Artifact.EMBEDDINGS) and ui.writes("restyle", Artifact.EMBEDDINGS)
    assert ui.writes("focal", Artifact.CONFUSION) and not ui.writes("focal", Artifact.EMBEDDINGS)
    assert not ui.writes("nosuchtask", Artifact.EMBEDDINGS)
