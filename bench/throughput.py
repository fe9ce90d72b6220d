"""Training throughput: artzoo's data path against the model's ceiling and the naive way.

    python bench/throughput.py ae                                  # 416 px JPEGs -> 64 px
    python bench/throughput.py ae --prepare                        # only render the JPEG folder
    python bench/throughput.py cnn data.image_size=128 --steps 30
    python bench/throughput.py ae data=/path/to/wikiart --device cuda --modes fp32,bf16,bf16+compile
    python bench/throughput.py cnn,ae,cond_ae data.image_size=128,416 --device cuda --seconds 2

In one process, for the same model, optimizer and batch size, training images per second for
  (a) artzoo: the decode cache, runners.loader (whole uint8 batches), flips and float
      conversion on the device;
  (b) the ceiling: one batch already on the device, trained on again and again;
  (c) naive: an ImageFolder that opens, decodes, resizes and converts every JPEG with PIL on
      every step, through the default DataLoader;
plus the cache's build rate, the one-time cost it adds to the first epoch, and the rates of (a)'s
and (c)'s inputs alone (no training: what each could feed an infinitely fast model). Without data=,
it renders a folder of 416 px synthart JPEGs once (bench/out/jpeg416) and reads that.

The three paths are timed in turns, round after round, each round a window of at least --steps
steps and --seconds seconds per path, in the order (b), (a), (c) and then (c), (a), (b), so that
(a) always runs right beside both paths it is compared with and a steady drift in the machine's
speed (a shared or throttled CPU) weighs on both sides of a ratio alike. The first --warmup-rounds
rounds are timed but not counted (page cache, allocator, first epochs). Each rate is its images
over its seconds summed over the counted rounds; a/b and a/c are the medians of the per-round
ratios (so a round in which another process started or stopped on a shared machine moves them
little), printed with their quartiles over the rounds. Every path trains on full batches only (the
partial last batch of an epoch is dropped in all three), so that the three rates compare the
same work and torch.compile sees one shape. The model is built as the runner builds it
(channels-last where zoo.fit.channels_last says so) and trained by the runner's own step
(runners.train.build_fitter: the entry's default optimizer, moving average and auxiliary networks,
at a constant learning rate); model.KEY=VALUE sets its options. Entries,
image sizes and modes may be comma-separated lists: one table row per combination, the decode
cache built (and timed) once per image size. A mode is fp32 or bf16 (autocast), optionally
+compile (torch.compile of the model).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import multiprocessing as mp
import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import cpuload  # noqa: E402  (bench/, on sys.path as the script's folder)
import registry  # noqa: E402
from runners import config, loader  # noqa: E402
from runners.train import build_fitter, pick_device  # noqa: E402
from zoo.datasets import synthart  # noqa: E402
from zoo.fit import Fitter, channels_last, random_flips  # noqa: E402

OUT = ROOT / "bench" / "out"
MODES = ("fp32", "bf16", "fp32+compile", "bf16+compile")


# -- the JPEG folder -----------------------------------------------------------------------------


def jpeg_folder(count: int, size: int = 416, out: Path = OUT) -> Path:
    """A Roboflow-style folder (train|valid|test/CLASS/*.jpg) of synthart paintings, rendered once.

    train holds ``count`` images (the benchmark reads only train); valid and test hold a few, so
    that the folder dataset accepts the layout.
    """
    folder = out / f"jpeg{size}"
    done = folder / ".complete"
    if done.exists() and done.read_text().strip() == f"{count} {size}":
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    classes = synthart.style_names(8)
    jobs = []
    for split in ("train", "valid", "test"):
        labels = synthart.split_labels(split=split, size=count)
        keep = count if split == "train" else max(len(classes), count // 50)
        recipe = synthart.Recipe(0, split, size)
        for i, y in enumerate(labels[:keep]):
            path = folder / split / classes[y] / f"{i:05d}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            jobs.append((recipe, classes[y], i, str(path)))
    started = time.perf_counter()
    workers = len(os.sched_getaffinity(0))
    with ProcessPoolExecutor(workers, mp_context=mp.get_context("fork")) as pool:
        list(pool.map(_write_jpeg, jobs, chunksize=16))
    print(f"rendered {len(jobs)} synthart JPEGs of {size} px into {folder} in "
          f"{time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    done.write_text(f"{count} {size}")
    return folder


def _write_jpeg(job: tuple) -> None:
    recipe, style, index, path = job
    Image.fromarray(recipe.paint(index, style)).save(path, quality=90)


# -- one measurement -----------------------------------------------------------------------------


def build(entry: str, data, image_size: int, device: torch.device, options: dict | None = None,
          lr: float = 1e-3) -> Fitter:
    """A fresh model of ``entry`` with its default task, set up on ``data`` and trained as the
    runner trains it (its Fitter, from the entry's default config at a constant rate; the flips
    are the input path's)."""
    num_classes = len(data.classes)
    model = registry.model(entry, num_classes=num_classes, image_size=image_size, **(options or {})).to(device)
    if channels_last(device):
        model = model.to(memory_format=torch.channels_last)
    task = registry.task(registry.load("model", entry).task, model=model, classes=list(data.classes))
    task.setup(data, device)
    cfg = config.resolve(entry, [f"train.lr={lr}", "train.schedule=constant", "data.augment=false"])
    return build_fitter(cfg, model, task, total_steps=1, device=device)


def window(batches, fitter: Fitter, *, steps: int, seconds: float, device: torch.device) -> tuple[int, float]:
    """Images trained on, and seconds taken, over at least ``steps`` steps and ``seconds``,
    data loading included."""
    _sync(device)
    seen, done, started = 0, 0, time.perf_counter()
    while done < steps or time.perf_counter() - started < seconds:
        images, labels = next(batches)
        fitter.train_step(images, labels)
        seen += len(images)
        done += 1
    _sync(device)
    return seen, time.perf_counter() - started


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _artzoo(dataset, batch_size: int, device: torch.device, workers: int, augment: bool = True):
    """The runner's training input: a new permutation per epoch, runners.loader, flips."""
    rng = np.random.default_rng(0)
    full = len(dataset) // batch_size * batch_size
    while True:
        order = rng.permutation(len(dataset))[:full]
        for images, labels in loader.batches(dataset, order, batch_size, device=device, workers=workers,
                                             channels_last=channels_last(device)):
            yield (random_flips(images) if augment else images), labels


def _naive(folder: Path, image_size: int, batch_size: int, device: torch.device):
    from torchvision import datasets, transforms

    tf = transforms.Compose([transforms.Resize((image_size, image_size)), transforms.RandomHorizontalFlip(),
                             transforms.ToTensor()])
    data = datasets.ImageFolder(str(folder / "train"), transform=tf)
    while True:
        for images, labels in torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=True, drop_last=True):
            yield images.to(device), labels.to(device)


@dataclass
class Row:
    entry: str
    image_size: int
    mode: str
    batch_size: int
    a: float
    b: float
    c: float
    cache_rate: float
    cache_s: float
    n: int
    ab_rounds: list[float]  # a/b in each counted round
    ac_rounds: list[float]  # a/c in each counted round
    a_data: float  # (a)'s input alone, no training: images/s
    c_data: float  # (c)'s input alone
    foreign: float | None  # share of the machine's CPU that other processes used meanwhile

    @property
    def ab(self) -> float:
        """a/b: the median of the per-round ratios."""
        return float(np.median(self.ab_rounds))

    @property
    def ac(self) -> float:
        return float(np.median(self.ac_rounds))

    def markdown(self) -> str:
        first = self.cache_s + self.n / self.a
        return (f"| {self.entry} | {self.image_size} | {self.mode} | {self.batch_size} | {self.a:.0f} | {self.b:.0f} "
                f"| {self.c:.0f} | {self.ab:.2f} | {_quartiles(self.ab_rounds)} | {self.ac:.2f} "
                f"| {_quartiles(self.ac_rounds)} | {self.cache_rate:.0f} "
                f"| {first:.1f} ({self.cache_s / first:.0%}) | {self.n / self.c:.1f} | {self.a_data:.0f} "
                f"| {self.c_data:.0f} | {'n/a' if self.foreign is None else f'{self.foreign:.0%}'} |")


def _quartiles(ratios: list[float]) -> str:
    """The middle half of the per-round ratios, and how many rounds there were."""
    if len(ratios) < 2:
        return "–"
    q1, q3 = np.percentile(ratios, [25, 75])
    return f"{q1:.2f}–{q3:.2f} of {len(ratios)}"


HEADER = ("| entry | px | mode | batch | (a) artzoo img/s | (b) ceiling img/s | (c) naive img/s | a/b "
          "| a/b per round (quartiles) | a/c | a/c per round (quartiles) | cache build img/s "
          "| first epoch s (cache share) | naive epoch s "
          "| input alone (a) img/s | input alone (c) img/s | other processes' CPU |\n"
          "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")

# the order of the paths in even and odd rounds: (a) beside both, and each pair's order reversed
ORDERS = ("bac", "cab")


def measure(entry: str, data, folder: Path, image_size: int, mode: str, *, batch_size: int, device: torch.device,
            workers: int, steps: int, warmup: int, seconds: float, rounds: int, cache_s: float,
            warmup_rounds: int = 1, options: dict | None = None) -> Row:
    precision, _, compiled = mode.partition("+")
    autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bf16"
                else contextlib.nullcontext())
    torch.manual_seed(0)
    load = cpuload.snapshot()
    fitter = build(entry, data, image_size, device, options)
    fitter.autocast = autocast
    if compiled:
        fitter.task.model = torch.compile(fitter.task.model)
    fixed = next(_artzoo(data, batch_size, device, 0, augment=False))
    paths = {"a": _artzoo(data, batch_size, device, workers), "b": iter(lambda: fixed, None),
             "c": _naive(folder, image_size, batch_size, device)}
    for batches in paths.values():
        for _ in range(warmup):
            fitter.train_step(*next(batches))
    seen = dict.fromkeys(paths, 0)
    spent = dict.fromkeys(paths, 0.0)
    ab_rounds, ac_rounds = [], []
    for r in range(warmup_rounds + rounds):
        now = {}
        for name in ORDERS[r % 2]:
            n, s = window(paths[name], fitter, steps=steps, seconds=seconds, device=device)
            now[name] = n, s
        if r < warmup_rounds:
            continue
        for name, (n, s) in now.items():
            seen[name] += n
            spent[name] += s
        rate = {name: n / s for name, (n, s) in now.items()}
        ab_rounds.append(rate["a"] / rate["b"])
        ac_rounds.append(rate["a"] / rate["c"])
    a, b, c = (seen[k] / spent[k] for k in "abc")
    # the inputs alone, without training: what each path could feed a model infinitely fast
    alone = {k: _input_rate(paths[k], steps * rounds if seconds == 0 else steps, 3 * seconds, device)
             for k in "ac"}
    return Row(entry, image_size, mode, batch_size, a, b, c, len(data) / cache_s, cache_s, len(data), ab_rounds,
               ac_rounds, alone["a"], alone["c"], cpuload.foreign_share(load))


def _input_rate(batches, count: int, seconds: float, device: torch.device) -> float:
    """Images per second that ``batches`` yields, over at least ``count`` batches and ``seconds``."""
    _sync(device)
    seen, done, started = 0, 0, time.perf_counter()
    while done < count or time.perf_counter() - started < seconds:
        images, _labels = next(batches)
        seen += len(images)
        done += 1
    _sync(device)
    return seen / (time.perf_counter() - started)


def cached(folder: Path, image_size: int, cache: Path) -> tuple[object, float]:
    """The folder's training split through a fresh decode cache, and the seconds it took."""
    os.environ["ARTZOO_CACHE"] = str(cache)
    shutil.rmtree(cache, ignore_errors=True)
    started = time.perf_counter()
    data = registry.dataset(str(folder), split="train", image_size=image_size)
    return data, time.perf_counter() - started


# -- the command line ----------------------------------------------------------------------------


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",")]


def _value(text: str):
    """A model option's value: an int, float or bool where it reads as one, else the text."""
    import json

    try:
        return json.loads(text)
    except ValueError:
        return text


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("entry", help="a model entry, or several separated by commas")
    parser.add_argument("overrides", nargs="*",
                        help="data=FOLDER, data.image_size=N[,N...] (default 64), model.KEY=VALUE")
    parser.add_argument("--images", type=int, default=2000, help="JPEGs to render when no data= is given")
    parser.add_argument("--source-size", type=int, default=416, help="side of those JPEGs")
    parser.add_argument("--prepare", action="store_true", help="only render the JPEG folder, then exit")
    parser.add_argument("--out", type=Path, default=OUT, help="where the JPEGs and the decode cache go")
    parser.add_argument("--batch-size", default="64", help="images per step; one per image size, or one for all")
    parser.add_argument("--steps", type=int, default=1, help="timed steps per path and round (at least)")
    parser.add_argument("--seconds", type=float, default=1.0, help="timed seconds per path and round (at least)")
    parser.add_argument("--rounds", type=int, default=40, help="counted rounds of the three timed windows, in turns")
    parser.add_argument("--warmup-rounds", type=int, default=1,
                        help="rounds timed like the others before them but not counted")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps of each path before the rounds")
    parser.add_argument("--workers", type=int, default=0,
                        help="loader worker processes for (a), as the runner's data.workers (default 0)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--modes", help=f"comma-separated modes, each one of {', '.join(MODES)} "
                                        "(default: --precision, +compile with --compile)")
    parser.add_argument("--budget", type=float, default=0.0,
                        help="seconds: rows not started by then are listed as skipped (0: no limit); "
                             "rows run mode by mode, so the compiled ones are the first to go")
    args = parser.parse_intermixed_args(argv)
    opts = dict(o.split("=", 1) if "=" in o else (o, "") for o in args.overrides)
    try:
        args.sizes = _ints(opts.pop("data.image_size", "64"))
        batches = _ints(args.batch_size)
    except ValueError as exc:
        parser.error(f"data.image_size and --batch-size take integers separated by commas ({exc})")
    if len(batches) not in (1, len(args.sizes)):
        parser.error(f"--batch-size gives {len(batches)} values for {len(args.sizes)} image sizes")
    args.batch_sizes = dict(zip(args.sizes, batches * len(args.sizes) if len(batches) == 1 else batches))
    args.data = Path(opts.pop("data")) if "data" in opts else None
    args.options = {k.removeprefix("model."): _value(opts.pop(k)) for k in list(opts) if k.startswith("model.")}
    if opts:
        parser.error(f"unknown overrides {', '.join(opts)} (known: data=, data.image_size=, model.KEY=)")
    if args.rounds < 1 or args.steps < 1:
        parser.error("--rounds and --steps must be at least 1")
    if args.warmup_rounds < 0 or args.warmup < 0:
        parser.error("--warmup-rounds and --warmup must be at least 0")
    args.entries = [e for e in args.entry.split(",") if e]
    args.modes = (args.modes.split(",") if args.modes
                  else [args.precision + ("+compile" if args.compile else "")])
    bad = [m for m in args.modes if m not in MODES]
    if bad:
        parser.error(f"unknown mode(s) {', '.join(bad)}; choose from {', '.join(MODES)}")
    known = registry.entries("model")
    missing = [e for e in args.entries if e not in known]
    if missing:
        parser.error(f"unknown model entry {', '.join(missing)}; registered: {', '.join(sorted(known))}")
    return args


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo, else what platform knows) and the cores this process may use."""
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    model = model or platform.processor() or platform.machine() or "unknown CPU"
    return f"{model}, {len(os.sched_getaffinity(0))} cores"


def machine(device: torch.device) -> str:
    """The device, and the CPU beside it (the data paths run on the CPU even when training does not)."""
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}; CPU {cpu_model()}"
    return cpu_model()


def main(argv: list[str] | None = None) -> list[Row]:
    args = parse(argv)
    started = time.perf_counter()
    folder = args.data or jpeg_folder(args.images, args.source_size, args.out)
    if args.prepare:
        print(folder)
        return []
    device = pick_device(args.device)
    print(f"{', '.join(args.entries)} on {folder} (train split), {device.type}: {machine(device)}; "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, loader workers {args.workers}; windows: "
          f"{args.warmup} warmup steps, then {args.warmup_rounds} uncounted and {args.rounds} counted round(s) of "
          f">= {args.steps} steps and >= {args.seconds:g} s per path, in turns"
          f"{'; model ' + str(args.options) if args.options else ''}",
          flush=True)
    # each size's decode cache is built (and timed) once, then serves every entry and mode
    sets = {size: cached(folder, size, args.out / "throughput_cache" / str(size)) for size in args.sizes}
    n = len(next(iter(sets.values()))[0])
    if max(args.batch_sizes.values()) > n:
        sys.exit(f"throughput.py: a batch of {max(args.batch_sizes.values())} is more than the {n} training images "
                 f"of {folder}; lower --batch-size or give more --images")
    progress = len(args.modes) * len(args.sizes) * len(args.entries) > 1
    if progress:
        print("rows as they finish (the table follows, in order):\n" + HEADER, file=sys.stderr, flush=True)
    rows: dict[tuple, Row | str] = {}
    for mode in args.modes:  # mode by mode: a --budget cuts the costly compiled rows first
        for size in args.sizes:
            data, cache_s = sets[size]
            for entry in args.entries:
                if args.budget and time.perf_counter() - started > args.budget:
                    rows[entry, size, mode] = (f"| {entry} | {size} | {mode} | {args.batch_sizes[size]} | "
                                               f"skipped: over the {args.budget:g} s budget |")
                    continue
                row = measure(entry, data, folder, size, mode, batch_size=args.batch_sizes[size], device=device,
                              workers=args.workers, steps=args.steps, warmup=args.warmup, seconds=args.seconds,
                              rounds=args.rounds, cache_s=cache_s, warmup_rounds=args.warmup_rounds,
                              options=args.options)
                rows[entry, size, mode] = row
                if progress:
                    print(row.markdown(), file=sys.stderr, flush=True)
    print(HEADER)
    for size in args.sizes:
        for entry in args.entries:
            for mode in args.modes:
                row = rows[entry, size, mode]
                print(row if isinstance(row, str) else row.markdown())
    print(f"\n{device.type}: {machine(device)}; {n} images per epoch; a/b and a/c: medians of the per-round "
          f"ratios; first epoch = cache build + an epoch at (a); naive epoch = an epoch at (c); "
          f"{time.perf_counter() - started:.0f} s in all", flush=True)
    return [r for r in rows.values() if isinstance(r, Row)]


if __name__ == "__main__":
    main()
