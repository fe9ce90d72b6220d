"""A run's seeds: one child run per seed under a parent that logs each test metric's mean and std
(``seeds=0,1,2``); the command line, grids and sweeps train them the same way."""

from __future__ import annotations

import json

import numpy as np

import registry
from zoo.schema import Tag


def train_seeds(cfg: dict, *, parent: str | None = None, name: str | None = None,
                tags: dict[str, str] | None = None) -> dict:
    """One child run per seed under a parent run that logs each test metric's mean and std;
    ``parent``, ``name`` and ``tags`` place that parent (a sweep's configuration)."""
    from runners.loop import headline_table
    from runners.train import train
    from runners.tracking import entry_tags, tracked_run

    seeds = cfg["seeds"]
    with tracked_run(cfg["experiment"], name=name or f"{cfg['entry']}-seeds-{'-'.join(map(str, seeds))}",
                     parent=parent) as run:  # alive while its children train: `runners.sync --mark-stale` leaves it
        run.log_config(cfg, {**entry_tags(cfg), Tag.SEEDS: json.dumps(seeds), **(tags or {})})
        results = [train({**cfg, "seed": seed, "seeds": []}, parent=run.id) for seed in seeds]
        summary = seed_summary(results)
        run.log_metrics(summary, step=0)
    over = {k.removesuffix("_mean"): f"{summary[k]:.4g} ± {summary[k[:-5] + '_std']:.2g}"
            for k in summary if k.endswith("_mean")}
    print(f"over seeds {','.join(map(str, cfg['seeds']))}: " + ", ".join(f"{k}={v}" for k, v in over.items()), flush=True)
    print(headline_table(registry.load("task", cfg["task"]["name"]), over), flush=True)
    return {**summary, "run_id": run.id}


def seed_summary(results: list[dict]) -> dict[str, float]:
    """``<key>_mean`` and ``<key>_std`` (sample std; 0 for one seed) of each result over seeds."""
    summary = {}
    for key in sorted(results[0]):
        if key == "run_id":
            continue
        values = np.array([r[key] for r in results if key in r], dtype=float)
        summary[f"{key}_mean"] = float(values.mean())
        summary[f"{key}_std"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
    return summary
