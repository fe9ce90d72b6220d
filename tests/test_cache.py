"""The decode cache: built once, reused, rebuilt when its source changes, never read half-made."""

from __future__ import annotations

import functools
import multiprocessing
import os
import pickle
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from images import PALETTE, solid
from zoo.data import ImageDataset, UnreadableImage, cache_root, cached_images
from zoo.datasets.folder import folder

SIZE = 4


def shade(i: int) -> np.ndarray:
    return np.full((SIZE, SIZE, 3), i, np.uint8)


def forbidden(i: int) -> np.ndarray:
    raise AssertionError("the cache entry was decoded again")


def odd_unreadable(i: int) -> np.ndarray:
    if i % 2:
        raise UnreadableImage(f"item {i} is odd")
    return shade(i)


def fails_at(n: int, i: int) -> np.ndarray:
    if i == n:
        raise RuntimeError("a bug in the decoder")
    return shade(i)


def dies_at(n: int, i: int) -> np.ndarray:
    if i == n:
        os._exit(3)  # as a kill or the OOM killer would: no cleanup runs
    return shade(i)


def build(key, decode, count=8, **kwargs):
    return cached_images({"test": str(key)}, count, SIZE, decode, desc="cache-test", workers=1, **kwargs)


def expected(count: int) -> np.ndarray:
    return np.stack([shade(i) for i in range(count)])


def test_an_entry_is_built_once_and_then_reused(tmp_path):
    first = build(tmp_path, shade)
    assert first.built and np.array_equal(first.images, expected(8))
    second = build(tmp_path, forbidden)
    assert not second.built and second.path == first.path
    assert np.array_equal(second.images, expected(8))
    assert isinstance(second.images, np.memmap)


def test_a_different_key_or_size_is_a_different_entry(tmp_path):
    a = build(tmp_path / "a", shade)
    b = build(tmp_path / "b", shade)
    def bigger(i: int) -> np.ndarray:
        return np.zeros((SIZE + 1, SIZE + 1, 3), np.uint8)

    c = cached_images({"test": str(tmp_path / "a")}, 8, SIZE + 1, bigger, desc="cache-test", workers=1)
    assert len({a.path, b.path, c.path}) == 3 and b.built and c.built


def test_unreadable_items_are_recorded_with_their_reason_and_remembered(tmp_path):
    first = build(tmp_path, odd_unreadable)
    assert first.failed == {1: "item 1 is odd", 3: "item 3 is odd", 5: "item 5 is odd", 7: "item 7 is odd"}
    assert build(tmp_path, forbidden).failed == first.failed


def test_parallel_decoding_fills_every_item(tmp_path):
    result = cached_images({"test": str(tmp_path)}, 64, SIZE, odd_unreadable, desc="cache-test", workers=2)
    assert sorted(result.failed) == list(range(1, 64, 2))
    assert np.array_equal(result.images[::2], expected(64)[::2])


def _entries() -> set[str]:
    return {p.name for p in cache_root().iterdir()} if cache_root().exists() else set()


def test_a_build_that_raises_leaves_nothing_behind(tmp_path):
    before = _entries()
    with pytest.raises(RuntimeError, match="a bug in the decoder"):
        build(tmp_path, functools.partial(fails_at, 5))
    assert _entries() == before  # neither the entry nor its temporary folder
    assert build(tmp_path, shade).built


def test_a_killed_build_leaves_a_temp_folder_that_is_never_read(tmp_path):
    before = _entries()
    killed = functools.partial(dies_at, 5)
    child = multiprocessing.get_context("fork").Process(target=build, args=(tmp_path, killed))
    child.start()
    child.join(60)
    assert child.exitcode == 3
    leftovers = _entries() - before
    assert len(leftovers) == 1 and next(iter(leftovers)).startswith(".")  # half-written, hidden

    result = build(tmp_path, shade)
    assert result.built and np.array_equal(result.images, expected(8))


def test_a_complete_looking_temp_folder_is_not_taken_for_the_entry(tmp_path):
    # A build killed after writing meta.json but before the rename into place.
    entry = build(tmp_path, shade).path
    stale = entry.with_name(f".{entry.name}.killed")
    shutil.copytree(entry, stale)
    np.load(stale / "images.npy", mmap_mode="r+")[:] = 99
    shutil.rmtree(entry)

    result = build(tmp_path, shade)
    assert result.built and result.path == entry and np.array_equal(result.images, expected(8))


