"""The decode cache and the dataset type every built-in dataset returns.

Images are decoded (or rendered) once per (source, split, image size) into a uint8 array on disk,
memory-mapped, so an epoch never decodes a JPEG and a 416 px WikiArt export need not fit in RAM.
A cache entry is built in a temporary folder and renamed into place, so a reader never sees one
half-written; its key fingerprints the source, so a changed source builds a new entry.
"""

from __future__ import annotations

import functools
import hashlib
import json
import mmap
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable
import multiprocessing as mp

import numpy as np
import torch
from tqdm.auto import tqdm

# A decoder turns item i into an H×W×3 uint8 array, or raises UnreadableImage with the reason.
Decoder = Callable[[int], np.ndarray]
CACHE_FORMAT = 1  # bump to invalidate every cache entry after a change in how items are stored


@runtime_checkable
class Renders(Protocol):
    """A dataset capability: it can paint any of its items' content in any of its classes, so a
    restyle has a ground truth (synthart). ``render(i, self[i][1])`` is ``self[i][0]``; another
    ``texture`` paints another sample of the same content and style (other random marks). The
    result is a C×H×W float tensor in [0, 1] (or an H×W×C uint8 array)."""

    def render(self, index: int, style: int, *, texture: int = 0) -> torch.Tensor: ...


class UnreadableImage(Exception):
    """An item that cannot be decoded; the message is the reason shown to the user."""


def cache_root() -> Path:
    """``$ARTZOO_CACHE``, else the user's cache folder (``~/.cache/artzoo`` on Linux)."""
    env = os.environ.get("ARTZOO_CACHE")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("artzoo"))


@dataclass
class CachedImages:
    """A built cache entry: the uint8 images (N×H×W×3, memory-mapped) and what failed."""

    images: np.ndarray
    failed: dict[int, str]  # item index -> reason
    path: Path
    built: bool  # True when this call built it, False when it was reused


def cached_images(
    key: dict,
    count: int,
    image_size: int,
    decode: Decoder,
    *,
    desc: str,
    workers: int | None = None,
) -> CachedImages:
    """Return the cache entry for ``key``, decoding ``count`` items with ``decode`` if needed.

    ``key`` must fingerprint everything the pixels depend on (source files with their sizes and
    modification times, a generator's seed and version, ...); ``image_size`` is part of it.
    ``decode`` must be picklable (a module-level function or a ``functools.partial``) so the
    items can be decoded in parallel processes.
    """
    digest = hashlib.sha256(
        json.dumps({"key": key, "size": image_size, "format": CACHE_FORMAT}, sort_keys=True, default=str).encode()
    ).hexdigest()[:20]
    final = cache_root() / f"{_slug(desc)}-{image_size}px-{digest}"
    if (final / "meta.json").exists():
        return _open(final, built=False)

    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        shape = (count, image_size, image_size, 3)
        np.lib.format.open_memmap(tmp / "images.npy", mode="w+", dtype=np.uint8, shape=shape).flush()
        failed = _fill(tmp / "images.npy", count, decode, desc=desc, workers=workers)
        meta = {"shape": shape, "failed": {str(i): r for i, r in failed.items()}, "key": key}
        (tmp / "meta.json").write_text(json.dumps(meta, default=str))
        try:
            os.replace(tmp, final)
        except OSError:  # another process finished the same entry first; theirs is as good
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return _open(final, built=True)


def _open(path: Path, *, built: bool) -> CachedImages:
    meta = json.loads((path / "meta.json").read_text())
    images = np.load(path / "images.npy", mmap_mode="r")
    return CachedImages(images, {int(i): r for i, r in meta["failed"].items()}, path, built)


