"""The task interface: what the runner's one training loop calls.

A task owns its loss, its metrics and its artifacts; the runner owns the loop, the device,
mixed precision, every optimizer and its step (zoo/fit.py), distribution, checkpoints and MLflow. A task
plugin subclasses :class:`Task` (or provides the same methods) and is registered in the
``zoo.tasks`` entry-point group. Its keyword-only ``__init__`` options become ``train.*`` keys.

Call order, per run::

    Task.config_problem(train_options)          # before any work: the options taken together
    Task.model_problem(model, ...)              # the built model fits the task, or why not
    task = Task(model=model, classes=classes, **options)
    task.setup(train_set, device)               # once, before training (every rank)
    task.auxiliary()                            # networks it trains beside the model: the runner
                                                # places and wraps them and gives each its step
                                                # (Auxiliary.step), which it checkpoints
    task.sample_weights(labels)                 # per-item weights for a weighted sampler, or None
    each epoch:  task.on_epoch_start(epoch, epochs)   # epoch from 0, also the one a resume continues
    for each batch: task.training_step(x, y)    # -> {"loss": tensor, ...}: its auxiliary networks
                                                # stepped inside (aux.step(loss)); the runner then
                                                # steps the model on "loss"
    each epoch:  task.eval_step(x, y) per val batch -> per-item tensors, gathered over ranks,
                 task.eval_metrics(outputs)     # -> {"loss": ..., "acc": ...} logged as val/*
                 task.images(x, y)              # -> {"name": H×W×3 uint8 grid} under images/
    at the end:  task.after_fit(train_set=..., valid_set=..., device=...)   # the served weights loaded:
                                                # a post-hoc step; True where the task state changed
                 the same eval on the test split, logged as test/*, then (rank 0 only)
                 task.finalize(train_set=..., test_set=..., out=dir, device=...)
                                                # writes its declared ``artifacts`` (zoo.schema)
                                                # under out and returns more test metrics

Inference on a trained run (runners/inference.py builds the task from the run's config and
checkpoint, calls ``load_state_dict`` with the checkpoint's task state, and never ``setup``)::

    task.predict(images, **options)             # -> {"name": array with one row per image}

used by ``python -m runners.predict``, the run's MLflow model and the dashboard.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
import torch
from torch import nn
from torchvision.utils import make_grid

from zoo import schema
# a task's auxiliary networks are declared with these (their training is the runner's: zoo/fit.py)
from zoo.fit import Auxiliary, place_auxiliary  # noqa: F401


class Task:
    """Base class with the defaults; subclasses override what they need."""

    # The validation metric that picks checkpoints/best.pt (logged as val/<main_metric>).
    main_metric: ClassVar[str] = "loss"
    greater_is_better: ClassVar[bool] = False
    # Whether training uses class labels (a weighted sampler is refused for tasks that do not).
    uses_labels: ClassVar[bool] = True
    # The checkpoint whose weights the test split scores and every user of the run loads (the
    # MLflow model, runners.predict, the dashboard): "best" (picked by val/<main_metric>) or "last"
    # (the weights at the end of training). One of them, so that what is served is what was scored.
    serves: ClassVar[Literal["best", "last"]] = "best"
    # Whether after_fit is also taken on the checkpoint the run does not serve, with its own
    # weights: where the step takes out what no artifact of the run may hold (cond_ae's dictionary
    # marks: the training tiles).
    after_fit_all_checkpoints: ClassVar[bool] = False
    # The test metrics (names without ``test/``) that answer what a run of this task is for, in
    # the order people read them: the runner's closing table, the dashboard's Runs table and
    # Run page, and bench/quality.py all show these first.
    headline_metrics: ClassVar[tuple[str, ...]] = ("loss",)
    # The artifacts its ``finalize`` writes (zoo.schema.Artifact's paths): the dashboard chooses its
    # views by them (a per-class table, embeddings to cluster, restyles to look at).
    artifacts: ClassVar[tuple[str, ...]] = ()
    # What each headline metric says, in a line (the run's description in MLflow): how it is
    # measured and which way is better; ``{chance}`` is replaced by 1 / the number of classes.
    # Where another test metric is its baseline (what doing nothing scores) or its ceiling, the
    # pair of their names (either may be None).
    metric_meanings: ClassVar[dict[str, str]] = {"loss": "the training loss on the test split; lower is better"}
    metric_bounds: ClassVar[dict[str, tuple[str | None, str | None]]] = {}

    def __init__(self, *, model: nn.Module, classes: list[str]) -> None:
        # During training the runner may swap in a DistributedDataParallel wrapper: call
        # self.model(...) (forward) in training_step so gradients are synchronised, and use
        # self.net (the bare module) for anything else.
        self.model = model
        self.classes = list(classes)

    @property
    def net(self) -> nn.Module:
        return getattr(self.model, "module", self.model)

    @classmethod
    def model_problem(cls, model: nn.Module, *, num_classes: int, in_chans: int, image_size: int) -> str | None:
        """What keeps ``model`` from being trained by this task, or None. The runner asks before
        a run is made, so a model given the wrong ``task=`` is refused up front; a task states
        here what it needs of a model (:func:`dry_forward` shows what the model gives)."""
        return None

    @classmethod
    def config_problem(cls, train: dict) -> str | None:
        """What is wrong with the ``train.*`` settings taken together (each alone is checked by
        its option's type and range), or None: the runner refuses a problem before any work."""
        return None

    def setup(self, train_set: torch.utils.data.Dataset, device: torch.device) -> None:
        """Prepare from the training set (class weights, extra modules) before the first step."""

    def auxiliary(self) -> dict[str, Auxiliary]:
        """The networks this task trains beside the model, by name (the same objects on every
        call), after :meth:`setup`; none by default. Optional for a plugin."""
        return {}

    def sample_weights(self, labels: np.ndarray) -> np.ndarray | None:
        """Per-item sampling weights for the training set, or None for uniform shuffling."""
        return None

    def on_epoch_start(self, epoch: int, epochs: int) -> None:
        """Before epoch ``epoch`` (from 0) of ``epochs`` trains, also where a resume continues it:
        for schedules a task keeps itself (deferred re-weighting). Optional for a plugin."""

    def after_fit(self, *, train_set: torch.utils.data.Dataset, valid_set: torch.utils.data.Dataset,
                  device: torch.device) -> bool:
        """After training, with the weights the run serves, before the test split is scored: a
        post-hoc step chosen on ``valid_set`` (classify's crt and tau_norm), or one that changes
        the served model (cond_ae's dictionary marks). Return True where the task state or the
        model changed: the runner then writes both into the served checkpoint. Optional."""
        return False

    def training_step(self, images: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """The loss of one batch as ``{"loss": scalar, **other scalars to log}``."""
        raise NotImplementedError

    @torch.no_grad()
    def eval_step(self, images: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-item results of one evaluation batch (first dimension = batch)."""
        raise NotImplementedError

    def eval_metrics(self, outputs: dict[str, np.ndarray]) -> dict[str, float]:
        """Metrics from the concatenated per-item results of a whole split."""
        raise NotImplementedError

    @torch.no_grad()
    def images(self, images: torch.Tensor, labels: torch.Tensor) -> dict[str, np.ndarray]:
        """Picture grids (H×W×3 uint8) of a fixed validation batch, logged every epoch."""
        return {}

    def finalize(
        self,
        *,
        train_set: torch.utils.data.Dataset,
        test_set: torch.utils.data.Dataset,
        out: Path,
        device: torch.device,
    ) -> dict[str, float]:
        """End-of-training analysis: write artifacts under ``out``; return more test metrics,
        named without the ``test/`` prefix (the runner adds it)."""
        return {}

    @torch.no_grad()
    def predict(self, images: torch.Tensor, **options) -> dict[str, np.ndarray]:
        """What the trained model says of a user's own images (B×C×H×W in [0, 1], the run's
        image size, on the model's device): arrays whose first dimension is B. The names
        decide how ``runners.predict`` writes them: ``probabilities`` (B×classes) become
        predictions.csv, B×C×H×W float images PNGs (one folder per name), anything else
        predictions.npz. A task without predictions leaves this out."""
        raise NotImplementedError(f"the {type(self).__name__} task makes no predictions")

    def state_dict(self) -> dict:
        """Extra state to checkpoint (auxiliary networks, their optimizers)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` returned."""


def metric_meaning(task_cls, name: str, metrics: dict[str, float], num_classes: int) -> str:
    """One line on what test metric ``name`` says (the task's ``metric_meanings``), with its
    baseline and ceiling (``metric_bounds``) as ``metrics`` (``{"test/...": value}``) holds them."""
    meaning = getattr(task_cls, "metric_meanings", {}).get(name, "")
    meaning = meaning.replace("{chance}", f"{1 / max(num_classes, 1):.3g}")
    bounds = getattr(task_cls, "metric_bounds", {}).get(name, (None, None))
    known = [f"{word} {metrics[schema.test(other)]:.4g}" for word, other in zip(("baseline", "ceiling"), bounds)
             if other and schema.test(other) in metrics]
    return "; ".join(filter(None, [meaning, ", ".join(known)]))


def analysis_batch(dataset, base: int) -> int:
    """Images per batch of an analysis pass over ``dataset``: ``base`` at 64 px or less, and at a
    larger size as many as hold the pixels of ``base`` at 64 px (20 of 256 at 224 px), so that
    its memory does not grow with the image size."""
    side = dataset[0][0].shape[-1] if len(dataset) else 64
    return max(1, min(base, base * 64 * 64 // (side * side)))


@contextlib.contextmanager
def phase(desc: str) -> Iterator[None]:
    """A long step of a run named in one line wherever the output goes (a log, CI), and in
    another with its time when it is done (bench/scale.py reads these lines)."""
    print(f"{desc} …", flush=True)
    started = time.perf_counter()
    yield
    print(f"{desc}: done in {time.perf_counter() - started:.1f} s", flush=True)


def progress(iterable, desc: str, *, total: int | None = None, unit: str = "it"):
    """``iterable`` as a :func:`phase`, with a progress bar where the output is a terminal: no
    long step of a run's analysis passes in silence."""
    from tqdm.auto import tqdm

    with phase(desc):
        yield from tqdm(iterable, desc=desc, total=total, unit=unit, disable=None, leave=False)


def dry_forward(model: nn.Module, *inputs: torch.Tensor) -> tuple[object, str]:
    """``model(*inputs)`` in eval mode, without gradients, on the model's device, and with the
    random streams left as they were (a decoder that samples noise changes no later number):
    the output, or None and what the call raised."""
    param = next(iter(model.parameters()), None)
    device = param.device if param is not None else torch.device("cpu")
    was_training = model.training
    try:
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            return model.eval()(*(x.to(device) for x in inputs)), ""
    except Exception as exc:  # the model's own failure, reported as why it does not fit
        return None, f"calling it raised {type(exc).__name__}: {exc}"
    finally:
        model.train(was_training)


def shape_of(out: object) -> str:
    """An output described for an error message: a tensor's shape, else its type."""
    if isinstance(out, torch.Tensor):
        return "×".join(map(str, out.shape))
    return f"a {type(out).__name__}"


def labels_of(dataset) -> np.ndarray:
    """A dataset's labels as an int64 array: its ``.targets`` (or ``.labels``), else read item by
    item, once."""
    for name in ("targets", "labels"):
        labels = getattr(dataset, name, None)
        if labels is not None:
            return np.asarray(labels, dtype=np.int64)
    return np.array([int(dataset[i][1]) for i in range(len(dataset))], dtype=np.int64)


def image_grid(cells: torch.Tensor, padding: int = 0, *, columns: list[str] | None = None,
               rows: list[str] | None = None) -> np.ndarray:
    """B×K×C×H×W images in [0, 1] as one H×W×3 uint8 picture: a row per item, a column per k;
    with ``columns`` (K names) written above the columns, turned upright, and ``rows`` (B names)
    left of the rows."""
    grid = to_uint8(make_grid(cells.flatten(0, 1).float().clamp(0, 1), nrow=cells.shape[1], padding=padding,
                              pad_value=1.0))
    if not columns and not rows:
        return grid
    return _labelled(grid, cells.shape[-2] + padding, cells.shape[-1] + padding, padding, columns or [], rows or [])


def _labelled(grid: np.ndarray, step_h: int, step_w: int, padding: int, columns: list[str],
              rows: list[str]) -> np.ndarray:
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=11)

    def text(label: str) -> Image.Image:
        left, top, right, bottom = font.getbbox(label)
        image = Image.new("RGB", (right - left + 4, bottom - top + 4), "white")
        ImageDraw.Draw(image).text((2 - left, 2 - top), label, fill="black", font=font)
        return image

    heads = [text(c).rotate(90, expand=True) for c in columns]
    sides = [text(r) for r in rows]
    top = max((h.height for h in heads), default=0)
    left = max((s.width for s in sides), default=0)
    canvas = Image.new("RGB", (grid.shape[1] + left, grid.shape[0] + top), "white")
    canvas.paste(Image.fromarray(grid), (left, top))
    for j, head in enumerate(heads):
        canvas.paste(head, (left + padding + j * step_w + max(0, (step_w - padding - head.width) // 2), top - head.height))
    for i, side in enumerate(sides):
        canvas.paste(side, (left - side.width, top + padding + i * step_h + max(0, (step_h - padding - side.height) // 2)))
    return np.asarray(canvas)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """A C×H×W (or B×C×H×W) float image in [0, 1] as H×W×C (B×H×W×C) uint8."""
    return x.clamp(0, 1).mul(255).round().to(torch.uint8).movedim(-3, -1).cpu().numpy()


def to_rgb8(x) -> np.ndarray:
    """B×C×H×W images in [0, 1] (a tensor or an array) as B×H×W×3 uint8: one channel is
    repeated into grey, a fourth is dropped."""
    pixels = to_uint8(torch.as_tensor(x))
    return np.repeat(pixels, 3, axis=-1) if pixels.shape[-1] == 1 else pixels[..., :3]
