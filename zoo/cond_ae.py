"""A label-conditioned autoencoder that repaints an image in another style.

An image is painted in two layers, and the model keeps them apart:

* the *layout and colour* (what a restyle keeps), seen at a coarse scale: the encoder averages
  the image over squares of ``2**stages`` pixels, so brush marks, dots and hatching finer than
  that cannot reach the code, and the code is those colours plus learned features of them. The
  decoder's *smooth path* adds a style-dependent correction to the colours (a style darkens its
  outlines, blurs its washes) and upsamples;
* the *texture* (what a restyle changes): a full-resolution network paints fine marks from
  random noise, reading the smooth image (marks follow edges and tones) and the style. Sampling
  from noise is what lets it paint crisp dots and strokes rather than their blurred mean. The
  noise comes per pixel and constant over 4- and 8-pixel squares, so mosaic tiles and facets
  have a coarse random field to start from; each style has a loudness (a gain on its marks),
  so a style of soft washes can paint almost none.

The style reaches both paths in one of two ways (``conditioning``):

* ``concat`` (the course's design): a learned style embedding is tiled over the input of each
  path and concatenated to it; the texture path normalises with batch norm (instance norm would
  subtract the tiled embedding's constant contribution and erase the label). A blend of styles
  blends their embeddings. The default: it scores the higher restyle_acc (docs/results.md).
* ``cin``: conditional instance normalisation (Dumoulin et al. 2017) in the texture path, a
  scale and shift per style and channel; the smooth path uses the same per-style scale and shift
  without the normalisation, which would erase the colours. A blend of styles blends those
  parameters. They start apart (random, not all ones and zeros), so that each style's texture
  begins different instead of having to break a tie.

What makes the decoder use its label and paint real marks is the training recipe of the
``restyle`` task (zoo/restyle.py); this module is only the network.
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
STYLE_INIT = 0.5  # spread of the per-style scales and shifts at the start (cin)
NOISE_CHANS = 2  # channels of random noise per scale that the texture path paints from
# Noise per pixel, and constant over 4- and 8-pixel squares: tiles and facets, larger than what a
# few convolutions can grow from per-pixel noise alone, start from a coarse random field
NOISE_SCALES = (1, 4, 8)


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


class StyleAffine(nn.Module):
    """A scale and shift per style and channel (a blend mixes the rows), after an optional
    instance norm: with it, conditional instance normalisation."""

    def __init__(self, channels: int, num_styles: int, normalize: bool) -> None:
        super().__init__()
        self.norm = nn.InstanceNorm2d(channels) if normalize else nn.Identity()
        self.scale = nn.Parameter(1 + STYLE_INIT * torch.randn(num_styles, channels))
        self.shift = nn.Parameter(STYLE_INIT * torch.randn(num_styles, channels))

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        return self.norm(x) * (weights @ self.scale)[:, :, None, None] + (weights @ self.shift)[:, :, None, None]


class Block(nn.Module):
    """3×3 convolution (optionally dilated), style-dependent or plain norm, activation."""

    def __init__(self, in_chans: int, out_chans: int, num_styles: int, conditioning: Conditioning, *,
                 normalize: bool, dilation: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_chans, out_chans, 3, padding=dilation, dilation=dilation)
        if conditioning == "cin":
            self.norm = StyleAffine(out_chans, num_styles, normalize)
        else:
            self.norm = nn.BatchNorm2d(out_chans) if normalize else nn.Identity()
        self.act = nn.LeakyReLU(0.2)

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        x = self.norm(x, weights) if isinstance(self.norm, StyleAffine) else self.norm(x)
        return self.act(x)


def _noise(like: torch.Tensor) -> torch.Tensor:
    """NOISE_CHANS channels of Gaussian noise per scale k in NOISE_SCALES, constant over k×k squares."""
    b, _, h, w = like.shape
    parts = []
    for k in NOISE_SCALES:
        coarse = torch.randn(b, NOISE_CHANS, -(-h // k), -(-w // k), device=like.device, dtype=like.dtype)
        parts.append(coarse.repeat_interleave(k, 2).repeat_interleave(k, 3)[..., :h, :w])
    return torch.cat(parts, 1)


class CondAE(nn.Module):
    """Encoder to a coarse content code; decoder from (code, style) to smooth image + texture."""

    def __init__(
        self,
        num_classes: int,
        in_chans: int = 3,
        latent_dim: int = 8,
        stages: int = 2,
        width: int = 32,
        texture_width: int = 32,
        conditioning: Conditioning = "concat",
        embed_dim: int = 16,
    ) -> None:
        super().__init__()
        self.num_styles = num_classes
        self.in_chans = in_chans
        self.conditioning = conditioning
        self.latent_dim = in_chans + latent_dim  # the code: the coarse colours, then learned features
        self.scale = 2**stages
        self.features = nn.Sequential(
            nn.Conv2d(in_chans, width, 3, padding=1), nn.LeakyReLU(0.2),
            nn.Conv2d(width, width, 3, padding=1), nn.LeakyReLU(0.2),
            nn.Conv2d(width, latent_dim, 1),
        )
        self.embedding = nn.Linear(num_classes, embed_dim, bias=False) if conditioning == "concat" else None
        extra = embed_dim if conditioning == "concat" else 0
        self.smooth_blocks = nn.ModuleList([
            Block(self.latent_dim + extra, width, num_classes, conditioning, normalize=False),
            Block(width, width, num_classes, conditioning, normalize=False),
        ])
        self.correction = nn.Conv2d(width, in_chans, 3, padding=1)
        nn.init.zeros_(self.correction.weight)  # starts as the plain upsampled colours
        nn.init.zeros_(self.correction.bias)
        # dilations 1, 2, 4, 1: a 17-pixel field, the size of a stroke or a facet at 64 px
        chans = NOISE_CHANS * len(NOISE_SCALES) + in_chans + extra
        self.texture_blocks = nn.ModuleList()
        for dilation in (1, 2, 4, 1):
            self.texture_blocks.append(Block(chans, texture_width, num_classes, conditioning, normalize=True,
                                             dilation=dilation))
            chans = texture_width
        self.to_texture = nn.Conv2d(chans, in_chans, 3, padding=1)
        # one loudness per style: a style of washes rather than marks can turn its texture down
        self.texture_gain = nn.Parameter(torch.ones(num_classes))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The content code, (in_chans + latent_dim) × H/2**stages × W/2**stages: the image's
        colours averaged over 2**stages-pixel squares, then features computed from them alone."""
        colours = F.avg_pool2d(x, self.scale)
        return torch.cat([colours, self.features(colours)], 1)

    def _tiled(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        if self.embedding is None:
            return x
        return torch.cat([x, self.embedding(weights)[:, :, None, None].expand(-1, -1, *x.shape[2:])], 1)

    def smooth(self, code: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        """The layout and colour of ``code`` in ``style``, at full resolution, without texture."""
        weights = style_weights(style, self.num_styles).to(code.dtype)
        h = self._tiled(code, weights)
        for block in self.smooth_blocks:
            h = block(h, weights)
        colours = code[:, : self.in_chans] + self.correction(h)
        return F.interpolate(colours, scale_factor=self.scale, mode="bilinear", align_corners=False)

    def texture(self, smooth: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        """Fine marks of ``style`` sampled from fresh noise, following the tones of ``smooth``."""
        weights = style_weights(style, self.num_styles).to(smooth.dtype)
        h = self._tiled(torch.cat([_noise(smooth), smooth], 1), weights)
        for block in self.texture_blocks:
            h = block(h, weights)
        return (weights @ self.texture_gain)[:, None, None, None] * self.to_texture(h)

    def decode(self, code: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        """Paint ``code`` in ``style``: int labels (B) or B×num_styles blend weights. Unclamped."""
        smooth = self.smooth(code, style)
        return smooth + self.texture(smooth.detach(), style)

    def forward(self, x: torch.Tensor, style: torch.Tensor, target: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Everything one training step needs, in one call (so DistributedDataParallel syncs it).

        ``code``; ``smooth``: the smooth path with the image's own style (what the identity loss
        compares). With ``target``: ``fake`` (the image painted in the target styles) and its
        ``texture``. The restyle's smooth path does not train the encoder, and the texture does
        not reshape the smooth path (it reads it detached).
        """
        code = self.encode(x)
        out = {"code": code, "smooth": self.smooth(code, style)}
        if target is not None:
            smooth = self.smooth(code.detach(), target)
            texture = self.texture(smooth.detach(), target)
            out.update(fake=smooth + texture, texture=texture)
        return out


def cond_ae(
    *,
    num_classes: int,
    in_chans: int = 3,
    image_size: int = 64,
    latent_dim: Annotated[int, Field(gt=0, description="learned feature channels of the content code "
                                     "(beside the coarse colours)")] = 8,
    stages: Annotated[int, Field(ge=1, le=6, description="the code is 2**stages times smaller than the image "
                                 "(2: 64 px -> 16×16); marks finer than that are painted from the label")] = 2,
    width: Annotated[int, Field(gt=0, description="channels of the encoder and the smooth path")] = 32,
    texture_width: Annotated[int, Field(gt=0, description="channels of the full-resolution texture path")] = 32,
    conditioning: Annotated[Conditioning, Field(description="how the decoder gets its style: concat (an "
                                                "embedding beside its input; the default, higher restyle_acc in bench/quality.py) or cin "
                                                "(conditional instance norm)")] = "concat",
    embed_dim: Annotated[int, Field(gt=0, description="size of the style embedding (concat only)")] = 16,
) -> CondAE:
    """The label-conditioned autoencoder of the restyle task."""
    if image_size % 2**stages:
        raise ValueError(
            f"cond_ae: image_size {image_size} is not divisible by 2**stages = {2**stages}; "
            f"choose model.stages so that it is (at most {int(math.log2(image_size & -image_size))})"
        )
    return CondAE(num_classes, in_chans, latent_dim=latent_dim, stages=stages, width=width,
                  texture_width=texture_width, conditioning=conditioning, embed_dim=embed_dim)


cond_ae.task = "restyle"
# 7 epochs of 32-image steps (875 steps): longer training paints louder marks, which the judge
# accepts more often but which cost restyle_psnr_gt. beta1 0.5 as in GANs, since the decoder's
# target (the style critic) moves as it learns. As GAN generators are usually evaluated, the model
# reported is a moving average of the weights (train.ema, about the last 200 steps): it smooths
# the colours that restyles keep; a much longer average would average the marks away too.
# The measurements behind these choices: docs/results.md, docs/restyle-notes.md.
cond_ae.defaults = {"train.batch_size": 32, "train.epochs": 7, "train.beta1": 0.5, "train.ema": 0.995}
