"""Send what a run kept locally while its tracking store was away; mark runs a crash left RUNNING.

    python -m runners.sync RUN_ID [RUN_ID ...]    # or --all: every run folder with an outbox
    python -m runners.sync --mark-stale [--older-than MINUTES] [--dry-run]

The runner keeps metrics, artifacts and the final status in ``artzoo_runs/<run_id>/outbox.jsonl``
when the store does not answer, and sends them when it does; this sends what is left.

A machine that crashes (power loss, the OOM killer, SIGKILL) leaves its runs RUNNING forever.
``--mark-stale`` marks KILLED every RUNNING run that shows no sign of life for MINUTES
(default 60): its newest metric, its start, and, for runs trained from this folder, the
heartbeat that a training process writes every 30 s to ``artzoo_runs/<run_id>/heartbeat.json``.
A run whose heartbeat comes from a live process on this machine is never marked, whatever its
age; a run whose outbox still holds records is sent first (it may have finished while the store
was away). ``--dry-run`` only lists. A marked run can still be resumed from its last checkpoint.
"""

from __future__ import annotations

import sys
import time

from mlflow.tracking import MlflowClient

from runners.tracking import Run, beat_alive, runs_root, unreachable
from zoo.schema import Tag

STALE_MINUTES = 60.0


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if args else 2
    if args[0] == "--mark-stale":
        return _mark_stale_cli(args[1:])
    ids = [p.parent.name for p in runs_root().glob("*/outbox.jsonl")] if args == ["--all"] else args
    failed = 0
    for run_id in ids:
        run = Run(run_id, runs_root() / run_id)
        if run.outbox is None or not run.outbox.exists():
            print(f"{run_id}: nothing kept")
        elif run.flush():
            print(f"{run_id}: sent")
        else:
            print(f"{run_id}: the tracking store still does not answer; kept in {run.outbox}", file=sys.stderr)
            failed += 1
    return 1 if failed else 0


def _mark_stale_cli(args: list[str]) -> int:
    minutes, dry_run = STALE_MINUTES, False
    rest = list(args)
    while rest:
        arg = rest.pop(0)
        if arg == "--dry-run":
            dry_run = True
        elif arg == "--older-than" and rest:
            value = rest.pop(0)
            try:
                minutes = float(value)
                if minutes < 0:
                    raise ValueError
            except ValueError:
                print(f"error: --older-than takes minutes, a number >= 0, not {value!r}", file=sys.stderr)
                return 2
        else:
            print(f"error: unknown argument {arg!r}; usage: python -m runners.sync --mark-stale "
                  f"[--older-than MINUTES] [--dry-run]", file=sys.stderr)
            return 2
    found = mark_stale(minutes * 60, dry_run=dry_run)
    for run_id, what in found:
        print(f"{run_id}: {what}")
    if not found:
        print("no RUNNING runs in the tracking store")
    return 0


def mark_stale(older_than_s: float, *, dry_run: bool = False) -> list[tuple[str, str]]:
    """Mark KILLED each RUNNING run with no sign of life for ``older_than_s``; what was done to each."""
    client = MlflowClient()
    experiments = [e.experiment_id for e in client.search_experiments()]
    report: list[tuple[str, str]] = []
    for info in _running(client, experiments):
        run_id = info.info.run_id
        run = Run(run_id, runs_root() / run_id)
        if run.outbox is not None and run.outbox.exists():
            if dry_run:
                report.append((run_id, f"left RUNNING: it has records kept in {run.outbox}, which would be "
                                       f"sent first (it may have ended while the store was away)"))
                continue
            if not run.flush():
                report.append((run_id, f"left RUNNING: it has records kept in {run.outbox} that the store "
                                       f"does not take yet"))
                continue
            info = client.get_run(run_id)
            if info.info.status != "RUNNING":
                report.append((run_id, f"sent the records it kept locally; it is {info.info.status}"))
                continue
        beat = run.heartbeat()
        if beat and beat_alive(beat):
            report.append((run_id, f"left RUNNING: process {beat['pid']} on this machine is training it"))
            continue
        last = _last_sign_of_life(info, beat)
        age = time.time() - last
        if age < older_than_s:
            report.append((run_id, f"left RUNNING: last sign of life {age / 60:.1f} min ago"))
            continue
        entry = info.data.tags.get(Tag.ENTRY, "ENTRY")
        if not dry_run:
            client.set_tag(run_id, Tag.STALE, f"marked KILLED by `python -m runners.sync --mark-stale`: no sign "
                                                f"of life for {age / 60:.1f} min")
            client.set_terminated(run_id, status="KILLED", end_time=int(last * 1000))
        report.append((run_id, f"{'would be marked' if dry_run else 'marked'} KILLED: no sign of life for "
                               f"{age / 60:.1f} min; continue it with `python -m runners.run {entry} resume={run_id}`"))
    return report


def _running(client: MlflowClient, experiments: list[str]):
    token = None
    while True:
        page = client.search_runs(experiments, "attributes.status = 'RUNNING'", max_results=1000, page_token=token)
        yield from page
        token = page.token
        if not token:
            return


def _last_sign_of_life(info, beat: dict | None) -> float:
    """Seconds since the epoch of the newest trace the run left: start, metrics, heartbeat."""
    times = [info.info.start_time / 1000]
    times += [m.timestamp / 1000 for m in getattr(info.data, "_metric_objs", None) or []]
    if beat:
        times.append(float(beat["time"]))
    return max(times)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception as exc:
        if not unreachable(exc):
            raise
        print(f"error: the tracking store does not answer: {exc}", file=sys.stderr)
        sys.exit(1)
