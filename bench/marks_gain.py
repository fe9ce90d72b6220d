"""What a trained cond_ae's copied marks cost in identity_psnr, and what turning them down costs the judges.

    python bench/marks_gain.py artzoo_runs/<run_id>                      # gains 1, 0.9, 0.85, 0.8, 0.7
    python bench/marks_gain.py artzoo_runs/<run_id> --gains 1 0.5 0
    python bench/marks_gain.py artzoo_runs/<run_id> --by-style   # and per style: what one style's gain buys

No model is trained. The run's network (its checkpoint, the weights' moving average) repaints
every test image of the default synthart in its own style (``identity_psnr``) and in the restyle
task's seeded other styles, with its marks multiplied by each gain; the restyles are scored by
the run's panel of judges (cached, as the task trains them). Since the marks have no mean over
the code's squares, ``restyle_psnr_gt`` (at a quarter of the side) does not depend on the gain
and is left out. Per row: identity_psnr, each judge's restyle_acc, restyle_acc_panel (per
target style the lowest judge's accuracy, averaged) and that per-style panel, in the order of
the dataset's classes. Gain 1 is the model as trained.

With ``--by-style``, a second table gives, per style and gain, the identity_psnr of that style's
test images and the panel's accuracy on the restyles into it. Both depend on that style's gain
alone, so the table prices every choice of one gain per style: the identity_psnr of such a
choice is the mean of its per-style figures weighted by the style's test images (the ``n``
column).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

import registry
from runners import checkpoint, inference
from zoo import metrics
from zoo.tasks.restyle import per_style, restyle_targets
from zoo.task import labels_of


def load_run(folder: Path):
    """``(task, cfg)`` of a cond_ae run's folder: its config.json and its last checkpoint's
    inference weights (the moving average), on the CPU."""
    configs = sorted(folder.glob("**/config.json"))
    if not configs or not (folder / "checkpoints" / "last.pt").is_file():
        raise SystemExit(f"{folder} holds no config.json and checkpoints/last.pt: give a cond_ae run's folder")
    cfg = json.loads(configs[0].read_text())
    return inference.build(cfg, inference.inference_state(checkpoint.load(folder / "checkpoints" / "last.pt"))), cfg


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="a cond_ae run's folder (artzoo_runs/<run_id>)")
    parser.add_argument("--gains", type=float, nargs="+", default=[1.0, 0.9, 0.85, 0.8, 0.7])
    parser.add_argument("--by-style", action="store_true", help="also a table per style: its identity_psnr and panel at each gain")
    args = parser.parse_args(argv)
    task, cfg = load_run(args.run)
    net = task.net
    train, test = registry.dataset_of(cfg, "train"), registry.dataset_of(cfg, "test")
    judges = task.judges(train, torch.device("cpu"))  # the run's panel, from the cache where it trained them

    x = torch.stack([test[i][0] for i in range(len(test))])
    labels = labels_of(test)
    targets = restyle_targets(labels, len(task.classes))
    y, t = torch.as_tensor(labels), torch.as_tensor(targets)
    with torch.no_grad():
        code = net.encode(x)
        own, other = net.smooth(code, y), net.smooth(code, t)
        own_marks, other_marks = net.texture(own, y), net.texture(other, t)
    print(f"{args.run}: {len(test)} test images; per-style panel in the order {', '.join(task.classes)}")
    print("| gain | identity_psnr | " + " | ".join(f"acc {n}" for n in judges) + " | panel | per-style panel |")
    print("|---" * (len(judges) + 4) + "|")
    by_style = []  # per gain: per-image identity_psnr, and the per-style panel
    for gain in args.gains:
        with torch.no_grad():
            identity = metrics.psnr((own + gain * own_marks).clamp(0, 1), x).numpy()
            restyled = (other + gain * other_marks).clamp(0, 1)
            hits = {f"hit/{n}": (j(restyled).argmax(1) == t).float().numpy() for n, j in judges.items()}
        rows = per_style(task.classes, targets, hits, list(judges))
        panel = [row["panel"] for row in rows]
        by_style.append((identity, {row["style"]: row["panel"] for row in rows}))
        print(f"| {gain:g} | {identity.mean():.2f} | " + " | ".join(f"{h.mean():.3f}" for h in hits.values())
              + f" | {np.mean(panel):.3f} | {' '.join(f'{p:.2f}' for p in panel)} |")
    if args.by_style:
        print("\nPer style, at each gain: identity_psnr of its test images / panel on the restyles into it")
        print("| style | n | " + " | ".join(f"gain {g:g}" for g in args.gains) + " |")
        print("|---" * (len(args.gains) + 2) + "|")
        for s, name in enumerate(task.classes):
            mine = labels == s
            cells = [(f"{psnrs[mine].mean():.2f}" if mine.any() else "-") + " / "
                     + (f"{panels[name]:.2f}" if name in panels else "-") for psnrs, panels in by_style]
            print(f"| {name} | {int(mine.sum())} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
