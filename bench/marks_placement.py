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
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import registry
from marks_gain import load_run
from zoo import evidence, metrics
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="a cond_ae run's folder (artzoo_runs/<run_id>), exemplar marks")
    parser.add_argument("--split", default="valid")
    parser.add_argument("--style", default="Pop_Art")
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
    with torch.no_grad():
        smooth = net.smooth(net.encode(x), t)
        marks = net.texture(smooth, t)
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