def _fill(target: Path, count: int, decode: Decoder, *, desc: str, workers: int | None) -> dict[int, str]:
    workers = workers if workers is not None else min(len(os.sched_getaffinity(0)), 8)
    chunk = max(1, min(256, count // max(1, workers * 4)))
    spans = [range(s, min(s + chunk, count)) for s in range(0, count, chunk)]
    failed: dict[int, str] = {}
    # one line wherever the output goes (a log, CI), where the bar is drawn only on a terminal
    print(f"caching {desc}: decoding {count} images …", flush=True)
    bar = tqdm(total=count, desc=f"caching {desc}", unit="img", disable=None, leave=False)
    if workers <= 1 or count < 2 * chunk:
        for span in spans:
            failed.update(_decode_span(target, span, decode))
            bar.update(len(span))
    else:
        # fork: the decoder and its dataset state are inherited rather than pickled per item.
        ctx = mp.get_context("fork") if sys.platform != "win32" else None
        # one torch thread per worker process; the parent keeps its own setting, since the thread
        # count changes float reductions and so the bit-for-bit results of a later training
        with ProcessPoolExecutor(workers, mp_context=ctx, initializer=torch.set_num_threads, initargs=(1,)) as pool:
            for span, result in zip(spans, pool.map(_decode_span, [target] * len(spans), spans, [decode] * len(spans))):
                failed.update(result)
                bar.update(len(span))
    bar.close()
    return failed


def _decode_span(target: Path, span: range, decode: Decoder) -> dict[int, str]:
    out = np.load(target, mmap_mode="r+")
    failed = {}
    for i in span:
        try:
            out[i] = decode(i)
        except UnreadableImage as exc:
            failed[i] = str(exc)
    out.flush()
    return failed


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in text)[:40]


@dataclass
class ImageDataset(torch.utils.data.Dataset):
    """Items are ``(float C×H×W tensor in [0, 1], int label)``; ``.classes`` is sorted and fixed.

    ``images`` may be a memory map (a view of the decode cache); ``skipped`` lists the source
    items that could not be read, as ``(path, reason)``.
    """

    images: np.ndarray  # M×H×W×3 uint8, often a memory map of the cache
    labels: np.ndarray  # N int64
    classes: list[str]
    name: str = "dataset"
    split: str = "train"
    skipped: list[tuple[str, str]] = field(default_factory=list)
    # Item i is images[rows[i]]: a split or the readable files select rows without copying pixels.
    rows: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels, dtype=np.int64)
        self.rows = np.arange(len(self.labels)) if self.rows is None else np.asarray(self.rows, dtype=np.int64)
        if len(self.rows) != len(self.labels) or (len(self.rows) and self.rows.max() >= len(self.images)):
            raise ValueError(f"{self.name}: {len(self.labels)} labels do not match the {len(self.images)} images")

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = torch.from_numpy(self.read(self.rows[index : index + 1])[0]).permute(2, 0, 1)
        return image.float().div_(255), int(self.labels[index])

    def read(self, rows: np.ndarray) -> np.ndarray:
        """``images[rows]`` (R×H×W×3 uint8), a copy. From the decode cache's file the rows are read
        with ``pread``, not through the memory map: the pages a map faults in (whole large folios
        on recent kernels, megabytes for a 150 KB row) stay resident in this process, which would
        hold the whole cache by the end of an epoch (12 GB for WikiArt at 224 px); read, they
        stay in the kernel's page cache alone."""
        images = self.images
        if not (isinstance(images, np.memmap) and isinstance(images.base, mmap.mmap) and hasattr(os, "preadv")):
            return images[rows]  # in memory, or a system without pread
        out = np.empty((len(rows), *images.shape[1:]), dtype=images.dtype)
        size = out[0].nbytes if len(out) else 0
        fd = _reader(images.filename)
        for k, row in enumerate(rows):
            if os.preadv(fd, [out[k]], images.offset + int(row) * size) != size:
                raise OSError(f"{images.filename} ended before row {row}: the decode cache was cut short")
        return out

    def __getstate__(self) -> dict:
        # A memory map pickles as a copy of every pixel. DataLoader workers started by spawn or
        # forkserver (macOS, Windows, Python 3.14's default) get the file name and map it again.
        state = self.__dict__.copy()
        if isinstance(self.images, np.memmap) and isinstance(self.images.base, mmap.mmap):  # a whole .npy
            state["images"] = _MappedFile(self.images.filename)
        return state

    def __setstate__(self, state: dict) -> None:
        if isinstance(state["images"], _MappedFile):
            state["images"] = np.load(state["images"].path, mmap_mode="r")
        self.__dict__.update(state)

    @property
    def targets(self) -> np.ndarray:
        """The labels, as torchvision datasets name them."""
        return self.labels

    def class_counts(self) -> np.ndarray:
        return np.bincount(self.labels, minlength=len(self.classes))

    def summary(self) -> str:
        counts = ", ".join(f"{c}={n}" for c, n in zip(self.classes, self.class_counts()))
        text = f"{self.name} [{self.split}]: {len(self)} images, {len(self.classes)} classes ({counts})"
        if self.skipped:
            text += f"; {len(self.skipped)} unreadable file(s) skipped"
        return text


@functools.lru_cache(maxsize=32)
def _reader(path: str) -> int:
    """A descriptor of a cache file, opened once per process rather than per item read (a judge
    reads 25,600 single items); pread keeps no position, so a forked worker may share it."""
    return os.open(path, os.O_RDONLY)


@dataclass(frozen=True)
class _MappedFile:
    """Stands for a memory-mapped .npy file while a dataset is pickled."""

    path: str
