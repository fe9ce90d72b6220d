"""Embedding analysis at WikiArt's scale: what the reconstruct task's end-of-training analysis costs.

    python bench/embedding_speed.py                      # 15,000 codes of 1,024 numbers, 27 styles
    python bench/embedding_speed.py --points 5000 --styles 10

WikiArt's test split is about 15,000 paintings of 27 styles; ``ae`` codes are 1,024 numbers
(zoo/models/ae.py: ``latent_dim``). The codes here are random but structured: a Gaussian mixture with
one component per style, means in a 16-dimensional subspace mapped into 1,024 dimensions plus
isotropic noise, class sizes falling 20 to 1 as WikiArt's do. The images are 64 px noise tinted
per style (the pixel baseline needs thumbnails; its cost does not depend on their content).

Two tables: each step alone on the codes (PCA, k-means, the silhouette in full and on its
subsample, UMAP at its cap and on every point), and the whole ``Reconstruct.finalize`` as the
runner calls it at the end of training (an untrained 64 px ``ae`` encodes the images, for the
encoding's real cost, and the mixture's codes stand in for its output), with its breakdown.
Numba's compiled UMAP functions are cached in ``$NUMBA_CACHE_DIR`` (default: .numba_cache here);
``--cold`` points it at an empty folder so that the JIT compilation is timed too.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import cpuload  # noqa: E402  (bench/, on sys.path as the script's folder)


def mixture(n: int, dim: int, styles: int, seed: int = 0):
    """``n`` codes (n×dim float32) from a Gaussian mixture of ``styles`` components, and labels."""
    import numpy as np

    rng = np.random.default_rng(seed)
    share = 20.0 ** -np.linspace(0, 1, styles)
    labels = rng.choice(styles, n, p=share / share.sum())
    means = rng.normal(0, 1.0, (styles, 16))
    latent = means[labels] + rng.normal(0, 0.6, (n, 16))
    lift = rng.normal(0, 1 / 4, (16, dim))
    codes = latent @ lift + rng.normal(0, 0.5, (n, dim))
    return codes.astype(np.float32), labels.astype(np.int64)


def images(labels, size: int = 64, seed: int = 0):
    import numpy as np

    rng = np.random.default_rng(seed)
    tint = rng.integers(40, 216, (labels.max() + 1, 3), dtype=np.uint8)
    noise = rng.integers(0, 40, (len(labels), size, size, 3), dtype=np.uint8)
    return tint[labels][:, None, None, :] + noise


def timed(fn):
    """``fn`` and the seconds it took."""
    started = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - started


def steps(codes, labels, args) -> list[tuple[str, float, int]]:
    """Each analysis step alone on the codes: (name, seconds, points)."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score

    from zoo import analysis, umap_adapter
    from zoo.tasks import reconstruct

    n = len(codes)
    rows = []
    reduced, s = timed(lambda: analysis.pca_reduce(codes, analysis.PCA_DIMS))
    rows.append((f"PCA {codes.shape[1]} -> {reduced.shape[1]}", s, n))
    # zoo.metrics.cluster_scores' k-means, on the float64 points it converts to
    _, s = timed(lambda: KMeans(n_clusters=args.styles, n_init=4, random_state=0).fit_predict(
        reduced.astype("float64")))
    rows.append((f"k-means, k={args.styles}, n_init=4 (PCA space)", s, n))
    defaults = reconstruct.Reconstruct.__init__.__kwdefaults__
    cap = min(n, defaults["silhouette_points"])
    _, s = timed(lambda: silhouette_score(reduced, labels, sample_size=cap, random_state=0))
    rows.append(("silhouette, seeded subsample (the task's default cap)", s, cap))
    if args.full_silhouette:
        _, s = timed(lambda: silhouette_score(reduced, labels))
        rows.append(("silhouette, every point", s, n))
    umap_cap = defaults["umap_points"]
    for m in sorted({min(n, umap_cap), n} if args.umap_all else {min(n, umap_cap)}):
        pick = analysis.subsample(n, m)
        _, s = timed(lambda: umap_adapter.umap_layout(reduced[pick]))
        rows.append((f"UMAP fit, {m:,} points (exact kNN + 200 epochs)", s, m))
    if n > umap_cap:
        _, s = timed(lambda: umap_adapter.umap_layout(reduced, fit=analysis.subsample(n, umap_cap)))
        rows.append((f"UMAP as the task runs it: fit on {umap_cap:,}, transform the other {n - umap_cap:,}", s, n))
    return rows


