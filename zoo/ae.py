"""A convolutional autoencoder with a compact code vector.

The encoder is the classifier's stage stack (zoo/cnn.py) down to about 4×4, then one linear
layer to ``latent_dim`` numbers: a code small enough (1/12 of a 64 px RGB image's values at the
default) that it must summarise, and flat so that it can be clustered and compared. The decoder
mirrors it, up-sampling to the encoder's exact sizes on the way back (416 px passes through 13,
an odd side, so plain doubling would not land on 416), and ends in a sigmoid: output in [0, 1].
"""

from __future__ import annotations

from typing import Annotated

import torch
from pydantic import Field
from torch import nn
from torchvision.ops import Conv2dNormActivation

from zoo.cnn import DownStage, auto_stages

__all__ = ["AE", "ae"]


class UpStage(nn.Sequential):
    """Nearest up-sampling to ``size`` and two 3×3 conv–BN–ReLU layers (no checkerboard)."""

    def __init__(self, in_chans: int, out_chans: int, size: int) -> None:
        super().__init__(
            nn.Upsample(size=(size, size), mode="nearest"),
            Conv2dNormActivation(in_chans, out_chans, 3),
            Conv2dNormActivation(out_chans, out_chans, 3),
        )


class AE(nn.Module):
    def __init__(
        self,
        in_chans: int = 3,
        image_size: int = 64,
        latent_dim: int = 1024,
        width: int = 32,
        stages: int = 4,
        max_width: int = 256,
    ) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        widths = [min(width * 2**i, max_width) for i in range(stages)]
        sizes = [image_size]
        for _ in range(stages):
            sizes.append((sizes[-1] + 1) // 2)  # what a stride-2, padding-1 convolution gives
        self.grid = (widths[-1], sizes[-1], sizes[-1])
        flat = widths[-1] * sizes[-1] ** 2

        self.encoder = nn.Sequential(
            Conv2dNormActivation(in_chans, width, 3),
            *(DownStage(a, b) for a, b in zip([width, *widths], widths)),
            nn.Flatten(),
            nn.Linear(flat, latent_dim),
        )
        ups = list(reversed(widths))
        self.decoder = nn.Sequential(
            nn.Linear(latent_dim, flat),
            nn.Unflatten(1, self.grid),
            nn.ReLU(inplace=True),
            *(UpStage(a, b, s) for a, b, s in zip(ups, [*ups[1:], width], reversed(sizes[:-1]))),
            nn.Conv2d(width, in_chans, 3, padding=1),
            nn.Sigmoid(),
        )

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """B×C×H×W images -> B×latent_dim codes."""
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """B×latent_dim codes -> B×C×H×W images in [0, 1]."""
        return self.decoder(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))


def _create_ae(*, in_chans: int, image_size: int, stages: int, **kwargs) -> AE:
    return AE(in_chans, image_size, stages=stages or auto_stages(image_size), **kwargs)


def ae(
    *,
    num_classes: int,
    in_chans: int = 3,
    image_size: int = 64,
    latent_dim: Annotated[int, Field(gt=0, description="length of the code vector")] = 1024,
    width: Annotated[int, Field(gt=0, description="channels of the first stage; doubled per stage")] = 32,
    max_width: Annotated[int, Field(gt=0, description="cap on the channels of the deeper stages")] = 256,
    stages: Annotated[int, Field(ge=0, description="down-sampling stages (0: enough to reach ~4 px)")] = 0,
) -> AE:
    """The convolutional autoencoder; ``num_classes`` is unused (it learns without labels)."""
    return _create_ae(in_chans=in_chans, image_size=image_size, latent_dim=latent_dim, width=width,
                      max_width=max_width, stages=stages)


ae.task = "reconstruct"
ae.defaults = {"train.epochs": 20, "train.lr": 2e-3}
