"""End to end: the link that `make demo` prints opens the run in `mlflow ui`, in headless Chromium,
in MLflow's model-training view (not its GenAI view), with the run's system metrics."""

from __future__ import annotations

import os
from pathlib import Path

import mlflow
import pytest

from conftest import mlflow_server, skip_unless
from runners import config, demo, train

CHROMIUM = Path("/usr/bin/chromium")
TINY = ["train.log_model=false", "data.size=100", "data.image_size=32", "train.epochs=1", "train.batch_size=16"]


@pytest.mark.browser
@pytest.mark.slow
def test_the_demos_link_opens_the_run_in_mlflows_model_training_view(tmp_path, monkeypatch):
    skip_unless(CHROMIUM.exists(), f"Debian's chromium is not at {CHROMIUM} (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.2")
    run_id = train.train(config.resolve("cnn", TINY))["run_id"]
    experiment_id = mlflow.get_run(run_id).info.experiment_id
    # the UI that `mlflow ui` serves, from the same store (`mlflow server` is `mlflow ui` plus artifact serving)
    with mlflow_server(os.environ["MLFLOW_TRACKING_URI"], tmp_path / "served") as served:
        link = demo.mlflow_link(experiment_id, run_id).replace(demo.MLFLOW_UI, served)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--headless", "--no-sandbox"])
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(link)
            page.get_by_text("cnn-seed0").first.wait_for(timeout=60_000)
            page.screenshot(path=tmp_path / "mlflow-run.png")
            assert "workflowType=machine_learning" in page.url, page.url
            assert page.get_by_text("Evaluation runs").count() == 0, "the GenAI view's navigation is not shown"
            page.get_by_role("tab", name="System metrics").click()
            page.get_by_text("cpu_utilization_percentage").first.wait_for(timeout=60_000)
            page.screenshot(path=tmp_path / "mlflow-system-metrics.png")
            browser.close()
