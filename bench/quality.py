"""Quality benchmark: each built-in entry trained on the CPU, several seeds, one table.

    python bench/quality.py                      # everything, seeds 0 1 2 (hours on 2 cores)
    python bench/quality.py --only cnn --seeds 0 # one row group, one seed
    python bench/quality.py --rows digits resnet  # the rows whose label contains these

Runs go to the MLflow store under bench/out/ (``mlflow ui --backend-store-uri
sqlite:///bench/out/quality.db`` shows them); the table is printed as Markdown and written to
bench/out/quality.md. The cells are mean ± std over seeds (std is 0 for one seed).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"

# (row label, entry, overrides); the metrics shown are the headline metrics of the entry's task
ROWS = [
    # the default synthart is solved by every remedy; bench/imbalance.py compares them on synthart_lt
    ("cnn, synthart", "cnn", []),
    ("cnn, digits", "cnn", ["data=digits"]),
    ("timm_net resnet18, synthart", "timm_net", []),
    ("ae, synthart", "ae", []),
    ("cond_ae concat, synthart", "cond_ae", ["model.conditioning=concat"]),
    ("cond_ae cin, synthart", "cond_ae", ["model.conditioning=cin"]),
    ("cond_ae concat, learned marks, synthart", "cond_ae", ["model.conditioning=concat", "model.marks=learned"]),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--only", nargs="+", default=None, help="entries to run (cnn, ae, cond_ae, timm_net)")
    parser.add_argument("--rows", nargs="+", default=None, help="only the rows whose label contains one of these")
    parser.add_argument("overrides", nargs="*", help="key=value added to every run (e.g. train.epochs=1)")
    args = parser.parse_args()

    OUT.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{OUT / 'quality.db'}")
    os.environ.setdefault("NUMBA_CACHE_DIR", str(ROOT / ".numba_cache"))
    import registry
    from runners import config, train

    table = []
    for label, entry, overrides in ROWS:
        if (args.only and entry not in args.only) or (args.rows and not any(r in label for r in args.rows)):
            continue
        results, minutes = [], []
        for seed in args.seeds:
            started = time.perf_counter()
            cfg = config.resolve(entry, [*overrides, f"seed={seed}", "train.device=cpu", *args.overrides,
                                         "experiment=bench-quality"])
            results.append(train.train(cfg))
            minutes.append((time.perf_counter() - started) / 60)
        metrics = [f"test/{m}" for m in registry.load("task", cfg["task"]["name"]).headline_metrics]
        cells = [cell([r.get(m, np.nan) for r in results]) for m in metrics]
        table.append((label, metrics, cells, float(np.mean(minutes))))
        print(f"{label}: " + ", ".join(f"{m}={c}" for m, c in zip(metrics, cells)), flush=True)

    lines = [f"seeds {' '.join(map(str, args.seeds))}; CPU threads: {os.cpu_count()}; "
             f"command: python bench/quality.py {' '.join(sys.argv[1:])}".rstrip(), ""]
    for group in dict.fromkeys(tuple(m) for _, m, _, _ in table):
        lines.append("| run | " + " | ".join(m.removeprefix("test/") for m in group) + " | min/seed |")
        lines.append("|---" * (len(group) + 2) + "|")
        for label, metrics, cells, mins in table:
            if tuple(metrics) == group:
                lines.append(f"| {label} | " + " | ".join(cells) + f" | {mins:.1f} |")
        lines.append("")
    text = "\n".join(lines)
    (OUT / "quality.md").write_text(text)
    print(text)


def cell(values: list[float]) -> str:
    v = np.asarray(values, dtype=float)
    if np.isnan(v).all():
        return "n/a"
    std = v.std(ddof=1) if len(v) > 1 else 0.0
    return f"{np.nanmean(v):.3f} ± {std:.3f}"


if __name__ == "__main__":
    main()