# -- through the folder dataset ----------------------------------------------------------------


def art_folder(root):
    for split in ("train", "valid", "test"):
        for k in range(3):
            solid(root / split / "A" / f"{k}.bmp", PALETTE[k])
    return root


def colours(ds) -> list[tuple[int, ...]]:
    return [tuple((ds[i][0][:, 0, 0] * 255).round().int().tolist()) for i in range(len(ds))]


def test_an_unchanged_folder_is_read_from_the_cache_not_decoded_again(tmp_path):
    root = art_folder(tmp_path / "art")
    assert colours(folder(split="train", image_size=SIZE, root=str(root))) == PALETTE[:3]
    # New pixels behind the same name, size and modification time: invisible to the fingerprint,
    # so what comes back can only be the cache's copy.
    path = root / "train" / "A" / "0.bmp"
    stat = path.stat()
    solid(path, PALETTE[5])
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert colours(folder(split="train", image_size=SIZE, root=str(root)))[0] == PALETTE[0]


def test_a_modified_added_or_removed_file_rebuilds_the_cache(tmp_path):
    root = art_folder(tmp_path / "art")
    train = root / "train" / "A"
    def train_colours():
        return colours(folder(split="train", image_size=SIZE, root=str(root)))

    assert train_colours() == PALETTE[:3]
    solid(train / "0.bmp", PALETTE[5])
    os.utime(train / "0.bmp", ns=(0, 10**18))  # a modification time the first build did not see
    assert train_colours() == [PALETTE[5], *PALETTE[1:3]]

    solid(train / "3.bmp", PALETTE[4])
    assert train_colours() == [PALETTE[5], *PALETTE[1:3], PALETTE[4]]

    (train / "1.bmp").unlink()
    assert train_colours() == [PALETTE[5], PALETTE[2], PALETTE[4]]


def test_a_pickled_dataset_carries_the_cache_file_name_not_the_pixels(tmp_path):
    root = tmp_path / "big"
    for k in range(40):
        solid(root / "train" / "A" / f"{k:02d}.png", PALETTE[k % 6])
    solid(root / "test" / "A" / "0.png", PALETTE[0])
    ds = folder(split="train", image_size=64, root=str(root))
    data = pickle.dumps(ds)  # what a spawn or forkserver DataLoader worker receives
    assert len(data) < 20_000 < ds.images.nbytes
    copy = pickle.loads(data)
    assert isinstance(copy.images, np.memmap) and np.array_equal(copy.rows, ds.rows)
    assert colours(copy) == colours(ds)


def test_reading_a_whole_cache_keeps_none_of_it_resident_in_the_process(tmp_path):
    """An epoch reads every image of the cache; read rather than faulted in through the memory
    map, they stay in the kernel's page cache and the process's resident memory does not grow to
    the cache's size (12 GB for WikiArt at 224 px)."""
    import torch

    from runners import loader

    shape = (4000, 128, 128, 3)  # 197 MB
    cache = np.lib.format.open_memmap(tmp_path / "images.npy", mode="w+", dtype=np.uint8, shape=shape)
    cache[:] = 7
    cache.flush()
    del cache
    data = ImageDataset(np.load(tmp_path / "images.npy", mmap_mode="r"), np.zeros(shape[0], np.int64), ["a"])
    order = np.random.default_rng(0).permutation(shape[0])

    def mapped() -> int:  # resident pages of files mapped into this process
        status = Path("/proc/self/status").read_text()
        return int(re.search(r"RssFile:\s+(\d+) kB", status).group(1)) * 1024

    next(loader.batches(data, order[:8], 8, device=torch.device("cpu")))  # the code's own pages
    before = mapped()
    for images, _ in loader.batches(data, order, 64, device=torch.device("cpu")):
        assert int(images[0, 0, 0, 0] * 255) == 7
    for i in order[:1000]:  # judges and the analysis read single items
        data[int(i)]
    assert mapped() - before < 0.15 * np.prod(shape), f"{(mapped() - before) / 1e6:.0f} MB of the cache stayed"
