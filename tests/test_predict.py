"""Use a trained run: ``runners.predict`` on a folder, the run's MLflow model, its registration,
and a real ``mlflow models serve``."""

from __future__ import annotations

import base64
import contextlib
import csv
import io
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from mlflow.tracking import MlflowClient
from PIL import Image

from conftest import free_port, skip_unless, use_store
from images import PALETTE, UNREADABLE, encoded, odd_images
from runners.inference import load
from runners.predict import main
from zoo.task import to_rgb8

SIZE = 16
CLASSES = ["Cubism", "Pop_Art", "Realism"]
DIGITS = ["data=digits", f"data.image_size={SIZE}", "train.epochs=1", "train.batch_size=32",
          "train.max_steps_per_epoch=3"]


def _paintings(root: Path) -> Path:
    """root/{train,test}/CLASS/*.png: each class a colour with its own noise, as a course export."""
    rng = np.random.default_rng(0)
    for split, n in (("train", 24), ("test", 8)):
        for c, name in enumerate(CLASSES):
            (root / split / name).mkdir(parents=True, exist_ok=True)
            for k in range(n):
                noise = rng.integers(-60, 60, (SIZE, SIZE, 3))
                pixels = np.clip(np.array(PALETTE[c]) + noise, 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(root / split / name / f"{k:02d}.png")
    return root


@pytest.fixture(scope="module")
def trained(tmp_path_factory, session_cache, empty_store) -> dict:
    """A store with a classify run on a folder (registered as tiny-cnn), a restyle run and a
    reconstruct run, each with its MLflow model."""
    from runners import config, train

    folder = tmp_path_factory.mktemp("predict_store")
    with pytest.MonkeyPatch.context() as mp:
        uri = use_store(mp, folder, empty_store, session_cache)
        mp.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.2")  # the machine's samples at steps 0, 1, 2, ...
        art = _paintings(folder / "art")
        ids = {
            "cnn": train.train(config.resolve("cnn", [f"data={art}", f"data.image_size={SIZE}", "train.epochs=4",
                                                      "train.batch_size=16", "model.width=8",
                                                      "train.register=tiny-cnn"]))["run_id"],
            "cond_ae": train.train(config.resolve("cond_ae", [*DIGITS, "train.epochs=2", "train.judge_steps=10",
                                                              "train.umap=false"]))["run_id"],
            "ae": train.train(config.resolve("ae", [*DIGITS, "train.style_steps=3", "train.max_points=60",
                                                    "train.umap=false"]))["run_id"],
        }
    return {"uri": uri, "art": art, **ids}


@pytest.fixture
def store(trained, monkeypatch) -> dict:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", trained["uri"])
    return trained


def predict(capsys, *args: str) -> subprocess.CompletedProcess:
    """``python -m runners.predict ARGS`` in this process."""
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, out.out, out.err)


def _rows(path: Path) -> list[dict]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _pixels(path: Path | io.BytesIO) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


# -- runners.predict ------------------------------------------------------------------------------


def test_predict_classifies_a_folder_as_the_run_scored_its_test_split(store, capsys, tmp_path):
    test = store["art"] / "test"
    out = predict(capsys, store["cnn"], test, "--out", tmp_path / "out")
    assert out.returncode == 0, out.stderr
    rows = _rows(tmp_path / "out" / "predictions.csv")
    assert list(rows[0]) == ["path", "style", "probability", "style_2", "probability_2", "style_3", "probability_3"]
    assert len(rows) == 3 * 8 and {r["style"] for r in rows} <= set(CLASSES)
    for r in rows:
        probs = [float(r[k]) for k in ("probability", "probability_2", "probability_3")]
        assert probs == sorted(probs, reverse=True) and abs(sum(probs) - 1) < 1e-4  # three classes: all of them
    # the same images, the same decoding, the same network: the run's own test accuracy
    right = np.mean([Path(r["path"]).parent.name == r["style"] for r in rows])
    assert right == pytest.approx(mlflow.get_run(store["cnn"]).data.metrics["test/acc"])


def test_predict_reads_odd_files_and_reports_and_skips_broken_ones(store, capsys, tmp_path):
    mine = tmp_path / "my paintings"
    odd = odd_images(PALETTE[0])
    for name, data in odd.items():
        (mine / "nested" / "deeper").mkdir(parents=True, exist_ok=True)
        (mine / ("nested/deeper" if "png" in name else "") / name).write_bytes(data)
    for name, (data, _) in UNREADABLE.items():
        (mine / name).write_bytes(data)
    (mine / ".DS_Store").write_bytes(b"\0\1")
    (mine / "notes.txt").write_text("not a picture")
    out = predict(capsys, f"runs:/{store['cnn']}", mine, "--out", tmp_path / "out")
    assert out.returncode == 0, out.stderr
    rows = _rows(tmp_path / "out" / "predictions.csv")
    assert len(rows) == len(odd)  # every readable file, nothing else
    assert {Path(r["path"]).name for r in rows} == set(odd)
    for name, (_, word) in UNREADABLE.items():
        line = next(line for line in out.stderr.splitlines() if line.startswith(f"skipped {mine / name}"))
        assert word in line, line
    assert f"{len(odd)} images predicted, {len(UNREADABLE)} skipped" in out.stderr


