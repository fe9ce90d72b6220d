"""Grids on the command line: a comma list for any key trains every combination.

    python -m runners.run cnn train.imbalance=none,weights model.dropout=0.1,0.3 seeds=0,1,2

makes one sweep parent run and one child per configuration (itself the parent of one run per
seed where ``seeds=`` is given). Every configuration is validated before any run is made. The
parent logs ``sweep.csv``, one row per configuration with the mean and std of each test metric,
and names the best configuration by the task's main validation metric (docs/design.md).
"""

from __future__ import annotations

import itertools
import json
import math
import re
import sys

import numpy as np
import pandas as pd

import registry
from runners import config as config_mod
from runners.config import ConfigError
from zoo import schema
from zoo.schema import Tag

CONFIRM_ABOVE = 12  # runs (configurations × seeds) that a grid starts without --yes
_COMMA = re.compile(r"(?<!\\),")


def split(overrides: list[str]) -> tuple[list[str], dict[str, list[str]]]:
    """The fixed ``key=value`` overrides, and the grid: each key given a comma list, with its
    values in command-line order. ``seeds=`` and JSON lists (``[1,2]``) are not grids; ``\\,`` is
    a comma inside one value."""
    fixed, grid = [], {}
    for item in overrides:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or key == "seeds" or value.lstrip().startswith("[") or not _COMMA.search(value):
            fixed.append(item.replace("\\,", ","))
            continue
        values = [v.replace("\\,", ",") for v in _COMMA.split(value)]
        if any(not v.strip() for v in values):
            raise ConfigError(f"{key}={value}: an empty value in the grid's comma list")
        if key in grid:
            raise ConfigError(f"{key} is given twice")
        grid[key] = values
    return fixed, grid


def expand(entry: str, fixed: list[str], grid: dict[str, list[str]]) -> list[tuple[dict[str, str], dict]]:
    """Every configuration of the grid: its values and its resolved config, all validated first."""
    configs, seen = [], {}
    for combo in itertools.product(*grid.values()):
        values = dict(zip(grid, combo))
        try:
            cfg = config_mod.resolve(entry, [*fixed, *(f"{k}={v}" for k, v in values.items())])
        except ConfigError as exc:
            raise ConfigError(f"in the grid's configuration {label(values)}: {exc}") from None
        if cfg["resume"]:
            raise ConfigError("resume= continues one run; it cannot be part of a grid")
        same = seen.get(json.dumps(cfg, sort_keys=True, default=str))
        if same is not None:
            raise ConfigError(f"the grid's configurations {label(same)} and {label(values)} are the same config; "
                              f"give each value once")
        seen[json.dumps(cfg, sort_keys=True, default=str)] = values
        configs.append((values, cfg))
    return configs


