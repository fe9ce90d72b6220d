"""How fast ``runners.predict`` goes through a folder of 416 px JPEGs, against two references,
and how long a user's photo takes to restyle at its own size.

    python bench/predict_speed.py                         # cnn and cond_ae, 400 JPEGs, 2 rounds
    python bench/predict_speed.py --entries cnn --count 200 --rounds 1

For each entry a tiny run is trained first (its weights do not change the speed; cond_ae trains
until its exemplar bank is full, which the restyle searches), then loaded as a user loads one
(runners/inference.py). Three rates, images per second, each the median of ``--rounds`` rounds:

* predict: ``runners.predict.predict`` on the folder: decode (threads), forward, write the outputs
  (predictions.csv; for cond_ae the PNGs of one target style, painted at the run's size,
  ``--size 64``, as the other two rates);
* forward: the task's ``predict`` alone on the same images already decoded into one tensor in
  memory: the ceiling, and predict / forward shows what reading the files costs;
* naive: one file at a time, as a first script would: PIL open, convert, resize, a batch of one,
  the same outputs written.

The target is predict ≥ 2× naive for cnn. Then, for cond_ae, scikit-learn's sample photo
(640×427) as it is and brought to 1024×768 and 4000×3000, as JPEGs, restyled into one style by ``runners.predict`` at the
picture's own size, its marks at ``auto`` and at 1 (zoo/pictures.py): seconds (median of the
rounds) and the process's peak resident memory over the call. The target is ≤ 3 s at 1024×768.
Runs go to a temporary MLflow store.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from throughput import cpu_model, jpeg_folder  # noqa: E402

# cond_ae: 130 steps of 32 paintings keep 130·32·16 / 8 = 8,320 tiles per style: its bank of 4,096 is full
TRAIN = {"cnn": ["train.max_steps_per_epoch=2"],
         "cond_ae": ["train.max_steps_per_epoch=130", "train.judge_steps=10", "train.umap=false"]}
PHOTOS = ((1024, 768), (640, 427), (4000, 3000))  # width × height: photos to restyle; the last 12 MP


def trained(entry: str) -> tuple:
    """(task, cfg) of a short run of ``entry`` on synthart (:data:`TRAIN`)."""
    from runners import config, inference, train

    cfg = config.resolve(entry, ["train.epochs=1", "train.device=cpu", "train.system_metrics=false",
                                 "experiment=bench-predict", *TRAIN[entry]])
    run_id = train.train(cfg)["run_id"]
    task, cfg, _ = inference.load(run_id)
    return task, cfg


def rates(task, cfg: dict, entry: str, files: list[Path], rounds: int, batch_size: int) -> dict[str, float]:
    import numpy as np
    import torch
    from PIL import Image

    from runners.predict import predict, top_styles
    from zoo.imageio import read_image

    size, classes = int(cfg["data"]["image_size"]), list(cfg["classes"])
    style = classes[0] if entry == "cond_ae" else None
    options = (lambda n: {"style": torch.zeros(n, dtype=torch.long)}) if style else (lambda n: {})
    images = [(p, p.name) for p in files]
    pixels = torch.from_numpy(np.stack([read_image(p, size) for p in files])).permute(0, 3, 1, 2).float().div(255)

    def run_predict() -> None:
        with tempfile.TemporaryDirectory() as out:
            predict(task, cfg, images, Path(out), style=style, batch_size=batch_size, size=size)

    def run_forward() -> None:
        for i in range(0, len(pixels), batch_size):
            task.predict(pixels[i : i + batch_size], **options(len(pixels[i : i + batch_size])))

    def run_naive() -> None:
        with tempfile.TemporaryDirectory() as out:
            rows = []
            for path in files:
                with Image.open(path) as im:
                    x = np.array(im.convert("RGB").resize((size, size), Image.Resampling.BICUBIC))
                x = torch.from_numpy(x).permute(2, 0, 1).float().div(255)[None]
                result = task.predict(x, **options(1))
                if "probabilities" in result:
                    rows.append({"path": str(path), **top_styles(result["probabilities"], classes)[0]})
                else:
                    picture = (result["restyled"][0].transpose(1, 2, 0) * 255).round().astype(np.uint8)
                    Image.fromarray(picture).save(Path(out) / f"{path.stem}.png")
            if rows:
                with open(Path(out) / "predictions.csv", "w", newline="") as f:
                    writer = csv.DictWriter(f, fieldnames=list(rows[0]))
                    writer.writeheader()
                    writer.writerows(rows)

    return {name: len(files) / median_seconds(fn, rounds)
            for name, fn in (("predict", run_predict), ("forward", run_forward), ("naive", run_naive))}


def median_seconds(fn, rounds: int) -> float:
    fn()  # once untimed: the files in the page cache, oneDNN's kernels chosen, for every rate alike
    seconds = []
    for _ in range(rounds):
        started = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds)


def peak_rss(fn) -> float:
    """GB: the process's largest resident memory while ``fn`` runs (sampled every 10 ms)."""
    import threading

    import psutil

    process, peak, done = psutil.Process(), [0], threading.Event()

    def watch() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], process.memory_info().rss)
            done.wait(0.01)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        fn()
    finally:
        done.set()
        watcher.join()
    return peak[0] / 1e9