def test_predict_restyles_into_every_style_with_a_contact_sheet_and_the_same_picture_again(store, capsys, tmp_path):
    classes = json.loads(mlflow.get_run(store["cond_ae"]).data.tags["zoo.classes"])
    mine = tmp_path / "mine"
    mine.mkdir()
    for c in range(3):
        Image.fromarray(np.full((40, 30, 3), PALETTE[c], np.uint8)).save(mine / f"p{c}.png")
    out = predict(capsys, store["cond_ae"], mine, "--out", tmp_path / "all")
    assert out.returncode == 0, out.stderr
    for style in classes:
        assert sorted(p.name for p in (tmp_path / "all" / "restyled" / style).iterdir()) == ["p0.png", "p1.png", "p2.png"]
    # at the picture's own size, 40 high and 30 wide, not the run's 16×16
    assert _pixels(tmp_path / "all" / "restyled" / classes[1] / "p1.png").shape == (40, 30, 3)
    sheet = _pixels(tmp_path / "all" / "contact_sheet.png")
    assert sheet.shape == (3 * 128, (1 + len(classes)) * 96, 3)  # a row per image: source, then each style
    # one style by name; the decoder's noise is seeded, so the same picture comes back
    one = predict(capsys, store["cond_ae"], mine, "--style", classes[2], "--out", tmp_path / "one")
    assert one.returncode == 0, one.stderr
    assert [p.name for p in (tmp_path / "one" / "restyled").iterdir()] == [classes[2]]
    np.testing.assert_array_equal(_pixels(tmp_path / "one" / "restyled" / classes[2] / "p0.png"),
                                  _pixels(tmp_path / "all" / "restyled" / classes[2] / "p0.png"))
    with np.load(tmp_path / "one" / "predictions.npz", allow_pickle=False) as z:
        assert len(z["paths"]) == len(z["code"]) == len(z["style_embedding"]) == 3


