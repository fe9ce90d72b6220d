"""Which representation finds style: an autoencoder's content code, its style statistics, and
their baselines (the same statistics of the untrained network, raw pixels), over seeds.

    python bench/embeddings.py                          # ae on the default synthart, seeds 0 1 2
    python bench/embeddings.py data=synthart_lt         # the long-tail preset
    python bench/embeddings.py --entry cond_ae --seeds 0 train.judge_steps=300

Each seed is a full training run (the entry's defaults plus the overrides); the table shows the
k-means scores (k = number of styles) in each embedding's PCA space and UMAP layout, and
precision@10, as mean ± std over the seeds (sample std). Runs go to
``sqlite:///bench/out/embeddings.db``; the table is printed and written to
bench/out/embeddings.md.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import time
from pathlib import Path

from quality import cell
from throughput import cpu_model

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"
# (row, metric prefix, p@10 name)
EMBEDDINGS = [("style statistics", "style_", "style"), ("content code", "", "code"),
              ("style statistics, untrained network", "untrained_style_", "untrained_style"),
              ("raw pixels", "baseline_", "baseline")]
COLUMNS = [("NMI (PCA)", "cluster_nmi_pca"), ("NMI (UMAP)", "cluster_nmi_umap"), ("ARI (PCA)", "cluster_ari_pca"),
           ("silhouette (PCA)", "silhouette_pca")]


def table(results: list[dict]) -> str:
    lines = ["| embedding | " + " | ".join(c for c, _ in COLUMNS) + " | precision@10 |",
             "|---" * (len(COLUMNS) + 2) + "|"]
    for row, prefix, name in EMBEDDINGS:
        cells = [cell([r.get(f"test/{prefix}{key}", float("nan")) for r in results]) for _, key in COLUMNS]
        p10 = cell([r.get(f"test/{name}_p_at_10", float("nan")) for r in results])
        lines.append(f"| {row} | " + " | ".join(cells) + f" | {p10} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entry", default="ae", help="a model entry whose task embeds (ae, cond_ae)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=OUT, help="folder of embeddings.md and the default MLflow store")
    parser.add_argument("overrides", nargs="*", help="key=value added to every run")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{args.out / 'embeddings.db'}")
    os.environ.setdefault("NUMBA_CACHE_DIR", str(ROOT / ".numba_cache"))
    from runners import config, train

    results, minutes = [], []
    for seed in args.seeds:
        started = time.perf_counter()
        cfg = config.resolve(args.entry, [f"seed={seed}", "train.device=cpu", "experiment=bench-embeddings",
                                          *args.overrides])
        results.append(train.train(cfg))
        minutes.append((time.perf_counter() - started) / 60)
    extra = [f"psnr {cell([r['test/psnr'] for r in results])} dB"] if all("test/psnr" in r for r in results) else []
    text = "\n".join([
        f"{datetime.date.today()}; {cpu_model()}; {args.entry}, seeds {' '.join(map(str, args.seeds))}; command: "
        f"python bench/embeddings.py {' '.join(sys.argv[1:])}".rstrip(),
        "",
        table(results),
        "",
        "; ".join([*extra, f"{sum(minutes) / len(minutes):.1f} min per seed (training and the analysis)"]),
    ])
    (args.out / "embeddings.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