def photo_rows(task, cfg: dict, rounds: int, folder: Path) -> list[tuple]:
    """``(width, height, mark_scale, seconds, peak GB)`` of restyling a photo into one style."""
    from PIL import Image
    from sklearn.datasets import load_sample_image

    from runners.predict import predict

    rows = []
    for width, height in PHOTOS:
        path = folder / f"photo-{width}x{height}.jpg"
        Image.fromarray(load_sample_image("china.jpg")).resize((width, height), Image.Resampling.BICUBIC).save(
            path, quality=90)
        for scale in ("auto", "1"):
            def restyle() -> None:
                with tempfile.TemporaryDirectory() as out:
                    predict(task, cfg, [(path, path.name)], Path(out), style=cfg["classes"][0], mark_scale=scale)

            rows.append((width, height, scale, median_seconds(restyle, rounds), peak_rss(restyle)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", nargs="+", default=["cnn", "cond_ae"], choices=sorted(TRAIN))
    parser.add_argument("--count", type=int, default=400, help="416 px JPEGs read per round")
    parser.add_argument("--rounds", type=int, default=2, help="rounds per rate (the median is shown)")
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    photos = []
    with tempfile.TemporaryDirectory() as store:
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{store}/mlflow.db"
        os.environ.setdefault("ARTZOO_RUNS", f"{store}/runs")
        folder = jpeg_folder(args.count)
        files = sorted((folder / "train").rglob("*.jpg"))[: args.count]
        table = {}
        for entry in args.entries:
            task, cfg = trained(entry)
            table[entry] = rates(task, cfg, entry, files, args.rounds, args.batch_size)
            if entry == "cond_ae":
                photos = photo_rows(task, cfg, args.rounds, Path(store))
    import torch

    print(f"\n{datetime.date.today()}; {cpu_model()}, {torch.get_num_threads()} torch threads; "
          f"{len(files)} JPEGs of 416 px; command: "
          f"python bench/predict_speed.py {' '.join(sys.argv[1:])}".rstrip() + "\n")
    print("| entry | predict (img/s) | forward only (img/s) | naive loop (img/s) | predict / naive | predict / forward |")
    print("|---|---|---|---|---|---|")
    for entry, r in table.items():
        print(f"| {entry} | {r['predict']:.0f} | {r['forward']:.0f} | {r['naive']:.0f} | "
              f"{r['predict'] / r['naive']:.1f}× | {r['predict'] / r['forward']:.2f} |")
    if "cnn" in table:
        ratio = table["cnn"]["predict"] / table["cnn"]["naive"]
        print(f"\ntarget predict ≥ 2× naive for cnn: {ratio:.1f}× {'met' if ratio >= 2 else 'NOT met'}")
    if photos:
        print("\n| photo restyled into one style (cond_ae) | mark scale | seconds | peak resident memory (GB) |")
        print("|---|---|---|---|")
        for width, height, scale, seconds, peak in photos:
            print(f"| {width}×{height} JPEG -> {width}×{height} PNG | {scale} | {seconds:.2f} | {peak:.2f} |")
        worst = max(seconds for width, height, _, seconds, _ in photos if (width, height) == PHOTOS[0])
        print(f"\ntarget ≤ 3 s at {PHOTOS[0][0]}×{PHOTOS[0][1]}: {worst:.2f} s {'met' if worst <= 3 else 'NOT met'}")


if __name__ == "__main__":
    main()