def test_predict_embeds_and_reconstructs_with_an_autoencoder(store, capsys, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    rng = np.random.default_rng(0)
    for c in range(4):  # marks of four sizes: blocks of 1, 2, 4 and 8 px of noise
        marks = rng.random((20 // 2**c + 1, 20 // 2**c + 1, 3)).repeat(2**c, 0).repeat(2**c, 1)[:20, :20]
        Image.fromarray((marks * 255).astype(np.uint8)).save(mine / f"{c}.png")
    out = predict(capsys, store["ae"], mine, "--out", tmp_path / "out")
    assert out.returncode == 0, out.stderr
    with np.load(tmp_path / "out" / "predictions.npz", allow_pickle=False) as z:
        assert [Path(p).name for p in z["paths"]] == ["0.png", "1.png", "2.png", "3.png"]
        style = z["style_embedding"]
        assert z["code"].shape[0] == 4 and style.shape[0] == 4 and np.isfinite(style).all()
        assert not np.allclose(style[0], style[3])  # fine marks and coarse ones differ
    # the ae paints only its run's size: the 20×20 picture is reconstructed as 16 px tiles, stitched
    reconstruction = _pixels(tmp_path / "out" / "reconstruction" / "2.png")
    assert reconstruction.shape == (20, 20, 3)
    task, cfg, _ = load(store["ae"])
    picture = torch.from_numpy(_pixels(mine / "2.png")).permute(2, 0, 1)[None].float() / 255
    padded = torch.nn.functional.pad(picture, (0, 12, 0, 12), mode="replicate")
    corner = task.predict(padded[..., SIZE:, :SIZE])["reconstruction"][0]  # the tile below the first
    np.testing.assert_array_equal(reconstruction[SIZE:, :SIZE], to_rgb8(corner[None])[0][: 20 - SIZE])


def _photo() -> np.ndarray:
    """scikit-learn's sample photograph, 427×640: a user's own picture, not a square."""
    from sklearn.datasets import load_sample_image

    return load_sample_image("china.jpg")


def test_a_style_can_take_its_marks_from_the_users_own_paintings_instead_of_the_training_tiles(store, capsys,
                                                                                             tmp_path):
    classes = json.loads(mlflow.get_run(store["cond_ae"]).data.tags["zoo.classes"])
    style = classes[3]
    picture = tmp_path / "in" / "p.png"
    picture.parent.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(picture)
    flat = tmp_path / "flat"  # paintings without marks, and one that is no picture at all
    flat.mkdir()
    for c in range(3):
        Image.fromarray(np.full((24, 24, 3), PALETTE[c], np.uint8)).save(flat / f"f{c}.png")
    (flat / "broken.png").write_bytes(UNREADABLE["notes-renamed.png"][0])
    own = predict(capsys, store["cond_ae"], picture, "--style", style, "--exemplars", flat, "--out", tmp_path / "own")
    assert own.returncode == 0, own.stderr
    assert "skipped exemplar" in own.stderr and "broken.png" in own.stderr
    assert f"{style}'s marks: 3 tiles of the 3 pictures in {flat}" in own.stderr  # 16-px tiles at the run's 16 px
    plain = predict(capsys, store["cond_ae"], picture, "--style", style, "--out", tmp_path / "plain")
    task, _, _ = load(store["cond_ae"])
    x = torch.from_numpy(_pixels(picture)).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():  # flat exemplars carry no marks: the smooth image alone is painted
        smooth = to_rgb8(task.net.smooth(task.net.encode(x), torch.tensor([3])).clamp(0, 1))[0]
    painted = _pixels(tmp_path / "own" / "restyled" / style / "p.png")
    assert np.abs(painted.astype(int) - smooth).max() <= 1
    assert plain.returncode == 0 and not np.array_equal(painted, _pixels(tmp_path / "plain" / "restyled" / style / "p.png"))


def test_a_photo_is_restyled_at_its_own_size_or_a_chosen_one_with_its_marks_scaled(store, capsys, tmp_path):
    classes = json.loads(mlflow.get_run(store["cond_ae"]).data.tags["zoo.classes"])
    photo = tmp_path / "china.jpg"
    Image.fromarray(_photo()).save(photo, quality=95)

    def restyle(name: str, *flags: str) -> np.ndarray:
        out = predict(capsys, store["cond_ae"], photo, "--style", classes[1], "--out", tmp_path / name, *flags)
        assert out.returncode == 0, out.stderr
        return _pixels(tmp_path / name / "restyled" / classes[1] / "china.png")

    own = restyle("own")
    assert own.shape == (427, 640, 3)
    assert restyle("small", "--size", "64").shape == (64, 96, 3)  # the short side given, the aspect kept
    fine = restyle("fine", "--mark-scale", "1")
    assert fine.shape == own.shape
    # the marks differ in size: at scale 1 they are as many pixels wide as in training, so fine on
    # this picture; under auto the picture is 427 / 16 = 26.7 times the run's size, and so are they
    def fine_detail(a: np.ndarray) -> float:  # what a 3×3 box blur takes away
        from scipy.ndimage import uniform_filter

        return float(np.abs(a - uniform_filter(a.astype(float), (3, 3, 1))).mean())

    assert fine_detail(fine) > 5 * fine_detail(own)
    # over the squares that auto's marks leave their colour alone (4 px of the code × 26.7), both agree
    blocks = lambda a: np.asarray(Image.fromarray(a).resize((6, 4), Image.Resampling.BOX), np.float64)
    assert np.abs(blocks(own) - blocks(fine)).mean() < 0.25 * np.abs(own.astype(float) - fine).mean()


def test_a_picture_of_the_runs_size_is_restyled_as_the_model_restyles_its_own_images(store, capsys, tmp_path):
    classes = json.loads(mlflow.get_run(store["cond_ae"]).data.tags["zoo.classes"])
    square = np.asarray(Image.fromarray(_photo()[100:164, 200:264]).resize((SIZE, SIZE)))
    Image.fromarray(square).save(tmp_path / "square.png")
    out = predict(capsys, store["cond_ae"], tmp_path / "square.png", "--style", classes[2], "--out", tmp_path / "o")
    assert out.returncode == 0, out.stderr
    task, _, _ = load(store["cond_ae"])
    x = torch.from_numpy(square).permute(2, 0, 1)[None].float() / 255
    direct = task.predict(x, style=torch.tensor([2]))["restyled"]
    np.testing.assert_array_equal(_pixels(tmp_path / "o" / "restyled" / classes[2] / "square.png"), to_rgb8(direct)[0])


def test_a_picture_over_the_painting_cap_is_reported_and_skipped_with_the_cap_named(store, capsys, tmp_path, monkeypatch):
    from zoo import pictures

    monkeypatch.setattr(pictures, "MAX_PIXELS", 50 * 50)
    Image.fromarray(np.full((60, 50, 3), PALETTE[0], np.uint8)).save(tmp_path / "big.png")
    Image.fromarray(np.full((40, 50, 3), PALETTE[1], np.uint8)).save(tmp_path / "fits.png")
    out = predict(capsys, store["cond_ae"], tmp_path / "big.png", tmp_path / "fits.png", "--out", tmp_path / "o")
    assert out.returncode == 0, out.stderr
    line = next(line for line in out.stderr.splitlines() if line.startswith(f"skipped {tmp_path / 'big.png'}"))
    assert "50×60 = 3,000 pixels, over the 2,500" in line and "--size N" in line
    assert "1 images predicted, 1 skipped" in out.stderr
    with np.load(tmp_path / "o" / "predictions.npz", allow_pickle=False) as z:
        assert [Path(p).name for p in z["paths"]] == ["fits.png"] and len(z["code"]) == 1


def _no_checkpoint_run(tmp_path: Path) -> str:
    client = MlflowClient()
    run = client.create_run(client.create_experiment("no checkpoint"))
    (tmp_path / "config.json").write_text(json.dumps({"entry": "cnn"}))
    client.log_artifact(run.info.run_id, str(tmp_path / "config.json"))
    client.set_terminated(run.info.run_id, "FAILED")
    return run.info.run_id


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["{cnn}", "nowhere/at all"], ["nowhere/at all does not exist"]),
        (["{cond_ae}", "{img}", "--style", "Baroque"], ["unknown style 'Baroque'", "this run knows"]),
        (["{cnn}", "{img}", "--style", "Cubism"], ["--style is for restyle runs"]),
        (["0123456789abcdef0123456789abcdef", "{img}"], ["is not in the tracking store", "MLFLOW_TRACKING_URI"]),
        (["my-best-model", "{img}"], ["names no run", "models:/<name>@<alias>"]),
        (["models:/never-registered@newest", "{img}"], ["is not in the tracking store"]),
        (["{no_checkpoint}", "{img}"], ["has no checkpoint", "train it again"]),
        (["{cnn}", "{img}", "--out", "{taken}"], ["already exists and is not empty", "--overwrite"]),
        (["{cnn}", "{img}", "--size", "64"], ["--size is for runs that paint pictures", "at the run's size, 16 px"]),
        (["{cond_ae}", "{img}", "--size", "0"], ["--size must be at least 1 pixel"]),
        (["{cond_ae}", "{img}", "--mark-scale", "0.5"], ["--mark-scale must be auto or a number ≥ 1"]),
        (["{cnn}", "{img}", "--mark-scale", "2"], ["--mark-scale is for restyle runs"]),
        (["{cnn}", "{img}", "--exemplars", "{taken}"], ["--exemplars is for restyle runs that paint exemplar marks"]),
        (["{cond_ae}", "{img}", "--exemplars", "{taken}"], ["--exemplars gives one style's marks", "--style"]),
    ],
    ids=["missing-path", "unknown-style", "style-for-a-classifier", "unknown-run", "not-a-run",
         "unknown-registered-model", "run-without-checkpoint", "existing-out", "size-for-a-classifier",
         "size-zero", "mark-scale-below-one", "mark-scale-for-a-classifier", "exemplars-for-a-classifier",
         "exemplars-without-a-style"],
)
def test_bad_input_is_refused_with_status_2_before_any_image_is_read(store, capsys, tmp_path, args, words):
    img = tmp_path / "one.png"
    img.write_bytes(encoded(Image.new("RGB", (20, 20), PALETTE[1]), "PNG"))
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "mine.txt").write_text("keep me")
    names = {"cnn": store["cnn"], "cond_ae": store["cond_ae"], "img": img, "taken": taken,
             "no_checkpoint": _no_checkpoint_run(tmp_path) if "{no_checkpoint}" in args else ""}
    out = predict(capsys, *(a.format(**names) for a in args))
    assert out.returncode == 2, out.stdout + out.stderr
    for word in words:
        assert word in out.stderr, out.stderr
    assert "Traceback" not in out.stderr and "images predicted" not in out.stderr
    assert (taken / "mine.txt").read_text() == "keep me" and len(list(taken.iterdir())) == 1


