"""A minimal third-party artzoo plugin: a model, a dataset, and a task built on a built-in one."""

from typing import Annotated

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from zoo.classify import Classify


class TinyNet(nn.Module):
    def __init__(self, num_classes: int, in_chans: int, width: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(in_chans, width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def tinynet(*, num_classes: int, in_chans: int = 3, image_size: int = 64,
            width: Annotated[int, Field(gt=0, description="channels of the only convolution")] = 8) -> TinyNet:
    return TinyNet(num_classes, in_chans, width)


tinynet.task = "classify"
tinynet.defaults = {"train.epochs": 1}


class FailNet(TinyNet):
    """Breaks after a few training steps: how the runner reports a crashed run."""

    def __init__(self, *args, fail_at: int, nan: bool) -> None:
        super().__init__(*args)
        self.calls, self.fail_at, self.nan = 0, fail_at, nan

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.calls += 1
            if self.calls >= self.fail_at:
                if self.nan:
                    return super().forward(x) * float("nan")
                raise RuntimeError(f"failnet broke on purpose at training call {self.calls}")
        return super().forward(x)


def failnet(*, num_classes: int, in_chans: int = 3, image_size: int = 64, fail_at: int = 3, nan: bool = False) -> FailNet:
    return FailNet(num_classes, in_chans, 4, fail_at=fail_at, nan=nan)


failnet.task = "classify"


def no_task(*, num_classes: int, in_chans: int = 3, image_size: int = 64) -> nn.Module:
    return TinyNet(num_classes, in_chans, 4)  # no .task attribute: breaks the model contract


class Stripes(torch.utils.data.Dataset):
    """Horizontal or vertical stripes: a plugin dataset that is not a zoo.data.ImageDataset."""

    classes = ["horizontal", "vertical"]

    def __init__(self, n: int, image_size: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        self.labels = torch.randint(0, 2, (n,), generator=g)
        self.phase = torch.randint(0, 4, (n,), generator=g)
        self.size = image_size

    @property
    def targets(self):
        return self.labels.numpy()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        ramp = ((torch.arange(self.size) + self.phase[i]) // 2 % 2).float()
        image = ramp[:, None].expand(self.size, self.size) if self.labels[i] == 0 else ramp[None, :].expand(self.size, self.size)
        return image.expand(3, -1, -1).clone(), int(self.labels[i])


def stripes(*, split: str = "train", image_size: int = 64, size: int = 64) -> Stripes:
    return Stripes(size, image_size, seed={"train": 0, "valid": 1, "test": 2}[split])


class PixelStripes(Stripes):
    """Breaks the dataset contract: items are uint8 H×W×C arrays, as PIL-minded code returns them."""

    def __getitem__(self, i: int):
        image, label = super().__getitem__(i)
        return image.mul(255).to(torch.uint8).permute(1, 2, 0).contiguous(), label


def pixel_stripes(*, split: str = "train", image_size: int = 64) -> PixelStripes:
    return PixelStripes(16, image_size, seed=0)


class NamelessStripes(Stripes):
    classes = None  # breaks the dataset contract: no class names


def nameless_stripes(*, split: str = "train", image_size: int = 64) -> NamelessStripes:
    return NamelessStripes(16, image_size, seed=0)


class Focal(Classify):
    """Focal loss (Lin et al. 2017): cross-entropy scaled by (1 - p)^gamma, so that the examples
    already classified well count less. Classify's options (train.imbalance, ...) are inherited."""

    def __init__(self, *, gamma: Annotated[float, Field(ge=0, description="focusing parameter (0: cross-entropy)")] = 2.0,
                 **options) -> None:
        super().__init__(**options)
        self.gamma = gamma

    @classmethod
    def config_problem(cls, train: dict) -> str | None:
        if train.get("imbalance") == "logit_adjust":
            return ("train.imbalance=logit_adjust adjusts classify's cross-entropy, which the focal loss replaces; "
                    "use train.imbalance=weights or none")
        return super().config_problem(train)

    def training_step(self, images: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = self.model(images).float()
        log_p = F.log_softmax(logits, 1).gather(1, labels[:, None])[:, 0]
        loss = -((1 - log_p.exp()) ** self.gamma) * log_p
        if self.class_weights is not None:  # train.imbalance=weights, cb or drw, as in Classify
            loss = loss * self.class_weights[labels]
        return {"loss": loss.mean(), "acc": (logits.argmax(1) == labels).float().mean()}
