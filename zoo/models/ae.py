"""A convolutional autoencoder with a compact code.

The encoder is the classifier's stage stack (zoo/models/cnn.py), halving the side down to 8–15 px,
pooled to an 8×8 grid, then a 1×1 convolution to ``latent_dim / 64`` channels: the code is
``latent_dim`` numbers (1/12 of a 64 px RGB image's values at the default), flattened to a
vector for ``encode``. The decoder mirrors the encoder, up-sampling to the encoder's exact sizes
on the way back (416 px passes through 13, an odd side, so plain doubling would not land on 416),
and ends in a sigmoid: output in [0, 1].

Why a spatial code rather than a linear layer to a flat vector: with the same number of values,
a grid keeps each part of the image in its place, so the model learns much faster, with a
quarter of the parameters; a coarser grid with more channels learns more slowly.

Why ``width`` 16 by default: the full-resolution layers cost the most, and 16 channels train
about 3x faster than 32 on a CPU (oneDNN favours multiples of 16) for a small loss of PSNR.
The measurements: docs/results.md.
"""

from __future__ import annotations

import math
from typing import Annotated

import torch
from pydantic import Field
from torch import nn
from torchvision.ops import Conv2dNormActivation

from zoo.models.cnn import DownStage

__all__ = ["AE", "ae"]

GRID = 8  # side of the code's feature map


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
        stages: int = 3,
        max_width: int = 256,
    ) -> None:
        super().__init__()
        if latent_dim % GRID**2:
            raise ValueError(f"latent_dim={latent_dim} must be a multiple of {GRID**2} (an {GRID}×{GRID} code grid)")
        self.latent_dim = latent_dim
        code_chans = latent_dim // GRID**2
        widths = [min(width * 2**i, max_width) for i in range(stages)]
        sizes = [image_size]
        for _ in range(stages):
            sizes.append((sizes[-1] + 1) // 2)  # what a stride-2, padding-1 convolution gives
        deepest = widths[-1] if widths else width

        self.encoder = nn.Sequential(
            Conv2dNormActivation(in_chans, width, 3),
            *(DownStage(a, b) for a, b in zip([width, *widths], widths)),
            nn.AdaptiveAvgPool2d(GRID),  # a no-op at 64 px; evens out sides such as 13 at 416 px
            nn.Conv2d(deepest, code_chans, 1),
            nn.Flatten(),
        )
        ups = list(reversed(widths))
        self.decoder = nn.Sequential(
            nn.Unflatten(1, (code_chans, GRID, GRID)),
            Conv2dNormActivation(code_chans, deepest, 3),
            nn.Upsample(size=(sizes[-1], sizes[-1]), mode="nearest"),
            *(UpStage(a, b, s) for a, b, s in zip(ups, [*ups[1:], width], reversed(sizes[:-1]))),
            nn.Conv2d(width, in_chans, 3, padding=1),
            nn.Sigmoid(),
        )

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """B×C×H×W images -> B×latent_dim codes."""
        return self.encoder(x)

    def style_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The maps the style statistics are taken of (zoo/style.py): the encoder's full-resolution
        layer and its first two stages, where the marks are still resolved."""
        maps = []
        for layer in self.encoder[:3]:
            if not isinstance(layer, (Conv2dNormActivation, DownStage)):
                break  # fewer stages than two at a small image size: the pooled code is not a texture
            x = layer(x)
            maps.append(x)
        return maps

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """B×latent_dim codes -> B×C×H×W images in [0, 1]."""
        return self.decoder(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))


def _create_ae(*, in_chans: int, image_size: int, stages: int, **kwargs) -> AE:
    if not stages:  # halve while the side stays at least GRID: 64 px -> 3 stages, 416 px -> 5
        stages = max(0, math.floor(math.log2(image_size / GRID)))
    return AE(in_chans, image_size, stages=stages, **kwargs)


def ae(
    *,
    num_classes: int,
    in_chans: int = 3,
    image_size: int = 64,
    latent_dim: Annotated[int, Field(gt=0, multiple_of=GRID**2, description="numbers in the code (8×8 grid)")] = 1024,
    width: Annotated[int, Field(gt=0, description="channels of the first stage; doubled per stage")] = 16,
    max_width: Annotated[int, Field(gt=0, description="cap on the channels of the deeper stages")] = 256,
    stages: Annotated[int, Field(ge=0, description="down-sampling stages (0: down to 8-15 px)")] = 0,
) -> AE:
    """The convolutional autoencoder; ``num_classes`` is unused (it learns without labels)."""
    return _create_ae(in_chans=in_chans, image_size=image_size, latent_dim=latent_dim, width=width,
                      max_width=max_width, stages=stages)


ae.task = "reconstruct"
ae.defaults = {"train.epochs": 20, "train.lr": 2e-3}