def finalize(codes, labels, args, out: Path) -> tuple[dict, dict[str, float]]:
    """The whole ``Reconstruct.finalize`` with the time spent in each of its parts."""
    import numpy as np
    import torch

    import registry
    from zoo import analysis
    from zoo.tasks import reconstruct
    from zoo.data import ImageDataset

    class MixtureCodes(reconstruct.Reconstruct):
        def embed(self, net, x, y):
            net.encode(x)  # the real encoder's cost ...
            out = torch.from_numpy(codes[self.seen : self.seen + len(x)])  # ... the mixture's codes
            self.seen += len(x)
            return out

    data = ImageDataset(images(labels), labels, [f"style{i:02d}" for i in range(args.styles)], name="mixture",
                        split="test")
    torch.manual_seed(0)
    model = registry.model("ae", num_classes=args.styles, image_size=64).to(memory_format=torch.channels_last)  # as trained
    task = MixtureCodes(model=model, classes=data.classes)
    task.setup(data, torch.device("cpu"))  # keeps the untrained encoder: the style baseline is computed too
    task.seen = 0
    spent: dict[str, float] = defaultdict(float)

    def clock(name, fn):
        def wrapper(*a, **k):
            started = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                spent[name] += time.perf_counter() - started
        return wrapper

    patches = {"encode_all": ("encode the test set and take its style statistics (64 px ae, trained and untrained)",
                           reconstruct.Reconstruct.encode_all),
               "precision_at_k": ("precision@10 (exact 10 nearest, 4 embeddings)", analysis.precision_at_k),
               "pca_reduce": ("PCA (codes, style statistics, thumbnails for the baseline)", analysis.pca_reduce),
               "umap_layout": ("UMAP", analysis.umap_layout),
               "cluster_scores": ("k-means + silhouette (every embedding and layout)", analysis.cluster_scores),
               "scatter_plot": ("plots", analysis.scatter_plot)}
    saved = np.savez
    try:
        for attr, (name, fn) in patches.items():
            owner = reconstruct.Reconstruct if attr == "encode_all" else analysis
            setattr(owner, attr, clock(name, fn))
        np.savez = clock("embeddings/test.npz", saved)
        metrics, total = timed(lambda: task.finalize(train_set=data, test_set=data, out=out, device=torch.device("cpu")))
    finally:
        np.savez = saved
        for attr, (name, fn) in patches.items():
            setattr(reconstruct.Reconstruct if attr == "encode_all" else analysis, attr, fn)
    spent["finalize, in all"] = total
    return metrics, spent


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=15000, help="test codes (WikiArt's test split: ~15,000)")
    parser.add_argument("--dim", type=int, default=1024, help="numbers per code (ae's latent_dim default)")
    parser.add_argument("--styles", type=int, default=27, help="mixture components (WikiArt: 27 styles)")
    parser.add_argument("--cold", action="store_true", help="an empty numba cache: time UMAP's JIT compilation")
    parser.add_argument("--full-silhouette", action="store_true", help="also time the silhouette on every point")
    parser.add_argument("--umap-all", action="store_true", help="also time a UMAP fit on every point")
    parser.add_argument("--skip-steps", action="store_true", help="only the whole finalize")
    args = parser.parse_args(argv)
    if args.cold:
        os.environ["NUMBA_CACHE_DIR"] = tempfile.mkdtemp(prefix="numba-cold-")
    os.environ.setdefault("NUMBA_CACHE_DIR", str(ROOT / ".numba_cache"))
    cache = Path(os.environ["NUMBA_CACHE_DIR"])
    warm = cache.is_dir() and any(cache.rglob("*.nbi"))

    import torch

    load = cpuload.snapshot()
    codes, labels = mixture(args.points, args.dim, args.styles)
    print(f"{args.points:,} codes of {args.dim} numbers, {args.styles} styles (Gaussian mixture); "
          f"{len(os.sched_getaffinity(0))} cores, {torch.get_num_threads()} torch threads; numba cache "
          f"{cache} ({'warm' if warm else 'cold'})\n", flush=True)
    if not args.skip_steps:
        rows = steps(codes, labels, args)
        print("| step (alone) | points | seconds |\n|---|---|---|")
        for name, s, n in rows:
            print(f"| {name} | {n:,} | {s:.1f} |", flush=True)
        print()
    with tempfile.TemporaryDirectory() as tmp:
        metrics, spent = finalize(codes, labels, args, Path(tmp))
    print("| Reconstruct.finalize (as the runner calls it) | seconds |\n|---|---|")
    for name, s in spent.items():
        print(f"| {name} | {s:.1f} |")
    shown = {k: v for k, v in metrics.items() if "points" in k or k.startswith(("cluster_nmi", "silhouette"))}
    print("\nlogged: " + ", ".join(f"{k}={v:.4g}" for k, v in shown.items()))
    with contextlib.suppress(KeyError):
        print(f"embedding_seconds (as logged): {metrics['embedding_seconds']:.1f}")
    share = cpuload.foreign_share(load)
    if share is not None:
        print(f"meanwhile, other processes took {share:.0%} of the machine's CPU")


if __name__ == "__main__":
    main()
