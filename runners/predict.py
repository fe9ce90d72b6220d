"""Use a trained run on your own images: classify, embed or restyle a folder of them.

    python -m runners.predict RUN PATH... [--out DIR] [--style NAME|all] [--batch-size N] [--device D]

RUN is a run id, ``runs:/<id>``, ``models:/<name>/<version>`` or ``models:/<name>@<alias>``
(runners/inference.py). PATHs are image files or folders, searched recursively for image
files; every file is read as the datasets read theirs (zoo/imageio.py: EXIF orientation, CMYK,
16-bit, transparency, the pixel cap), centre-cropped and resized to the run's image size. What
is written under ``--out`` follows the names of the task's ``predict`` outputs (zoo/task.py):

* ``probabilities`` -> ``predictions.csv``: ``path``, the predicted ``style`` and its
  ``probability``, then the next two styles and theirs (``style_2``, ``probability_2``, ...);
* images (B×C×H×W) -> PNGs under a folder of the output's name (``reconstruction/``), one folder
  per target style where the task restyles (``restyled/<style>/``), and ``contact_sheet.png``;
* anything else (codes, style embeddings) -> ``predictions.npz``, its rows in the order of
  its ``paths`` array.

An unreadable file is reported with the reason and skipped. An existing, non-empty ``--out`` is
refused unless ``--overwrite``; a bad run, path or style is refused (exit status 2) before any
image is read.
"""

from __future__ import annotations

import argparse
import csv
import inspect
import os
import sys
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from zoo.data import UnreadableImage
from zoo.imageio import is_image_name, read_image
from zoo.task import to_rgb8

__all__ = ["find_images", "main", "predict", "top_styles"]

TOP = 3  # styles listed per image in predictions.csv
SHEET_ROWS = 16  # images shown in a restyle's contact sheet


class Refused(Exception):
    """Bad input, said before any work: exit status 2."""


def find_images(paths: list[str | os.PathLike]) -> list[tuple[Path, str]]:
    """``(file, name)`` for every image: a file given as it is, a folder's image files found
    recursively, in sorted order; ``name`` is the file's path relative to the folder given (its
    own name for a file), what its outputs are named after."""
    found: list[tuple[Path, str]] = []
    for given in map(Path, paths):
        if given.is_file():
            found.append((given, given.name))
        elif given.is_dir():
            files = sorted(p for p in given.rglob("*") if p.is_file() and is_image_name(p))
            found += [(p, p.relative_to(given).as_posix()) for p in files]
        else:
            raise Refused(f"{given} does not exist: give image files or folders of them")
    if not found:
        raise Refused(f"no image files in {', '.join(map(str, paths))} (files named .jpg, .png, .webp, .tif, ...)")
    return found


def _targets(task, classes: list[str], style: str | None) -> list[int] | None:
    """The target styles a restyling task paints in (None for other tasks); refuses a task
    that makes no predictions."""
    from zoo.task import Task

    method = getattr(type(task), "predict", None)
    if method is None or method is Task.predict:
        raise Refused(f"the {type(task).__name__} task makes no predictions: it has no predict method "
                      f"(zoo/task.py says what one returns)")
    if "style" not in inspect.signature(task.predict).parameters:
        if style is not None:
            raise Refused(f"--style is for restyle runs; this run's task is {type(task).__name__}")
        return None
    if style in (None, "all"):
        return list(range(len(classes)))
    if style not in classes:
        raise Refused(f"unknown style {style!r}: this run knows {', '.join(classes)} (or all)")
    return [classes.index(style)]


def predict(task, cfg: dict, images: list[tuple[Path, str]], out: Path, *, style: str | None = None,
            batch_size: int = 64, device: torch.device | str = "cpu", workers: int | None = None) -> dict:
    """Run ``task.predict`` over ``images`` and write its outputs under ``out``; returns what was
    written (``written``: file count, ``skipped``: ``(path, reason)`` pairs)."""
    classes, size, in_chans = list(cfg["classes"]), int(cfg["data"]["image_size"]), int(cfg["in_chans"])
    targets = _targets(task, classes, style)
    device = torch.device(device)
    out.mkdir(parents=True, exist_ok=True)
    names = _unique([name for _, name in images])

    def decode(item: tuple[int, tuple[Path, str]]):
        i, (path, _) = item
        try:
            return i, read_image(path, size), None
        except UnreadableImage as exc:
            return i, None, str(exc)

    kept: list[int] = []
    skipped: list[tuple[str, str]] = []
    rows: dict[str, list[np.ndarray]] = defaultdict(list)
    sheet: list[np.ndarray] = []
    written = 0
    # Pillow decodes without the GIL: threads overlap the decoding of the next batch's files
    with ThreadPoolExecutor(workers or min(8, os.cpu_count() or 1)) as pool, \
            tqdm(total=len(images), unit="img", desc="predict", disable=None) as bar:
        order = list(enumerate(images))
        # the next batch decodes while this one is predicted; no more than two are held at once
        ahead = [pool.submit(decode, item) for item in order[:batch_size]]
        for start in range(0, len(order), batch_size):
            current = ahead
            ahead = [pool.submit(decode, item) for item in order[start + batch_size : start + 2 * batch_size]]
            batch = [future.result() for future in current]
            bar.update(len(batch))
            for i, _, why in batch:
                if why is not None:
                    skipped.append((str(images[i][0]), why))
                    tqdm.write(f"skipped {images[i][0]}: {why}", file=sys.stderr)
            good = [(i, pixels) for i, pixels, _ in batch if pixels is not None]
            if not good:
                continue
            index = [i for i, _ in good]
            x = torch.from_numpy(np.stack([p for _, p in good])).permute(0, 3, 1, 2).float().div(255)
            x = (x.mean(1, keepdim=True) if in_chans == 1 else x).to(device)
            calls = [(None, {})] if targets is None else [
                (classes[t], {"style": torch.full((len(x),), t, dtype=torch.long)}) for t in targets]
            columns = [x.cpu().numpy()]
            for n, (target, options) in enumerate(calls):
                result = task.predict(x, **options)
                for key, value in result.items():
                    if _is_image(value, x):
                        folder = out / key / target if target else out / key
                        written += _write_pngs(value, [names[i] for i in index], folder)
                        columns.append(value)
                    elif n == 0:  # codes and embeddings do not depend on the target style
                        rows[key].append(np.asarray(value))
            kept += index
            if len(columns) > 1 and sum(len(s) for s in sheet) < SHEET_ROWS:
                sheet.append(np.concatenate([to_rgb8(c) for c in columns], axis=2))  # B×H×(K·W)×3
    paths = [str(images[i][0]) for i in kept]
    if "probabilities" in rows:
        _write_csv(out / "predictions.csv", paths, np.concatenate(rows.pop("probabilities")), classes)
        written += 1
    if rows:
        np.savez(out / "predictions.npz", paths=np.array(paths, dtype=str),
                 **{k: np.concatenate(v) for k, v in rows.items()})
        written += 1
    if sheet:
        from PIL import Image

        Image.fromarray(np.concatenate(sheet)[:SHEET_ROWS].reshape(-1, *sheet[0].shape[2:])).save(
            out / "contact_sheet.png")
        written += 1
    return {"written": written, "predicted": len(kept), "skipped": skipped}


