"""End to end: `streamlit run dashboard/app.py` on 127.0.0.1, opened in headless Chromium.

The store holds one real cond_ae run made with the command line; the test visits every page,
asks the Clusters page for a painting's nearest neighbours, restyles an uploaded picture, checks that no page shows an exception, and leaves a screenshot of
each page in its tmp folder.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import REPO, free_port, skip_unless

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
TINY = ["data=digits", "data.image_size=16", "train.epochs=1", "train.batch_size=32", "train.max_steps_per_epoch=3",
        "train.judge_steps=10", "train.umap=false"]  # UMAP would load numba in the run: 15 s
# What each page shows once it has rendered (a CSS selector).
PAGES = {"": '[data-testid="stDataFrame"]', "run": ".js-plotly-plot", "clusters": ".js-plotly-plot",
         "restyle": '[data-testid="stFileUploader"], [data-testid="stNumberInput"], [data-testid="stAlert"]'}


def _wait_healthy(url: str, server: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"streamlit exited with {server.returncode}: {server.stdout.read()}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as reply:
                if reply.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"streamlit did not answer at {url} within {timeout} s")


@pytest.fixture
def server(tmp_path):
    """The dashboard served from the test's folder (its store), and the run it holds."""
    made = subprocess.run([sys.executable, "-m", "runners.run", "cond_ae", *TINY], capture_output=True, text=True,
                          timeout=600)
    assert made.returncode == 0, made.stderr
    run_id = made.stdout.strip().splitlines()[-1].removeprefix("run_id: ")
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(REPO / "dashboard" / "app.py"),
                             "--server.port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_healthy(url, proc)
        yield url, run_id, proc
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.mark.browser
@pytest.mark.slow
def test_every_page_renders_in_chromium_without_an_error(server, tmp_path):
    skip_unless(CHROMIUM.exists(), f"Debian's chromium is not at {CHROMIUM} (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    url, run_id, proc = server
    picture = tmp_path / "upload.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(picture)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        # from the first paint on, the sidebar names the pages by their titles, never by file name
        page.goto(url, wait_until="commit")
        navs, started = set(), time.monotonic()
        while time.monotonic() - started < 90 and not any("Restyle" in n for n in navs):
            navs |= {" ".join(t.split()) for t in page.locator('[data-testid="stSidebarNav"]').all_inner_texts()}
            page.wait_for_timeout(50)
        assert navs and all("Runs" in n and "Restyle" in n for n in navs), navs
        for path, ready in PAGES.items():
            page.goto(f"{url}/{path}?run={run_id}")
            page.wait_for_selector(ready, timeout=90_000)
            page.wait_for_load_state("networkidle")
            page.screenshot(path=tmp_path / f"{path or 'runs'}.png", full_page=True)
            assert page.locator('[data-testid="stException"]').count() == 0, path
            assert run_id[:6] in page.content() or path == "", f"page {path!r} shows the run from ?run="

        # the clusters page: the embeddings side by side, and a painting's ten nearest by style
        page.goto(f"{url}/clusters?run={run_id}")
        page.get_by_text("Similar paintings").wait_for(timeout=90_000)
        page.get_by_text(re.compile(r"\d+ of 10 share its style")).wait_for(timeout=90_000)
        # the embedding choice itself: the same words sit earlier in the scores table's cells,
        # which the grid keeps hidden (it draws on a canvas)
        page.locator('[data-testid="stRadio"]').get_by_text("style statistics", exact=True).wait_for(timeout=90_000)
        assert page.get_by_text("disentanglement score").count() == 1, "a restyle run's code NMI: lower is better"
        page.locator('[data-testid="stImage"]').nth(10).wait_for(timeout=90_000)  # the painting and its 10 nearest
        page.screenshot(path=tmp_path / "clusters-similar.png", full_page=True)
        assert page.locator('[data-testid="stException"]').count() == 0

        # the restyle page repaints an uploaded picture, through the server's upload handling
        page.goto(f"{url}/restyle?run={run_id}")
        page.wait_for_selector(PAGES["restyle"], timeout=90_000)
        page.wait_for_load_state("networkidle")
        try:
            page.get_by_text("your own picture").wait_for(timeout=90_000)
        except Exception:
            alerts = page.locator('[data-testid="stAlert"]').all_inner_texts()
            raise AssertionError(f"no live restyle: {alerts}") from None
        page.get_by_text("your own picture").click()
        # the picture's uploader, not the exemplar paintings' one further down
        uploader = page.locator('[data-testid="stFileUploader"]').filter(has_text="Your picture")
        uploader.wait_for(timeout=90_000)
        uploader.locator('input[type="file"]').set_input_files(picture)
        page.get_by_text("your picture", exact=True).wait_for(timeout=90_000)  # the upload's own caption
        # at its own size, 64×48, not the run's 16×16: its marks as large as in training, and at 16 px
        page.get_by_text("· live · 64×48 · marks at their trained size").wait_for(timeout=90_000)
        assert page.get_by_text("· live · 64×48 · marks as in training (×3)").count() == 1
        page.screenshot(path=tmp_path / "restyle-upload.png", full_page=True)
        assert page.locator('[data-testid="stException"]').count() == 0
        browser.close()
    proc.terminate()
    log = proc.communicate(timeout=30)[0]
    assert f"URL: http://127.0.0.1:{url.rsplit(':', 1)[1]}" in log, "served on localhost only, as configured"
