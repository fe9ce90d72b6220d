"""cond_ae's marks compared on the scores that share no data with what they score (zoo/evidence.py):
the judges that never saw the training paintings, the texture ratio, the copy rate, beside the
colours (restyle_psnr_gt); on the validation split, where designs are chosen, and the test split.

    python bench/restyle_evidence.py                          # exemplar and learned marks, seeds 0 1 2
    python bench/restyle_evidence.py --marks exemplar dictionary learned
    python bench/restyle_evidence.py --marks exemplar --seeds 0 train.epochs=2

Each (marks, seed) is one normal run (`python -m runners.run cond_ae model.marks=M seed=S`, its
MLflow model left out), whose served weights then restyle the validation split with the same
analysis as the test split's. Runs go to MLFLOW_TRACKING_URI, else OUT/evidence.db; the table is
printed as Markdown and written to OUT/restyle_evidence.md (OUT: --out, bench/out), mean ± std over seeds; "worst style" is the lowest
per-style panel accuracy of the unseen judges (mean over seeds); "Pop_Art structure" is where
Pop_Art's restyles stand on the structure score between the input's (0) and the truth painted
again with other marks (1).
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"
sys.path.insert(0, str(ROOT))
from throughput import cpu_model  # noqa: E402
COLUMNS = ["restyle_acc_panel", "restyle_acc_panel_unseen", "worst style", "restyle_texture_ratio",
           "restyle_texture_ratio_resample", "Pop_Art structure", "restyle_copy_rate", "restyle_copy_rate_truth",
           "restyle_psnr_gt", "restyle_psnr_gt_baseline", "stored_training_bytes"]


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
    return {**scores, **_from_table(rows)}


def cell(values: list[float], name: str) -> str:
    if name == "stored_training_bytes":
        return f"{np.mean(values) / 1e6:.2f} MB"
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
            by_split["test"][-1].update(_from_table(_table_of(result["run_id"])))
            by_split["valid"].append(scores_on(result["run_id"], "valid"))
            print(f"{marks} seed {seed}: " + ", ".join(f"{c}={by_split['test'][-1].get(c, np.nan):.4g}"
                                                        for c in COLUMNS), flush=True)
        for split, results in by_split.items():
            rows.append((marks, split, [cell([r.get(c, np.nan) for r in results], c) for c in COLUMNS],
                         float(np.mean(minutes))))

    lines = [f"seeds {' '.join(map(str, args.seeds))}; {cpu_model()}; "
             f"{time.strftime('%Y-%m-%d')}; command: python bench/restyle_evidence.py {' '.join(sys.argv[1:])}".rstrip(),
             "", "| marks | split | " + " | ".join(COLUMNS) + " | min/seed |", "|---" * (len(COLUMNS) + 3) + "|"]
    lines += [f"| {marks} | {split} | " + " | ".join(cells) + f" | {mins:.1f} |" for marks, split, cells, mins in rows]
    text = "\n".join(lines)
    (args.out / "restyle_evidence.md").write_text(text + "\n")
    print(text)


def _table_of(run_id: str) -> list[dict]:
    import mlflow

    path = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="tables/restyle_per_style.csv")
    return list(csv.DictReader(Path(path).read_text().splitlines()))


def _from_table(rows: list[dict]) -> dict[str, float]:
    """The per-style figures the table shows: the lowest unseen panel accuracy, and where Pop_Art's
    outlines stand on the structure score, from the input's (0) to the truth painted again (1)."""
    out = {"worst style": min(float(r["panel_unseen"]) for r in rows)}
    pop = next((r for r in rows if r["style"] == "Pop_Art" and "structure" in r), None)
    if pop is not None:
        low, high = float(pop["structure_baseline"]), float(pop["structure_resample"])
        out["Pop_Art structure"] = (float(pop["structure"]) - low) / (high - low)
    return out


if __name__ == "__main__":
    main()
