"""Searches with Optuna: ``python -m runners.sweep ENTRY --search SPEC... [options] [key=value ...]``.

    python -m runners.sweep cnn --search "train.lr=loguniform(1e-4,1e-2)" "model.dropout=uniform(0,0.5)" \\
        "train.imbalance=choice(none,weights)" --trials 20 data=synthart_lt

A distribution is ``uniform(a,b)``, ``loguniform(a,b)``, ``int(a,b)`` or ``choice(v1,v2,...)``.
Optuna's TPE sampler (seeded from ``seed=``) proposes each trial, a median pruner stops a trial
whose per-epoch validation metric falls behind (the trial's MLflow run ends KILLED, its tag
``zoo.stopped`` says why), and every trial is a child run of the study's parent run, which logs
the best trial, ``sweep.csv`` and Optuna's plots (``optuna/*.json`` and ``.html``).

The study lives in an Optuna storage (a database): by default ``optuna.db`` beside a sqlite
MLflow store. Any number of ``runners.sweep`` processes given the same ``--study`` and
``--storage`` (``postgresql://...`` across machines) share its trials until ``--trials`` have
run, under the same parent run. The same command run again continues its study: a trial that
SIGTERM stopped is resumed from its checkpoint.

Exit status: 0 done, 2 a bad command line (nothing was run), 1 a trial failed, 143/130 stopped.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow

import registry
from runners import config as config_mod
from runners import grid
from runners.config import ConfigError
from zoo import schema
from zoo.schema import Tag

PARENT_ATTR = "mlflow_parent_run"  # the study's user attribute naming its parent run
_SPEC = re.compile(r"^\s*([\w.]+)\s*=\s*(uniform|loguniform|int|choice)\s*\((.*)\)\s*$")


class _Surplus(Exception):
    """A trial asked for after the study had its trials: recorded as failed, never run."""


@dataclass(frozen=True)
class Param:
    """One searched key: its distribution and bounds, or its choices."""

    key: str
    kind: str  # uniform, loguniform, int, choice
    args: tuple

    def suggest(self, trial) -> Any:
        if self.kind == "choice":
            return trial.suggest_categorical(self.key, list(self.args))
        if self.kind == "int":
            return trial.suggest_int(self.key, *self.args)
        return trial.suggest_float(self.key, *self.args, log=self.kind == "loguniform")

    def __str__(self) -> str:
        return f"{self.key}={self.kind}({','.join(map(str, self.args))})"


def parse_space(entry: str, specs: list[str], fixed: list[str]) -> list[Param]:
    """The search space, each key and bound checked against the entry's config before any trial."""
    space: list[Param] = []
    for spec in specs:
        m = _SPEC.match(spec)
        if not m:
            raise ConfigError(f"--search {spec!r}: expected KEY=DIST(...), DIST one of uniform(a,b), loguniform(a,b), "
                              f"int(a,b), choice(v1,v2,...)")
        key, kind, raw = m.group(1), m.group(2), [a.strip() for a in m.group(3).split(",")]
        if key in {p.key for p in space}:
            raise ConfigError(f"--search: {key} is searched twice")
        if key in ("seed", "seeds", "resume", "experiment") or key.startswith("data") and "." not in key:
            raise ConfigError(f"--search: {key} cannot be searched; give it as a fixed key=value")
        if kind == "choice":
            if len(raw) < 2 or any(not a for a in raw):
                raise ConfigError(f"--search {spec!r}: choice() needs at least two values")
            for value in raw:
                _check(entry, fixed, key, value, spec)
            space.append(Param(key, kind, tuple(raw)))
            continue
        if len(raw) != 2:
            raise ConfigError(f"--search {spec!r}: {kind}() takes two bounds, low and high")
        low, high = (_check(entry, fixed, key, a, spec) for a in raw)
        number = int if kind == "int" else float
        if kind == "int" and not all(isinstance(v, int) and not isinstance(v, bool) for v in (low, high)):
            raise ConfigError(f"--search {spec!r}: {key} takes a {type(low).__name__}; int() needs a key of integers")
        if kind != "int" and (isinstance(low, bool) or not isinstance(low, (int, float))):
            raise ConfigError(f"--search {spec!r}: {key} takes a {type(low).__name__}, not a number; use choice(...)")
        if isinstance(low, int) and kind != "int":
            raise ConfigError(f"--search {spec!r}: {key} takes an integer; use int({raw[0]},{raw[1]})")
        if not low < high:
            raise ConfigError(f"--search {spec!r}: the low bound must be below the high one")
        if kind == "loguniform" and low <= 0:
            raise ConfigError(f"--search {spec!r}: loguniform() needs a positive low bound")
        space.append(Param(key, kind, (number(low), number(high))))
    if not space:
        raise ConfigError("give at least one --search KEY=DIST(...)")
    return space


