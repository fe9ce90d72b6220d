"""The restyle task: train a label-conditioned autoencoder to repaint images in another style.

Why the plain recipe fails, and what this one does instead:

* With only a pixel loss the code keeps everything, style included, and the decoder ignores its
  label; and where the label is used, the decoder paints a style's *average* texture, a blur.
* So the decoder is trained as a conditional GAN generator: a patch discriminator with a
  projection on the style (Miyato & Koyama 2018) judges whether each patch looks like a real
  patch *of the target style*. It is trained on real images with their own style (real), the
  same images with a wrong style (fake, so it must look at the style) and restyled images
  (fake), so it keeps learning to reject the faint patterns that fool a fixed classifier.
* The content must survive: an identity loss (own style in, own image out), a cycle loss
  (restyled and painted back, Choi et al. 2018) and a latent loss (the restyle encodes to the
  same code).
* The code must carry content but not style: a small critic tries to tell the style from the
  code and the encoder is trained to leave it at chance, so the decoder must take the style
  from its label.

Only (image, label) pairs are used for training. Scoring happens in :meth:`Restyle.finalize`
against a separately trained style classifier (the judge, never part of any training loss) and,
where the dataset can render any content in any style (synthart), against the ground truth.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
from pathlib import Path
from typing import Annotated

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from PIL import Image

import registry
from zoo import metrics
from zoo.cond_ae import style_weights
from zoo.data import cache_root
from zoo.reconstruct import Reconstruct

SEED = 0  # restyle targets, the decoder's noise at test time and the judge's training are seeded
BATCH = 128  # images per batch in the final analysis

# -- auxiliary networks ------------------------------------------------------------------------


class PatchCritic(nn.Module):
    """Per-patch realism of an image for a given style: ``psi(h) + <embed(style), h>``."""

    def __init__(self, in_chans: int, num_styles: int, width: int = 32, stages: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        chans = in_chans
        for i in range(stages):
            out = width * 2**i
            layers += [spectral_norm(nn.Conv2d(chans, out, 4, stride=2, padding=1)), nn.LeakyReLU(0.2)]
            chans = out
        layers += [spectral_norm(nn.Conv2d(chans, chans, 3, padding=1)), nn.LeakyReLU(0.2)]
        self.features = nn.Sequential(*layers)
        self.psi = spectral_norm(nn.Conv2d(chans, 1, 1))
        self.embed = spectral_norm(nn.Linear(num_styles, chans, bias=False))
        self.num_styles = num_styles

    def forward(self, x: torch.Tensor, *styles: torch.Tensor) -> torch.Tensor:
        """Patch scores of ``x`` for each of ``styles`` (one feature pass), stacked: S×B×1×h×w."""
        h = self.features(x)
        psi = self.psi(h)
        scores = []
        for style in styles:
            e = self.embed(style_weights(style, self.num_styles).to(h.dtype))
            scores.append(psi + (h * e[:, :, None, None]).sum(1, keepdim=True))
        return torch.stack(scores)


class CodeCritic(nn.Module):
    """Guesses the style from a content code; the encoder is trained to leave it at chance."""

    def __init__(self, latent_dim: int, num_styles: int, width: int = 64) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(latent_dim, width, 3, padding=1), nn.LeakyReLU(0.2),
            nn.Conv2d(width, width, 3, stride=2, padding=1), nn.LeakyReLU(0.2),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, num_styles),
        )

    def forward(self, code: torch.Tensor) -> torch.Tensor:
        return self.net(code)


class TextureStats(nn.Module):
    """Gram matrices of a fixed random multi-scale CNN applied to an image's fine detail.

    Random filters suffice to describe a texture (Ustyuzhaninov et al. 2017). The image minus its
    local mean is what they see: random texture lives there, the content's colours do not, so a
    style's average statistics are a fair target for any content painted in that style.
    """

    def __init__(self, in_chans: int, widths: tuple[int, ...] = (32, 48, 64), seed: int = SEED) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        chans = in_chans
        for i, width in enumerate(widths):
            weight = torch.randn(width, chans, 3, 3, generator=gen) * (2 / (chans * 9)) ** 0.5
            self.register_buffer(f"w{i}", weight, persistent=False)
            chans = width
        self.depth = len(widths)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        h = x - F.avg_pool2d(x, 5, stride=1, padding=2, count_include_pad=False)
        grams = []
        for i in range(self.depth):
            if i:
                h = F.avg_pool2d(h, 2)
            h = F.relu(F.conv2d(h, getattr(self, f"w{i}"), padding=1))
            f = h.flatten(2)
            grams.append(f @ f.transpose(1, 2) / f.shape[-1])
        return grams


# -- the task ----------------------------------------------------------------------------------


class Restyle(Reconstruct):
    """Restyle images with a conditional autoencoder (``encode``, ``decode(code, style)``).

    Evaluation per epoch is the reconstruction's (mse, psnr, ssim with the image's own style);
    the end adds the codes' embedding analysis and the restyle scores (:meth:`finalize`).
    """

    uses_labels = True

    def __init__(
        self,
        *,
        model: nn.Module,
        classes: list[str],
        rec_weight: Annotated[float, Field(ge=0, description="weight of the identity L1 loss")] = 10.0,
        cycle_weight: Annotated[float, Field(ge=0, description="weight of the cycle L1 loss (restyle and back)")] = 10.0,
        latent_weight: Annotated[float, Field(ge=0, description="weight of the restyle's code matching the source's")] = 0.0,
        adv_weight: Annotated[float, Field(ge=0, description="weight of the discriminator's verdict on restyles")] = 1.0,
        code_weight: Annotated[float, Field(ge=0, description="weight of hiding the style from the code critic")] = 1.0,
        texture_weight: Annotated[float, Field(ge=0, description="weight of matching the target style's texture "
                                                               "statistics (Gram matrices of random filters)")] = 1.0,
        critic_lr: Annotated[float, Field(gt=0, description="learning rate of the discriminator and code critic")] = 2e-4,
        judge: Annotated[str, Field(description="checkpoint of a classify run that scores restyles; empty: train "
                                                "a cnn judge on the training set")] = "",
        judge_steps: Annotated[int, Field(ge=0, description="training steps of the cnn judge (when judge is empty)")] = 1500,
        umap: Annotated[bool, Field(description="also embed the test codes with UMAP")] = True,
    ) -> None:
        super().__init__(model=model, classes=classes, umap=umap)
        if len(self.classes) < 2:
            raise ValueError(f"restyle needs at least two styles to move between; the dataset has {self.classes}")
        self.weights = {"rec": rec_weight, "cycle": cycle_weight, "latent": latent_weight, "adv": adv_weight,
                        "code": code_weight,
                        "texture": texture_weight}
        self.critic_lr = critic_lr
        self.judge_path = judge
        self.judge_steps = judge_steps
        num = len(self.classes)
        net = self.net
        self.disc = PatchCritic(getattr(net, "in_chans", 3), num)
        self.code_critic = CodeCritic(net.latent_dim, num)
        self.texture = TextureStats(getattr(net, "in_chans", 3))
        self.style_grams: list[torch.Tensor] = []  # per layer: num_styles×C×C, set in setup()
        self._disc_train: nn.Module = self.disc
        self._code_train: nn.Module = self.code_critic
        self.critic_opt: torch.optim.Optimizer | None = None

    def setup(self, train_set: torch.utils.data.Dataset, device: torch.device) -> None:
        if self.weights["texture"]:
            self.style_grams = self._style_grams(train_set, device)
        self.disc.to(device)
        self.code_critic.to(device)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            ids = [device.index] if device.type == "cuda" else None
            self._disc_train = nn.parallel.DistributedDataParallel(self.disc, device_ids=ids)
            self._code_train = nn.parallel.DistributedDataParallel(self.code_critic, device_ids=ids)
        params = [*self.disc.parameters(), *self.code_critic.parameters()]
        self.critic_opt = torch.optim.Adam(params, lr=self.critic_lr, betas=(0.5, 0.999))

    @torch.no_grad()
    def _style_grams(self, train_set, device: torch.device, per_style: int = 256) -> list[torch.Tensor]:
        """Each style's mean texture statistics over (up to ``per_style`` of) its training images."""
        self.texture.to(device)
        labels = _labels(train_set)
        rng = np.random.default_rng(SEED)
        sums: list[torch.Tensor] = []
        counts = torch.zeros(len(self.classes), device=device)
        for style in range(len(self.classes)):
            mine = np.flatnonzero(labels == style)
            mine = rng.choice(mine, min(per_style, len(mine)), replace=False) if len(mine) else mine
            for idx in _chunks(len(mine), BATCH):
                grams = self.texture(_stack(train_set, mine[idx]).to(device))
                if not sums:
                    sums = [torch.zeros(len(self.classes), *g.shape[1:], device=device) for g in grams]
                for total, g in zip(sums, grams):
                    total[style] += g.sum(0)
                counts[style] += len(idx)
        # a style without training images keeps zero statistics; it is never a target (see training_step)
        return [total / counts.clamp_min(1)[:, None, None] for total in sums]

    def _texture_loss(self, images: torch.Tensor, styles: torch.Tensor) -> torch.Tensor:
        loss = images.new_zeros(())
        for g, target in zip(self.texture(images.float()), self.style_grams):
            loss = loss + (g - target[styles]).pow(2).mean() / target.pow(2).mean().clamp_min(1e-12)
        return loss / len(self.style_grams)

    # -- training ---------------------------------------------------------------------------
    def training_step(self, images: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        num = len(self.classes)
        targets = (labels + torch.randint(1, num, labels.shape, device=labels.device)) % num
        out = self.model(images, labels, targets, cycle=self.weights["cycle"] > 0)
        logs = self._update_critics(images, labels, targets, out["fake"].detach(), out["code"].detach())

        # The generator's side uses the bare critics: no gradient for them, nothing for DDP to sync.
        for p in [*self.disc.parameters(), *self.code_critic.parameters()]:
            p.requires_grad_(False)
        terms = {
            "rec": F.l1_loss(out["rec"], images),
            "latent": F.l1_loss(out["fake_code"], out["code"]),
            "adv": -self.disc(out["fake"], targets).mean(),
            # cross-entropy against the uniform distribution: the critic learns nothing from the code
            "code": -F.log_softmax(self.code_critic(out["code"]), 1).mean(),
        }
        if "cycle" in out:
            terms["cycle"] = F.l1_loss(out["cycle"], images)
        if self.weights["texture"]:
            terms["texture"] = self._texture_loss(out["fake"], targets)
        loss = sum(self.weights[k] * v for k, v in terms.items())
        return {"loss": loss, **{f"g_{k}": v.detach() for k, v in terms.items()}, **logs}

    def _update_critics(self, images, labels, targets, fake, code) -> dict[str, torch.Tensor]:
        for p in [*self.disc.parameters(), *self.code_critic.parameters()]:
            p.requires_grad_(True)
        # Hinge loss. Negatives: restyles, and real images paired with a wrong style (the
        # latter makes the discriminator check the style, not only realism).
        # one call (DistributedDataParallel syncs once); the real images' features serve both pairings
        own, other = self._disc_train(torch.cat([images, fake]), torch.cat([labels, targets]),
                                      torch.cat([targets, targets]))
        real, faked = own.chunk(2)
        mismatched = other.chunk(2)[0]
        d_loss = F.relu(1 - real).mean() + 0.5 * (F.relu(1 + mismatched).mean() + F.relu(1 + faked).mean())
        c_loss = F.cross_entropy(self._code_train(code), labels)
        self.critic_opt.zero_grad(set_to_none=True)
        (d_loss + c_loss).backward()
        self.critic_opt.step()
        return {"d_loss": d_loss.detach(), "code_critic_loss": c_loss.detach()}

    # -- evaluation -------------------------------------------------------------------------
    @torch.no_grad()
    def eval_step(self, images: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        rec = self.net.decode(self.net.encode(images), labels).float().clamp(0, 1)
        images = images.float()
        return {"mse": (rec - images).pow(2).flatten(1).mean(1), "psnr": metrics.psnr(rec, images),
                "ssim": metrics.ssim(rec, images)}

    @torch.no_grad()
    def images(self, images: torch.Tensor, labels: torch.Tensor) -> dict[str, np.ndarray]:
        net = self.net
        code = net.encode(images)
        columns = [images] + [net.decode(code, torch.full_like(labels, s)) for s in range(len(self.classes))]
        rec = net.decode(code, labels)
        return {"restyle": _grid(torch.stack(columns, 1)), "reconstruction": _grid(torch.stack([images, rec], 1))}

    # -- the final analysis -----------------------------------------------------------------
    def finalize(self, *, train_set, test_set, out: Path, device: torch.device) -> dict[str, float]:
        """Restyle every test image into another style (seeded) and score it.

        Writes ``restyle/test.npz`` (no pickles): ``images``, ``restyled`` and, where the dataset
        can render (synthart), ``ground_truth`` (N×H×W×C uint8), ``labels`` and ``targets`` (N),
        ``classes`` (unicode); and ``images/restyle_test.png``: for a few test images, a row of
        the image restyled into every style, and below it (synthart) the ground truth.

        Where the dataset renders with a ``texture`` argument (synthart), also
        ``restyle_psnr_gt_resample``: the ground truth scored against itself painted with other
        random marks (``texture=1``). It is what a restyle as faithful as the renderer scores when
        it samples its own dots and strokes, the ceiling of ``restyle_psnr_gt`` for crisp texture
        (a blurred mean of the marks can score above it, and fails the judge).
        """
        out = Path(out)
        net = self.net.eval()
        judge = self._judge(train_set, device)
        num = len(self.classes)
        labels = _labels(test_set)
        rng = np.random.default_rng(SEED)
        targets = (labels + rng.integers(1, num, len(labels))) % num
        renders = hasattr(test_set, "render")
        arrays: dict[str, list[np.ndarray]] = {"images": [], "restyled": [], "ground_truth": []}
        scores: dict[str, list[torch.Tensor]] = {k: [] for k in ("hit", "judged", "psnr_gt", "psnr_base", "psnr_again",
                                                                   "identity")}
        resample = renders and "texture" in inspect.signature(test_set.render).parameters
        with torch.no_grad(), torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(SEED)  # the decoder's noise: the same model gives the same restyles
            for idx in _chunks(len(test_set), BATCH):
                x = _stack(test_set, idx).to(device)
                y, t = torch.from_numpy(labels[idx]).to(device), torch.from_numpy(targets[idx]).to(device)
                code = net.encode(x)
                restyled = net.decode(code, t).float().clamp(0, 1)
                scores["identity"].append(metrics.psnr(net.decode(code, y).float().clamp(0, 1), x))
                scores["hit"].append(judge(restyled).argmax(1) == t)
                scores["judged"].append(judge(x).argmax(1) == y)
                arrays["images"].append(_uint8(x))
                arrays["restyled"].append(_uint8(restyled))
                if renders:
                    truth = _renders(test_set, idx, targets[idx]).to(device)
                    scores["psnr_gt"].append(metrics.psnr(_quarter(restyled), _quarter(truth)))
                    scores["psnr_base"].append(metrics.psnr(_quarter(x), _quarter(truth)))
                    if resample:  # the truth painted again with other random marks: a faithful restyle's score
                        again = _renders(test_set, idx, targets[idx], texture=1).to(device)
                        scores["psnr_again"].append(metrics.psnr(_quarter(again), _quarter(truth)))
                    arrays["ground_truth"].append(_uint8(truth))
            grid = self._test_grid(test_set, labels, device)

        result = {"restyle_acc": _mean(scores["hit"]), "judge_acc": _mean(scores["judged"]),
                  "identity_psnr": _mean(scores["identity"])}
        if renders:
            result.update(restyle_psnr_gt=_mean(scores["psnr_gt"]), restyle_psnr_gt_baseline=_mean(scores["psnr_base"]))
        if resample:
            result["restyle_psnr_gt_resample"] = _mean(scores["psnr_again"])
        saved = {k: np.concatenate(v) for k, v in arrays.items() if v}
        (out / "restyle").mkdir(parents=True, exist_ok=True)
        np.savez_compressed(out / "restyle" / "test.npz", labels=labels, targets=targets,
                            classes=np.array(self.classes, dtype=str), **saved)
        (out / "images").mkdir(parents=True, exist_ok=True)
        Image.fromarray(grid).save(out / "images" / "restyle_test.png")
        return {**super().finalize(train_set=train_set, test_set=test_set, out=out, device=device), **result}

    def _judge(self, train_set, device: torch.device) -> nn.Module:
        if self.judge_path:
            return load_judge(self.judge_path, self.classes, device)
        return train_judge(train_set, len(self.classes), device, steps=self.judge_steps)

    @torch.no_grad()
    def _test_grid(self, test_set, labels: np.ndarray, device: torch.device) -> np.ndarray:
        """One test image of each style (up to 8): restyled into every style, ground truth below."""
        picks = [int(np.flatnonzero(labels == c)[0]) for c in range(len(self.classes)) if (labels == c).any()][:8]
        x = _stack(test_set, np.asarray(picks)).to(device)
        code = self.net.encode(x)
        rows = []
        for j, i in enumerate(picks):
            styles = torch.arange(len(self.classes), device=device)
            rows.append(torch.cat([x[j : j + 1], self.net.decode(code[j : j + 1].expand(len(styles), -1, -1, -1), styles)]))
            if hasattr(test_set, "render"):
                rows.append(torch.cat([x[j : j + 1], _renders(test_set, [i] * len(styles), styles).to(device)]))
        return _grid(torch.stack(rows))

    # -- checkpoints ------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"disc": self.disc.state_dict(), "code_critic": self.code_critic.state_dict(),
                "critic_opt": self.critic_opt.state_dict() if self.critic_opt else {}}

    def load_state_dict(self, state: dict) -> None:
        self.disc.load_state_dict(state["disc"])
        self.code_critic.load_state_dict(state["code_critic"])
        if self.critic_opt and state["critic_opt"]:
            self.critic_opt.load_state_dict(state["critic_opt"])


def _grid(cells: torch.Tensor) -> np.ndarray:
    """B×K×C×H×W images in [0, 1] -> one H×W×3 uint8 picture, a row per item, a column per k."""
    b, k, c, h, w = cells.shape
    pic = cells.float().clamp(0, 1).permute(0, 3, 1, 4, 2).reshape(b * h, k * w, c)
    if c == 1:
        pic = pic.expand(-1, -1, 3)
    return (pic * 255).round().byte().cpu().numpy()


# -- the judge ---------------------------------------------------------------------------------

JUDGE = {"width": 16, "batch": 64, "lr": 2e-3, "shift": 4}  # the fixed recipe of the cnn judge


def train_judge(train_set, num_classes: int, device: torch.device, *, steps: int) -> nn.Module:
    """A ``cnn`` style classifier trained on ``train_set`` alone, class-balanced, with flips and shifts.

    Seeded and on its own random stream, so it is the same judge for every model it scores; it
    is kept in the cache folder, keyed by the recipe and a fingerprint of the data, so the runs
    of several seeds or models on one dataset train it once.
    """
    x0 = train_set[0][0]
    judge = registry.model("cnn", num_classes=num_classes, in_chans=x0.shape[0], image_size=x0.shape[-1],
                           width=JUDGE["width"]).to(device)
    labels = torch.as_tensor(_labels(train_set))
    key = hashlib.sha256(json.dumps({**JUDGE, "steps": steps, "classes": num_classes, "data": _fingerprint(train_set)},
                                    sort_keys=True).encode()).hexdigest()[:20]
    path = cache_root() / "judges" / f"cnn-{key}.pt"
    if path.exists():
        judge.load_state_dict(torch.load(path, map_location=device, weights_only=True))
        return judge.eval()
    counts = torch.bincount(labels, minlength=num_classes).clamp_min(1).float()
    gen = torch.Generator().manual_seed(SEED)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(SEED)
        opt = torch.optim.AdamW(judge.parameters(), lr=JUDGE["lr"], weight_decay=1e-4)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, JUDGE["lr"], total_steps=max(1, steps), pct_start=0.15)
        judge.train()
        for _ in range(steps):
            idx = torch.multinomial(1 / counts[labels], JUDGE["batch"], replacement=True, generator=gen).numpy()
            x = _augment(_stack(train_set, idx), gen).to(device)
            loss = F.cross_entropy(judge(x), labels[idx].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    torch.save(judge.state_dict(), tmp)
    os.replace(tmp, path)  # never a half-written judge for a concurrent run to read
    return judge.eval()


def _fingerprint(dataset) -> str:
    """A hash of the labels and of up to 256 evenly spaced items' pixels: changes with the data."""
    h = hashlib.sha256(np.asarray(_labels(dataset), dtype=np.int64).tobytes())
    for i in np.linspace(0, len(dataset) - 1, min(256, len(dataset))).astype(int):
        h.update(dataset[int(i)][0].mul(255).round().byte().numpy().tobytes())
    return h.hexdigest()


def _labels(dataset) -> np.ndarray:
    if hasattr(dataset, "targets"):
        return np.asarray(dataset.targets, dtype=np.int64)
    return np.asarray([int(dataset[i][1]) for i in range(len(dataset))], dtype=np.int64)


def load_judge(path: str, classes: list[str], device: torch.device) -> nn.Module:
    """The classifier of a classify run's checkpoint (``{"model": state_dict, "config": ...}``)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or "model" not in state or "config" not in state:
        raise ValueError(f"judge {path!r} is not a classify run's checkpoint (a dict with 'model' and 'config'); "
                         f"give checkpoints/best.pt of a `python -m runners.run cnn` run, or leave judge empty")
    cfg = json.loads(state["config"]) if isinstance(state["config"], str) else state["config"]
    known = cfg.get("classes")
    if known is not None and list(known) != list(classes):
        raise ValueError(f"judge {path!r} was trained on the classes {known}, but this dataset has {classes}")
    opts = {k: v for k, v in cfg["model"].items() if k != "name"}
    judge = registry.model(cfg["model"]["name"], num_classes=len(classes), in_chans=cfg.get("in_chans", 3),
                           image_size=cfg["data"]["image_size"], **opts)
    try:
        judge.load_state_dict(state["model"])
    except RuntimeError as exc:
        raise ValueError(f"judge {path!r} does not fit {len(classes)} classes: {exc}") from exc
    return judge.to(device).eval()


# -- helpers -----------------------------------------------------------------------------------


def _augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random horizontal flips and shifts of up to JUDGE["shift"] px (reflected borders)."""
    s = JUDGE["shift"]
    flip = torch.rand(len(x), generator=gen) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    padded = F.pad(x, (s, s, s, s), mode="reflect")
    dx, dy = torch.randint(0, 2 * s + 1, (2, len(x)), generator=gen).tolist()
    h, w = x.shape[-2:]
    return torch.stack([p[:, i : i + h, j : j + w] for p, i, j in zip(padded, dy, dx)])


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


def _renders(dataset, items, styles, **options) -> torch.Tensor:
    """``dataset.render`` of each (item, style) pair, stacked as B×C×H×W floats."""
    return torch.stack([_as_tensor(dataset.render(int(i), int(s), **options)) for i, s in zip(items, styles)])


def _quarter(x: torch.Tensor) -> torch.Tensor:
    """Area-downsampled to a quarter of the side: random texture placement averages out."""
    return F.interpolate(x, scale_factor=0.25, mode="area")


def _uint8(x: torch.Tensor) -> np.ndarray:
    return x.clamp(0, 1).mul(255).round().byte().permute(0, 2, 3, 1).cpu().numpy()


def _mean(parts: list[torch.Tensor]) -> float:
    return float(torch.cat(parts).float().mean()) if parts else float("nan")
