"""Use a trained run on your own images: classify, embed, reconstruct or restyle a folder of them.

    python -m runners.predict RUN PATH... [--out DIR] [--style NAME|all] [--size N] [--mark-scale auto|X]
                                          [--batch-size N] [--device D]

RUN is a run id, ``runs:/<id>``, ``models:/<name>/<version>`` or ``models:/<name>@<alias>``
(runners/inference.py). PATHs are image files or folders, searched recursively for image
files; every file is read as the datasets read theirs (zoo/imageio.py: EXIF orientation, CMYK,
16-bit, transparency, the pixel cap). What is written under ``--out`` follows the names of the
task's ``predict`` outputs (zoo/task.py):

* ``probabilities`` -> ``predictions.csv``: ``path``, the predicted ``style`` and its
  ``probability``, then the next two styles and theirs (``style_2``, ``probability_2``, ...);
* pictures -> PNGs at each file's own size and aspect ratio (``--size N``: its short side N),
  under a folder of the output's name (``reconstruction/``), one folder per target style where
  the task restyles (``restyled/<style>/``), and ``contact_sheet.png`` (a row per image: the
  file, then each picture); a restyle's marks are as large, relative to the picture, as in
  training (``--mark-scale 1``: at their trained size in pixels; zoo/pictures.py);
* anything else (codes, style embeddings) -> ``predictions.npz``, its rows in the order of
  its ``paths`` array. These, and the probabilities, come from the file centre-cropped and
  resized to the run's image size, as the model was trained.

An unreadable file, or a picture over the painting cap (zoo/pictures.py), is reported with the
reason and skipped. An existing, non-empty ``--out`` is
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
from zoo.imageio import is_image_name, read_image, read_picture
from zoo.pictures import (PictureTooLarge, as_tensor, check_size, is_picture, mark_scale_of, paints_marks,
                          predict_picture, read_exemplars)
from zoo.task import to_rgb8

__all__ = ["find_images", "main", "predict", "top_styles"]

TOP = 3  # styles listed per image in predictions.csv
SHEET_ROWS = 16  # images shown in a restyle's contact sheet
SHEET_HEIGHT = 128  # pixels of each row of the contact sheet


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


def _paints(task, targets: list[int] | None, cfg: dict, device: torch.device) -> bool:
    """Whether the task paints pictures (restyles, reconstructions): a restyling task does, and
    another does where its ``predict`` of a blank image at the run's size returns an image."""
    if targets is not None:
        return True
    size, in_chans = int(cfg["data"]["image_size"]), int(cfg["in_chans"])
    blank = torch.zeros(1, in_chans, size, size, device=device)
    return any(is_picture(value, blank) for value in task.predict(blank).values())


