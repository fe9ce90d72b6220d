"""What restyle_acc and restyle_psnr_gt reward: hand-made restyles of the default synthart test split.

    python bench/restyle_bounds.py            # 512 test images, 64 px, under a minute on 2 cores
    python bench/restyle_bounds.py --paired   # and the smooth path's ceiling (50 s in all, the judge cached)

No model is trained. Each row restyles the test images into the same seeded other styles as the
restyle task and scores them the same way (the task's cnn judge; PSNR against the ground truth
after both are area-downsampled to a quarter of the side). The rows split a restyle into the two
things a decoder must get right:

* the smooth image (layout and colour): the input itself, the input blurred, and the ground
  truth blurred (what a perfect smooth path would paint);
* the marks: the fine detail (image minus its blur) of a random *training* image of the target
  style added on top (``+ marks``), i.e. real marks of the right style that do not follow this
  image's content; and the ground truth painted again with other random marks (``resample``).

So it shows how far crisp marks alone lift the judge, what they cost in PSNR, and how much of
the 25 dB target must come from changing the smooth image towards the target style. A second
table does the same for identity_psnr: the image's own coarse colours against the image
repainted in its own style with other marks (what a decoder that samples real marks scores).
A third turns the renderer's own marks down by a gain, to show what identity_psnr ≥ 20 dB costs
in restyle_acc even for perfect marks. A fourth looks at the one style whose marks change the
layout: Pop_Art's dark outlines, drawn round every region (shapes coloured like their
surroundings included), scored (PSNR and the structure score) against restyles into Pop_Art made
from the scene itself, from its regions as a 4-pixel code holds them, from the input's 4×4-pixel
colours sharpened, and from regions a plain segmenter (k-means of colours) finds in the input.
A texture table asks whether the texture ratio's statistic (zoo/evidence.py) tells a style's
marks from another's: the truth painted again should score low, the scene painted in a third
style and the truth blurred high; beside it whole Gram matrices, the statistic it replaced.

``--paired`` adds the one row that trains something: cond_ae's encoder and smooth path trained
on ground-truth pairs (a training image in, the same scene rendered in a random style out),
which the restyle task never has. What that scores is the ceiling of restyle_psnr_gt for this
architecture's colours, had the unpaired recipe taught them perfectly; it is a bound, not a
recipe.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF

import registry
from zoo import evidence, metrics
from zoo.datasets.synthart import outline_mask
from zoo.models.cond_ae import sharpened
from zoo.fit import Step
from zoo.judge import train_judge
from zoo.style import gram_vector, high_pass
from zoo.tasks.restyle import JUDGE_STEPS, SEED, quarter, render_all, restyle_targets
from zoo.task import labels_of


def blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    return TF.gaussian_blur(x, [2 * round(3 * sigma) + 1] * 2, [sigma, sigma])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=512, help="test images scored")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--paired", action="store_true", help="also train the smooth path on ground-truth pairs")
    parser.add_argument("--stages", type=int, default=2, help="cond_ae's model.stages for --paired (the code is "
                                                              "2**stages times smaller than the image)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    train, test = registry.dataset("synthart", split="train"), registry.dataset("synthart", split="test")
    classes = train.classes
    judge = train_judge(train, len(classes), torch.device("cpu"), steps=JUDGE_STEPS)  # the restyle task's judge

    n = min(args.n, len(test))
    labels = labels_of(test)
    targets = restyle_targets(labels, len(classes))[:n]  # the same targets as Restyle.finalize
    x = torch.stack([test[i][0] for i in range(n)])
    truth = render_all(test, range(n), targets)
    train_labels = labels_of(train)
    pick = np.random.default_rng(SEED + 1)
    donor = torch.stack([train[int(pick.choice(np.flatnonzero(train_labels == t)))][0] for t in targets])
    t = torch.as_tensor(targets)

    rows = {
        "input": x,
        "input blurred (σ 2 px)": blur(x, 2),
        "input blurred (σ 2 px) + marks (σ 1.5 px)": blur(x, 2) + donor - blur(donor, 1.5),
        "input blurred (σ 2 px) + marks (σ 2 px)": blur(x, 2) + donor - blur(donor, 2),
        "truth blurred (σ 2 px)": blur(truth, 2),
        "truth blurred (σ 2 px) + marks (σ 1.5 px)": blur(truth, 2) + donor - blur(donor, 1.5),
        "truth resampled (other random marks)": render_all(test, range(n), targets, texture=1),
    }
    print(f"{n} test images of synthart (64 px), seeded targets; judge: the restyle task's cnn\n")
    print("| restyle | restyle_acc | restyle_psnr_gt (dB) | acc per target style |")
    print("|---|---|---|---|")
    for name, image in rows.items():
        image = image.clamp(0, 1)
        with torch.no_grad():
            hit = (judge(image).argmax(1) == t).float()
        psnr = metrics.psnr(quarter(image), quarter(truth)).mean()
        per = " ".join(f"{hit[t == c].mean():.2f}" if (t == c).any() else "-" for c in range(len(classes)))
        print(f"| {name} | {hit.mean():.3f} | {psnr:.2f} | {per} |", flush=True)
    print("\nstyles, in the order of the last column: " + ", ".join(classes))

    # identity_psnr (own style in, own image out, full resolution) of two hand-made identities
    own = render_all(test, range(n), labels[:n], texture=1)
    def up(z: torch.Tensor) -> torch.Tensor:  # the 4×4-pixel colours, upsampled: what the code keeps
        return F.interpolate(F.avg_pool2d(z, 4), scale_factor=4, mode="bilinear", align_corners=False)

    coarse = up(x)
    print("\n| identity | identity_psnr (dB) |\n|---|---|")
    print(f"| the image's 4×4-pixel colours, upsampled (no marks) | {metrics.psnr(coarse, x).mean():.2f} |")
    print(f"| the image repainted in its own style with other random marks | {metrics.psnr(own, x).mean():.2f} |")

    # both at once: the renderer's own marks turned down by a gain, over its coarse colours
    again = rows["truth resampled (other random marks)"]
    again_coarse, own_marks = up(again), own - up(own)
    print("\n| marks' gain | restyle_acc (truth resampled) | identity_psnr (own style resampled) |\n|---|---|---|")
    for gain in (1.0, 0.7, 0.5, 0.4):
        restyled = (again_coarse + gain * (again - again_coarse)).clamp(0, 1)
        identity = (coarse + gain * own_marks).clamp(0, 1)
        with torch.no_grad():
            acc = (judge(restyled).argmax(1) == t).float().mean()
        print(f"| {gain} | {acc:.3f} | {metrics.psnr(identity, x).mean():.2f} |", flush=True)

    texture_measures(test, x, truth, targets)
    pop_art(test, n)
    if args.paired:
        paired_smooth(train, x, truth, targets, stages=args.stages)


def pop_art(test, n: int) -> None:
    """restyle_psnr_gt and the structure score (zoo/evidence.py) of restyles into Pop_Art painted
    from the scene (no model, no input marks), and from regions a segmenter finds in the input."""
    rows: dict[str, list[tuple[float, float]]] = {}
    for i in range(n):
        scene = test.recipe.scene(int(test.rows[i]))
        truth = test.render(i, "Pop_Art")[None]
        regions, base = scene.regions, scene.base
        every = outline_mask(regions[1:] != regions[:-1], regions[:, 1:] != regions[:, :-1], scene.unit)
        # only where the colour visibly changes: a shape coloured like its surroundings shows no edge
        seen = outline_mask(np.abs(base[1:] - base[:-1]).sum(-1) > 0.1,
                            np.abs(base[:, 1:] - base[:, :-1]).sum(-1) > 0.1, scene.unit)
        x = test[i][0]
        images = {"the input": x,
                  "the truth painted again (other marks, another wobble of the lines)": test.render(i, "Pop_Art", texture=1),
                  "the scene, no outlines": base,
                  "the scene + outlines where its colour changes": np.where(seen[..., None], 0.08, base),
                  "the scene + outlines round every region": np.where(every[..., None], 0.08, base)}
        # what a 4-pixel code keeps of the regions: each square's share of every region, upsampled
        held = F.interpolate(F.avg_pool2d(F.one_hot(torch.from_numpy(regions)).permute(2, 0, 1).float()[None], 4),
                             scale_factor=4, mode="bilinear", align_corners=False)[0].argmax(0).numpy()
        coarse = outline_mask(held[1:] != held[:-1], held[:, 1:] != held[:, :-1], scene.unit)
        images["the scene's regions as a 4-pixel code holds them, + outlines round them"] = np.where(
            coarse[..., None], 0.08, scene.colours[held])
        crisp = sharpened(F.interpolate(F.avg_pool2d(x[None], 4), scale_factor=4, mode="bilinear",
                                        align_corners=False))[0].permute(1, 2, 0).numpy()
        steps = [np.abs(np.diff(crisp, axis=axis)).sum(-1) > 0.4 for axis in (0, 1)]
        images["the input's 4×4-pixel colours, sharpened, + outlines where they change"] = np.where(
            outline_mask(*steps, scene.unit)[..., None], 0.08, crisp)
        for sigma, cells in ((1.5, 1), (0, 4)):
            found, colours = segmented(x, cells=cells, sigma=sigma)
            edge = outline_mask(found[1:] != found[:-1], found[:, 1:] != found[:, :-1], scene.unit)
            where = f"its {cells}×{cells}-pixel colours" if cells > 1 else f"its pixels blurred (σ {sigma} px)"
            images[f"the input's 3 main colours, segmented from {where}, + outlines"] = np.where(
                edge[..., None], 0.08, colours[found])
        for name, image in images.items():
            if isinstance(image, np.ndarray):
                image = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).permute(2, 0, 1)
            image = image[None]
            rows.setdefault(name, []).append((float(metrics.psnr(quarter(image), quarter(truth))),
                                              float(evidence.structure(image, truth))))
    print(f"\n| restyle into Pop_Art ({n} test scenes) | restyle_psnr_gt (dB) | structure |\n|---|---|---|")
    for name, scores in rows.items():
        psnr, struct = np.mean(scores, 0)
        print(f"| {name} | {psnr:.2f} | {struct:.3f} |")


def texture_measures(test, x: torch.Tensor, truth: torch.Tensor, targets: np.ndarray) -> None:
    """Does a texture measure tell a style's marks from another's? The texture ratio of the truth
    painted again (low is right), of the scene painted in a third style, and of the truth
    blurred (no marks; both high is right), by zoo.evidence.TextureProbe and by whole Gram
    matrices of the same layers (unit norm per layer), the statistic it replaced."""
    probe = evidence.TextureProbe()

    def gram(image: torch.Tensor) -> torch.Tensor:
        h, maps = high_pass(image.float()), []
        for layer in probe.layers:
            h = layer(h)
            maps.append(h)
        return gram_vector(maps)

    n, classes = len(x), test.classes
    pick = np.random.default_rng(SEED + 2)
    third = np.array([pick.choice([c for c in range(len(classes)) if c not in (t, own)])
                      for t, own in zip(targets, labels_of(test))])
    rows = {"the truth painted again (other marks)": render_all(test, range(n), targets, texture=1),
            "the scene painted in a third style": render_all(test, range(n), third),
            "the truth blurred (σ 2 px)": blur(truth, 2)}
    print(f"\n| texture ratio ({n} test restyles) | statistic | all | "
          + " | ".join(classes) + " |\n" + "|---" * (len(classes) + 3) + "|")
    for statistic, vectors in (("per-channel loudness (the probe)", probe), ("whole Gram matrices", gram)):
        truth_vectors = vectors(truth)
        base = (vectors(x) - truth_vectors).norm(dim=1)
        for name, image in rows.items():
            d = (vectors(image) - truth_vectors).norm(dim=1)
            per = [(d[targets == c].sum() / base[targets == c].sum()).item() for c in range(len(classes))]
            print(f"| {name} | {statistic} | {(d.sum() / base.sum()).item():.2f} | "
                  + " | ".join(f"{r:.2f}" for r in per) + " |")


def segmented(x: torch.Tensor, *, cells: int, sigma: float, k: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """H×W region labels and k×3 colours: k-means of ``x``'s colours (over ``cells``-pixel
    squares, or its pixels blurred by ``sigma``), one-hot maps upsampled bilinearly to full size."""
    from sklearn.cluster import KMeans

    small = F.avg_pool2d(x[None], cells) if cells > 1 else (blur(x[None], sigma) if sigma else x[None])
    means = KMeans(k, n_init=4, random_state=SEED).fit(small[0].flatten(1).T.numpy())
    labels = torch.from_numpy(means.labels_.astype(np.int64)).view(small.shape[-2:])
    onehot = F.one_hot(labels, k).permute(2, 0, 1).float()[None]
    full = F.interpolate(onehot, size=x.shape[-2:], mode="bilinear", align_corners=False)[0].argmax(0)
    return full.numpy(), means.cluster_centers_.astype(np.float32)


def paired_smooth(train, inputs: torch.Tensor, truth: torch.Tensor, targets: np.ndarray, *, scenes: int = 1000,
                  steps: int = 3000, stages: int = 2) -> dict[str, list[float]]:
    """restyle_psnr_gt per target style (then all) of ``inputs`` restyled into ``targets`` (ground
    truth ``truth``): left unchanged, and painted by cond_ae's smooth path trained on ground-truth
    pairs (``scenes`` training scenes rendered in every style, ``steps`` steps of 32 on the
    quarter-size MSE, the loss the restyle task trains its identity with)."""
    classes = train.classes
    torch.manual_seed(SEED)
    net = registry.model("cond_ae", num_classes=len(classes), in_chans=3, image_size=inputs.shape[-1], stages=stages)
    x = torch.stack([train[i][0] for i in range(scenes)])
    answers = torch.stack([quarter(render_all(train, range(scenes), np.full(scenes, s))) for s in range(len(classes))], 1)
    # cond_ae's optimizer settings in the runner (without its warm-up and decay of the rate)
    step = Step("smooth path", list(net.parameters()),
                torch.optim.AdamW(net.parameters(), lr=1e-3, betas=(0.5, 0.999), weight_decay=1e-4))
    for _ in range(steps):
        i, s = torch.randint(0, scenes, (32,)), torch.randint(0, len(classes), (32,))
        step(F.mse_loss(quarter(net.smooth(net.encode(x[i]), s)), answers[i, s]))

    t = torch.as_tensor(targets)
    with torch.no_grad():
        restyled = net.smooth(net.encode(inputs), t).clamp(0, 1)
    goal = quarter(truth)
    rows = {}
    print(f"\n| restyle ({len(inputs)} test images) | restyle_psnr_gt (dB) | per target style |\n|---|---|---|")
    for name, image in (("input", inputs),
                        (f"cond_ae's smooth path (stages={stages}) trained on ground-truth pairs ({scenes} scenes, "
                         f"{steps} steps)", restyled)):
        psnr = metrics.psnr(quarter(image), goal)
        rows[name] = [float(psnr[t == c].mean()) for c in range(len(classes))] + [float(psnr.mean())]
        print(f"| {name} | {rows[name][-1]:.2f} | " + " ".join(f"{v:.2f}" for v in rows[name][:-1]) + " |", flush=True)
    return rows


if __name__ == "__main__":
    main()
