"""The docs a newcomer follows: a README short enough to read, and no link or citation to a file or
heading that is not there."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def _anchor(heading: str) -> str:
    """GitHub's id for a Markdown heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    return {_anchor(line.lstrip("#")) for line in path.read_text().splitlines() if line.startswith("#")}


def test_the_readme_stays_under_12_kb():
    assert len((ROOT / "README.md").read_bytes()) < 12_000, "README.md is for newcomers; move detail to docs/"


def test_every_relative_link_in_the_docs_reaches_a_file_and_heading():
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    broken = []
    for page in pages:
        for target in LINK.findall(page.read_text()):
            if re.match(r"[a-z]+:", target):
                continue  # an address, not a file of the repository
            file, _, anchor = target.partition("#")
            path = (page.parent / file).resolve() if file else page
            if not path.exists():
                broken.append(f"{page.name}: {target} (no such file)")
            elif anchor and path.suffix == ".md" and anchor not in _anchors(path):
                broken.append(f"{page.name}: {target} (no such heading)")
    assert not broken, broken


def test_every_markdown_file_the_code_cites_exists():
    tracked = subprocess.run(["git", "ls-files", "*.py", "Makefile", "*.toml", "*.sh"], cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout.split()
    cited = {m for f in tracked for m in re.findall(r"\b(docs/[\w.-]+\.md|README\.md)", (ROOT / f).read_text())}
    assert {"docs/design.md", "README.md"} <= cited, "the check would pass on nothing"
    assert not [c for c in sorted(cited) if not (ROOT / c).exists()]


def test_the_readmes_task_example_trains_as_written(tmp_path, monkeypatch):
    """The focal-loss task of the README, its code as printed there (the imports it leaves out
    added), registered as a third party registers a task and trained through the runner."""
    import mlflow
    import numpy as np

    import registry
    from runners import config, train

    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    example = next(b for b in blocks if "class Focal(Classify)" in b)
    package = tmp_path / "site"
    (package / "readme_focal-0.dist-info").mkdir(parents=True)
    (package / "readme_focal.py").write_text(
        "from typing import Annotated\n\nimport torch.nn.functional as F\nfrom pydantic import Field\n\n"
        "from zoo.classify import Classify\n\n" + example)
    (package / "readme_focal-0.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: readme-focal\nVersion: 0\n")
    (package / "readme_focal-0.dist-info" / "entry_points.txt").write_text("[zoo.tasks]\nreadme_focal = readme_focal:Focal\n")
    monkeypatch.syspath_prepend(str(package))
    registry.entries.cache_clear()
    registry.load.cache_clear()
    try:
        cfg = config.resolve("cnn", ["task=readme_focal", "train.gamma=1", "data=digits", "data.image_size=16",
                                     "train.epochs=1", "train.max_steps_per_epoch=3", "train.log_model=false"])
        result = train.train(cfg)
    finally:
        registry.entries.cache_clear()
        registry.load.cache_clear()
    run = mlflow.get_run(result["run_id"])
    assert run.info.status == "FINISHED" and run.data.tags["zoo.task"] == "readme_focal"
    assert float(run.data.params["train.gamma"]) == 1.0
    assert np.isfinite(run.data.metrics["train/loss"]) and "test/macro_f1" in run.data.metrics
