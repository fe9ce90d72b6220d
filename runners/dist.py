"""Distribution helpers: one process, or N under torchrun (nccl on GPU, gloo on CPU).

Sampling is ours rather than DistributedSampler's so that the weighted (class-imbalance) draw is
the same on every rank — one generator seeded by (seed, epoch) — and each rank takes its share;
and so that a resumed epoch can skip the batches it already trained on.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def init(device_type: str) -> World:
    """Join the torchrun process group if launched by torchrun, else a world of one."""
    if "RANK" not in os.environ or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return World()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
    return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def epoch_order(n: int, *, seed: int, epoch: int, world: World, weights: np.ndarray | None = None) -> np.ndarray:
    """This rank's item order for one training epoch.

    Every rank draws the same global order (uniform permutation, or ``n`` weighted draws with
    replacement: O(n) memory), pads it to a multiple of the world size so all ranks take the same
    number of steps, and keeps every ``size``-th item from its rank.
    """
    g = torch.Generator().manual_seed(seed * 100_003 + epoch)
    if weights is None:
        order = torch.randperm(n, generator=g)
    else:
        order = torch.multinomial(torch.as_tensor(weights, dtype=torch.double), n, replacement=True, generator=g)
    order = order.numpy()
    pad = (-len(order)) % world.size
    order = np.concatenate([order, order[:pad]])
    return order[world.rank :: world.size]


def eval_share(n: int, world: World) -> np.ndarray:
    """This rank's items for evaluation: each item on exactly one rank, none padded."""
    return np.arange(world.rank, n, world.size)


def gather(outputs: dict[str, np.ndarray], index: np.ndarray, world: World) -> dict[str, np.ndarray]:
    """Concatenate per-item results from every rank, back in dataset order."""
    if not world.distributed:
        return outputs
    parts: list = [None] * world.size
    dist.all_gather_object(parts, (index, outputs))
    order = np.concatenate([p[0] for p in parts])
    inverse = np.argsort(order, kind="stable")
    return {k: np.concatenate([p[1][k] for p in parts])[inverse] for k in outputs}


def broadcast(value, world: World):
    """Rank 0's value, on every rank."""
    if not world.distributed:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]
