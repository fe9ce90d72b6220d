"""What cond_ae's dictionary marks keep of its exemplar marks, recipe by recipe.

    python bench/dictionary_atoms.py artzoo_runs/<run_id>                # an exemplar run; the validation split
    python bench/dictionary_atoms.py artzoo_runs/<run_id> --split test

No model is trained. The run's network (``model.marks=exemplar``: its kept tiles as trained)
restyles every image of the split into its seeded other style. Each row replaces the kept tiles
by the atoms of one recipe of ``distil_tiles`` (zoo/models/cond_ae.py: atoms asked per style, the
fewest tiles an atom averages, the shift allowed to align them, the sharpening power, the steps
of texture synthesis from that mean, the weight of the marks' loudness in the clustering, the
share of the members' energy their aligned mean must keep for their median to be kept in place,
whether a flat tile is an atom of a style with flat tiles, as ``DictionaryMarks`` makes it) and scores
the restyles: the unseen panel (per target style the lower accuracy of the judges trained on
paintings of another seed, averaged over styles), its worst style, the texture ratio and
``restyle_psnr_gt`` (zoo/evidence.py), the copy rate of a seeded sample of 200 restyles, and the
share of atoms (with marks) whose marks are as near a kept tile's as the copy rate calls a copy
(cosine ≥ 0.9): a generic pattern many paintings share (a straight outline, a row of tesserae)
lands there too. The first row paints the kept tiles themselves; the default recipe is
``model.marks=dictionary``'s.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import registry
from marks_gain import load_run
from throughput import cpu_model
from zoo import evidence, metrics
from zoo.models.cond_ae import (ALIGN, LOUDNESS_WEIGHT, MIN_MEMBERS, PLACED, SHARPEN, SYNTH_STEPS, DictionaryMarks,
                                distil_kept, holds_flat, split_tiles)
from zoo.task import labels_of, to_uint8
from zoo.tasks.restyle import per_style, quarter, render_all, restyle_targets

# (atoms asked per style, fewest distinct tiles per atom, alignment in px, sharpening power, synthesis
# steps, weight of the loudness in the clustering, share of the members' energy their aligned mean
# keeps from which their median is kept in place, flat tiles as atoms)
RECIPES = [(512, 1, 0, 1.0, 0, 0.0, 0.0, False), (512, 4, 0, 1.0, 0, 0.0, 0.0, False), (512, 4, 2, 1.5, 0, 0.0, 0.0, False),
           (512, 8, 2, 1.5, 0, 0.0, 0.0, False), (512, 8, 2, 1.5, SYNTH_STEPS, 0.0, 0.0, False),
           (512, 8, 2, 1.5, SYNTH_STEPS, 1.0, 0.0, False), (512, 8, 2, 1.5, SYNTH_STEPS, 1.0, 0.25, False),
           (512, 8, 2, 1.5, SYNTH_STEPS, 1.0, 0.25, True)]
DEFAULT = (512, MIN_MEMBERS, ALIGN, SHARPEN, SYNTH_STEPS, LOUDNESS_WEIGHT, PLACED, True)
COPY_SAMPLE = 200


def loud_marks(bank, tiles: torch.Tensor) -> torch.Tensor:
    """uint8 N×C·t² tiles -> the marks of those that carry marks (as the copy rate counts them),
    as the bank paints them, unit length."""
    marks = split_tiles(bank.unpack(tiles), bank.scale, bank.upsample)[1].flatten(1)
    return F.normalize(marks[marks.square().mean(1).sqrt() > evidence.MARKS_RMS], dim=1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="a cond_ae run's folder (artzoo_runs/<run_id>), exemplar marks")
    parser.add_argument("--split", default="valid")
    args = parser.parse_args(argv)
    task, cfg = load_run(args.run)
    net, bank = task.net, getattr(task.net, "exemplars", None)
    if bank is None or getattr(bank, "distilled", False):
        raise SystemExit(f"{args.run} keeps no training tiles to distil: give a run of model.marks=exemplar")
    train, data = registry.dataset_of(cfg, "train"), registry.dataset_of(cfg, args.split)
    classes = task.classes
    targets = restyle_targets(labels_of(data), len(classes))
    unseen = evidence.unseen_judges(train, [task.judge_model, *task.panel], len(classes), torch.device("cpu"),
                                    steps=task.judge_steps)
    x = torch.stack([data[i][0] for i in range(len(data))])
    t = torch.as_tensor(targets)
    truth = render_all(data, np.arange(len(data)), t)
    probe = evidence.TextureProbe(x.shape[1])
    unchanged = probe.distance(x, truth).mean()  # the texture ratio's denominator: the input's distance
    sample = np.sort(np.random.default_rng(0).choice(len(x), min(COPY_SAMPLE, len(x)), replace=False))
    kept = {s: bank.tiles[s, : int(bank.kept[s])].clone() for s in range(len(classes))}
    kept_marks = {s: loud_marks(bank, tiles) for s, tiles in kept.items()}
    with torch.no_grad():
        smooth = net.smooth(net.encode(x), t)
    # the recipes' atoms are matched as a distilled dictionary matches them
    dictionary = DictionaryMarks(len(classes), bank.in_chans, bank.scale, bank.tile, bank.tiles.shape[1],
                                 layout=bank.layout, upsample=bank.upsample, atoms=0)
    dictionary.distilled.fill_(True)

    def score(name: str, atoms: dict[int, torch.Tensor], flat: dict[int, bool] | None = None) -> str:
        net.exemplars = bank if flat is None else dictionary
        for s, tiles in atoms.items():
            net.exemplars.tiles[s, : len(tiles)] = tiles
            net.exemplars.kept[s] = len(tiles)
            if flat is not None:
                dictionary.flat[s] = flat[s]
        with torch.no_grad():
            restyled = (smooth + net.texture(smooth, t)).clamp(0, 1)
        hits = {f"hit_unseen/{n}": (j(restyled).argmax(1) == t).float().numpy() for n, j in unseen.items()}
        rows = per_style(classes, targets, {**hits, **{k.replace("_unseen", ""): v for k, v in hits.items()}},
                         list(unseen), list(unseen))
        worst = min(rows, key=lambda r: r["panel_unseen"])
        texture = float(probe.distance(restyled, truth).mean() / unchanged)
        psnr = float(metrics.psnr(quarter(restyled), quarter(truth)).mean())
        copied = np.nanmean(evidence.copy_rates(to_uint8(restyled[sample]), targets[sample], train))
        near, loud = 0, 0
        for s, a in atoms.items():
            ours = loud_marks(bank, a)
            if len(ours) and len(kept_marks[s]):
                near += int(((ours @ kept_marks[s].T).max(1).values >= evidence.COPY_COSINE).sum())
            loud += len(ours)
        count = np.mean([len(a) for a in atoms.values()])
        return (f"| {name} | {count:.0f} | {np.mean([r['panel_unseen'] for r in rows]):.3f} | "
                f"{worst['style']} {worst['panel_unseen']:.2f} | {texture:.3f} | {psnr:.2f} | {copied:.3f} | "
                f"{near / max(loud, 1):.3f} |")

    print(f"run {args.run.name}, {len(x)} {args.split} images; {cpu_model()}; {time.strftime('%Y-%m-%d')}\n")
    print("| recipe | atoms per style | unseen panel | worst style | texture ratio | restyle_psnr_gt | copy rate "
          "| atoms near a kept tile |\n|---|---|---|---|---|---|---|---|")
    print(score("the kept tiles (exemplar marks)", kept), flush=True)
    for recipe in RECIPES:
        atoms_asked, members, align, sharpen, steps, loudness, placed, flat = recipe
        atoms = {s: distil_kept(bank, tiles, atoms_asked, members=members, align=align, sharpen=sharpen,
                                synthesise=steps, loudness=loudness, placed=placed) for s, tiles in kept.items()}
        name = (f"{atoms_asked} asked, ≥ {members} tiles each, aligned ±{align} px, sharpened ^{sharpen:g}, "
                + (f"synthesised {steps} steps" if steps else "not synthesised")
                + (f", clustered on loudness ×{loudness:g} too" if loudness else "")
                + (f", the median kept in place where the mean keeps ≥ {placed:g} of the energy" if placed else "")
                + (", a flat tile an atom where the style has flat tiles" if flat else "")
                + (" (the default)" if recipe == DEFAULT else ""))
        print(score(name, atoms, {s: flat and holds_flat(bank, tiles) for s, tiles in kept.items()}), flush=True)


if __name__ == "__main__":
    main()