# -- the run's MLflow model -----------------------------------------------------------------------


def test_the_runs_mlflow_model_predicts_what_runners_predict_does(store, capsys, tmp_path):
    test = sorted((store["art"] / "test").rglob("*.png"))[::5]
    assert predict(capsys, store["cnn"], *test, "--out", tmp_path / "cli").returncode == 0
    expected = pd.DataFrame(_rows(tmp_path / "cli" / "predictions.csv"))
    logged = mlflow.search_logged_models(experiment_ids=[mlflow.get_run(store["cnn"]).info.experiment_id],
                                         filter_string=f"source_run_id = '{store['cnn']}'", output_format="list")
    assert [m.name for m in logged] == ["model"]  # listed under the run's "Logged models"

    model = mlflow.pyfunc.load_model(f"runs:/{store['cnn']}/model")
    by_path = model.predict(pd.DataFrame({"path": [str(p) for p in test]}))
    by_bytes = model.predict(pd.DataFrame({"image": [p.read_bytes() for p in test]}))
    for got in (by_path, by_bytes):
        assert list(got["style"]) == list(expected["style"])
        np.testing.assert_allclose(got["probability"], expected["probability"].astype(float), atol=1e-6)
    assert list(by_path["path"]) == list(expected["path"])

    # restyle: the picture runners.predict writes, for a style named per row
    classes = json.loads(mlflow.get_run(store["cond_ae"]).data.tags["zoo.classes"])
    mine = tmp_path / "p.png"
    Image.fromarray(np.full((30, 30, 3), PALETTE[2], np.uint8)).save(mine)
    assert predict(capsys, store["cond_ae"], mine, "--out", tmp_path / "restyled").returncode == 0
    restyler = mlflow.pyfunc.load_model(f"runs:/{store['cond_ae']}/model")
    got = restyler.predict(pd.DataFrame({"image": [mine.read_bytes()] * 2, "style": classes[:2]}))
    for image, style in zip(got["image"], classes[:2]):
        with Image.open(io.BytesIO(image)) as im:
            np.testing.assert_array_equal(np.asarray(im.convert("RGB")),
                                          _pixels(tmp_path / "restyled" / "restyled" / style / "p.png"))


