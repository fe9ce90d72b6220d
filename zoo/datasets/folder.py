"""A folder of labelled images: the WikiArt exports from Roboflow, or the course layout.

The layout is detected from what is on disk (:data:`LAYOUTS`). The class list is the sorted union
of the classes named in every split, so a class may be empty in one of them (WikiArt's test split
has no Action_painting) and the label numbers agree across splits. Pixels come from the decode
cache, keyed by the paths, sizes and modification times of the files, so a changed folder is
decoded again and an unchanged one never is. Files that fail to decode are skipped and listed,
with the reason, in one warning and in ``dataset.skipped``.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import math
import os
import unicodedata
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import numpy as np
from pydantic import Field
from sklearn.model_selection import train_test_split

from zoo.data import ImageDataset, cached_images
from zoo.imageio import DECODE_VERSION, is_image_name, read_image

SPLITS = ("train", "valid", "test")
CSV_NAME = "_classes.csv"
LAYOUTS = """\
  1. Roboflow folder export: ROOT/train/CLASS/*.jpg, ROOT/valid/CLASS/*.jpg, ROOT/test/CLASS/*.jpg
  2. Roboflow CSV export:    ROOT/train/_classes.csv beside the images (likewise valid/, test/),
                             header `filename, CLASS_A, CLASS_B, ...`, one-hot rows
  3. course layout:          ROOT/train/CLASS/*.jpg and ROOT/test/CLASS/*.jpg; no valid/, so a
                             stratified validation split is carved from train"""
_SHOWN = 10  # unreadable files listed in the warning; the rest are in dataset.skipped


class LayoutError(ValueError):
    """The folder matches none of the layouts this dataset reads."""

    def __init__(self, root: Path, problem: str) -> None:
        super().__init__(f"cannot read {root} as an image dataset: {problem}.\nExpected one of:\n{LAYOUTS}")


@dataclass
class _Listing:
    """The image files of one split folder with their class names, before any decoding."""

    classes: list[str]
    files: list[Path] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # label problems, by path


def folder(
    *,
    split: str,
    image_size: int,
    root: str,
    valid_fraction: Annotated[
        float, Field(gt=0, lt=1, description="share of train carved out as valid where there is no valid/")
    ] = 0.1,
    seed: Annotated[int, Field(description="seed of that carved validation split")] = 0,
) -> ImageDataset:
    """The ``split`` of the images under ``root``, centre-cropped and resized to ``image_size``."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, not {split!r}")
    base = Path(root).expanduser().resolve()
    listings = _scan(base)
    classes = sorted({c for listing in listings.values() for c in listing.classes})
    index = {c: i for i, c in enumerate(classes)}

    carve = "valid" not in listings
    source = "train" if carve and split == "valid" else split
    listing = listings[source]
    if not listing.files:
        raise LayoutError(base, f"{base / source} holds no image files")
    labels = np.array([index[c] for c in listing.labels], dtype=np.int64)
    picked = np.arange(len(labels))
    if carve and split in ("train", "valid"):
        train, valid = _carve(labels, valid_fraction, seed)
        picked = train if split == "train" else valid

    cache = cached_images(
        {"folder": str(base / source), "files": _fingerprint(listing.files), "decode": DECODE_VERSION},
        len(listing.files),
        image_size,
        functools.partial(_read, tuple(map(str, listing.files)), image_size),
        desc=f"{base.name}-{source}",
    )
    readable = np.array([i for i in picked if i not in cache.failed], dtype=np.int64)
    skipped = [(str(listing.files[i]), cache.failed[i]) for i in picked if i in cache.failed]
    if split == source:  # label problems belong to the folder's own split, not to a carved one
        skipped += listing.skipped
    if skipped:
        _warn(base.name, split, skipped)
    return ImageDataset(
        cache.images, labels[readable], classes, name=base.name, split=split, skipped=skipped, rows=readable
    )


def _read(paths: tuple[str, ...], size: int, index: int) -> np.ndarray:
    return read_image(paths[index], size)


# -- layout ------------------------------------------------------------------------------------


def _scan(base: Path) -> dict[str, _Listing]:
    if not base.is_dir():
        raise LayoutError(base, "it is not a folder")
    present = [s for s in SPLITS if (base / s).is_dir()]
    if "train" not in present or "test" not in present:
        raise LayoutError(base, f"it has no train/ and test/ folders{_contents_hint(base)}")
    return {s: _list_split(base, base / s) for s in present}


def _contents_hint(base: Path) -> str:
    folders = sorted(p.name for p in base.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(folders) == 1 and (base / folders[0] / "train").is_dir():
        return f"; did you mean {base / folders[0]}?"
    if not folders:
        return " (it holds no folders)"
    return f" (it holds: {', '.join(folders[:8])}{', ...' if len(folders) > 8 else ''})"


def _list_split(base: Path, where: Path) -> _Listing:
    if (where / CSV_NAME).is_file():
        return _list_csv(base, where)
    class_dirs = sorted(p for p in where.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        raise LayoutError(base, f"{where} has neither class folders nor a {CSV_NAME}")
    listing = _Listing(classes=[_class_name(d.name) for d in class_dirs])
    for d, name in zip(class_dirs, listing.classes):
        files = _images_under(d)
        listing.files += files
        listing.labels += [name] * len(files)
    listing.skipped += [(str(p), "not inside a class folder") for p in _images_in(where)]
    return listing


def _list_csv(base: Path, where: Path) -> _Listing:
    # utf-8-sig: spreadsheet programs put a byte-order mark before the header.
    with open(where / CSV_NAME, newline="", encoding="utf-8-sig") as f:
        rows = [row for row in csv.reader(f) if any(cell.strip() for cell in row)]
    # Roboflow writes `filename, Abstract_Expressionism, ...`: the names carry leading spaces.
    header = [cell.strip() for cell in rows[0]] if rows else []
    if len(header) < 2 or header[0].lower() != "filename":
        raise LayoutError(base, f"{where / CSV_NAME} must start with a header `filename, CLASS, ...`")
    listing = _Listing(classes=[_class_name(c) for c in header[1:]])
    listed = set()
    for row in rows[1:]:
        path = where / row[0].strip()
        listed.add(path.name)
        try:
            marked = [c for c, v in zip(listing.classes, row[1:]) if float(v) != 0]
        except ValueError:
            listing.skipped.append((str(path), f"its row in {CSV_NAME} has a value that is not 0 or 1"))
            continue
        if len(marked) != 1:
            problem = f"{len(marked)} classes marked in {CSV_NAME}; expected exactly one"
            listing.skipped.append((str(path), problem))
        elif not path.is_file():
            listing.skipped.append((str(path), f"listed in {CSV_NAME} but not found"))
        else:
            listing.files.append(path)
            listing.labels.append(marked[0])
    order = sorted(range(len(listing.files)), key=lambda i: listing.files[i])
    listing.files = [listing.files[i] for i in order]
    listing.labels = [listing.labels[i] for i in order]
    unlisted = [p for p in _images_in(where) if p.name not in listed]
    listing.skipped += [(str(p), f"not listed in {CSV_NAME}") for p in unlisted]
    return listing


def _images_in(where: Path) -> list[Path]:
    return sorted(p for p in where.iterdir() if is_image_name(p) and p.is_file())


def _images_under(where: Path) -> list[Path]:
    found = []
    for parent, dirs, names in os.walk(where):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found += [Path(parent, n) for n in names if is_image_name(n)]
    return sorted(found)


def _class_name(name: str) -> str:
    # macOS stores names decomposed (NFD): "Réalisme" copied from a Mac and typed on Linux must be
    # one class, not two.
    return unicodedata.normalize("NFC", name.strip())


# -- splits, cache key, report -----------------------------------------------------------------


def _carve(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded validation split of train, stratified by class where the counts allow it."""
    everything = np.arange(len(labels))
    # A class with a single file cannot be in both parts: it stays in train.
    splittable = everything[np.bincount(labels)[labels] >= 2]
    n_valid = math.ceil(fraction * len(splittable))
    if n_valid == 0 or n_valid == len(splittable):
        return everything, everything[:0]
    n_classes = len(np.unique(labels[splittable]))
    # sklearn stratifies only when each part can hold every class.
    stratify = labels[splittable] if n_classes <= min(n_valid, len(splittable) - n_valid) else None
    _, valid = train_test_split(splittable, test_size=n_valid, random_state=seed, stratify=stratify)
    return np.setdiff1d(everything, valid), np.sort(valid)


def _fingerprint(files: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in files:
        stat = path.stat()
        digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


def _warn(name: str, split: str, skipped: list[tuple[str, str]]) -> None:
    lines = [f"  {path}: {reason}" for path, reason in skipped[:_SHOWN]]
    if len(skipped) > _SHOWN:
        lines.append(f"  ... and {len(skipped) - _SHOWN} more (see dataset.skipped)")
    head = f"{name} [{split}]: skipped {len(skipped)} unreadable file(s):"
    warnings.warn("\n".join([head, *lines]), stacklevel=3)