def _unique(names: list[str]) -> list[str]:
    """Output names (``.png``) from the inputs' relative paths; a repeat gets its position."""
    seen: set[str] = set()
    unique = []
    for i, name in enumerate(names):
        png = str(Path(name).with_suffix(".png"))
        if png in seen:
            png = str(Path(name).with_name(f"{Path(name).stem}-{i}.png"))
        seen.add(png)
        unique.append(png)
    return unique


def _is_image(value: np.ndarray, x: torch.Tensor) -> bool:
    return np.ndim(value) == 4 and tuple(np.shape(value)[2:]) == tuple(x.shape[2:])


def _write_pngs(images: np.ndarray, names: list[str], folder: Path) -> int:
    from PIL import Image

    for pixels, name in zip(to_rgb8(images), names):
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(path)
    return len(names)


def top_styles(probabilities: np.ndarray, classes: list[str]) -> list[dict]:
    """Per image, the most probable style and its probability, then the next ones:
    ``{"style": ..., "probability": ..., "style_2": ..., "probability_2": ..., ...}``."""
    order = np.argsort(-probabilities, axis=1, kind="stable")[:, : min(TOP, len(classes))]
    rows = []
    for probs, best in zip(probabilities, order):
        row = {}
        for rank, j in enumerate(best, 1):
            suffix = "" if rank == 1 else f"_{rank}"
            row[f"style{suffix}"], row[f"probability{suffix}"] = classes[j], float(probs[j])
        rows.append(row)
    return rows


def _write_csv(path: Path, paths: list[str], probabilities: np.ndarray, classes: list[str]) -> None:
    rows = [{"path": p, **row} for p, row in zip(paths, top_styles(probabilities, classes))]
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["path", "style", "probability"])
        writer.writeheader()
        writer.writerows(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runners.predict", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", metavar="RUN", help="run id, runs:/<id>, models:/<name>/<version> or models:/<name>@<alias>")
    parser.add_argument("paths", metavar="PATH", nargs="+", help="image files or folders (searched recursively)")
    parser.add_argument("--out", type=Path, default=Path("predictions"), help="output folder (default: predictions)")
    parser.add_argument("--style", help="restyle runs: the target style's name, or all (the default)")
    parser.add_argument("--batch-size", type=int, default=64, help="images per forward pass (default: 64)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, mps (default: cpu)")
    parser.add_argument("--overwrite", action="store_true", help="write into an --out that already holds files")
    args = parser.parse_args(argv)
    from runners.inference import ModelError, load

    try:
        if args.batch_size < 1:
            raise Refused(f"--batch-size must be at least 1, not {args.batch_size}")
        if args.out.exists() and (not args.out.is_dir() or any(args.out.iterdir())) and not args.overwrite:
            raise Refused(f"{args.out} already exists and is not empty: nothing in it is overwritten; "
                          f"choose another --out, or pass --overwrite")
        images = find_images(args.paths)
        try:
            task, cfg, run_id = load(args.model, args.device)
        except ModelError as exc:
            raise Refused(str(exc)) from None
        _targets(task, list(cfg["classes"]), args.style)  # an unknown style, before any image is read
    except Refused as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"run {run_id} ({cfg['entry']}, task {cfg['task']['name']}): {len(images)} image files -> {args.out}",
          file=sys.stderr, flush=True)
    done = predict(task, cfg, images, args.out, style=args.style, batch_size=args.batch_size, device=args.device)
    print(f"{done['predicted']} images predicted, {len(done['skipped'])} skipped; {done['written']} files "
          f"written under {args.out}", file=sys.stderr)
    if done["skipped"] and not done["predicted"]:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
