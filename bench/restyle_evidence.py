"""cond_ae's marks compared on the scores that share no data with what they score (zoo/evidence.py):
the judges that never saw the training paintings, the texture ratio, the copy rate, beside the
colours (restyle_psnr_gt); on the validation split, where designs are chosen, and the test split.

    python bench/restyle_evidence.py                          # exemplar and learned marks, seeds 0 1 2
    python bench/restyle_evidence.py --marks exemplar --seeds 0 train.epochs=2

Each (marks, seed) is one normal run (`python -m runners.run cond_ae model.marks=M seed=S`, its
MLflow model left out), whose served weights then restyle the validation split with the same
analysis as the test split's. Runs go to MLFLOW_TRACKING_URI, else OUT/evidence.db; the table is
printed as Markdown and written to OUT/restyle_evidence.md (OUT: --out, bench/out), mean ± std over seeds; "worst style" is the lowest
per-style panel accuracy of the unseen judges (mean over seeds).
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"
sys.path.insert(0, str(ROOT))
COLUMNS = ["restyle_acc_panel", "restyle_acc_panel_unseen", "worst style", "restyle_texture_ratio",
           "restyle_texture_ratio_resample", "restyle_copy_rate", "restyle_copy_rate_truth", "restyle_psnr_gt",
           "restyle_psnr_gt_baseline", "stored_training_bytes"]


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def scores_on(run_id: str, split: str) -> dict[str, float]:
    """The run's served model, its restyle analysis on ``split``: the test metrics' names."""
    import registry
    from runners.inference import load

    task, cfg, _ = load(run_id)
    train_set = registry.dataset_of(cfg, "train")
    with tempfile.TemporaryDirectory() as out:
        scores = task.finalize(train_set=train_set, test_set=registry.dataset_of(cfg, split), out=Path(out),
                               device=torch.device("cpu"))
        rows = list(csv.DictReader((Path(out) / "tables" / "restyle_per_style.csv").read_text().splitlines()))
    return {**scores, "worst style": min(float(r["panel_unseen"]) for r in rows)}


def cell(values: list[float], name: str) -> str:
    if name == "stored_training_bytes":
        return f"{np.mean(values) / 2**20:.2f} MB"
    return f"{np.mean(values):.3f} ± {np.std(values):.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--marks", nargs="+", default=["exemplar", "learned"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=OUT, help="where the table and the runs' store go")
    parser.add_argument("overrides", nargs="*", help="key=value added to every run (e.g. train.epochs=2)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{args.out / 'evidence.db'}")
    os.environ.setdefault("NUMBA_CACHE_DIR", str(ROOT / ".numba_cache"))
    from runners import config, train

    rows = []
    for marks in args.marks:
        by_split: dict[str, list[dict]] = {"valid": [], "test": []}
        minutes = []
        for seed in args.seeds:
            started = time.perf_counter()
            cfg = config.resolve("cond_ae", [f"model.marks={marks}", f"seed={seed}", "train.log_model=false",
                                             "train.device=cpu", "experiment=bench-restyle-evidence", *args.overrides])
            result = train.train(cfg)
            minutes.append((time.perf_counter() - started) / 60)
            by_split["test"].append({k.removeprefix("test/"): v for k, v in result.items() if k.startswith("test/")})
            by_split["test"][-1]["worst style"] = _worst_on_test(result["run_id"])
            by_split["valid"].append(scores_on(result["run_id"], "valid"))
            print(f"{marks} seed {seed}: " + ", ".join(f"{c}={by_split['test'][-1].get(c, np.nan):.4g}"
                                                        for c in COLUMNS), flush=True)
        for split, results in by_split.items():
            rows.append((marks, split, [cell([r.get(c, np.nan) for r in results], c) for c in COLUMNS],
                         float(np.mean(minutes))))

    lines = [f"seeds {' '.join(map(str, args.seeds))}; {cpu_model()}, {os.cpu_count()} CPU threads; "
             f"{time.strftime('%Y-%m-%d')}; command: python bench/restyle_evidence.py {' '.join(sys.argv[1:])}".rstrip(),
             "", "| marks | split | " + " | ".join(COLUMNS) + " | min/seed |", "|---" * (len(COLUMNS) + 3) + "|"]
    lines += [f"| {marks} | {split} | " + " | ".join(cells) + f" | {mins:.1f} |" for marks, split, cells, mins in rows]
    text = "\n".join(lines)
    (args.out / "restyle_evidence.md").write_text(text + "\n")
    print(text)


def _worst_on_test(run_id: str) -> float:
    import mlflow

    path = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="tables/restyle_per_style.csv")
    return min(float(r["panel_unseen"]) for r in csv.DictReader(Path(path).read_text().splitlines()))


if __name__ == "__main__":
    main()
