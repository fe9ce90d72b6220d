"""A label-conditioned autoencoder that repaints an image in another style.

The encoder maps an image to a spatial *content* code (a small map, ``downsample`` times smaller
than the image); the decoder paints that code in a style given as labels or as a blend of styles.
Two ways to give the decoder its style:

* ``concat`` (the course's design): a learned style embedding is tiled over the code and
  concatenated to it before decoding. The decoder normalises with batch norm: instance norm
  would subtract the tiled embedding's constant contribution and erase the label.
* ``cin``: conditional instance normalisation (Dumoulin et al. 2017) after every decoder
  convolution, a scale and shift per style and channel. A blend of styles blends those
  parameters.

Random noise is added before every decoder convolution (as in StyleGAN), so the decoder can
*sample* a texture such as dots or strokes instead of painting its blurred mean. What makes the
decoder actually use its label (a code without style, a discriminator) is the training recipe of
the ``restyle`` task (zoo/restyle.py); this module is only the network.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

__all__ = ["CondAE", "cond_ae", "style_weights"]

Conditioning = Literal["concat", "cin"]


def style_weights(style: torch.Tensor, num_styles: int) -> torch.Tensor:
    """B×num_styles weights from int labels (B) or from weights already (a blend of styles)."""
    if not style.is_floating_point():
        if style.dim() != 1:
            raise ValueError(f"style labels must be a 1-D tensor of ints, got shape {tuple(style.shape)}")
        if len(style) and (style.min() < 0 or style.max() >= num_styles):
            raise ValueError(f"style labels must lie in 0..{num_styles - 1}, got {style.tolist()}")
        return F.one_hot(style, num_styles).float()
    if style.dim() != 2 or style.shape[1] != num_styles:
        raise ValueError(
            f"style weights must be B×{num_styles} (one column per style), got shape {tuple(style.shape)}; "
            f"or pass int labels"
        )
    return style


class NoiseInjection(nn.Module):
    """Adds per-pixel Gaussian noise, scaled per channel (learned, starting at zero)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        noise = torch.randn(x.shape[0], 1, *x.shape[2:], device=x.device, dtype=x.dtype)
        return x + self.scale * noise


class CondInstanceNorm(nn.Module):
    """Instance norm whose scale and shift are looked up per style (a blend mixes the rows)."""

    def __init__(self, channels: int, num_styles: int) -> None:
        super().__init__()
        self.norm = nn.InstanceNorm2d(channels, affine=False)
        self.scale = nn.Parameter(torch.ones(num_styles, channels))
        self.shift = nn.Parameter(torch.zeros(num_styles, channels))

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        scale = (weights @ self.scale)[:, :, None, None]
        shift = (weights @ self.shift)[:, :, None, None]
        return self.norm(x) * scale + shift


class DecoderBlock(nn.Module):
    """Noise, 3×3 conv, style-dependent or plain norm, activation."""

    def __init__(self, in_chans: int, out_chans: int, num_styles: int, conditioning: Conditioning,
                 noise: bool) -> None:
        super().__init__()
        self.noise = NoiseInjection(in_chans) if noise else nn.Identity()
        self.conv = nn.Conv2d(in_chans, out_chans, 3, padding=1)
        self.norm = CondInstanceNorm(out_chans, num_styles) if conditioning == "cin" else nn.BatchNorm2d(out_chans)
        self.act = nn.LeakyReLU(0.2)

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        x = self.conv(self.noise(x))
        x = self.norm(x, weights) if isinstance(self.norm, CondInstanceNorm) else self.norm(x)
        return self.act(x)


class Encoder(nn.Sequential):
    """Full-resolution stem, then stride-2 stages with batch norm, then a 1×1 to the code.

    No instance norm here: it would strip each image's mean colour, and colours are content.
    """

    def __init__(self, in_chans: int, width: int, stages: int, latent_dim: int) -> None:
        layers: list[nn.Module] = [nn.Conv2d(in_chans, width, 3, padding=1), nn.LeakyReLU(0.2)]
        chans = width
        for i in range(stages):
            out = width * 2 ** (i + 1)
            layers += [nn.Conv2d(chans, out, 4, stride=2, padding=1), nn.BatchNorm2d(out), nn.LeakyReLU(0.2)]
            chans = out
        layers += [nn.Conv2d(chans, chans, 3, padding=1), nn.BatchNorm2d(chans), nn.LeakyReLU(0.2),
                   nn.Conv2d(chans, latent_dim, 1)]
        super().__init__(*layers)