def _served_weights(run_id: str) -> dict:
    return mlflow.pyfunc.load_model(f"runs:/{run_id}/model").unwrap_python_model().task.net.state_dict()


def _checkpoint(run_id: str, name: str) -> dict:
    from runners import checkpoint

    return checkpoint.load(Path(MlflowClient().download_artifacts(run_id, f"checkpoints/{name}")))["model"]


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_the_logged_model_gives_back_the_logged_test_metrics_of_a_classifier(store):
    # its validation macro F1 peaks at epoch 3 of 4: best.pt, which the test split scored
    metrics = mlflow.get_run(store["cnn"]).data.metrics
    assert _same(_served_weights(store["cnn"]), _checkpoint(store["cnn"], "best.pt"))
    assert not _same(_checkpoint(store["cnn"], "best.pt"), _checkpoint(store["cnn"], "last.pt"))  # a choice was made
    test = sorted((store["art"] / "test").rglob("*.png"))
    model = mlflow.pyfunc.load_model(f"runs:/{store['cnn']}/model")
    got = model.predict(pd.DataFrame({"image": [p.read_bytes() for p in test]}))
    truth = [p.parent.name for p in test]
    # three classes: the three listed styles are all of them, so each image's true class has its probability
    p_true = [next(float(row[f"probability{s}"]) for s in ("", "_2", "_3") if row[f"style{s}"] == label)
              for (_, row), label in zip(got.iterrows(), truth)]
    assert float(np.mean(np.array(got["style"]) == truth)) == pytest.approx(metrics["test/acc"])
    assert float(np.mean(-np.log(p_true))) == pytest.approx(metrics["test/loss"], rel=1e-5)


def test_the_logged_model_gives_back_the_logged_test_metrics_of_a_restyler(store, tmp_path):
    import registry
    from zoo.tasks.restyle import Restyle, restyle_targets
    from zoo.task import to_rgb8

    run = mlflow.get_run(store["cond_ae"])
    # the restyle task serves the finished model (its validation metric is the reconstruction's)
    assert _same(_served_weights(store["cond_ae"]), _checkpoint(store["cond_ae"], "last.pt"))
    cfg = json.loads(Path(MlflowClient().download_artifacts(store["cond_ae"], "config.json", str(tmp_path))).read_text())
    test_set = registry.dataset_of(cfg, "test")
    x = torch.stack([test_set[i][0] for i in range(len(test_set))])
    labels = np.array([test_set[i][1] for i in range(len(test_set))])
    classes = cfg["classes"]
    pngs = []
    for pixels in to_rgb8(x):  # the test split as PNG files: what a user would send
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="PNG")
        pngs.append(buffer.getvalue())
    model = mlflow.pyfunc.load_model(f"runs:/{store['cond_ae']}/model")

    def restyled(styles) -> torch.Tensor:
        frame = model.predict(pd.DataFrame({"image": pngs, "style": [classes[s] for s in styles]}))
        pictures = np.stack([_pixels(io.BytesIO(b)) for b in frame["image"]])
        return torch.from_numpy(pictures).permute(0, 3, 1, 2)[:, : x.shape[1]].float() / 255

    from zoo.metrics import psnr

    identity = float(psnr(restyled(labels), x).mean())
    assert identity == pytest.approx(run.data.metrics["test/identity_psnr"], abs=0.1)  # 8-bit pictures in and out
    task = Restyle(model=registry.model_of(cfg), classes=classes, judge_steps=cfg["train"]["judge_steps"],
                   judge_model=cfg["train"]["judge_model"], panel=cfg["train"]["panel"])
    judge = next(iter(task.judges(registry.dataset_of(cfg, "train"), torch.device("cpu")).values()))
    targets = restyle_targets(labels, len(classes))
    with torch.no_grad():
        acc = float((judge(restyled(targets)).argmax(1).numpy() == targets).mean())
    assert acc == pytest.approx(run.data.metrics["test/restyle_acc"], abs=2 / len(x))


