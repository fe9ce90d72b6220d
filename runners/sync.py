"""Send what a run kept locally while its tracking store was away.

    python -m runners.sync RUN_ID [RUN_ID ...]    # or --all: every run folder with an outbox

The runner keeps metrics, artifacts and the final status in ``artzoo_runs/<run_id>/outbox.jsonl``
when the store does not answer, and sends them when it does; this sends what is left.
"""

from __future__ import annotations

import sys

from runners.train import runs_root
from runners.tracking import Run


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if args else 2
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


if __name__ == "__main__":
    sys.exit(main())
