"""A restyle run's scores per target style, from the restyle/test.npz it saved; or the mean ± std of
several runs' own per-style tables (tables/restyle_per_style.csv: each judge of the panel).

    python bench/restyle_per_style.py artzoo_runs/<run_id>        # a run folder, or the npz itself
    python bench/restyle_per_style.py --table artzoo_runs/<id0> artzoo_runs/<id1> artzoo_runs/<id2>

For a run on synthart (the default dataset; give ``--size``/``--image-size`` where the run changed
them), prints per target style: how often the task's cnn judge calls the restyle that style,
what it is called instead most often, and restyle_psnr_gt of the restyle beside that of the
unchanged input and of the ground truth painted again with other random marks (the ceiling for
crisp marks). It shows which styles a model has not learned and where the PSNR is lost.

Where the run folder holds its checkpoint, two more columns show what the jointly trained style
critic (the decoder's teacher) made of each style at the end: its mean per-patch probability of
the style on real test images of it, and on the restyles into it. Where real images score high
and restyles low, the critic still tells the two apart; where both are low, the critic has come to
hedge on that style (its last state, not a record of what it taught along the way).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

import registry
from runners import checkpoint
from zoo import metrics
from zoo.judge import train_judge
from zoo.tasks.restyle import JUDGE_STEPS, StyleCritic, quarter, render_all
from zoo.task import labels_of


def _npz(path: Path) -> Path:
    if path.is_dir():
        found = sorted(path.glob("**/restyle/test.npz"))
        if not found:
            raise SystemExit(f"{path} holds no restyle/test.npz: give a restyle run's folder (artzoo_runs/<run_id>)")
        return found[0]
    if not path.is_file():
        raise SystemExit(f"{path} does not exist: give a restyle run's folder or its restyle/test.npz")
    return path


def _critic(npz: Path, num_styles: int, in_chans: int) -> StyleCritic | None:
    """The style critic in the checkpoint of the run folder holding ``npz`` (<run>/outputs/restyle/test.npz)."""
    path = npz.resolve().parents[2] / "checkpoints" / "last.pt"
    state = checkpoint.load(path).get("task", {}).get("critic") if path.is_file() else None
    if state is None:
        return None
    critic = StyleCritic(in_chans, num_styles)
    try:
        critic.load_state_dict(state)
    except RuntimeError as exc:  # a run of another version of the critic
        print(f"{path}: its critic does not fit this version's StyleCritic, so no critic columns "
              f"({str(exc).split(':', 1)[-1].strip().splitlines()[0]})")
        return None
    return critic.eval()


def _style_probability(critic: StyleCritic, images: torch.Tensor, style: int) -> str:
    """The critic's probability of ``style``, averaged over patches and images ("" for no images)."""
    if not len(images):
        return ""
    with torch.no_grad():
        probs = torch.cat([critic(part).softmax(1)[:, style].flatten(1).mean(1) for part in images.split(256)])
    return f"{probs.mean():.2f}"


def seed_table(runs: list[Path]) -> str:
    """The runs' tables/restyle_per_style.csv, each cell the mean ± std over the runs, with a last
    row of the column means over styles (for ``panel``: restyle_acc_panel)."""
    import pandas as pd

    frames = []
    for run in runs:
        found = sorted(run.glob("**/tables/restyle_per_style.csv")) if run.is_dir() else [run]
        if not found or not found[0].is_file():
            raise SystemExit(f"{run} holds no tables/restyle_per_style.csv: give the folders of finished restyle runs")
        frames.append(pd.read_csv(found[0], index_col="style"))
    columns = [c for c in frames[0].columns if c != "restyles"]
    stacked = np.stack([f.loc[frames[0].index, columns].to_numpy(float) for f in frames])
    stacked = np.concatenate([stacked, stacked.mean(1, keepdims=True)], 1)  # the mean over styles
    names = [*frames[0].index, "mean over styles"]
    lines = ["| target style | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for i, name in enumerate(names):
        cells = [f"{m:.2f} ± {sd:.2f}" for m, sd in zip(stacked[:, i].mean(0), stacked[:, i].std(0))]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _images(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(array).permute(0, 3, 1, 2).float() / 255


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, nargs="+", help="a restyle run's folder or its restyle/test.npz; "
                                                            "with --table, several runs' folders")
    parser.add_argument("--table", action="store_true", help="the mean ± std of the runs' own per-style tables")
    parser.add_argument("--size", type=int, default=4000, help="synthart training size of the run")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--judge-steps", type=int, default=JUDGE_STEPS, help="the run's train.judge_steps")
    args = parser.parse_args(argv)
    if args.table:
        print(f"{len(args.run)} runs, mean ± std\n\n{seed_table(args.run)}")
        return
    if len(args.run) > 1:
        parser.error("give one run, or several with --table")
    path = _npz(args.run[0])
    saved = np.load(path)
    if "ground_truth" not in saved:
        raise SystemExit("this run's npz has no ground_truth: only a synthart run can be scored per style")
    options = {"size": args.size, "image_size": args.image_size}
    train, test = (registry.dataset("synthart", split=s, **options) for s in ("train", "test"))
    classes, labels, targets = list(saved["classes"]), saved["labels"], saved["targets"]
    # the pictures are of a sample of the test split (zoo.tasks.restyle.SAVED_MB); older runs kept all
    positions = saved["index"] if "index" in saved else np.arange(len(labels))
    if len(labels) != len(test) or classes != list(test.classes) or not np.array_equal(labels, labels_of(test)):
        raise SystemExit("the npz's classes or labels differ from synthart's test split with these options: "
                         "give the run's --size and --image-size")
    judge = train_judge(train, len(classes), torch.device("cpu"), steps=args.judge_steps)

    restyled, truth, inputs = (_images(saved[k]) for k in ("restyled", "ground_truth", "images"))
    with torch.no_grad():
        called = torch.cat([judge(part).argmax(1) for part in restyled.split(256)]).numpy()
    labels, targets = labels[positions], targets[positions]
    again = render_all(test, positions, targets, texture=1)
    psnr = {name: metrics.psnr(quarter(image), quarter(truth)).numpy()
            for name, image in (("restyle", restyled), ("input", inputs), ("resample", again))}

    critic = _critic(path, len(classes), inputs.shape[1])
    header = ["target style", "n", "restyle_acc", "mostly called",
              "psnr_gt restyle", "psnr_gt input", "psnr_gt resample"]
    if critic:
        header += ["critic: style on real", "critic: style on restyles"]

    print(f"{path}: {len(targets)} restyles\n")
    print("| " + " | ".join(header) + " |\n" + "|---" * len(header) + "|")
    rows = [(name, targets == c, c) for c, name in enumerate(classes)] + [("all", np.ones(len(targets), bool), None)]
    for name, m, style in rows:
        if not m.any():
            continue
        top = classes[np.bincount(called[m], minlength=len(classes)).argmax()]
        cells = [name, str(m.sum()), f"{np.mean(called[m] == targets[m]):.2f}", top]
        cells += [f"{psnr[k][m].mean():.2f}" for k in psnr]
        if critic:
            cells += (["", ""] if style is None else
                      [_style_probability(critic, inputs[labels == style], style),
                       _style_probability(critic, restyled[m], style)])
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