@pytest.mark.parametrize(("run", "served", "headline"), [("cnn", "checkpoints/best.pt", "macro_f1"),
                                                         ("cond_ae", "checkpoints/last.pt", "restyle_acc")])
def test_the_logged_model_carries_the_runs_scores_and_description_and_no_machine_samples(store, run, served, headline):
    client = MlflowClient()
    logged = mlflow.get_run(store[run])
    model = mlflow.search_logged_models(experiment_ids=[logged.info.experiment_id], output_format="list",
                                        filter_string=f"source_run_id = '{store[run]}'")[0]
    scores = {m.key: m for m in model.metrics}
    assert client.get_metric_history(store[run], "system/cpu_utilization_percentage"), "the run has samples"
    assert not [k for k in scores if k.startswith("system/")], "the machine's samples are not the model's scores"
    tests = {k: v for k, v in logged.data.metrics.items() if k.startswith("test/") and k != "test/count"}
    assert {k: scores[k].value for k in tests} == pytest.approx(tests)
    assert {scores[k].dataset_name for k in tests} == {f"{cfg_dataset(logged)}-test"}
    best = f"val/{headline if run == 'cnn' else 'psnr'}_best"
    assert scores[best].value == pytest.approx(logged.data.metrics[best])
    assert scores[best].dataset_name == f"{cfg_dataset(logged)}-validation"
    # linked, not logged twice: the run's own history holds each test metric once
    assert len(client.get_metric_history(store[run], f"test/{headline}")) == 1
    note = logged.data.tags["mlflow.note.content"]
    assert model.tags["mlflow.note.content"] == note
    assert f"scored with `{served}`" in note and f"| {headline} | {logged.data.metrics[f'test/{headline}']:.4g} |" in note
    assert f"python -m runners.predict {store[run]}" in note
    stored = logged.data.metrics.get("test/stored_training_bytes", 0)
    assert (stored > 0) == (run == "cond_ae"), "exemplar marks keep training tiles; a classifier keeps none"
    assert (f"{stored / 2**20:.1f} MB of training paintings' pixels" in note) == (run == "cond_ae")
    assert ("`model.marks=dictionary`" in note) == (run == "cond_ae"), "how to share a model without them"


