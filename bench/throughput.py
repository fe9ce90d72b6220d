"""Training throughput: artzoo's data path against the model's ceiling and the naive way.

    python bench/throughput.py ae                                  # 416 px JPEGs -> 64 px
    python bench/throughput.py cnn data.image_size=128 --steps 30
    python bench/throughput.py ae data=/path/to/wikiart --device cuda --precision bf16

In one process, for the same model, optimizer and batch size, training images per second for
  (a) artzoo: the decode cache, runners.loader (whole uint8 batches), flips and float
      conversion on the device;
  (b) the ceiling: one batch already on the device, trained on again and again;
  (c) naive: an ImageFolder that opens, decodes, resizes and converts every JPEG with PIL on
      every step, through the default DataLoader;
plus the cache's build rate and the one-time cost it adds to the first epoch. Without data=,
it renders a folder of 416 px synthart JPEGs once (bench/out/jpeg416) and reads that.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

import registry
from runners import loader
from runners.train import _flip, pick_device

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"


def jpeg_folder(count: int, size: int = 416) -> Path:
    """A Roboflow-style folder (train/CLASS/*.jpg) of synthart paintings, rendered once."""
    folder = OUT / f"jpeg{size}"
    done = folder / ".complete"
    if done.exists() and int(done.read_text()) >= count:
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    data = registry.dataset("synthart", split="train", image_size=size)
    for i in tqdm(range(min(count, len(data))), desc=f"writing {size} px JPEGs", unit="img"):
        image, label = data[i]
        path = folder / "train" / data.classes[label] / f"{i:05d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray((image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).save(path, quality=90)
    done.write_text(str(count))
    return folder


def build(entry: str, num_classes: int, image_size: int, device: torch.device, lr: float = 1e-3):
    model = registry.model(entry, num_classes=num_classes, image_size=image_size).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    task = registry.task(registry.load("model", entry).task, model=model, classes=[str(i) for i in range(num_classes)])
    return task, torch.optim.AdamW(model.parameters(), lr=lr)


def step(task, opt, images: torch.Tensor, labels: torch.Tensor, autocast) -> None:
    with autocast:
        loss = task.training_step(images, labels)["loss"]
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def rate(batches, task, opt, autocast, *, steps: int, warmup: int, device: torch.device) -> float:
    """Images per second over ``steps`` steps after ``warmup``, data loading included."""
    seen, started = 0, None
    for i, (images, labels) in enumerate(batches):
        if i == warmup:
            _sync(device)
            started, seen = time.perf_counter(), 0
        step(task, opt, images, labels, autocast)
        seen += len(images)
        if i + 1 == warmup + steps:
            break
    _sync(device)
    return seen / (time.perf_counter() - started)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _repeat(dataset, order, batch_size, device, augment=True):
    while True:
        for images, labels in loader.batches(dataset, order, batch_size, device=device,
                                             channels_last=device.type == "cuda"):
            yield (_flip(images) if augment else images), labels


def _naive(folder: Path, image_size: int, batch_size: int, device: torch.device):
    from torchvision import datasets, transforms

    tf = transforms.Compose([transforms.Resize((image_size, image_size)), transforms.RandomHorizontalFlip(),
                             transforms.ToTensor()])
    data = datasets.ImageFolder(str(folder / "train"), transform=tf)
    while True:
        for images, labels in torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=True):
            yield images.to(device), labels.to(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("entry")
    parser.add_argument("overrides", nargs="*", help="data=FOLDER, data.image_size=N")
    parser.add_argument("--images", type=int, default=2000, help="JPEGs to render when no data= is given")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--compile", action="store_true")
    args = parser.parse_args()
    opts = dict(o.split("=", 1) for o in args.overrides)
    image_size = int(opts.pop("data.image_size", 64))
    folder = Path(opts.pop("data")) if "data" in opts else jpeg_folder(args.images)
    if opts:
        parser.error(f"unknown overrides {', '.join(opts)}")
    device = pick_device(args.device)
    autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if args.precision == "bf16"
                else contextlib.nullcontext())
    torch.manual_seed(0)

    # the decode cache: a fresh one, so that its build is measured
    os.environ["ARTZOO_CACHE"] = str(OUT / "throughput_cache")
    shutil.rmtree(OUT / "throughput_cache", ignore_errors=True)
    started = time.perf_counter()
    data = registry.dataset(str(folder), split="train", image_size=image_size)
    cache_s = time.perf_counter() - started
    n = len(data)

    task, opt = build(args.entry, len(data.classes), image_size, device)
    if args.compile:
        task.model = torch.compile(task.model)
    order = np.random.default_rng(0).permutation(n)
    a = rate(_repeat(data, order, args.batch_size, device), task, opt, autocast,
             steps=args.steps, warmup=args.warmup, device=device)
    fixed = next(_repeat(data, order, args.batch_size, device, augment=False))
    b = rate(iter(lambda: fixed, None), task, opt, autocast, steps=args.steps, warmup=args.warmup, device=device)
    c = rate(_naive(folder, image_size, args.batch_size, device), task, opt, autocast,
             steps=args.steps, warmup=args.warmup, device=device)
    epoch_s = n / a

    print(f"\n{args.entry}, {n} images of {folder.name} at {image_size} px, batch {args.batch_size}, "
          f"{device.type} {args.precision}{' compiled' if args.compile else ''}, {torch.get_num_threads()} threads")
    print("| path | images/s |\n|---|---|")
    print(f"| (a) artzoo: cache + loader + device augment | {a:.0f} |")
    print(f"| (b) ceiling: batch already on the device | {b:.0f} |")
    print(f"| (c) naive: PIL decode every step, default DataLoader | {c:.0f} |")
    print(f"| a/b | {a / b:.2f} |\n| a/c | {a / c:.2f} |")
    print(f"| cache build | {n / cache_s:.0f} images/s ({cache_s:.1f} s, once) |")
    print(f"| first epoch | {cache_s + epoch_s:.1f} s, of which the cache {cache_s / (cache_s + epoch_s):.0%} |")


if __name__ == "__main__":
    main()
