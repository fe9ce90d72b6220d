"""How every network of a run is trained: one optimisation step, and the object that holds what a
run trains.

:class:`Step` is the only code that backpropagates and steps an optimizer: the runner's model, a
task's auxiliary networks (restyle's critic, reconstruct's style network), the restyle judge and
the benchmarks all go through it, so each gets the same finite-loss check, gradient clipping and
schedule. :class:`Fitter` is the runner's fitting object: the model, its moving average, and a
Step for the model and for each auxiliary network (runners/train.py builds it from the config;
bench/throughput.py times its :meth:`Fitter.train_step`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

if TYPE_CHECKING:
    from timm.utils import ModelEmaV3


class NonFiniteLoss(FloatingPointError):
    """A loss was NaN or infinite: its step was not taken."""

    def __init__(self, name: str, value: float) -> None:
        super().__init__(f"the {name} loss became {value}")
        self.name, self.value = name, value


def constant(step: int) -> float:
    """The schedule of a network that keeps its learning rate (the default for auxiliary networks)."""
    return 1.0


@dataclass(eq=False)
class Step:
    """One network's optimisation: ``step(loss)`` checks that the loss is finite, backpropagates it,
    clips the gradients' norm to ``grad_clip`` (0: off), steps the optimizer and then the schedule."""

    name: str
    parameters: list[nn.Parameter]
    optimizer: torch.optim.Optimizer
    scheduler: Any = None  # a torch.optim.lr_scheduler, stepped after each optimizer step
    grad_clip: float = 0.0

    def __call__(self, loss: torch.Tensor) -> None:
        if not torch.isfinite(loss):
            raise NonFiniteLoss(self.name, loss.item())
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.grad_clip:
            nn.utils.clip_grad_norm_(self.parameters, self.grad_clip)
        self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()

    def state_dict(self) -> dict:
        return {"optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None}

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state.get("scheduler") is not None:
            self.scheduler.load_state_dict(state["scheduler"])


def scheduled(name: str, parameters: Iterable[nn.Parameter], optimizer: torch.optim.Optimizer,
              schedule: Callable[[int], float] = constant, grad_clip: float = 0.0) -> Step:
    """A :class:`Step` whose learning rate is the optimizer's times ``schedule(step)``."""
    return Step(name, list(parameters), optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, schedule), grad_clip)


@dataclass(eq=False)
class Auxiliary:
    """A network a task trains beside the model with an optimizer of its own (a GAN's critic,
    a style network), declared by ``Task.auxiliary()``.

    The runner (or :func:`place_auxiliary`, outside it) moves ``module`` to the device, sets
    ``train`` to ``forward`` (default ``module``) wrapped in DistributedDataParallel under
    torchrun, and ``step`` to a :class:`Step` over ``make_optimizer(module.parameters())`` with
    the run's gradient clipping, and with the model's schedule where ``scheduled`` (else a
    constant learning rate). The task calls ``train`` and ``step(loss)`` in its
    ``training_step``; the runner checkpoints the step (optimizer and schedule). The network's
    weights belong to the task's ``state_dict``, since inference needs them.
    """

    module: nn.Module
    make_optimizer: Callable[[Iterator[nn.Parameter]], torch.optim.Optimizer]
    forward: nn.Module | None = None  # what a step calls, where not ``module`` itself (a view of it)
    find_unused_parameters: bool = False  # DistributedDataParallel's: forward uses only part of it
    scheduled: bool = False  # follow the model's learning-rate schedule (warm-up, cosine)
    train: nn.Module | None = field(default=None, init=False)
    step: Step | None = field(default=None, init=False)

    @property
    def optimizer(self) -> torch.optim.Optimizer | None:
        return self.step.optimizer if self.step is not None else None


def place_auxiliary(task, device: torch.device, wrap: Callable[[nn.Module, bool], nn.Module] | None = None, *,
                    schedule: Callable[[int], float] = constant, grad_clip: float = 0.0) -> dict[str, Auxiliary]:
    """What the runner does with a task's auxiliary networks after ``task.setup``: each moved to
    ``device``, given its ``train`` module (``wrap(forward, find_unused_parameters)``: the runner's
    DistributedDataParallel) and its ``step`` (``schedule`` where it is ``scheduled``). Also for a
    task used outside the runner (tests, benchmarks)."""
    auxiliary = task.auxiliary() if hasattr(task, "auxiliary") else {}  # optional for a plugin task
    for name, aux in auxiliary.items():
        aux.module.to(device)
        params = list(aux.module.parameters())
        aux.step = scheduled(name, params, aux.make_optimizer(iter(params)),
                             schedule if aux.scheduled else constant, grad_clip)
        forward = aux.forward if aux.forward is not None else aux.module
        aux.train = wrap(forward, aux.find_unused_parameters) if wrap is not None else forward
    return auxiliary


def channels_last(device: torch.device) -> bool:
    """Whether training runs in channels-last (NHWC) memory format: on CUDA (tensor cores) and on
    CPUs (oneDNN's convolutions are faster in NHWC; docs/performance.md)."""
    return device.type in ("cuda", "cpu")


def random_flips(images: torch.Tensor) -> torch.Tensor:
    """Each image of the batch mirrored left-right with probability 1/2 (data.augment)."""
    mask = torch.rand(images.shape[0], device="cpu") < 0.5
    return torch.where(mask.to(images.device)[:, None, None, None], images.flip(-1), images)


@dataclass(eq=False)
class Fitter:
    """What a run trains and how: the task, its model (``model``: the bare module; ``task.model``
    the one the steps call, compiled or wrapped), the model's moving average, and a :class:`Step`
    for the model (``steps["model"]``) and for each auxiliary network."""

    task: Any
    model: nn.Module
    steps: dict[str, Step]
    auxiliary: dict[str, Auxiliary] = field(default_factory=dict)
    ema: ModelEmaV3 | None = None  # the weights' moving average: what is evaluated and reported
    autocast: Any = field(default_factory=contextlib.nullcontext)
    augment: bool = False  # random left-right flips of each training batch
    taken: int = 0  # the model's steps taken, over the whole run

    def train_step(self, images: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """One batch: the task's losses (its auxiliary networks step inside), then the model's step
        and the moving average's update. Returns what the task logged."""
        if self.augment:
            images = random_flips(images)
        with self.autocast:
            out = self.task.training_step(images, labels)
        self.steps["model"](out["loss"])
        self.taken += 1
        if self.ema is not None:
            self.ema.update(self.model, step=self.taken)
        return out

    @property
    def reported(self) -> nn.Module:
        """The weights a run evaluates, reports and serves: the moving average where there is one."""
        return self.ema.module if self.ema is not None else self.model

    @contextlib.contextmanager
    def evaluated(self) -> Iterator[nn.Module]:
        """The task sees the model it is scored with, in eval mode, inside the block."""
        net = self.reported
        trained, self.task.model = self.task.model, net
        try:
            yield net.eval()
        finally:
            self.task.model = trained