@pytest.mark.browser
@pytest.mark.slow
def test_in_mlflows_ui_the_model_shows_its_scores_and_the_run_its_pictures_epoch_by_epoch(store, tmp_path):
    """What the store holds, as `mlflow ui` shows it in Chromium: the logged model's page its test
    scores and description (no machine samples), and the run's image card a picture at the step it
    opens on (0, before training) and another at the last epoch's."""
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    from conftest import mlflow_server
    from runners.mlflow_app import APP_NAME

    chromium = Path("/usr/bin/chromium")
    skip_unless(chromium.exists(), f"Debian's chromium is not at {chromium} (apt-get install -y chromium)")
    run = mlflow.get_run(store["cond_ae"])
    experiment, epochs = run.info.experiment_id, int(run.data.params["train.epochs"])
    model = mlflow.search_logged_models(experiment_ids=[experiment], output_format="list",
                                        filter_string=f"source_run_id = '{store['cond_ae']}'")[0]
    with mlflow_server(store["uri"], tmp_path / "served", app_name=APP_NAME) as served, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(chromium), args=["--headless", "--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"{served}/#/experiments/{experiment}/models/{model.model_id}")
        page.get_by_text("test/restyle_acc", exact=True).wait_for(timeout=60_000)
        page.screenshot(path=tmp_path / "mlflow-model.png")
        shown = page.inner_text("body")
        assert "scored with checkpoints/last.pt" in shown and "what it says" in shown, "the description, rendered"
        assert "system/" not in shown, "no machine samples among the model's metrics"

        page.goto(f"{served}/#/experiments/{experiment}/runs/{store['cond_ae']}/model-metrics")
        page.get_by_placeholder("Search metric charts").fill("identity_psnr")  # a test score: a bar, not one dot
        page.locator(".barlayer .point").first.wait_for(timeout=60_000)
        assert page.locator(".scatterlayer .point").count() == 0
        # MLflow's own image card of the run's logged pictures; 3.17 shows a picture by its
        # get-artifact address, 3.18 fetches that address and shows the bytes, so a picture shown
        # is one fetched and drawn in the card
        fetched: list[str] = []
        page.on("response", lambda r: fetched.append(r.url) if r.ok and "get-artifact" in r.url else None)
        card = page.locator("xpath=//*[normalize-space(text())='restyle']/ancestor::*[.//input[@type='number']][1]")

        def drawn(step: int) -> str | None:  # fetched, and the card's picture seen once scrolled to: its address
            if not any(f"restyle%2Bstep%2B{step}%2B" in url for url in fetched) or not card.count():
                return None
            return card.first.locator("img").evaluate_all(
                "imgs => (imgs.find(i => { i.scrollIntoView({block: 'nearest'});"
                " const r = i.getBoundingClientRect();"
                " const top = document.elementFromPoint(r.x + r.width / 2, r.y + r.height / 2);"
                " return i.complete && i.naturalWidth > 0 && (top === i || i.contains(top)); }) || {}).src || null")

        def wait_for(step: int, seconds: int, scroll: bool = False, other_than: str | None = None) -> str | None:
            """The address of the picture the card shows for ``step`` (not ``other_than``), None if none shows."""
            for _ in range(seconds):
                if scroll:  # the cards are drawn as they scroll into view, below the restyle metrics
                    page.evaluate("document.querySelectorAll('*').forEach(e => {"
                                  " if (e.scrollHeight > e.clientHeight + 8) e.scrollTop = e.scrollHeight; })")
                with contextlib.suppress(PlaywrightError):  # a card redrawn as its picture loads
                    shown = drawn(step)
                    if shown and shown != other_than:
                        return shown
                page.wait_for_timeout(1000)
            return None

        def find_card() -> str:
            for attempt in range(4):  # a busy machine can leave the lazily drawn section unrequested: draw afresh
                if attempt:
                    page.screenshot(path=tmp_path / f"mlflow-card-attempt{attempt}.png")
                    page.reload()
                page.get_by_placeholder("Search metric charts").fill("restyle")
                opened = wait_for(0, 30, scroll=True)
                if opened:
                    return opened
            raise AssertionError("MLflow drew no image card for the run's logged pictures")

        opened = find_card()
        first = next(url for url in fetched if "restyle%2Bstep%2B" in url)
        assert "restyle%2Bstep%2B0%2B" in first, "it opens on step 0, and has a picture"
        shown = False
        for attempt in range(5):  # the card redraws as its picture loads: the box detaches, the picture is away
            with contextlib.suppress(PlaywrightError):
                if attempt:  # a card left stuck by a busy machine: the page drawn afresh
                    page.reload()
                    opened = find_card()
                card.first.locator("input[type=number]").fill(str(epochs), timeout=10_000)
                page.keyboard.press("Tab")  # to the focused box, wherever the redraw left the locator
                # another picture than step 0's, seen once: a later redraw may take it away for a moment
                shown = wait_for(epochs, 30, other_than=opened) is not None
                if shown:
                    break
            page.screenshot(path=tmp_path / f"mlflow-step-attempt{attempt}.png")
        assert shown, "the card shows the last epoch's picture"
        page.screenshot(path=tmp_path / "mlflow-images.png")
        browser.close()


def cfg_dataset(run) -> str:
    return run.data.tags["zoo.dataset"]


def test_a_registered_model_loads_by_its_alias_and_names_its_run(store, capsys, tmp_path):
    version = MlflowClient().get_model_version_by_alias("tiny-cnn", "newest")
    assert version.run_id == store["cnn"]
    img = sorted((store["art"] / "test").rglob("*.png"))[0]
    via_alias = predict(capsys, "models:/tiny-cnn@newest", img, "--out", tmp_path / "a")
    via_version = predict(capsys, f"models:/tiny-cnn/{version.version}", img, "--out", tmp_path / "b")
    assert via_alias.returncode == via_version.returncode == 0, via_alias.stderr + via_version.stderr
    assert _rows(tmp_path / "a" / "predictions.csv") == _rows(tmp_path / "b" / "predictions.csv")
    frame = mlflow.pyfunc.load_model("models:/tiny-cnn@newest").predict(pd.DataFrame({"path": [str(img)]}))
    assert frame["style"][0] == _rows(tmp_path / "a" / "predictions.csv")[0]["style"]


@contextmanager
def _served(run_id: str, log: Path):
    """``mlflow models serve`` of the run's model on a free port of 127.0.0.1; yields
    ``invoke(body) -> (status, answer)``."""
    port = free_port()
    bin_dir = str(Path(sys.executable).parent)  # uvicorn, which MLflow's server execs, lives beside python
    env = {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", "")}
    env.pop("ARTZOO_IMAGE_ROOT", None)
    env["TMPDIR"] = str(log.parent)  # where the server copies the model to, and leaves it
    with log.open("w") as sink:
        server = subprocess.Popen([str(Path(bin_dir) / "mlflow"), "models", "serve", "-m", f"runs:/{run_id}/model",
                                   "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)],
                                  stdout=sink, stderr=subprocess.STDOUT, env=env, start_new_session=True)

    def invoke(body: dict) -> tuple[int, dict]:
        request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                return answer.status, json.loads(answer.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    try:
        deadline, up = time.time() + 180, False
        while time.time() < deadline and server.poll() is None and not up:
            try:
                up = urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2).status == 200
            except OSError:
                time.sleep(1)
        skip_unless(up, f"mlflow models serve did not start:\n{log.read_text()[-2000:]}")
        yield invoke
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)


def _base64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.mark.slow
def test_mlflow_models_serve_answers_invocations_with_the_same_predictions(store, capsys, tmp_path):
    test = sorted((store["art"] / "test").rglob("*.png"))[:4]
    assert predict(capsys, store["cnn"], *test, "--out", tmp_path / "cli").returncode == 0
    expected = _rows(tmp_path / "cli" / "predictions.csv")
    with _served(store["cnn"], tmp_path / "serve.log") as invoke:
        status, answer = invoke({"dataframe_split": {"columns": ["image"], "data": [[_base64(p.read_bytes())] for p in test]}})
    assert status == 200, answer
    assert [a["style"] for a in answer["predictions"]] == [e["style"] for e in expected]
    np.testing.assert_allclose([a["probability"] for a in answer["predictions"]],
                               [float(e["probability"]) for e in expected], atol=1e-6)


@pytest.mark.slow
def test_a_served_restyler_takes_picture_bytes_and_reads_no_file_a_request_names(store, capsys, tmp_path):
    classes = json.loads(mlflow.get_run(store["cond_ae"]).data.tags["zoo.classes"])
    mine = tmp_path / "mine.png"
    Image.fromarray(_photo()[:40, :30]).save(mine)
    assert predict(capsys, store["cond_ae"], mine, "--style", classes[1], "--out", tmp_path / "cli").returncode == 0
    expected = _pixels(tmp_path / "cli" / "restyled" / classes[1] / "mine.png")
    fifo = tmp_path / "fifo.png"
    os.mkfifo(fifo)  # opened for reading, it would block until a writer came: a request would hang
    with _served(store["cond_ae"], tmp_path / "serve.log") as invoke:
        status, answer = invoke({"dataframe_split": {"columns": ["image", "style"],
                                                     "data": [[_base64(mine.read_bytes()), classes[1]]]},
                                 "params": {"mark_scale": "auto"}})
        refusals = [invoke({"dataframe_split": {"columns": ["path", "style"], "data": [[str(path), classes[1]]]}})
                    for path in (mine, "/etc/passwd", tmp_path / "no such file.png", fifo)]
    assert status == 200, answer
    got = _pixels(io.BytesIO(base64.b64decode(answer["predictions"][0]["image"])))
    np.testing.assert_array_equal(got, expected)  # at the picture's own size, as runners.predict paints it
    assert got.shape == (40, 30, 3)
    # an image, a system file, a missing file and a pipe: one refusal, so nothing can be learnt of the files
    messages = {(code, body["message"].split("Error: ")[-1]) for code, body in refusals}
    assert len(messages) == 1, messages
    code, message = messages.pop()
    assert code == 400 and "reads no file named in a request" in message and "'image'" in message
    assert "Traceback" not in message


def test_in_process_the_model_reads_paths_and_a_root_confines_them(store, tmp_path, monkeypatch):
    from runners.pyfunc import ROOT_VARIABLE

    inside, outside = tmp_path / "served" / "a.png", tmp_path / "b.png"
    inside.parent.mkdir()
    for path in (inside, outside):
        Image.fromarray(np.full((20, 20, 3), PALETTE[0], np.uint8)).save(path)
    model = mlflow.pyfunc.load_model(f"runs:/{store['cnn']}/model")
    assert len(model.predict(pd.DataFrame({"path": [str(outside)]}))) == 1  # the user's own Python reads it
    monkeypatch.setenv("_MLFLOW_IS_IN_SERVING_ENVIRONMENT", "true")  # as MLflow's scoring server marks itself
    with pytest.raises(mlflow.exceptions.MlflowException, match="reads no file named in a request"):
        model.predict(pd.DataFrame({"path": [str(outside)]}))
    monkeypatch.setenv(ROOT_VARIABLE, str(inside.parent))
    assert len(model.predict(pd.DataFrame({"path": [str(inside)]}))) == 1
    escape = inside.parent / ".." / "b.png"  # resolved before it is compared: no way out by dots or links
    (inside.parent / "link.png").symlink_to(outside)
    for path in (outside, escape, inside.parent / "link.png"):
        with pytest.raises(mlflow.exceptions.MlflowException, match=f"only under {ROOT_VARIABLE}="):
            model.predict(pd.DataFrame({"path": [str(path)]}))


def test_a_task_without_predictions_is_refused_before_any_image_is_read(tmp_path):
    from runners.predict import Refused, predict as run_predict
    from zoo.task import Task

    class Scores(Task):  # a plugin task that trains and evaluates but was never given predict
        pass

    cfg = {"classes": ["a", "b"], "data": {"image_size": SIZE}, "in_chans": 3}
    with pytest.raises(Refused, match="the Scores task makes no predictions"):
        run_predict(Scores(model=None, classes=cfg["classes"]), cfg, [(tmp_path / "never read.png", "x")],
                    tmp_path / "out")
    assert not (tmp_path / "out").exists()
