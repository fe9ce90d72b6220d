"""End to end, in headless Chromium: `mlflow ui --app-name artzoo` opens every experiment from the
experiments list in MLflow's model-training view (not its GenAI view), and the link that `make
demo` prints opens the run there, with its system metrics."""

from __future__ import annotations

import os
from pathlib import Path

import mlflow
import pytest

from conftest import mlflow_server, skip_unless
from runners import config, demo, train
from runners.tracking import experiment_id

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


@pytest.mark.browser
@pytest.mark.slow
def test_every_experiment_opens_from_the_list_as_model_training(tmp_path):
    skip_unless(CHROMIUM.exists(), f"Debian's chromium is not at {CHROMIUM} (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    client = mlflow.tracking.MlflowClient()
    made = experiment_id(client, "cond_ae")  # as the runner makes its experiments
    for experiment in (made, "0"):  # and the Default one
        client.create_run(experiment, run_name=f"a run of {experiment}")
    with mlflow_server(os.environ["MLFLOW_TRACKING_URI"], tmp_path / "served", app_name="artzoo") as served, \
            sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--headless", "--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 900})  # a browser that never chose a view
        for name, experiment in (("cond_ae", made), ("Default", "0"), ("cond_ae", made)):  # and back again
            page.goto(f"{served}/#/experiments")
            page.get_by_role("link", name=name, exact=True).first.click()
            page.get_by_text(f"a run of {experiment}").wait_for(timeout=60_000)  # its runs, not an overview of traces
            assert f"/experiments/{experiment}/runs" in page.url and "workflowType=machine_learning" in page.url
            page.screenshot(path=tmp_path / f"experiment-{name}.png")
        assert page.get_by_text("Ask questions about your experiments").count() == 0, "the GenAI assistant stays shut"
        # a user who chose the GenAI view keeps it
        page.evaluate("localStorage.setItem('mlflow.workflowType_v1', JSON.stringify('genai'))")
        page.goto(f"{served}/#/experiments")
        page.reload()  # the page is read afresh, as a new visit reads it
        page.get_by_role("link", name="cond_ae", exact=True).first.click()
        page.wait_for_function("location.href.includes('workflowType=genai')", timeout=60_000)
        browser.close()
