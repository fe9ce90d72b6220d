"""How fast each dashboard page renders with 200 runs in the store, cold and once warm.

    python bench/dashboard_speed.py [--runs 200] [--budget 2.0]

Fills a fresh store (a temporary folder) with a few real tiny runs made by the runner (cnn, ae,
cond_ae on digits) and ``--runs`` more logged directly with the MLflow API in the schema's shape
(params, tags, per-step and per-epoch curves, test scores; some multi-seed groups, some failed),
then renders every page with Streamlit's AppTest: once cold (empty caches, first downloads) and
three times warm in fresh sessions. Prints one Markdown table; exits 1 if a warm page is over
``--budget`` seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from zoo.tasks.restyle import Restyle
from zoo.schema import Tag

REPO = Path(__file__).resolve().parents[1]
APP = REPO / "dashboard" / "app.py"
REAL = {"cnn": [], "ae": ["train.max_points=200"], "cond_ae": ["train.judge_steps=50"]}
TINY = ["data=digits", "data.image_size=16", "train.epochs=2", "train.batch_size=32", "train.max_steps_per_epoch=5"]
TASKS = {
    "classify": ("cnn", ["acc", "macro_f1", "balanced_acc"]),
    "reconstruct": ("ae", ["mse", "psnr", "ssim", "cluster_nmi_pca", "cluster_ari_pca", "silhouette_pca",
                           "cluster_nmi_umap", "cluster_ari_umap", "silhouette_umap"]),
    "restyle": ("cond_ae", list(Restyle.headline_metrics)),
}
CLASSES = ["Baroque", "Cubism", "Expressionism", "Impressionism", "Pointillism", "Pop_Art", "Realism", "Ukiyo_e"]


def real_runs() -> dict[str, str]:
    """Tiny real runs through the command line, by entry."""
    ids = {}
    for entry, extra in REAL.items():
        out = subprocess.run([sys.executable, "-m", "runners.run", entry, *TINY, *extra], capture_output=True,
                             text=True, cwd=os.getcwd(), check=True)
        ids[entry] = out.stdout.strip().splitlines()[-1].removeprefix("run_id: ")
    return ids


def logged_runs(count: int, seed: int = 0) -> None:
    """``count`` runs in the schema's shape, logged directly (seconds, not hours of training)."""
    from mlflow.entities import Metric, Param
    from mlflow.tracking import MlflowClient
    from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME

    client, rng = MlflowClient(), np.random.default_rng(seed)
    experiments = {task: client.create_experiment(f"bench-{task}") for task in TASKS}
    parent = None
    for i in range(count):
        task = list(TASKS)[i % 3]
        model, scores = TASKS[task]
        tags = {MLFLOW_RUN_NAME: f"{model}-bench{i}", Tag.ENTRY: model, Tag.MODEL: model, Tag.TASK: task,
                Tag.DATASET: "synthart", Tag.CLASSES: json.dumps(CLASSES), Tag.DEVICE: "cpu"}
        if i % 20 == 0:  # every 20th run opens a multi-seed group of the next three
            parent = client.create_run(experiments[task], tags={**tags, MLFLOW_RUN_NAME: f"{model}-seeds{i}"})
        elif parent is not None and i % 20 <= 3:
            tags[MLFLOW_PARENT_RUN_ID] = parent.info.run_id
        run = client.create_run(experiments[task], tags=tags)
        now = int(time.time() * 1000)
        params = [Param(f"{group}.opt{k}", str(rng.integers(100))) for group in ("data", "model", "train")
                  for k in range(12)] + [Param("entry", model), Param("seed", str(i))]
        curves = [Metric("train/loss", float(2 * np.exp(-s / 80) + rng.normal(0, 0.05)), now, s) for s in range(300)]
        curves += [Metric(f"val/{name}", float(rng.random()), now, e) for name in scores[:3] for e in range(1, 11)]
        curves += [Metric(f"test/{name}", float(rng.random()), now, 10) for name in scores]
        for j in range(0, len(curves), 1000):
            client.log_batch(run.info.run_id, metrics=curves[j : j + 1000], params=params if j == 0 else [])
        client.set_terminated(run.info.run_id, "FAILED" if i % 25 == 7 else "FINISHED")
        if parent is not None and i % 20 == 3:
            client.log_batch(parent.info.run_id, metrics=[Metric(f"test/{n}_{s}", float(rng.random()), now, 0)
                                                          for n in scores for s in ("mean", "std")])
            client.set_terminated(parent.info.run_id, "FINISHED")


def render(page: str, run_id: str | None) -> float:
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(APP), default_timeout=300)
    if run_id:
        at.query_params["run"] = run_id
    started = time.perf_counter()
    at.switch_page(page).run()
    seconds = time.perf_counter() - started
    if at.exception:
        raise RuntimeError(f"{page} raised: {at.exception[0].value}")
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200, help="runs logged with the MLflow API")
    parser.add_argument("--budget", type=float, default=2.0, help="seconds a warm page may take")
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="artzoo-dashboard-bench-"))
    os.chdir(folder)
    os.environ.update(MLFLOW_TRACKING_URI=f"sqlite:///{folder / 'mlflow.db'}", ARTZOO_CACHE=str(folder / "cache"),
                      ARTZOO_RUNS=str(folder / "runs"), PYTHONPATH=str(REPO))
    os.environ.setdefault("NUMBA_CACHE_DIR", str(folder / "numba"))
    os.environ["STREAMLIT_LOGGER_LEVEL"] = "error"  # AppTest warns of a missing ScriptRunContext every render
    started = time.perf_counter()
    ids = real_runs()
    print(f"{len(ids)} real runs in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    started = time.perf_counter()
    logged_runs(args.runs)
    print(f"{args.runs} logged runs in {time.perf_counter() - started:.0f} s; store: {folder}", file=sys.stderr)

    cases = [("views/runs.py", None, "all runs"), ("views/run.py", ids["cnn"], "cnn (real)"),
             ("views/run.py", ids["ae"], "ae (real)"), ("views/clusters.py", ids["ae"], "ae (real)"),
             ("views/restyle.py", ids["cond_ae"], "cond_ae (real)")]
    rows, slow = [], 0
    for page, run_id, what in cases:
        cold = render(page, run_id)
        warm = statistics.median(render(page, run_id) for _ in range(3))
        ok = warm <= args.budget
        slow += not ok
        rows.append(f"| {page.removeprefix('views/').removesuffix('.py')} | {what} | {cold:.2f} | {warm:.2f} | "
                    f"{'yes' if ok else 'NO'} |")
    total = args.runs + len(ids) + args.runs // 20
    print(f"\nDashboard render times, {total} runs in the store (AppTest, seconds; warm = median of 3 fresh sessions)\n")
    print(f"| page | run | cold | warm | warm ≤ {args.budget:g} s |")
    print("|---|---|---:|---:|:---:|")
    print("\n".join(rows))
    return 1 if slow else 0


if __name__ == "__main__":
    sys.exit(main())
