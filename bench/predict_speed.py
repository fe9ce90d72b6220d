"""How fast ``runners.predict`` goes through a folder of 416 px JPEGs, against two references.

    python bench/predict_speed.py                         # cnn and cond_ae, 400 JPEGs, 2 rounds
    python bench/predict_speed.py --entries cnn --count 200 --rounds 1

For each entry a tiny run is trained first (its weights do not change the speed), then loaded as
a user loads one (runners/inference.py). Three rates, images per second, each the median of
``--rounds`` rounds:

* predict: ``runners.predict.predict`` on the folder: decode (threads), forward, write the outputs
  (predictions.csv; for cond_ae the PNGs of one target style);
* forward: the task's ``predict`` alone on the same images already decoded into one tensor in
  memory: the ceiling, and predict / forward shows what reading the files costs;
* naive: one file at a time, as a first script would: PIL open, convert, resize, a batch of one,
  the same outputs written.

The target is predict ≥ 2× naive for cnn. Runs go to a temporary MLflow store.
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

TRAIN = {"cnn": [], "cond_ae": ["train.judge_steps=10"]}


def trained(entry: str) -> tuple:
    """(task, cfg) of a tiny run of ``entry``: two steps of its defaults on synthart."""
    from runners import config, inference, train

    cfg = config.resolve(entry, ["train.epochs=1", "train.max_steps_per_epoch=2", "train.device=cpu",
                                 "train.system_metrics=false", "experiment=bench-predict", *TRAIN[entry]])
    run_id = train.train(cfg)["run_id"]
    task, cfg, _ = inference.load(run_id)
    return task, cfg


def rates(entry: str, files: list[Path], rounds: int, batch_size: int) -> dict[str, float]:
    import numpy as np
    import torch
    from PIL import Image

    from runners.predict import predict, top_styles
    from zoo.imageio import read_image

    task, cfg = trained(entry)
    size, classes = int(cfg["data"]["image_size"]), list(cfg["classes"])
    style = classes[0] if entry == "cond_ae" else None
    options = (lambda n: {"style": torch.zeros(n, dtype=torch.long)}) if style else (lambda n: {})
    images = [(p, p.name) for p in files]
    pixels = torch.from_numpy(np.stack([read_image(p, size) for p in files])).permute(0, 3, 1, 2).float().div(255)

    def run_predict() -> None:
        with tempfile.TemporaryDirectory() as out:
            predict(task, cfg, images, Path(out), style=style, batch_size=batch_size)

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

    found = {}
    for name, fn in (("predict", run_predict), ("forward", run_forward), ("naive", run_naive)):
        fn()  # once untimed: the files in the page cache, oneDNN's kernels chosen, for all three alike
        seconds = []
        for _ in range(rounds):
            started = time.perf_counter()
            fn()
            seconds.append(time.perf_counter() - started)
        found[name] = len(files) / statistics.median(seconds)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", nargs="+", default=["cnn", "cond_ae"], choices=sorted(TRAIN))
    parser.add_argument("--count", type=int, default=400, help="416 px JPEGs read per round")
    parser.add_argument("--rounds", type=int, default=2, help="rounds per rate (the median is shown)")
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as store:
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{store}/mlflow.db"
        os.environ.setdefault("ARTZOO_RUNS", f"{store}/runs")
        folder = jpeg_folder(args.count)
        files = sorted((folder / "train").rglob("*.jpg"))[: args.count]
        table = {entry: rates(entry, files, args.rounds, args.batch_size) for entry in args.entries}
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


if __name__ == "__main__":
    main()
