"""The restyle task: train a label-conditioned autoencoder to repaint images in another style.

Why the plain recipe fails, and what this one does instead:

* With only a pixel loss the code keeps everything, style included, and the decoder ignores its
  label; and where the label is used, the decoder paints a style's *average* texture, a blur.
* So the model (zoo/models/cond_ae.py) splits the painting: a coarse content code (the image averaged
  over squares, too coarse for marks to pass) decoded into a smooth image, and marks copied
  from the target style's training tiles (the default) or sampled from noise by a texture
  path. Only the smooth path can be compared with the input: the
  identity loss is an MSE at a quarter of the side, where random marks average out.
* The texture, and the style's changes to the smooth image, are taught by a jointly trained
  *style critic*: a patch classifier with one class per style and one for "generated" (the
  (K+1)-way discriminator of Salimans et al. 2016, applied per patch like PatchGAN). It learns
  the real patches' styles and to call every generated patch generated; the decoder is trained
  to make its restyles' patches pass as the target style. Because the critic keeps learning to
  reject whatever the decoder paints, faint patterns that fool a fixed classifier do not last.
* The restyle must keep the content: its quarter-size image stays close to the input's
  (``content_weight``), and the texture has no quarter-size mean of its own
  (``texture_mean_weight``): marks change the look, not the layout. The content pull is kept
  light (3, not 10), since a style also shifts the tones a little (grout and outlines darken, a
  wash softens), and the input's tones are those of its own style: lighter, the restyles score
  both higher restyle_acc and restyle_psnr_gt (docs/results.md).

Only (image, label) pairs are used for training. Scoring happens in :meth:`Restyle.finalize`
against separately trained style classifiers of different architectures (the judges, never part
of any training loss: a style counts as painted when all of them agree) and,
where the dataset can render any content in any style (synthart), against the ground truth.
"""

from __future__ import annotations

import csv
import functools
import inspect
from collections import defaultdict
from pathlib import Path
from typing import Annotated

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from PIL import Image

import registry
from zoo import evidence, metrics
from zoo.data import Renders
from zoo.judge import load_judge, train_judge
from zoo.analysis import subsample
from zoo.tasks.reconstruct import Reconstruct
from zoo.schema import Artifact
from zoo.task import (Auxiliary, analysis_batch, dry_forward, image_grid, labels_of, phase, progress, shape_of,
                      to_uint8)

SEED = 0  # restyle targets and the decoder's noise at test time are seeded
BATCH = 128  # images per batch in the final analysis at 64 px (zoo.task.analysis_batch: fewer above)
JUDGE_STEPS = 400  # each judge's training steps (train.judge_steps): ≥ 99 % of real test paintings right
# the test restyles' grid; not under images/, which MLflow's UI reads as its image slider's alone
# (one file there without a step and it shows none of the run's images)
TEST_GRID = Artifact.RESTYLE_PLOT
LEGACY_TEST_GRID = "images/restyle_test.png"  # runs before 2026-12-06
PSNRS = ("psnr_gt", "psnr_gt_baseline", "psnr_gt_resample")
# restyle/test.npz keeps the pictures of a spread sample of the test split, at most this many MB of
# pixels (all of a 64 px synthart's; at WikiArt's size the whole split would be gigabytes)
SAVED_MB = 64  # the restyle_* scores against the ground truth
INK_IMAGES = 64  # training paintings per style that calibrate its ink (cond_ae.calibrate_ink)

# -- the style critic --------------------------------------------------------------------------


