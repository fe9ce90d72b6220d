"""The long-tail benchmark: every class-imbalance remedy on synthart_lt, several seeds, one table.

    python bench/imbalance.py                         # cnn × every remedy × seeds 0 1 2, then timm_net
    python bench/imbalance.py --remedies none drw     # some remedies
    python bench/imbalance.py --models cnn --seeds 0  # one seed, cnn only
    python bench/imbalance.py --models timm_net --remedies none logit_adjust   # the timm_net rows alone
    python bench/imbalance.py data.seed=1             # key=value added to every run

synthart_lt is WikiArt's shape: ten styles in WikiArt's order, 150:1 from largest to smallest in
training, balanced valid and test splits (50 images per style), 32 px. Each cell is mean ± std
over the seeds (sample std; 0 for one seed). After the cnn rows, ``timm_net`` (resnet18, random
weights) trains with ``none`` and with the cnn's remedy of the best mean balanced accuracy (or,
without cnn rows, the ``--remedies`` given). The
table then checks the targets of docs/results.md: the best remedy's balanced accuracy above
none's by more than 3× the larger of their stds, its few-shot recall by more than 0.1, and
none's balanced accuracy under 0.9 (not saturated).

Runs go to the MLflow store under bench/out/ (``mlflow ui --backend-store-uri
sqlite:///bench/out/imbalance.db``); the table is printed as Markdown and written to
bench/out/imbalance.md.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import time
import typing
from pathlib import Path

import numpy as np

from quality import cell
from throughput import cpu_model

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"
METRICS = ("acc", "macro_f1", "balanced_acc", "recall_many", "recall_medium", "recall_few")


def remedies() -> list[str]:
    """The values of train.imbalance, read from the classify task's signature."""
    import registry

    option = next(o for o in registry.options(registry.load("task", "classify"), "task") if o.name == "imbalance")
    return list(typing.get_args(typing.get_args(option.annotation)[0]))


def run_row(entry: str, remedy: str, seeds: list[int], overrides: list[str]) -> dict:
    """Train ``entry`` with ``remedy`` once per seed: the per-seed test metrics and minutes."""
    from runners import config, train

    results, minutes = [], []
    for seed in seeds:
        started = time.perf_counter()
        cfg = config.resolve(entry, ["data=synthart_lt", f"train.imbalance={remedy}", f"seed={seed}",
                                     "train.device=cpu", "experiment=bench-imbalance", *overrides])
        results.append(train.train(cfg))
        minutes.append((time.perf_counter() - started) / 60)
    values = {m: [r.get(f"test/{m}", np.nan) for r in results] for m in METRICS}
    return {"entry": entry, "remedy": remedy, "values": values, "minutes": float(np.mean(minutes))}


def _stats(row: dict, metric: str) -> tuple[float, float]:
    v = np.asarray(row["values"][metric], dtype=float)
    return float(np.mean(v)), float(v.std(ddof=1)) if len(v) > 1 else 0.0


def targets(rows: list[dict]) -> list[str]:
    """The docs' three targets, each with its numbers and whether it holds."""
    cnn = {r["remedy"]: r for r in rows if r["entry"] == "cnn"}
    if "none" not in cnn or len(cnn) < 2:
        return ["targets: need the cnn rows of none and at least one remedy"]
    best = max((r for r in cnn if r != "none"), key=lambda r: _stats(cnn[r], "balanced_acc")[0])
    (b, sb), (n, sn) = _stats(cnn[best], "balanced_acc"), _stats(cnn["none"], "balanced_acc")
    (fb, _), (fn, _) = _stats(cnn[best], "recall_few"), _stats(cnn["none"], "recall_few")
    gap, spread = b - n, max(sb, sn)
    mark = lambda ok: "met" if ok else "NOT met"  # noqa: E731
    return [
        f"best remedy by mean balanced accuracy: {best}",
        f"- balanced accuracy {b:.3f} against none's {n:.3f}: a gap of {gap:.3f}, {gap / spread:.1f}× the larger "
        f"std ({spread:.3f}); target > 3×: {mark(gap > 3 * spread)}" if spread else
        f"- balanced accuracy {b:.3f} against none's {n:.3f}: a gap of {gap:.3f}, std 0 (one seed?)",
        f"- few-shot recall {fb:.3f} against none's {fn:.3f}: +{fb - fn:.3f}; target > 0.1: {mark(fb - fn > 0.1)}",
        f"- none's balanced accuracy {n:.3f}; target < 0.9 (not saturated): {mark(n < 0.9)}",
    ]


def markdown(rows: list[dict]) -> str:
    lines = ["| model | train.imbalance | " + " | ".join(METRICS) + " | min/seed |", "|---" * (len(METRICS) + 3) + "|"]
    for r in rows:
        cells = [cell(r["values"][m]) for m in METRICS]
        model = "timm_net resnet18" if r["entry"] == "timm_net" else r["entry"]
        lines.append(f"| {model} | {r['remedy']} | " + " | ".join(cells) + f" | {r['minutes']:.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--remedies", nargs="+", default=None, help="train.imbalance values (default: every one)")
    parser.add_argument("--models", nargs="+", choices=["cnn", "timm_net"], default=["cnn", "timm_net"],
                        help="the cnn rows (every remedy) and the timm_net rows (none and the best)")
    parser.add_argument("--out", type=Path, default=OUT, help="folder of imbalance.md and the default MLflow store")
    parser.add_argument("overrides", nargs="*", help="key=value added to every run (e.g. data.seed=1)")
    args = parser.parse_args()

    args.out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{args.out / 'imbalance.db'}")
    known = remedies()
    chosen = args.remedies or known
    unknown = sorted(set(chosen) - set(known))
    if unknown:
        parser.error(f"unknown remedy {', '.join(unknown)}; train.imbalance takes {', '.join(known)}")

    started = time.perf_counter()
    rows = []
    for remedy in chosen if "cnn" in args.models else []:
        rows.append(run_row("cnn", remedy, args.seeds, args.overrides))
        print(markdown(rows[-1:]).splitlines()[-1], flush=True)
    cnn_minutes = (time.perf_counter() - started) / 60
    if "timm_net" in args.models:
        cnn = {r["remedy"]: r for r in rows}
        best = max((r for r in cnn if r != "none"), key=lambda r: _stats(cnn[r], "balanced_acc")[0], default=None)
        for remedy in dict.fromkeys(["none", best] if best else chosen):
            rows.append(run_row("timm_net", remedy, args.seeds, args.overrides))
            print(markdown(rows[-1:]).splitlines()[-1], flush=True)

    text = "\n".join([
        f"{datetime.date.today()}; {cpu_model()}; seeds {' '.join(map(str, args.seeds))}; "
        f"command: python bench/imbalance.py {' '.join(sys.argv[1:])}".rstrip(),
        "",
        markdown(rows),
        "",
        *([f"cnn rows: {cnn_minutes:.1f} min in all", *targets(rows)] if "cnn" in args.models else []),
    ])
    (args.out / "imbalance.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