def _check(entry: str, fixed: list[str], key: str, value: str, spec: str) -> Any:
    """``value`` for ``key`` as the config validates it (a bad key or value names the spec)."""
    try:
        cfg = config_mod.resolve(entry, [*fixed, f"{key}={value}"])
    except ConfigError as exc:
        raise ConfigError(f"--search {spec!r}: {exc}") from None
    return grid.get_key(cfg, key)


def default_storage() -> str:
    """``optuna.db`` beside a sqlite MLflow store, else in the working folder."""
    uri = mlflow.get_tracking_uri()
    if uri.startswith("sqlite:///"):
        return f"sqlite:///{Path(uri.removeprefix('sqlite:///')).parent / 'optuna.db'}"
    return "sqlite:///optuna.db"


def _public(url: str) -> str:
    return re.sub(r"//([^:/@]+):[^@]*@", r"//\1:***@", url)  # no password in a tag


# -- the study ---------------------------------------------------------------------------------------


class Search:
    """A study and its MLflow parent run, as one worker process sees them."""

    def __init__(self, entry: str, space: list[Param], fixed: list[str], *, trials: int, metric: str,
                 direction: str, storage: str, study: str, startup: int, warmup: int) -> None:
        import optuna

        self.entry, self.space, self.fixed, self.trials, self.metric = entry, space, fixed, trials, metric
        self.base = config_mod.resolve(entry, fixed)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # the trials' heartbeat
        self.storage = _storage(storage, self._retry)
        pruner = optuna.pruners.MedianPruner(n_startup_trials=startup, n_warmup_steps=warmup)
        self.name, self.url = study, storage
        described = {"entry": entry, "space": [str(p) for p in space], "fixed": fixed, "metric": metric}
        # The database's unique study name makes one worker the creator, atomically: it makes the
        # MLflow parent run, and the others wait for its id.
        try:
            self.study = optuna.create_study(study_name=study, storage=self.storage, direction=direction,
                                             sampler=optuna.samplers.TPESampler(seed=self.base["seed"]), pruner=pruner)
            self.study.set_user_attr("search", described)
            self.parent = self._new_parent()
            return
        except optuna.exceptions.DuplicatedStudyError:
            pass
        self.study = optuna.load_study(study_name=study, storage=self.storage, pruner=pruner)
        if self.study.direction.name.lower() != direction:
            raise ConfigError(f"study {study!r} in {_public(storage)} {self.study.direction.name.lower()}s; "
                              f"this search would {direction}")
        # A worker that joins proposes its own trials: the creator's seed would repeat its proposals.
        joined = self.base["seed"] * 1_000_003 + len(self.study.trials) * 7919 + os.getpid()
        self.study.sampler = optuna.samplers.TPESampler(seed=joined % 2**32)
        have = self._wait_for("search")
        if have != described:
            raise ConfigError(f"study {study!r} in {_public(storage)} is a search of {have}, not of {described}; "
                              f"give another --study, or the same search to continue it")
        self.parent = self._attach(self._wait_for(PARENT_ATTR))

    def _wait_for(self, attr: str, timeout: float = 120.0):
        """A study attribute that the creating worker sets in its first seconds."""
        deadline = time.monotonic() + timeout
        while (value := self.study.user_attrs.get(attr)) is None:
            if time.monotonic() > deadline:
                raise ConfigError(f"study {self.name!r} has no {attr!r} after {timeout:.0f} s: its first worker "
                                  f"died while starting it; give another --study")
            time.sleep(0.5)
        return value

    def _new_parent(self):
        """The study's MLflow parent run, made by the worker that created the study."""
        from runners.tracking import Run, entry_tags, runs_root

        run = Run.start(self.base["experiment"], name=f"{self.entry}-search-{self.name}", local_root=runs_root())
        logged = json.loads(json.dumps(self.base, default=str))
        for p in self.space:
            grid.set_key(logged, p.key, str(p))
        run.log_config(logged, {**entry_tags(self.base), Tag.SWEEP: "search",
                                Tag.SWEEP_KEYS: json.dumps([p.key for p in self.space]), Tag.STUDY: self.name,
                                Tag.STORAGE: _public(self.url), Tag.SWEEP_METRIC: self.metric})
        self.study.set_user_attr(PARENT_ATTR, run.id)
        return run

    @staticmethod
    def _attach(run_id: str):
        from runners.tracking import Run, runs_root

        run = Run(run_id, runs_root() / run_id)  # shared: several workers write to it at once
        if run.client.get_run(run_id).info.status != "RUNNING":
            run.reopen()  # a study continued after a stop
        return run

    # -- trials ----------------------------------------------------------------------------------
    def counted(self) -> int:
        """Trials that count toward --trials: run, running or queued (a failed one is retried)."""
        from optuna.trial import TrialState

        states = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)
        return len(self.study.get_trials(deepcopy=False, states=states))

    def _retry(self, study, trial) -> None:
        """Queue a trial that was stopped (SIGTERM) or lost (its worker died) again, once: its
        MLflow run continues from its checkpoint."""
        done = study.user_attrs.get("retried", [])
        if trial.number in done:
            return
        study.set_user_attr("retried", [*done, trial.number])
        study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number,
                                                       "resume_run": trial.user_attrs.get("mlflow_run", "")})

    def requeue_stopped(self) -> None:
        from optuna.trial import TrialState

        for trial in self.study.get_trials(deepcopy=False, states=(TrialState.FAIL,)):
            if trial.user_attrs.get("stopped"):
                self._retry(self.study, trial)

    def _waiting(self) -> bool:
        from optuna.trial import TrialState

        return bool(self.study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))

    def _surplus(self, trial) -> bool:
        """Whether ``trial`` is beyond --trials: two workers that ask at the same moment for the
        last trial both get one, and the later number gives way."""
        from optuna.trial import TrialState

        before = [t for t in self.study.get_trials(deepcopy=False)
                  if t.number < trial.number and t.state != TrialState.FAIL]
        return len(before) >= self.trials

    def _retried_earlier(self, trial) -> bool:
        """Whether a lower-numbered trial already retries the trial that ``trial`` retries: two
        workers that start at the same moment may both queue the retry (the study's ``retried``
        list is read, then written), and the later number gives way, so a run is continued once."""
        of = trial.user_attrs.get("retry_of")
        return of is not None and any(t.number < trial.number and t.user_attrs.get("retry_of") == of
                                      for t in self.study.get_trials(deepcopy=False))

    def work(self, stop) -> None:
        """Run trials until the study has --trials (and its queued retries)."""
        import optuna

        while stop.signum is None and (self.counted() < self.trials or self._waiting()):
            optuna.storages.fail_stale_trials(self.study)
            self.study.optimize(self._objective, n_trials=1, catch=(_Surplus,))

    def _objective(self, trial) -> float:
        import optuna

        from runners.command import resolve_command
        from runners.train import Pruned, Stopped, train

        if self._surplus(trial):
            trial.set_user_attr("surplus", True)
            raise _Surplus(f"trial {trial.number}: the study had its {self.trials} trials when it was asked for")
        if self._retried_earlier(trial):
            trial.set_user_attr("surplus", True)
            raise _Surplus(f"trial {trial.number}: trial {trial.user_attrs['retry_of']} is retried by an earlier trial")
        values = {p.key: p.suggest(trial) for p in self.space}
        overrides = [*self.fixed, *(f"{k}={v}" for k, v in values.items())]
        resume = trial.user_attrs.get("resume_run")
        cfg = resolve_command(self.entry, [f"resume={resume}"]) if resume else config_mod.resolve(self.entry, overrides)
        metric, greater = self.metric, self.study.direction.name == "MAXIMIZE"
        seen: list[float] = []

        def on_epoch(epoch: int, val: dict[str, float]) -> None:
            if metric not in val:
                raise ConfigError(f"--metric {metric} is not a validation metric of this task; it logs "
                                  f"{', '.join(sorted(val))}")
            seen.append(val[metric])
            trial.report(val[metric], epoch)
            if trial.should_prune():
                raise Pruned(f"{metric}={val[metric]:.4g} at epoch {epoch} is behind the median of earlier trials")

        print(f"\n== trial {trial.number}: " + ", ".join(f"{k}={v}" for k, v in values.items())
              + (f" (continues run {resume})" if resume else ""), flush=True)
        tags = {Tag.SWEEP_CONFIG: json.dumps(values), Tag.TRIAL: str(trial.number), Tag.STUDY: self.name}
        try:
            result = train(cfg, parent=self.parent.id, name=f"trial-{trial.number}", tags=tags, on_epoch=on_epoch)
        except Pruned as exc:
            trial.set_user_attr("mlflow_run", exc.run_id)
            raise optuna.TrialPruned(str(exc)) from None
        except Stopped as exc:
            trial.set_user_attr("mlflow_run", exc.run_id)
            trial.set_user_attr("stopped", True)  # retried when the study is started again
            raise
        trial.set_user_attr("mlflow_run", result["run_id"])
        trial.set_user_attr("test", {k: v for k, v in result.items() if k.startswith("test/")})
        if not seen:
            raise ConfigError(f"trial {trial.number} logged no {metric}")
        return max(seen) if greater else min(seen)

    # -- the parent's summary --------------------------------------------------------------------
    def summarise(self, *, final: bool) -> None:
        """Log the table, the best trial and Optuna's plots; end the parent when nothing runs."""
        import optuna
        from optuna.trial import TrialState

        trials = self.study.get_trials(deepcopy=False)
        rows = []
        for t in trials:
            if t.state == TrialState.FAIL and (t.user_attrs.get("stopped") or t.user_attrs.get("surplus")):
                continue  # continued by its retry; or never run
            rows.append({"trial": t.number, "state": t.state.name, "value": t.value, **t.params,
                         "run_id": t.user_attrs.get("mlflow_run", ""), **t.user_attrs.get("test", {})})
        import pandas as pd

        self.parent.log_text(pd.DataFrame(rows).to_csv(index=False), "sweep.csv")
        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        if complete:
            best = self.study.best_trial
            self.parent.log_metrics({"best_value": best.value, **best.user_attrs.get("test", {})}, step=len(complete))
            self.parent.log_tags({Tag.SWEEP_BEST: json.dumps(best.params), Tag.BEST_TRIAL: str(best.number),
                                  Tag.SWEEP_BEST_RUN: best.user_attrs.get("mlflow_run", "")})
            for name, plot in (("optimization_history", optuna.visualization.plot_optimization_history),
                               ("param_importances", optuna.visualization.plot_param_importances)):
                try:
                    fig = plot(self.study)
                except Exception as exc:  # importances need two finished trials that differ
                    print(f"note: no {name} plot yet ({type(exc).__name__}: {exc})", file=sys.stderr)
                    continue
                self.parent.log_text(fig.to_json(), f"optuna/{name}.json")
                # plotly.js inside: the page opens in MLflow's artifact view with no network
                self.parent.log_text(fig.to_html(include_plotlyjs=True), f"optuna/{name}.html")
        running = self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING))
        if not running:
            self.parent.end("FINISHED" if final else "KILLED")
        else:  # the workers still running end it; this one stops beating for it
            self.parent.stop_heartbeat()