class StyleCritic(nn.Module):
    """Per patch of an image: logits of each style, and last, of "generated"."""

    def __init__(self, in_chans: int, num_styles: int, width: int = 32) -> None:
        super().__init__()
        # replicate padding, as the decoder's: a patch at the border is judged as one inside
        self.net = nn.Sequential(
            nn.Conv2d(in_chans, width, 4, stride=2, padding=1, padding_mode="replicate"), nn.LeakyReLU(0.2),
            nn.Conv2d(width, 2 * width, 4, stride=2, padding=1, padding_mode="replicate"), nn.LeakyReLU(0.2),
            nn.Conv2d(2 * width, 2 * width, 3, padding=1, padding_mode="replicate"), nn.LeakyReLU(0.2),
            nn.Conv2d(2 * width, num_styles + 1, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def style_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Its first two layers' maps: the style statistics of a restyle run (zoo/style.py)."""
        first = self.net[1](self.net[0](x))
        return [first, self.net[3](self.net[2](first))]


def restyle_targets(labels: np.ndarray, num_styles: int) -> np.ndarray:
    """The seeded target style of each test item, never its own: what finalize scores."""
    rng = np.random.default_rng(SEED)
    return (labels + rng.integers(1, num_styles, len(labels))) % num_styles


def _patch_loss(logits: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of every patch against its image's class."""
    return F.cross_entropy(logits, classes[:, None, None].expand(-1, *logits.shape[2:]))


# -- the task ----------------------------------------------------------------------------------


class Restyle(Reconstruct):
    """Restyle images with a conditional autoencoder (``encode``, ``decode(code, style)``).

    Evaluation per epoch is the reconstruction's (mse, psnr, ssim with the image's own style);
    the end adds the codes' embedding analysis and the restyle scores (:meth:`finalize`).
    """

    uses_labels = True
    # Its validation metric is the reconstruction's, which falls as the style critic asks for more
    # style, and the exemplar bank fills over the first epochs: the finished model is the restyler.
    serves = "last"
    after_fit_all_checkpoints = True  # a dictionary run's best.pt keeps no tile either
    headline_metrics = ("restyle_acc", "restyle_acc_panel", "restyle_acc_panel_unseen", "restyle_texture_ratio",
                        "restyle_copy_rate", "restyle_psnr_gt", "restyle_psnr_gt_baseline", "identity_psnr")
    artifacts = (*Reconstruct.artifacts, Artifact.RESTYLES, Artifact.PER_STYLE, Artifact.RESTYLE_PLOT)
    metric_meanings = {
        "restyle_acc": "share of the test paintings, each restyled into another style, that the first judge "
                       "(a classifier trained apart) calls that style; chance {chance}",
        "restyle_acc_panel": "the same by the strictest judge of the panel, per target style, averaged over styles",
        "restyle_acc_panel_unseen": "the same by judges trained on paintings the restyler never saw (another seed): a "
                                    "style recognised, not a copied tile remembered",
        "restyle_texture_ratio": "how far a restyle's marks are from the true painting's, over how far the input's "
                                 "are (the loudness of each channel of a fixed untrained network, full "
                                 "resolution); 0 the truth's marks, 1 no better than doing nothing; lower is better "
                                 "(the truth painted again with other marks: the ceiling)",
        "restyle_copy_rate": "share of a restyle's tiles whose marks copy a training painting's tile",
        "restyle_structure": "correlation of a restyle's edges with the true painting's, at full resolution: marks "
                             "that follow the scene (outlines, facets) put edges where it has them",
        "restyle_psnr_gt": "dB between a restyle and the true painting of its scene in that style, at a quarter of "
                           "the side (the colours and layout, not the marks); higher is closer",
        "restyle_psnr_gt_baseline": "the same of the input left unchanged: what doing nothing scores",
        "identity_psnr": "dB between a painting restyled into its own style and itself",
    }
    metric_bounds = {"restyle_psnr_gt": ("restyle_psnr_gt_baseline", "restyle_psnr_gt_resample"),
                     "restyle_texture_ratio": (None, "restyle_texture_ratio_resample"),
                     "restyle_structure": ("restyle_structure_baseline", "restyle_structure_resample"),
                     "restyle_copy_rate": ("restyle_copy_rate_truth", None)}

    def __init__(
        self,
        *,
        model: nn.Module,
        classes: list[str],
        rec_weight: Annotated[float, Field(ge=0, description="weight of the identity MSE of the smooth image "
                                                             "(at a quarter of the side)")] = 100.0,
        content_weight: Annotated[float, Field(ge=0, description="weight of the restyle's quarter-size MSE "
                                                                 "to the input's")] = 3.0,
        texture_mean_weight: Annotated[float, Field(ge=0, description="weight of the texture's quarter-size "
                                                                      "mean square (marks keep the layout)")] = 1000.0,
        adv_weight: Annotated[float, Field(ge=0, description="weight of the style critic's verdict on restyles")] = 1.0,
        critic_lr: Annotated[float, Field(gt=0, description="learning rate of the style critic")] = 1e-3,
        judge: Annotated[str, Field(description="checkpoint of a classify run that scores restyles; empty: train "
                                                "a judge_model on the training set")] = "",
        judge_model: Annotated[str, Field(description="the registered classifier trained as the judge (when judge "
                                                      "is empty; zoo/judge.py)")] = "cnn",
        judge_steps: Annotated[int, Field(ge=0, description="training steps of each judge trained here")] = JUDGE_STEPS,
        panel: Annotated[str, Field(description="further registered classifiers, comma-separated, each trained "
                                                "as a judge the same way: restyle_acc_panel takes the lowest "
                                                "judge's accuracy per style (empty: the first judge "
                                                "alone)")] = "timm_net",
        umap: Annotated[bool, Field(description="also embed the test codes with UMAP")] = True,
    ) -> None:
        super().__init__(model=model, classes=classes, umap=umap)
        if len(self.classes) < 2:
            raise ValueError(f"restyle needs at least two styles to move between; the dataset has {self.classes}")
        self.weights = {"rec": rec_weight, "content": content_weight, "texture_mean": texture_mean_weight,
                        "adv": adv_weight}
        self.judge_path = judge
        self.judge_steps = judge_steps
        self.judge_model = judge_model
        self.panel = panel_of(panel)
        self.critic = StyleCritic(getattr(self.net, "in_chans", 3), len(self.classes))
        self._judged_on = None  # setup's training split: the first judge's data (val/restyle_acc)
        self._judge: nn.Module | None = None  # that judge, once trained or loaded
        # beta1 = 0.5, as GANs are usually trained: the critic's target moves with the decoder
        self._critic = Auxiliary(self.critic, functools.partial(torch.optim.Adam, lr=critic_lr, betas=(0.5, 0.999)))

    @classmethod
    def config_problem(cls, train: dict) -> str | None:
        # checked when the config is resolved, not when a trained run is loaded, which needs no judge
        panel = panel_of(train.get("panel", ""))
        for key, names in (("judge_model", [] if train.get("judge") else [train["judge_model"]]), ("panel", panel)):
            for name in names:
                try:
                    registry.load("model", name)
                except registry.PluginError as exc:
                    return f"train.{key}: {exc}"
        first = "judge" if train.get("judge") else train["judge_model"]
        if len({first, *panel}) < 1 + len(panel):
            return (f"train.panel={train['panel']!r} repeats a judge (the first is {first}): each judge of the "
                    f"panel is another classifier; drop the repeat")
        return super().config_problem(train)

    def style_network(self) -> nn.Module:
        """The critic: the part of a restyle run that looks at whole images at full resolution
        (cond_ae's encoder sees only coarse colours, by design). It is trained with the styles'
        labels, as a patch classifier; the statistics are then taken without them."""
        return self.critic

    @classmethod
    def model_problem(cls, model: nn.Module, *, num_classes: int, in_chans: int, image_size: int) -> str | None:
        absent = [m for m in ("encode", "decode") if not callable(getattr(model, m, None))]
        if absent:
            return ("it needs a style-conditioned autoencoder: encode(images) -> code and decode(code, style), "
                    f"as zoo/models/cond_ae.py; this model has no {' or '.join(absent)}")
        x, style = torch.zeros(2, in_chans, image_size, image_size), torch.zeros(2, dtype=torch.long)
        out, failed = dry_forward(model, x, style, style)
        fake = out.get("fake") if isinstance(out, dict) else None
        if failed or not isinstance(fake, torch.Tensor) or fake.shape != x.shape:
            return (f"it needs forward(images, styles, targets) -> {{'fake': B×{in_chans}×{image_size}×{image_size}, "
                    f"...}}, as zoo/models/cond_ae.py; on a batch of 2 this model "
                    f"{failed or 'gives ' + (shape_of(fake) if isinstance(out, dict) else shape_of(out))}")
        return None

    def auxiliary(self) -> dict[str, Auxiliary]:
        return {**super().auxiliary(), "critic": self._critic}

    # -- training ---------------------------------------------------------------------------
    def training_step(self, images: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        num = len(self.classes)
        # Own styles included: the critic then also sees generated patches of the source's style,
        # so repainting an image in its own style cannot pass for real either.
        targets = torch.randint(0, num, labels.shape, device=labels.device)
        out = self.model(images, labels, targets)
        fake = out["fake"]
        # The critic's step: real patches are their style, generated ones are class `num`.
        logits = self._critic.train(torch.cat([images, fake.detach()]))
        real, generated = logits.chunk(2)
        critic_loss = _patch_loss(real, labels) + _patch_loss(generated, torch.full_like(targets, num))
        self._critic.step(critic_loss)

        # The decoder's side uses the bare critic: no gradient for it, nothing for DDP to sync.
        for p in self.critic.parameters():
            p.requires_grad_(False)
        small = quarter(images)
        terms = {
            "rec": F.mse_loss(quarter(out["smooth"]), small),
            "content": F.mse_loss(quarter(fake), small),
            "adv": _patch_loss(self.critic(fake), targets),
        }
        if out["texture"].requires_grad:  # learned marks; copied ones have no weights and no quarter-size mean
            terms["texture_mean"] = quarter(out["texture"]).pow(2).mean()
        for p in self.critic.parameters():
            p.requires_grad_(True)
        loss = sum(self.weights[k] * v for k, v in terms.items())
        return {"loss": loss, **{f"g_{k}": v.detach() for k, v in terms.items()}, "critic_loss": critic_loss.detach()}

    def after_fit(self, *, train_set, valid_set, device: torch.device) -> bool:
        """Copied marks: each style's ink on its boundaries calibrated on training paintings
        (cond_ae's ``calibrate_ink``); ``model.marks=dictionary``: the served model's kept tiles
        become its dictionary (the test split scores, and the run serves, a model holding no
        training tile)."""
        inked = self._calibrate_ink(train_set, device)
        distil = getattr(self.net, "distil", None)
        return bool(callable(distil) and distil()) or inked

    def _calibrate_ink(self, train_set, device: torch.device) -> bool:
        calibrate = getattr(self.net, "calibrate_ink", None)
        if not callable(calibrate):
            return False
        labels, rng = labels_of(train_set), np.random.default_rng(SEED)
        idx = np.concatenate([rng.permutation(np.flatnonzero(labels == s))[:INK_IMAGES] for s in np.unique(labels)])
        scale = self.net.scale
        with phase(f"calibrating each style's ink on {len(idx)} training paintings"):
            colours = torch.cat([F.avg_pool2d(_stack(train_set, idx[part]).to(device), scale)
                                 for part in _chunks(len(idx), BATCH)])
            found = calibrate(colours, torch.as_tensor(labels[idx], device=device))
        if found is None:
            return False
        inks = ", ".join(f"{self.classes[s]} {g:g}" for s, g in found.items() if g) or "none"
        print(f"ink on boundaries: {inks}", flush=True)
        return True

    # -- evaluation -------------------------------------------------------------------------
    def setup(self, train_set, device: torch.device) -> None:
        super().setup(train_set, device)
        self._judged_on = train_set

    @torch.no_grad()
    def eval_step(self, images: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """The reconstruction's mse, psnr and ssim, and where the task was set up (a training run),
        ``restyle_hit``: whether the first judge calls each image, restyled into another style
        fixed by its pixels, that style (``val/restyle_acc`` per epoch: the curve of what a restyle
        run is for; the test split's ``restyle_acc`` is :meth:`finalize`'s, on seeded targets)."""
        code = self.net.encode(images)
        rec = self.net.decode(code, labels).float().clamp(0, 1)
        x = images.float()
        out = {"mse": (rec - x).pow(2).flatten(1).mean(1), "psnr": metrics.psnr(rec, x), "ssim": metrics.ssim(rec, x)}
        judge = self._first_judge(images.device)
        if judge is not None:
            k = len(self.classes)
            # another style per image, the same at every epoch and in any batch
            targets = (labels + 1 + (x.sum((1, 2, 3)) * 1000).long() % (k - 1)) % k
            with torch.random.fork_rng(devices=[images.device] if images.device.type == "cuda" else []):
                torch.manual_seed(SEED)  # learned marks' noise: training's random stream is left as it was
                restyled = self.net.decode(code, targets).float().clamp(0, 1)
            out["restyle_hit"] = (judge(restyled).argmax(1) == targets).float()
        return out

    def eval_metrics(self, outputs: dict[str, np.ndarray]) -> dict[str, float]:
        found = super().eval_metrics(outputs)
        if len(outputs.get("restyle_hit", ())):
            found["restyle_acc"] = float(np.mean(outputs["restyle_hit"]))
        return found

    def _first_judge(self, device: torch.device) -> nn.Module | None:
        """The judge of ``restyle_acc``, trained (or loaded from the cache) at its first use; None
        for a task that was not set up (inference) or restyles between fewer than two styles."""
        if self._judge is None and self._judged_on is not None:
            # called from an evaluation: the judge trains with gradients, in full precision
            with torch.enable_grad(), torch.autocast(device.type, enabled=False):
                self._judge = self._judge_of(self._judged_on, device)
        return self._judge

    def _judge_of(self, train_set, device: torch.device) -> nn.Module:
        if self.judge_path:
            return load_judge(self.judge_path, self.classes, device)
        return train_judge(train_set, len(self.classes), device, steps=self.judge_steps, model=self.judge_model)

    @torch.no_grad()
    def images(self, images: torch.Tensor, labels: torch.Tensor) -> dict[str, np.ndarray]:
        net = self.net
        code = net.encode(images)
        columns = [images] + [net.decode(code, torch.full_like(labels, s)) for s in range(len(self.classes))]
        rec = net.decode(code, labels)
        names = [self.classes[int(y)] for y in labels]
        return {"restyle": image_grid(torch.stack(columns, 1), columns=["input", *self.classes], rows=names),
                "reconstruction": image_grid(torch.stack([images, rec], 1))}

    @torch.no_grad()
    def predict(self, images: torch.Tensor, *, style: torch.Tensor | None = None, seed: int = 0,
                mark_scale: float = 1.0, embed: bool = True, **options) -> dict[str, np.ndarray]:
        """``code`` and ``style_embedding`` (the critic's style statistics), and with ``style`` (B target
        labels, or B×classes blend weights) ``restyled``: the images painted in it (B×C×H×W in
        [0, 1]). Learned marks are painted from noise, drawn per image from ``seed``: the
        same image and style give the same picture, whatever else is in the batch (exemplar
        marks need no noise). ``mark_scale`` > 1 paints the marks that many times larger than in
        training (a picture larger than the run's images: zoo/pictures.py); ``embed=False``
        leaves out the code and style embedding."""
        out = self.embeddings(images) if embed else {}
        if style is not None:
            code, style = self.net.encode(images), style.to(images.device)
            scaled = {} if mark_scale == 1 else {"mark_scale": mark_scale}
            if scaled and "mark_scale" not in inspect.signature(self.net.decode).parameters:
                raise ValueError(f"{type(self.net).__name__}.decode paints its marks at one scale (it takes no "
                                 f"mark_scale): restyle with mark_scale=1")
            painted = []
            with torch.random.fork_rng(devices=[images.device] if images.device.type == "cuda" else []):
                for i in range(len(images)):
                    torch.manual_seed(seed)
                    painted.append(self.net.decode(code[i : i + 1], style[i : i + 1], **scaled))
            out["restyled"] = torch.cat(painted).float().clamp(0, 1).cpu().numpy()
        return out

    # -- the final analysis -----------------------------------------------------------------
    def finalize(self, *, train_set, test_set, out: Path, device: torch.device) -> dict[str, float]:
        """Restyle every test image into another style (seeded) and score it.

        Writes ``restyle/test.npz`` (no pickles): ``images``, ``restyled`` and, where the dataset
        can render (synthart), ``ground_truth`` (n×H×W×C uint8) of a seeded sample of the test
        split (all of it, or as many as :data:`SAVED_MB` holds), ``index`` (their positions in the
        test split), ``labels`` and ``targets`` (N, the whole split), ``classes`` (unicode); and
        :data:`TEST_GRID`: for a few test images, a row of
        the image restyled into every style, and below it (synthart) the ground truth; and
        ``tables/restyle_per_style.csv`` (:func:`per_style`): per target style, each judge's
        accuracy, the panel's (the lowest) and the PSNRs.

        Where it renders, also ``restyle_psnr_gt_resample``: the ground truth scored against itself
        painted with other random marks (``texture=1``). It is what a restyle as faithful as the
        renderer scores when it samples its own dots and strokes, the ceiling of ``restyle_psnr_gt``
        for crisp texture (a blurred mean of the marks can score above it, and fails the judge).
        """
        out = Path(out)
        net = self.net.eval()
        judges = self.judges(train_set, device)
        unseen = evidence.unseen_judges(train_set, [self.judge_model, *self.panel], len(self.classes), device,
                                        steps=self.judge_steps)
        probe = evidence.TextureProbe(getattr(self.net, "in_chans", 3)).to(device)
        labels = labels_of(test_set)
        targets = restyle_targets(labels, len(self.classes))
        renders = isinstance(test_set, Renders)
        kept = self._saved_sample(test_set, renders)
        arrays: dict[str, list[np.ndarray]] = {"images": [], "restyled": [], "ground_truth": []}
        scores: dict[str, list[torch.Tensor]] = defaultdict(list)  # per test image
        with torch.no_grad(), torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(SEED)  # the decoder's noise: the same model gives the same restyles
            for idx in progress(_chunks(len(test_set), analysis_batch(test_set, BATCH)),
                                f"restyling the {len(test_set)} test images",
                                unit="batch"):
                x = _stack(test_set, idx).to(device)
                y, t = torch.from_numpy(labels[idx]).to(device), torch.from_numpy(targets[idx]).to(device)
                code = net.encode(x)
                restyled = net.decode(code, t).float().clamp(0, 1)
                scores["identity"].append(metrics.psnr(net.decode(code, y).float().clamp(0, 1), x))
                for name, judge in judges.items():
                    scores[f"hit/{name}"].append(judge(restyled).argmax(1) == t)
                    scores[f"judged/{name}"].append(judge(x).argmax(1) == y)
                for name, judge in unseen.items():
                    scores[f"hit_unseen/{name}"].append(judge(restyled).argmax(1) == t)
                    scores[f"judged_unseen/{name}"].append(judge(x).argmax(1) == y)
                keep = np.isin(idx, kept)
                arrays["images"].append(to_uint8(x)[keep])
                arrays["restyled"].append(to_uint8(restyled)[keep])
                if renders:
                    truth = render_all(test_set, idx, targets[idx]).to(device)
                    scores["psnr_gt"].append(metrics.psnr(quarter(restyled), quarter(truth)))
                    scores["psnr_gt_baseline"].append(metrics.psnr(quarter(x), quarter(truth)))
                    # the truth painted again with other random marks: a faithful restyle's score
                    again = render_all(test_set, idx, targets[idx], texture=1).to(device)
                    scores["psnr_gt_resample"].append(metrics.psnr(quarter(again), quarter(truth)))
                    scores["texture/restyle"].append(probe.distance(restyled, truth))
                    scores["texture/input"].append(probe.distance(x, truth))
                    scores["texture/resample"].append(probe.distance(again, truth))
                    for name, image in (("restyle", restyled), ("input", x), ("resample", again)):
                        scores[f"structure/{name}"].append(evidence.structure(image, truth))
                    arrays["ground_truth"].append(to_uint8(truth)[keep])
            grid = self._testimage_grid(test_set, labels, device)

        per_item = {k: torch.cat(v).float().cpu().numpy() for k, v in scores.items()}
        saved = {k: np.concatenate(v) for k, v in arrays.items() if v}
        if len(kept):  # on the saved sample: NaN for the other items
            with phase(f"looking for copied tiles in {len(kept)} of the restyles"):
                named = (("restyle", "restyled"), *((("truth", "ground_truth"),) if renders else ()))
                # one search for restyles and truths: each style's training tiles are read and cut once
                rates = evidence.copy_rates(np.concatenate([saved[key] for _, key in named]),
                                            np.tile(targets[kept], len(named)), train_set)
                for (name, _), part in zip(named, np.split(rates, len(named))):
                    per_item[f"copied/{name}"] = np.full(len(labels), np.nan)
                    per_item[f"copied/{name}"][kept] = part
        first = next(iter(judges))
        result = {"restyle_acc": per_item[f"hit/{first}"].mean(), "judge_acc": per_item[f"judged/{first}"].mean(),
                  "identity_psnr": per_item["identity"].mean()}
        for name in judges:
            result[f"restyle_acc_by_{name}"] = per_item[f"hit/{name}"].mean()
            result[f"judge_acc_by_{name}"] = per_item[f"judged/{name}"].mean()
        if unseen:
            result["restyle_acc_unseen"] = per_item[f"hit_unseen/{self.judge_model}"].mean()
            for name in unseen:
                result[f"restyle_acc_unseen_by_{name}"] = per_item[f"hit_unseen/{name}"].mean()
                result[f"judge_acc_unseen_by_{name}"] = per_item[f"judged_unseen/{name}"].mean()
        if renders:
            result.update({f"restyle_{k}": per_item[k].mean() for k in PSNRS})
            for name in ("", "_resample"):  # the restyle's, and the ceiling: the truth painted with other marks
                result[f"restyle_texture_ratio{name}"] = (per_item[f"texture/{name.strip('_') or 'restyle'}"].mean()
                                                          / per_item["texture/input"].mean())
            for name, suffix in (("restyle", ""), ("input", "_baseline"), ("resample", "_resample")):
                result[f"restyle_structure{suffix}"] = per_item[f"structure/{name}"].mean()
        for name in ("restyle", "truth"):
            if f"copied/{name}" in per_item and not np.isnan(per_item[f"copied/{name}"]).all():
                result["restyle_copy_rate" + ("" if name == "restyle" else "_truth")] = np.nanmean(
                    per_item[f"copied/{name}"])
        stored = getattr(self.net, "training_pixel_bytes", None)
        result["stored_training_bytes"] = stored() if callable(stored) else 0
        rows = per_style(self.classes, targets, per_item, list(judges), list(unseen))
        if rows:  # a test split with images
            result["restyle_acc_panel"] = float(np.mean([row["panel"] for row in rows]))
            if unseen:
                result["restyle_acc_panel_unseen"] = float(np.mean([row["panel_unseen"] for row in rows]))
            _write_table(out / Artifact.PER_STYLE, rows)

        (out / Artifact.RESTYLES).parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(out / Artifact.RESTYLES, labels=labels, targets=targets, index=kept,
                            classes=np.array(self.classes, dtype=str), **saved)
        (out / "plots").mkdir(parents=True, exist_ok=True)
        Image.fromarray(grid).save(out / TEST_GRID)
        result = {k: float(v) for k, v in result.items()}
        return {**super().finalize(train_set=train_set, test_set=test_set, out=out, device=device), **result}

    @staticmethod
    def _saved_sample(test_set, renders: bool) -> np.ndarray:
        """Positions of the test items whose pictures restyle/test.npz keeps (:data:`SAVED_MB`)."""
        if not len(test_set):
            return np.arange(0)
        pictures = 3 if renders else 2  # the input, its restyle and, where rendered, the truth
        cap = max(1, int(SAVED_MB * 1e6 // (test_set[0][0].numel() * pictures)))
        return subsample(len(test_set), cap, SEED)

    def judges(self, train_set, device: torch.device) -> dict[str, nn.Module]:
        """The panel, by name: first the judge of ``restyle_acc`` (``judge``, a checkpoint, or
        ``judge_model``), then each model of ``panel``, all trained on ``train_set`` alone."""
        # the first judge, as the validation already holds it where it scored val/restyle_acc
        held = self._judge is not None and train_set is self._judged_on
        judges = {"judge" if self.judge_path else self.judge_model:
                  self._judge if held else self._judge_of(train_set, device)}
        for name in self.panel:
            judges[name] = train_judge(train_set, len(self.classes), device, steps=self.judge_steps, model=name)
        return judges

    @torch.no_grad()
    def _testimage_grid(self, test_set, labels: np.ndarray, device: torch.device) -> np.ndarray:
        """One test image of each style (up to 8): restyled into every style, ground truth below."""
        picks = [int(np.flatnonzero(labels == c)[0]) for c in range(len(self.classes)) if (labels == c).any()][:8]
        x = _stack(test_set, np.asarray(picks)).to(device)
        code = self.net.encode(x)
        rows, names = [], []
        for j, i in enumerate(picks):
            styles = torch.arange(len(self.classes), device=device)
            rows.append(torch.cat([x[j : j + 1], self.net.decode(code[j : j + 1].expand(len(styles), -1, -1, -1), styles)]))
            names.append(f"{self.classes[int(labels[i])]}, restyled")
            if isinstance(test_set, Renders):
                rows.append(torch.cat([x[j : j + 1], render_all(test_set, [i] * len(styles), styles).to(device)]))
                names.append("ground truth")
        return image_grid(torch.stack(rows), columns=["input", *self.classes], rows=names)

    # -- checkpoints ------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {**super().state_dict(), "critic": self.critic.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.critic.load_state_dict(state["critic"])


# -- helpers -----------------------------------------------------------------------------------


def _chunks(n: int, size: int) -> list[np.ndarray]:
    return [np.arange(i, min(i + size, n)) for i in range(0, n, size)]


def _stack(dataset, idx: np.ndarray) -> torch.Tensor:
    return torch.stack([dataset[int(i)][0] for i in idx])


def _as_tensor(image) -> torch.Tensor:
    """A rendered image (C×H×W float tensor, or H×W×C uint8 array) as a C×H×W float tensor."""
    if isinstance(image, torch.Tensor) and image.is_floating_point():
        return image.float()
    array = np.asarray(image)
    return torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1).float() / 255


def render_all(dataset: Renders, items, styles, **options) -> torch.Tensor:
    """``dataset.render`` of each (item, style) pair, stacked as B×C×H×W floats."""
    return torch.stack([_as_tensor(dataset.render(int(i), int(s), **options)) for i, s in zip(items, styles)])


def quarter(x: torch.Tensor) -> torch.Tensor:
    """Area-downsampled to a quarter of the side: random texture placement averages out."""
    return F.interpolate(x, scale_factor=0.25, mode="area")


def panel_of(panel: str) -> list[str]:
    """``"timm_net, other"`` -> ``["timm_net", "other"]``."""
    return [name.strip() for name in panel.split(",") if name.strip()]


def per_style(classes: list[str], targets: np.ndarray, per_item: dict[str, np.ndarray],
              judges: list[str], unseen: list[str] = ()) -> list[dict]:
    """One row per target style of the test restyles: ``style``, ``restyles`` (how many),
    ``acc_<judge>`` for each judge, ``panel`` (the lowest of them), the same of the judges that
    never saw the training paintings (``acc_unseen_<judge>``, ``panel_unseen``), the mean of
    each PSNR of ``per_item`` (``psnr_gt``, ``psnr_gt_baseline``, ``psnr_gt_resample``) that it
    holds, ``texture_ratio`` (and ``_resample``), ``structure`` (and ``_baseline``, ``_resample``)
    and ``copy_rate`` (and ``copy_rate_truth``) where it holds them (zoo/evidence.py)."""
    rows = []
    for s, style in enumerate(classes):
        pick = targets == s
        if not pick.any():
            continue  # no test image is restyled into it
        accs = {f"acc_{name}": float(per_item[f"hit/{name}"][pick].mean()) for name in judges}
        row = {"style": style, "restyles": int(pick.sum()), **accs, "panel": min(accs.values())}
        if unseen:
            seen_not = {f"acc_unseen_{name}": float(per_item[f"hit_unseen/{name}"][pick].mean()) for name in unseen}
            row.update({**seen_not, "panel_unseen": min(seen_not.values())})
        row.update({k: float(per_item[k][pick].mean()) for k in PSNRS if k in per_item})
        if "texture/restyle" in per_item:
            for name, column in (("restyle", "texture_ratio"), ("resample", "texture_ratio_resample")):
                row[column] = float(per_item[f"texture/{name}"][pick].mean() / per_item["texture/input"][pick].mean())
        if "structure/restyle" in per_item:
            for name, column in (("restyle", "structure"), ("input", "structure_baseline"),
                                 ("resample", "structure_resample")):
                row[column] = float(per_item[f"structure/{name}"][pick].mean())
        for name, column in (("restyle", "copy_rate"), ("truth", "copy_rate_truth")):
            copied = per_item.get(f"copied/{name}")
            if copied is not None and not np.isnan(copied[pick]).all():
                row[column] = float(np.nanmean(copied[pick]))
        rows.append(row)
    return rows


def _write_table(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows({k: f"{v:.4f}" if isinstance(v, float) else v for k, v in row.items()} for row in rows)
