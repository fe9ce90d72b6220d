"""The config a command line names: a new run's, or with ``resume=<run id>`` the run's own."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import registry
from runners import config
from runners.config import ConfigError
from zoo.schema import Artifact


def resolve_command(entry: str, overrides: list[str]) -> dict:
    """The config of a command line: a new run's (:func:`runners.config.resolve`), or with
    ``resume=<run id>`` the run's own config.json, checked against the keys given beside it."""
    resume = next((o.partition("=")[2] for o in overrides if o.startswith("resume=")), "")
    if not resume:
        return config.resolve(entry, overrides)
    from runners.tracking import Run

    try:
        with tempfile.TemporaryDirectory(prefix="artzoo-resume-") as tmp:
            cfg = json.loads(Run(resume).download(Artifact.CONFIG, Path(tmp)).read_text())
    except Exception as exc:
        raise ConfigError(f"resume={resume}: no such run with a config.json in the tracking store ({exc})") from None
    for key in ("num_classes", "in_chans", "classes"):
        cfg.pop(key, None)
    _check_same(entry, cfg, [o for o in overrides if not o.startswith("resume=")], resume)
    cfg["resume"] = resume
    return cfg


def _check_same(entry: str, cfg: dict, overrides: list[str], resume: str) -> None:
    """A resume continues the run with its own config, so the command line that started it may be
    typed again with ``resume=`` appended; a value that differs from the run's is refused."""
    if registry.resolve("model", entry).name != cfg["entry"]:
        raise ConfigError(f"resume={resume} is a run of {cfg['entry']}, not {entry}: "
                          f"`python -m runners.run {cfg['entry']} resume={resume}`")
    if not overrides:
        return
    keys = [o.partition("=")[0].strip() for o in overrides]
    run_data = cfg["data"].get("root") or cfg["data"]["name"]
    # validated as for a new run of the same data, so that 1e-3 and 0.001 are the same value
    implied = [f"data={run_data}"] * ("data" not in keys) + [f"task={cfg['task']['name']}"] * ("task" not in keys)
    given = config.resolve(cfg["entry"], [*implied, *overrides])
    differ = []
    for key in keys:
        if key == "data":
            theirs, ours = run_data, given["data"].get("root") or given["data"]["name"]
        else:
            group, _, name = key.rpartition(".")
            theirs, ours = (cfg[group] if group else cfg).get(name), (given[group] if group else given)[name]
        if theirs != ours:
            differ.append(f"{key} is {theirs!r} in the run, {ours!r} here")
    if differ:
        raise ConfigError(f"resume={resume} continues the run with its own config, and {'; '.join(differ)}. "
                          f"Drop {'these' if len(differ) > 1 else 'it'} to resume, or leave out resume= to start "
                          f"a new run")
