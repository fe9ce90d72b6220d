"""The command line: ``python -m runners.run ENTRY [key=value ...]``.

    python -m runners.run ENTRY [key=value ...]   train and evaluate; last line `run_id: <id>`
    python -m runners.run --list                  every model, task and dataset, with origin
    python -m runners.run ENTRY --help            every config key, its type, default, meaning
    python -m runners.run ENTRY --dry-run [...]   the resolved config, nothing run

A comma list for any key is a grid: every combination is trained under one sweep parent run
(runners/grid.py), e.g. `train.lr=1e-3,3e-3 model.dropout=0.1,0.3 seeds=0,1`; a grid of more
than 12 runs starts with --yes. Searches with Optuna: `python -m runners.sweep --help`.

Exit status: 0 done, 1 the run failed, 2 a bad command line (nothing was run), 130/143 stopped
by Ctrl-C/SIGTERM after saving a checkpoint.
"""

from __future__ import annotations

import json
import sys

import numpy as np

import registry
from runners import config as config_mod
from runners import grid
from runners.config import ConfigError


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if argv else 2
    if argv[0] == "--list":
        print(listing())
        return 0
    entry, rest = argv[0], argv[1:]
    flags = {a for a in rest if a.startswith("--")}
    overrides = [a for a in rest if not a.startswith("--")]
    unknown = flags - {"--help", "-h", "--dry-run", "--yes"}
    try:
        if unknown:
            raise ConfigError(f"unknown flag(s) {', '.join(sorted(unknown))}; flags are --list, --help, --dry-run, --yes")
        if "--help" in flags or "-h" in rest:
            given = dict(o.partition("=")[::2] for o in overrides)
            print(config_mod.describe(entry, given.get("data"), given.get("task")))
            return 0
        fixed, swept = grid.split(overrides)
        if swept:
            configs = grid.expand(entry, fixed, swept)
            if "--dry-run" in flags:
                print(json.dumps([values for values, _ in configs], indent=2))
                print(f"grid: {len(configs)} configurations, {grid.size(configs)} runs")
                return 0
            grid.confirm(configs, "--yes" in flags)
        else:
            cfg = resolve_command(entry, overrides)
    except (ConfigError, registry.PluginError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if swept:
        return _train(lambda: grid.run(entry, configs))
    if "--dry-run" in flags:
        print(json.dumps(cfg, indent=2))
        return 0
    return _train(lambda: train_seeds(cfg) if cfg["seeds"] else _train_one(cfg))


def _train_one(cfg: dict) -> dict:
    from runners import train as train_mod

    return train_mod.train(cfg)


def _train(work) -> int:
    """Run ``work`` (a run, the seeds of one, a grid) and turn its end into an exit status."""
    from runners import train as train_mod  # heavy imports only when training

    try:
        result = work()
    except train_mod.Stopped as exc:
        return 128 + exc.signum
    except (ConfigError, registry.PluginError) as exc:  # the pre-flight checks of the data and the model: nothing was run
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        print(f"error: the run failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    finally:
        from runners import dist

        dist.shutdown()
    if _is_main():
        print(f"run_id: {result['run_id']}", flush=True)
    return 0 if result.get("finished", True) else 1


def resolve_command(entry: str, overrides: list[str]) -> dict:
    resume = next((o.partition("=")[2] for o in overrides if o.startswith("resume=")), "")
    if not resume:
        return config_mod.resolve(entry, overrides)
    from runners.tracking import Run

    try:
        path = Run(resume).download("config.json")
    except Exception as exc:
        raise ConfigError(f"resume={resume}: no such run with a config.json in the tracking store ({exc})") from None
    cfg = json.loads(path.read_text())
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
    given = config_mod.resolve(cfg["entry"], [*implied, *overrides])
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


def train_seeds(cfg: dict, *, parent: str | None = None, name: str | None = None,
                tags: dict[str, str] | None = None) -> dict:
    """One child run per seed under a parent run that logs each test metric's mean and std;
    ``parent``, ``name`` and ``tags`` place that parent (a sweep's configuration)."""
    from runners.train import headline_table, train
    from runners.tracking import entry_tags, tracked_run

    seeds = cfg["seeds"]
    with tracked_run(cfg["experiment"], name=name or f"{cfg['entry']}-seeds-{'-'.join(map(str, seeds))}",
                     parent=parent) as run:  # alive while its children train: `runners.sync --mark-stale` leaves it
        run.log_config(cfg, {**entry_tags(cfg), "zoo.seeds": json.dumps(seeds), **(tags or {})})
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


def listing() -> str:
    """Every model, task and dataset with its origin; broken plugins with their reason."""
    lines = []
    for kind in registry.GROUPS:
        lines.append(f"{kind}s:")
        for name, entry in registry.entries(kind).items():
            try:
                obj = registry.load(kind, name)
                extra = f"  (task {obj.task})" if kind == "model" else ""
                lines.append(f"  {name:<14} {entry.value:<32} {entry.origin}{extra}")
            except registry.PluginError as exc:
                lines.append(f"  {name:<14} {entry.value:<32} {entry.origin}  BROKEN: {exc}")
        lines.append("")
    return "\n".join(lines).rstrip()


def _is_main() -> bool:
    import os

    return os.environ.get("RANK", "0") == "0"


if __name__ == "__main__":
    sys.exit(main())