def _storage(url: str, retry):
    """Optuna's RDB storage, with trial heartbeats (30 s, grace 120 s) that find a dead worker's
    trials. Workers that open a new database at once race to create its tables; the losers'
    CREATE TABLE fails, and the tables are there when they try again."""
    import optuna
    import sqlalchemy.exc

    for attempt in range(5):
        try:
            return optuna.storages.RDBStorage(url, heartbeat_interval=30, grace_period=120,
                                              heartbeat_stale_trial_callback=retry)
        except (sqlalchemy.exc.ProgrammingError, sqlalchemy.exc.IntegrityError, sqlalchemy.exc.OperationalError):
            if attempt == 4:
                raise
            time.sleep(0.5 + attempt)


def study_name(entry: str, space: list[Param], fixed: list[str], metric: str) -> str:
    """The same search (entry, space, fixed keys, metric) gets the same study: run again, it continues."""
    digest = hashlib.sha1(json.dumps([entry, [str(p) for p in space], sorted(fixed), metric]).encode()).hexdigest()
    return f"{entry}-{digest[:8]}"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m runners.sweep", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("entry", help="a model entry (python -m runners.run --list)")
    p.add_argument("--search", nargs="+", required=True, metavar="KEY=DIST(...)", help="the searched keys")
    p.add_argument("--trials", type=int, default=20, help="trials of the study, over all its workers (20)")
    p.add_argument("--metric", help="the validation metric to optimise (default: val/<the task's main metric>)")
    p.add_argument("--direction", choices=["maximize", "minimize"], help="default: the task's, for its main metric")
    p.add_argument("--storage", help="Optuna storage URL (default: optuna.db beside a sqlite MLflow store)")
    p.add_argument("--study", help="study name (default: one per entry, search space, fixed keys and metric)")
    p.add_argument("--startup-trials", type=int, default=5, help="trials the pruner lets finish before it prunes (5)")
    p.add_argument("--warmup-epochs", type=int, default=0, help="epochs of each trial before it may be pruned (0)")
    p.add_argument("fixed", nargs="*", metavar="key=value", help="fixed config keys, as for runners.run")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_intermixed_args(argv)
    # fixed keys may follow --search's specs directly: a value without a distribution is one
    specs = [s for s in args.search if "(" in s]
    fixed = [s for s in args.search if "(" not in s] + args.fixed
    try:
        if args.trials < 1:
            raise ConfigError("--trials must be at least 1")
        if any(f.partition("=")[0].strip() in ("seeds", "resume") for f in fixed):
            raise ConfigError("a search runs one seed per trial (seed=N) and continues itself: drop seeds= and resume=")
        base = config_mod.resolve(args.entry, fixed)
        task_cls = registry.load("task", base["task"]["name"])
        main_metric = schema.val(task_cls.main_metric)
        metric = args.metric or main_metric
        if not metric.startswith("val/"):
            raise ConfigError(f"--metric {metric}: a search optimises a validation metric (val/...), reported per "
                              f"epoch to the pruner; the test split stays for the final scores")
        direction = args.direction or (("maximize" if task_cls.greater_is_better else "minimize")
                                       if metric == main_metric else None)
        if direction is None:
            raise ConfigError(f"--metric {metric} is not the task's main metric ({main_metric}): give --direction")
        space = parse_space(args.entry, specs, fixed)
    except (ConfigError, registry.PluginError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    from runners.tracking import check_store
    from runners.train import Stopped, StopFlag

    check_store()
    storage = args.storage or default_storage()
    try:
        search = Search(args.entry, space, fixed, trials=args.trials, metric=metric, direction=direction,
                        storage=storage, study=args.study or study_name(args.entry, space, fixed, metric),
                        startup=args.startup_trials, warmup=args.warmup_epochs)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # a storage that cannot be opened or written
        print(f"error: cannot open the study in {_public(storage)}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    print(f"study {search.name} in {_public(storage)}: {search.counted()} of {args.trials} trials so far; "
          f"parent run {search.parent.id}", flush=True)
    search.parent.start_heartbeat()
    search.requeue_stopped()
    status = 0
    with StopFlag() as stop:
        try:
            search.work(stop)
        except Stopped as exc:
            status = 128 + exc.signum
        except Exception as exc:
            print(f"error: a trial failed: {type(exc).__name__}: {exc}", file=sys.stderr)
            status = 1
    if stop.signum is not None and not status:
        status = 128 + stop.signum
    search.summarise(final=status == 0)
    if status == 0 and any(t.value is not None for t in search.study.trials):
        best = search.study.best_trial
        print(f"best trial {best.number}: {metric}={best.value:.4g} with "
              + ", ".join(f"{k}={v}" for k, v in best.params.items()), flush=True)
    print(f"run_id: {search.parent.id}", flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
