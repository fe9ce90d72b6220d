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

import registry
from runners import config as config_mod
from runners import grid
from runners.command import resolve_command
from runners.config import ConfigError
from runners.seeds import train_seeds


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


def listing() -> str:
    """Every model, task and dataset with its origin; broken plugins with their reason."""
    lines = []
    for kind in registry.GROUPS:
        lines.append(f"{kind}s:")
        for name, entry in registry.entries(kind).items():
            try:
                obj = registry.load(kind, name)
                extra = f"  (task {obj.task})" if kind == "model" else ""
                lines.append(f"  {name:<14} {entry.value:<36} {entry.origin}{extra}")
            except registry.PluginError as exc:
                lines.append(f"  {name:<14} {entry.value:<36} {entry.origin}  BROKEN: {exc}")
        lines.append("")
    return "\n".join(lines).rstrip()


def _is_main() -> bool:
    import os

    return os.environ.get("RANK", "0") == "0"


if __name__ == "__main__":
    sys.exit(main())