def label(values: dict[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in values.items())


def size(configs: list[tuple[dict, dict]]) -> int:
    """The runs a grid trains: one per configuration and seed."""
    return sum(max(1, len(cfg["seeds"])) for _, cfg in configs)


def confirm(configs: list[tuple[dict, dict]], yes: bool) -> None:
    """Print the grid's size; above CONFIRM_ABOVE runs, ask on a terminal, else require --yes."""
    n, seeds = size(configs), len(configs[0][1]["seeds"])
    print(f"grid: {len(configs)} configurations" + (f" × {seeds} seeds" if seeds else "") + f" = {n} runs",
          flush=True)
    if n <= CONFIRM_ABOVE or yes:
        return
    if sys.stdin.isatty():
        if input(f"start {n} runs? [y/N] ").strip().lower() in ("y", "yes"):
            return
        raise ConfigError("the grid was not started")
    raise ConfigError(f"the grid makes {n} runs (more than {CONFIRM_ABOVE}); add --yes to start them")


def run(entry: str, configs: list[tuple[dict, dict]]) -> dict:
    """Train every configuration under one sweep parent run; returns the parent's ``run_id``,
    the table and whether every configuration finished."""
    from runners.seeds import train_seeds
    from runners.tracking import entry_tags, tracked_run
    from runners.train import Stopped, train

    keys = list(configs[0][0])
    first = configs[0][1]
    task_cls = registry.load("task", first["task"]["name"])
    logged = json.loads(json.dumps(first, default=str))
    for key in keys:  # the parent's params show each swept key's values
        set_key(logged, key, [get_key(cfg, key) for _, cfg in configs])
    # the parent keeps a heartbeat while its children train: `runners.sync --mark-stale` leaves it
    with tracked_run(first["experiment"], name=f"{entry}-grid-" + "-".join(k.rpartition(".")[2] for k in keys)) as parent:
        parent.log_config(logged, {**entry_tags(first), Tag.SWEEP: "grid", Tag.SWEEP_KEYS: json.dumps(keys)})
        rows = []
        for values, cfg in configs:
            name, tags = f"{entry} {label(values)}", {Tag.SWEEP_CONFIG: json.dumps(values)}
            print(f"\n== configuration {len(rows) + 1}/{len(configs)}: {label(values)}", flush=True)
            try:
                result = (train_seeds(cfg, parent=parent.id, name=name, tags=tags) if cfg["seeds"]
                          else train(cfg, parent=parent.id, name=name, tags=tags))
                rows.append({**values, "status": "FINISHED", **_scores(result)})
            except (Stopped, KeyboardInterrupt):
                raise
            except Exception as exc:  # the other configurations still train; the table says which failed
                print(f"warning: configuration {label(values)} failed: {type(exc).__name__}: {exc}",
                      file=sys.stderr, flush=True)
                rows.append({**values, "status": "FAILED"})
        table = pd.DataFrame(rows)
        best = best_row(table, schema.best(task_cls.main_metric), task_cls.greater_is_better)
        table["best"] = table.index == best
        parent.log_text(table.to_csv(index=False), "sweep.csv")
        if best is not None:
            row = table.loc[best]
            parent.log_metrics({k.removesuffix("_mean"): row[k] for k in table if k.endswith("_mean")
                                and isinstance(row[k], float) and math.isfinite(row[k])}, step=0)
            parent.log_tags({Tag.SWEEP_BEST: json.dumps({k: row[k] for k in keys}),
                             Tag.SWEEP_BEST_RUN: row["run_id"]})
        if not (table["status"] == "FINISHED").any():
            parent.final_status = "FAILED"
    print("\n" + markdown(table, keys, task_cls), flush=True)
    return {"run_id": parent.id, "table": table, "finished": bool((table["status"] == "FINISHED").all())}


def _scores(result: dict) -> dict:
    """A child's metrics as ``<metric>_mean`` and ``_std``: over its seeds, or its own values."""
    if any(k.endswith("_mean") for k in result):
        return {k: v for k, v in result.items() if k.endswith(("_mean", "_std")) or k == "run_id"}
    out = {"run_id": result["run_id"]}
    for k, v in result.items():
        if k != "run_id":
            out[f"{k}_mean"], out[f"{k}_std"] = v, math.nan
    return out


def best_row(table: pd.DataFrame, metric: str, greater: bool):
    """The index of the best configuration by ``metric``'s mean, or None when none has it."""
    column = f"{metric}_mean"
    if column not in table or table[column].isna().all():
        return None
    values = pd.to_numeric(table[column], errors="coerce")
    return values.idxmax() if greater else values.idxmin()


def markdown(table: pd.DataFrame, keys: list[str], task_cls) -> str:
    """The configurations with the task's headline test metrics, mean ± std, the best marked."""
    metrics = [schema.test(m) for m in getattr(task_cls, "headline_metrics", ()) if f"{schema.test(m)}_mean" in table][:4]
    head = ["", *keys, *(m.removeprefix("test/") for m in metrics)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for _, row in table.iterrows():
        cells = ["best" if row.get("best") else ("failed" if row["status"] != "FINISHED" else ""),
                 *(str(row[k]) for k in keys)]
        for m in metrics:
            mean, std = row.get(f"{m}_mean", np.nan), row.get(f"{m}_std", np.nan)
            cells.append("–" if pd.isna(mean) else f"{mean:.4g}" + ("" if pd.isna(std) else f" ± {std:.2g}"))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def get_key(cfg: dict, key: str):
    """A dotted key's value in a resolved config (``data``: the name or folder)."""
    group, _, name = key.rpartition(".")
    if key == "data":
        return cfg["data"].get("root") or cfg["data"]["name"]
    return (cfg[group] if group else cfg)[name]


def set_key(cfg: dict, key: str, value) -> None:
    """Set a dotted key in a config (``data``: its name)."""
    group, _, name = key.rpartition(".")
    if key == "data":
        cfg["data"]["name"] = value
        return
    (cfg[group] if group else cfg)[name] = value

