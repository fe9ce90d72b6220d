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
