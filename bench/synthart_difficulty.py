"""How hard synthart is: a linear probe on raw pixels against the project's small CNN.

    python bench/synthart_difficulty.py                     # 32 px, default sizes, 2 threads
    python bench/synthart_difficulty.py --epochs 5 --size 1000

Both are trained on the same synthart training split and scored on its test split. The styles
are textures laid at random over random scenes, so a linear model of the pixels should stay near
the majority-class rate while a CNN, which sees local texture, should pass 0.9. Prints one
Markdown table: accuracy and balanced accuracy (the mean of per-class recalls, which the
long tail makes the fairer number), and the seconds each took.
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import registry
from zoo.fit import Step


def as_arrays(dataset) -> tuple[np.ndarray, np.ndarray]:
    """N×H×W×3 uint8 pixels and N labels, straight from the decode cache."""
    return np.asarray(dataset.images)[dataset.rows], dataset.labels


def linear_probe(train: tuple, test: tuple) -> np.ndarray:
    (x, y), (x_test, _) = train, test
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=0.01, max_iter=100))
    probe.fit(x.reshape(len(x), -1) / 255, y)
    return probe.predict(x_test.reshape(len(x_test), -1) / 255)


def small_cnn(train: tuple, test: tuple, *, num_classes: int, image_size: int, epochs: int,
              batch_size: int, lr: float, seed: int) -> np.ndarray:
    torch.manual_seed(seed)
    model = registry.model("cnn", num_classes=num_classes, image_size=image_size)
    x, y = (torch.from_numpy(a) for a in train)
    x = x.permute(0, 3, 1, 2)
    steps = epochs * math.ceil(len(x) / batch_size)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    step = Step("cnn", list(model.parameters()), opt,
                torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps))
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(x)).split(batch_size):
            batch = x[idx].float() / 255
            flip = torch.rand(len(batch)) < 0.5  # a mirrored painting keeps its style
            batch = torch.where(flip[:, None, None, None], batch.flip(-1), batch)
            step(F.cross_entropy(model(batch), y[idx]))
    model.eval()
    x_test = torch.from_numpy(test[0]).permute(0, 3, 1, 2)
    with torch.no_grad():
        return torch.cat([model(b.float() / 255).argmax(1) for b in x_test.split(256)]).numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--size", type=int, default=None, help="synthart training images (default: the dataset's)")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    options = {} if args.size is None else {"size": args.size}
    generation = time_generation(options)
    sets = {s: registry.dataset("synthart", split=s, image_size=args.image_size, **options) for s in ("train", "test")}
    train, test = as_arrays(sets["train"]), as_arrays(sets["test"])
    y_test = test[1]
    print(sets["train"].summary())
    print(sets["test"].summary())

    rows = [("majority class", np.full_like(y_test, np.bincount(train[1]).argmax()), 0.0)]
    started = time.perf_counter()
    rows.append((f"logistic regression, raw {args.image_size}×{args.image_size} pixels",
                 linear_probe(train, test), time.perf_counter() - started))
    started = time.perf_counter()
    predicted = small_cnn(train, test, num_classes=len(sets["train"].classes), image_size=args.image_size,
                          epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed)
    rows.append((f"registry cnn, {args.epochs} epochs", predicted, time.perf_counter() - started))

    print(f"\nsynthart {args.image_size} px: {len(train[1])} train / {len(y_test)} test images, "
          f"{torch.get_num_threads()} threads\n")
    print("| model | test acc | balanced acc | seconds |\n|---|---|---|---|")
    for name, pred, seconds in rows:
        print(f"| {name} | {np.mean(pred == y_test):.3f} | {balanced_accuracy_score(y_test, pred):.3f} | {seconds:.0f} |")
    print(f"\ngenerating the training split at 64 px from scratch (fresh cache, {os.cpu_count()} cores): "
          f"{generation[1]:.1f} s for {generation[0]} images")


def time_generation(options: dict) -> tuple[int, float]:
    """Images in, and seconds to paint, the training split at the default 64 px into an empty cache."""
    saved = os.environ.get("ARTZOO_CACHE")
    with tempfile.TemporaryDirectory() as empty:
        os.environ["ARTZOO_CACHE"] = empty
        try:
            started = time.perf_counter()
            n = len(registry.dataset("synthart", split="train", image_size=64, **options))
            return n, time.perf_counter() - started
        finally:
            if saved is None:
                del os.environ["ARTZOO_CACHE"]
            else:
                os.environ["ARTZOO_CACHE"] = saved


if __name__ == "__main__":
    main()