def predict(task, cfg: dict, images: list[tuple[Path, str]], out: Path, *, style: str | None = None,
            batch_size: int = 64, device: torch.device | str = "cpu", workers: int | None = None,
            size: int | None = None, mark_scale: str | float = "auto") -> dict:
    """Run ``task.predict`` over ``images`` and write its outputs under ``out``; returns what was
    written (``written``: file count, ``skipped``: ``(path, reason)`` pairs).

    Pictures (restyles, reconstructions) are painted at each file's own size, or with its short
    side ``size``, and marks at ``mark_scale`` (zoo/pictures.py); everything else is computed at
    the run's image size, in batches of ``batch_size``."""
    classes, run_size, in_chans = list(cfg["classes"]), int(cfg["data"]["image_size"]), int(cfg["in_chans"])
    targets = _targets(task, classes, style)
    device = torch.device(device)
    paints = _paints(task, targets, cfg, device)
    out.mkdir(parents=True, exist_ok=True)
    names = _unique([name for _, name in images])

    def decode(item: tuple[int, tuple[Path, str]]):
        i, (path, _) = item
        try:
            return i, read_image(path, run_size), None
        except UnreadableImage as exc:
            return i, None, str(exc)

    def paint(i: int) -> list[np.ndarray]:
        """Every picture of image ``i`` written; its row of the contact sheet returned."""
        picture = read_picture(images[i][0], size)
        check_size(*picture.shape[:2])
        x = as_tensor(picture, in_chans)[None].to(device)
        cells = [picture]
        for target in targets if targets is not None else [None]:
            options = {} if target is None else {"style": torch.tensor([target])}
            for key, value in predict_picture(task, x, run_size, mark_scale=mark_scale, **options).items():
                folder = out / key / classes[target] if target is not None else out / key
                _write_pngs(value, [names[i]], folder)
                cells.append(to_rgb8(value)[0])
        return cells

    kept: list[int] = []
    skipped: list[tuple[str, str]] = []
    rows: dict[str, list[np.ndarray]] = defaultdict(list)
    sheet: list[list[np.ndarray]] = []
    written = 0

    def skip(i: int, why: str) -> None:
        skipped.append((str(images[i][0]), why))
        tqdm.write(f"skipped {images[i][0]}: {why}", file=sys.stderr)

    # Pillow decodes without the GIL: threads overlap the decoding of the next batch's files
    with ThreadPoolExecutor(workers or min(8, os.cpu_count() or 1)) as pool, \
            tqdm(total=len(images), unit="img", desc="restyle" if targets else "predict", disable=None) as bar:
        order = list(enumerate(images))
        # the next batch decodes while this one is predicted; no more than two are held at once
        ahead = [pool.submit(decode, item) for item in order[:batch_size]]
        for start in range(0, len(order), batch_size):
            current = ahead
            ahead = [pool.submit(decode, item) for item in order[start + batch_size : start + 2 * batch_size]]
            batch = [future.result() for future in current]
            for i, _, why in batch:
                if why is not None:
                    skip(i, why)
            good = [(i, pixels) for i, pixels, _ in batch if pixels is not None]
            bar.update(len(batch) - len(good) if paints else len(batch))
            if not good:
                continue
            index = [i for i, _ in good]
            x = as_tensor(np.stack([p for _, p in good]), in_chans).to(device)
            # at the run's size: probabilities, codes, embeddings (pictures are painted below)
            result = {k: np.asarray(v) for k, v in task.predict(x).items() if not is_picture(v, x)}
            keep = list(range(len(index)))
            if paints:
                keep = []
                for j, i in enumerate(index):  # one picture at a time: each may be large
                    try:
                        cells = paint(i)
                    except (UnreadableImage, PictureTooLarge) as exc:
                        skip(i, str(exc))
                    else:
                        keep.append(j)
                        written += len(cells) - 1
                        if len(sheet) < SHEET_ROWS:
                            sheet.append(cells)
                    bar.update(1)
            for key, value in result.items():
                rows[key].append(value[keep])
            kept += [index[j] for j in keep]
    paths = [str(images[i][0]) for i in kept]
    if "probabilities" in rows:
        _write_csv(out / "predictions.csv", paths, np.concatenate(rows.pop("probabilities")), classes)
        written += 1
    if rows:
        np.savez(out / "predictions.npz", paths=np.array(paths, dtype=str),
                 **{k: np.concatenate(v) for k, v in rows.items()})
        written += 1
    if sheet:
        contact_sheet(sheet).save(out / "contact_sheet.png")
        written += 1
    return {"written": written, "predicted": len(kept), "skipped": skipped}


def contact_sheet(rows: list[list[np.ndarray]], height: int = SHEET_HEIGHT):
    """A picture of ``rows`` of H×W×3 uint8 images, each brought to ``height`` pixels high at its
    own aspect ratio, side by side; rows left-aligned on white."""
    from PIL import Image

    cells = [[Image.fromarray(c).resize((max(1, round(c.shape[1] * height / c.shape[0])), height),
                                        Image.Resampling.BICUBIC) for c in row] for row in rows]
    widths = [sum(c.width for c in row) for row in cells]
    sheet = Image.new("RGB", (max(widths), height * len(cells)), "white")
    for r, row in enumerate(cells):
        x = 0
        for cell in row:
            sheet.paste(cell, (x, r * height))
            x += cell.width
    return sheet


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


