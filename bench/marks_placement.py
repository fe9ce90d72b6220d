"""Would better placed copied marks put a trained cond_ae's Pop_Art outlines on the scene's edges?

    python bench/marks_placement.py artzoo_runs/<run_id>              # the validation split
    python bench/marks_placement.py artzoo_runs/<run_id> --split test

No model is trained. The run's network restyles every image of the split whose seeded target
style is ``--style`` (Pop_Art), and each row scores a way of painting its marks by the structure
score (zoo/evidence.py: the correlation of its edges with the ground truth's), the unseen panel
(the lowest of the judges trained on paintings of another seed, as the task trains them) and
``restyle_psnr_gt``. Two rows are oracles that look at the ground truth, bounds on what a better
placement could reach and not recipes: per 16-pixel tile, the best of 49 shifts (up to 3 px each
way) of the marks as painted, and the best of the 16 kept tiles nearest in the match's key. The
"how far" column is where the structure stands between the input's (0) and the truth painted
again with other marks (1).

Two rows paint no copied mark: a small network (:func:`median_marks`) fitted by L1 to the
style's training paintings, from each painting's own smooth image (its colours over the code's
squares, upsampled as the smooth path does) to its marks, paints the median marks given a
layout: outlines where the smooth image has its boundaries, whatever tile they fall in. It paints
them at its own loudness and 1.5 times it (a median is quieter than any one painting's marks).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import registry
from marks_gain import load_run
from zoo import evidence, metrics
from zoo.fit import Step
from zoo.models.cond_ae import keep_layout, split_tiles
from zoo.task import labels_of
from zoo.tasks.restyle import quarter, render_all, restyle_targets


def tile_correlation(image: torch.Tensor, truth_edges: torch.Tensor, tile: int) -> torch.Tensor:
    """B×L: per tile, the correlation of ``image``'s edges with the truth's."""
    a = F.unfold(evidence.edges(image.clamp(0, 1)).view(len(image), 1, *image.shape[-2:]), tile, stride=tile)
    b = F.unfold(truth_edges, tile, stride=tile)
    a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1)).clamp_min(1e-8)


def best_tiles(candidates: list[torch.Tensor], truth_edges: torch.Tensor, tile: int) -> torch.Tensor:
    """Per tile, the candidate image whose edges there correlate best with the truth's."""
    scores = torch.stack([tile_correlation(c, truth_edges, tile) for c in candidates])  # S×B×L
    pieces = torch.stack([F.unfold(c, tile, stride=tile) for c in candidates])  # S×B×D×L
    pick = scores.argmax(0)[None, :, None, :].expand(1, -1, pieces.shape[2], -1)
    return F.fold(torch.gather(pieces, 0, pick)[0], candidates[0].shape[-2:], tile, stride=tile)