class CondAE(nn.Module):
    """Encoder to a content code, decoder from (code, style) to an image in [0, 1]."""

    def __init__(
        self,
        num_classes: int,
        in_chans: int = 3,
        latent_dim: int = 8,
        stages: int = 2,
        width: int = 16,
        conditioning: Conditioning = "cin",
        embed_dim: int = 16,
        noise: bool = True,
        lowpass: int = 1,
    ) -> None:
        super().__init__()
        self.lowpass = lowpass
        self.num_styles = num_classes
        self.conditioning = conditioning
        self.latent_dim = latent_dim
        self.encoder = Encoder(in_chans, width, stages, latent_dim)
        self.embedding = nn.Linear(num_classes, embed_dim, bias=False) if conditioning == "concat" else None
        extra = embed_dim if conditioning == "concat" else 0
        top = width * 2**stages
        # One convolution at the code's resolution, then per stage: a convolution that narrows the
        # channels (before upsampling, where it is 4x cheaper), upsample, a convolution at the new size.
        self.blocks = nn.ModuleList([DecoderBlock(latent_dim + extra, top, num_classes, conditioning, False)])
        chans = top
        for i in reversed(range(stages)):
            out = width * 2**i
            self.blocks.append(DecoderBlock(chans, out, num_classes, conditioning, noise))
            self.blocks.append(DecoderBlock(out, out, num_classes, conditioning, noise))
            chans = out
        self.upsample_at = {2 + 2 * i for i in range(stages)}  # blocks that work at the next size
        self.to_image = nn.Conv2d(chans, in_chans, 3, padding=1)
        # Instance norm (cin) removes each feature map's mean, so a flat background's colour could
        # not pass through the decoder; this unnormalised path carries the code's colours, and the
        # conditioned path paints the style's texture on top.
        self.to_color = nn.Conv2d(latent_dim + extra, in_chans, 3, padding=1)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The content code, latent_dim × H/2**stages × W/2**stages.

        The encoder sees the image averaged over ``lowpass``-pixel squares: brush marks, dots and
        hatching finer than that cannot reach the code, so the decoder must paint them from its
        label, while layout and colour, which is what a restyle keeps, pass.
        """
        if self.lowpass > 1:
            x = F.interpolate(F.avg_pool2d(x, self.lowpass), scale_factor=self.lowpass, mode="nearest")
        return self.encoder(x)

    def decode(self, code: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        """Paint ``code`` in ``style``: int labels (B) or B×num_styles blend weights."""
        weights = style_weights(style, self.num_styles).to(code.dtype)
        x = code
        if self.embedding is not None:
            x = torch.cat([x, self.embedding(weights)[:, :, None, None].expand(-1, -1, *x.shape[2:])], 1)
        color = self.to_color(x)
        for i, block in enumerate(self.blocks):
            if i in self.upsample_at:
                x = F.interpolate(x, scale_factor=2, mode="nearest")
            x = block(x, weights)
        color = F.interpolate(color, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return torch.sigmoid(self.to_image(x) + color)

    def forward(self, x: torch.Tensor, style: torch.Tensor, target: torch.Tensor | None = None,
                cycle: bool = True) -> dict[str, torch.Tensor]:
        """Everything one training step needs, in one call (so DistributedDataParallel syncs it).

        ``rec``: ``x`` decoded with its own style. With ``target``, also ``fake`` (``x`` in the
        target styles), ``fake_code`` (the code of ``fake``) and, with ``cycle``, ``cycle``
        (``fake`` painted back in the source styles).
        """
        code = self.encode(x)
        if target is None:
            return {"code": code, "rec": self.decode(code, style)}
        both = self.decode(torch.cat([code, code]), torch.cat([style_weights(style, self.num_styles),
                                                               style_weights(target, self.num_styles)]))
        rec, fake = both.chunk(2)
        out = {"code": code, "rec": rec, "fake": fake, "fake_code": self.encode(fake)}
        if cycle:
            out["cycle"] = self.decode(out["fake_code"], style)
        return out


def _create_cond_ae(*, num_classes: int, in_chans: int, image_size: int, stages: int, lowpass: int,
                    **kwargs) -> CondAE:
    if image_size % lowpass:
        raise ValueError(f"cond_ae: image_size {image_size} is not divisible by model.lowpass = {lowpass}")
    if image_size % 2**stages:
        raise ValueError(
            f"cond_ae: image_size {image_size} is not divisible by 2**stages = {2**stages}; "
            f"choose model.stages so that it is (at most {int(math.log2(image_size & -image_size))})"
        )
    return CondAE(num_classes, in_chans, stages=stages, lowpass=lowpass, **kwargs)


def cond_ae(
    *,
    num_classes: int,
    in_chans: int = 3,
    image_size: int = 64,
    latent_dim: Annotated[int, Field(gt=0, description="channels of the content code")] = 8,
    stages: Annotated[int, Field(ge=1, le=6, description="halvings from the image to the code (2: 64 px -> 16×16)")] = 2,
    width: Annotated[int, Field(gt=0, description="channels at full resolution; doubled per stage")] = 16,
    conditioning: Annotated[Conditioning, Field(description="how the decoder gets its style: concat (an "
                                                "embedding beside the code) or cin (conditional instance norm)")] = "cin",
    embed_dim: Annotated[int, Field(gt=0, description="size of the style embedding (concat only)")] = 16,
    noise: Annotated[bool, Field(description="inject noise into the decoder so that it can sample texture")] = True,
    lowpass: Annotated[int, Field(ge=1, description="the encoder sees the image averaged over squares of this "
                                  "side, so fine texture (style) cannot pass through the code; 1: off")] = 1,
) -> CondAE:
    """The label-conditioned autoencoder of the restyle task."""
    return _create_cond_ae(num_classes=num_classes, in_chans=in_chans, image_size=image_size, latent_dim=latent_dim,
                           stages=stages, width=width, conditioning=conditioning, embed_dim=embed_dim, noise=noise,
                           lowpass=lowpass)


cond_ae.task = "restyle"
cond_ae.defaults = {}