def _check_painting(task, cfg: dict, args: argparse.Namespace) -> None:
    """``--size`` and ``--mark-scale`` are for tasks that paint pictures, and must make sense."""
    targets = _targets(task, list(cfg["classes"]), args.style)
    if args.size is not None:
        if args.size < 1:
            raise Refused(f"--size must be at least 1 pixel, not {args.size}")
        if not _paints(task, targets, cfg, torch.device(args.device)):
            raise Refused(f"--size is for runs that paint pictures (restyle, reconstruct); this run's task, "
                          f"{type(task).__name__}, reads every picture at the run's size, {cfg['data']['image_size']} px")
    if args.mark_scale != "auto":
        if not paints_marks(task):
            raise Refused(f"--mark-scale is for restyle runs; this run's task is {type(task).__name__}")
        try:
            mark_scale_of(args.mark_scale, 1, 1, 1)
        except ValueError:
            raise Refused(f"--mark-scale must be auto or a number ≥ 1 (1: marks at their trained size), "
                          f"not {args.mark_scale!r}") from None


def _use_exemplars(task, cfg: dict, args: argparse.Namespace) -> None:
    """``--exemplars DIR``: the pictures in DIR, at the run's size, become the marks of ``--style``."""
    net = getattr(task, "net", None)
    if not callable(getattr(net, "use_exemplars", None)) or getattr(net, "exemplars", None) is None:
        raise Refused(f"--exemplars is for restyle runs that paint exemplar marks (cond_ae, model.marks=exemplar or "
                      f"dictionary); this run's model is {cfg['entry']} with {cfg['model'].get('marks', 'no')} marks")
    classes = list(cfg["classes"])
    if args.style in (None, "all"):
        raise Refused(f"--exemplars gives one style's marks: name it with --style (one of {', '.join(classes)})")
    paths = [path for path, _ in find_images([args.exemplars])]
    pictures, skipped = read_exemplars(paths, int(cfg["data"]["image_size"]), int(cfg["in_chans"]))
    for path, why in skipped:
        print(f"skipped exemplar {path}: {why}", file=sys.stderr)
    if pictures is None:
        raise Refused(f"no readable picture in {args.exemplars} to take {args.style}'s marks from")
    kept = net.use_exemplars(pictures.to(next(net.parameters()).device), classes.index(args.style))
    print(f"{args.style}'s marks: {kept} tiles of the {len(pictures)} pictures in {args.exemplars}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runners.predict", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", metavar="RUN", help="run id, runs:/<id>, models:/<name>/<version> or models:/<name>@<alias>")
    parser.add_argument("paths", metavar="PATH", nargs="+", help="image files or folders (searched recursively)")
    parser.add_argument("--out", type=Path, default=Path("predictions"), help="output folder (default: predictions)")
    parser.add_argument("--style", help="restyle runs: the target style's name, or all (the default)")
    parser.add_argument("--size", type=int, metavar="N",
                        help="restyles and reconstructions: paint each picture with its short side N pixels "
                             "(default: at the picture's own size)")
    parser.add_argument("--mark-scale", default="auto", metavar="auto|X",
                        help="restyles: how many times larger than in training the marks are painted; auto "
                             "(the default) keeps them as large, relative to the picture, as in training; 1 "
                             "paints them at their trained size in pixels")
    parser.add_argument("--exemplars", type=Path, metavar="DIR",
                        help="restyles with exemplar marks: paint the --style's marks from the pictures in DIR "
                             "(your own paintings of that style) instead of the training paintings' tiles")
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
        _check_painting(task, cfg, args)
        if args.exemplars is not None:
            _use_exemplars(task, cfg, args)
    except Refused as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"run {run_id} ({cfg['entry']}, task {cfg['task']['name']}): {len(images)} image files -> {args.out}",
          file=sys.stderr, flush=True)
    done = predict(task, cfg, images, args.out, style=args.style, batch_size=args.batch_size, device=args.device,
                   size=args.size, mark_scale=args.mark_scale)
    print(f"{done['predicted']} images predicted, {len(done['skipped'])} skipped; {done['written']} files "
          f"written under {args.out}", file=sys.stderr)
    if done["skipped"] and not done["predicted"]:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