def median_marks(paintings: torch.Tensor, scale: int, upsample: str, *, steps: int, width: int = 48,
                 batch: int = 16) -> nn.Module:
    """A network from a smooth image (B×C×H×W) to the median of the marks painted over it: fitted by
    L1 (``steps`` of Adam, mirrored at random; seeded) to ``paintings``, each painting's marks from
    its own colours averaged over ``scale``-pixel squares and upsampled. Dilations 1, 2, 4, 1: a
    17-pixel field, wider than a square, so that a boundary is found where the colours change."""
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    marks = split_tiles(paintings, scale, upsample)[1]
    smooth = paintings - marks
    layers, chans = [], paintings.shape[1]
    for dilation in (1, 2, 4, 1):
        layers += [nn.Conv2d(chans, width, 3, padding=dilation, dilation=dilation, padding_mode="replicate"),
                   nn.LeakyReLU(0.2)]
        chans = width
    net = nn.Sequential(*layers, nn.Conv2d(width, paintings.shape[1], 3, padding=1, padding_mode="replicate"))
    step = Step("median marks", list(net.parameters()), torch.optim.Adam(net.parameters(), 2e-3))
    for _ in range(steps):
        pick = torch.randint(len(paintings), (batch,), generator=gen)
        s, m = smooth[pick], marks[pick]
        if torch.rand((), generator=gen) < 0.5:
            s, m = s.flip(3), m.flip(3)
        step((net(s) - m).abs().mean())
    return net.eval()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="a cond_ae run's folder (artzoo_runs/<run_id>), exemplar marks")
    parser.add_argument("--split", default="valid")
    parser.add_argument("--style", default="Pop_Art")
    parser.add_argument("--median-steps", type=int, default=1000,
                        help="steps fitting the median-marks network (about 0.3 s each on 2 cores)")
    args = parser.parse_args(argv)
    task, cfg = load_run(args.run)
    net = task.net
    if getattr(net, "exemplars", None) is None:
        raise SystemExit(f"{args.run} paints learned marks: this bench places copied ones (model.marks=exemplar)")
    train, data = registry.dataset_of(cfg, "train"), registry.dataset_of(cfg, args.split)
    style = task.classes.index(args.style)
    idx = np.flatnonzero(restyle_targets(labels_of(data), len(task.classes)) == style)
    unseen = evidence.unseen_judges(train, [task.judge_model, *task.panel], len(task.classes), torch.device("cpu"),
                                    steps=task.judge_steps)
    x = torch.stack([data[int(i)][0] for i in idx])
    t = torch.full((len(idx),), style)
    truth = render_all(data, idx, t)
    truth_edges = evidence.edges(truth).view(len(idx), 1, *truth.shape[-2:])
    tile = net.exemplars.tile
    own = [int(i) for i in np.flatnonzero(labels_of(train) == style)]
    regress = median_marks(torch.stack([train[i][0] for i in own]), net.scale, net.upsample, steps=args.median_steps)
    with torch.no_grad():
        smooth = net.smooth(net.encode(x), t)
        marks = net.texture(smooth, t)
        regressed = keep_layout(regress(smooth), net.scale)
        weights = F.one_hot(t, len(task.classes)).to(smooth.dtype)
        rows = {
            "the input": x,
            "the smooth image alone (no marks)": smooth,
            "the restyle as trained (the nearest tile's marks)": smooth + marks,
            "oracle: per tile, the best of 49 shifts of those marks": best_tiles(
                [smooth + torch.roll(marks, (dy, dx), (2, 3)) for dy in range(-3, 4) for dx in range(-3, 4)],
                truth_edges, tile),
            "oracle: per tile, the best of the 16 nearest kept tiles": best_tiles(
                [smooth + net.exemplars(smooth, weights, rank=k) for k in range(16)], truth_edges, tile),
            **{f"the median marks given the smooth image (fitted to {len(own)} training paintings), ×{gain:g}":
               smooth + gain * regressed for gain in (1, 1.5)},
            "the truth painted again (other marks)": render_all(data, idx, t, texture=1),
        }
        scores = {}
        for name, image in rows.items():
            image = image.float().clamp(0, 1)
            panel = min(float((judge(image).argmax(1) == t).float().mean()) for judge in unseen.values()) if unseen else np.nan
            scores[name] = (float(evidence.structure(image, truth).mean()), panel,
                            float(metrics.psnr(quarter(image), quarter(truth)).mean()))
    low, high = scores["the input"][0], scores["the truth painted again (other marks)"][0]
    print(f"{len(idx)} {args.split} images restyled into {args.style}; run {args.run.name}\n")
    print("| marks | structure | how far | unseen panel | restyle_psnr_gt (dB) |\n|---|---|---|---|---|")
    for name, (struct, panel, psnr) in scores.items():
        print(f"| {name} | {struct:.3f} | {(struct - low) / (high - low):.2f} | {panel:.2f} | {psnr:.2f} |")


if __name__ == "__main__":
    main()
