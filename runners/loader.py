"""Batches from a dataset in a given item order, moved to the device.

A :class:`zoo.data.ImageDataset` (every built-in) is read a whole batch at a time straight from
its uint8 cache: one fancy-index copy instead of B ``__getitem__`` calls and a collate, and a
quarter of the bytes to move; the conversion to float happens on the device. Any other torch
Dataset (a plugin's) goes through the ordinary per-item DataLoader path.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from zoo.data import ImageDataset


class _Batches(Dataset):
    """Item i is the i-th batch of ``order`` as (uint8 B×H×W×C tensor, int64 labels)."""

    def __init__(self, dataset: ImageDataset, batches: list[np.ndarray]) -> None:
        self.dataset, self.batches = dataset, batches

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        idx = self.batches[i]
        rows = self.dataset.rows[idx]
        # memory maps read fastest in ascending row order
        sort = np.argsort(rows, kind="stable")
        images = np.empty((len(rows), *self.dataset.images.shape[1:]), dtype=np.uint8)
        images[sort] = self.dataset.read(rows[sort])
        return torch.from_numpy(images), torch.from_numpy(self.dataset.labels[idx])


def batches(
    dataset: Dataset,
    order: np.ndarray,
    batch_size: int,
    *,
    device: torch.device,
    workers: int = 0,
    generator: torch.Generator | None = None,
    skip: int = 0,
    channels_last: bool = False,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield ``(float B×C×H×W in [0, 1], int64 labels)`` on ``device``, skipping ``skip`` batches."""
    chunks = [order[i : i + batch_size] for i in range(0, len(order), batch_size)][skip:]
    pin = device.type == "cuda"
    if isinstance(dataset, ImageDataset):
        loader = DataLoader(_Batches(dataset, chunks), batch_size=None, shuffle=False, num_workers=workers,
                            pin_memory=pin, generator=generator, persistent_workers=False)
    else:
        loader = DataLoader(dataset, batch_sampler=[c.tolist() for c in chunks], num_workers=workers,
                            pin_memory=pin, generator=generator)
    for images, labels in loader:
        images = images.to(device, non_blocking=pin)
        if images.dtype == torch.uint8:  # B×H×W×C from the cache
            images = images.permute(0, 3, 1, 2).float().div_(255)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        yield images, torch.as_tensor(labels).to(device, non_blocking=pin)


def num_batches(n: int, batch_size: int) -> int:
    return -(-n // batch_size)
