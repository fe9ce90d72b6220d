"""The benchmarks' CPU-runnable parts: bench/gpu.sh's arguments and its tiny CPU run (a real run
of bench/throughput.py's whole code path, no mocks), and bench/embedding_speed.py."""

from __future__ import annotations

import csv
import importlib
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch

from conftest import REPO
from zoo.schema import Artifact

GPU_SH = REPO / "bench" / "gpu.sh"


def gpu_sh(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable}
    return subprocess.run(["bash", str(GPU_SH), *args], capture_output=True, text=True, timeout=timeout, env=env)


def bench_script(name: str):
    """bench/<name>.py as a module, imported as the script sees its imports: its folder first on the path."""
    sys.path.insert(0, str(REPO / "bench"))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(REPO / "bench"))


def table(text: str, first: str = "entry") -> list[dict[str, str]]:
    """The rows of the last Markdown table in ``text`` whose first column is ``first``, as dicts
    keyed by its header."""
    lines = text.splitlines()
    start = max(i for i, line in enumerate(lines) if line.startswith(f"| {first} |"))
    header = [c.strip() for c in lines[start].strip("|").split("|")]
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append(dict(zip(header, (c.strip() for c in line.strip("|").split("|")))))
    return rows


@pytest.mark.slow
def test_gpu_sh_tiny_cpu_run_prints_the_whole_table(tmp_path):
    out = gpu_sh("--device", "cpu", "--tiny", "--out", str(tmp_path / "bench"))
    assert out.returncode == 0, out.stderr
    rows = table(out.stdout)
    # every entry at both (stand-in) sizes in both modes, in a fixed order: size, entry, mode
    assert [(r["entry"], r["px"], r["mode"]) for r in rows] == [
        (e, px, m) for px in ("16", "24") for e in ("cnn", "ae", "cond_ae") for m in ("fp32", "bf16")]
    for r in rows:
        a, b, c = (float(r[k]) for k in ("(a) artzoo img/s", "(b) ceiling img/s", "(c) naive img/s"))
        assert a > 0 and b > 0 and c > 0
        for ratio, (x, y) in ((r["a/b"], (a, b)), (r["a/c"], (a, c))):  # of the unrounded rates
            assert (x - 0.5) / (y + 0.5) - 0.005 <= float(ratio) <= (x + 0.5) / (y - 0.5) + 0.005
        assert float(r["cache build img/s"]) > 0 and float(r["input alone (a) img/s"]) > 0
    assert "24 images per epoch" in out.stdout
    # the JPEG folder it rendered, in the layout the folder dataset reads
    assert len(list((tmp_path / "bench" / "jpeg64" / "train").glob("*/*.jpg"))) == 24
    assert (tmp_path / "bench" / "jpeg64" / "test").is_dir()


def test_gpu_sh_dry_run_prints_the_gpu_grid():
    out = gpu_sh("--dry-run")
    assert out.returncode == 0, out.stderr
    cmd = out.stdout
    assert "bench/throughput.py" in cmd and "cnn\\,ae\\,cond_ae" in cmd and "data.image_size=128\\,416" in cmd
    assert "fp32\\,bf16\\,bf16+compile" in cmd and "--device cuda" in cmd and "--budget 240" in cmd
    # then the WikiArt-size table on the GPU, bf16 with compile off and on, sharing one painted folder
    scales = cmd.splitlines()[1:]
    assert len(scales) == 2 and all("bench/scale.py --images 15000 --sizes 128\\,224" in c for c in scales)
    assert all("train.device=cuda train.precision=bf16" in c and "--paintings " in c for c in scales)
    assert ["train.compile=true" in c for c in scales] == [False, True]
    out = gpu_sh("--dry-run", "--seconds", "3", "--budget", "0", "--workers", "2", "--no-scale", "--", "--images", "500")
    assert "--seconds 3" in out.stdout and "--budget 0" in out.stdout and "--workers 2" in out.stdout
    assert out.stdout.rstrip().endswith("--images 500") and "scale.py" not in out.stdout


@pytest.mark.parametrize("args, message", [
    (["--device"], "--device needs a value"),
    (["--device", "tpu"], "--device takes cuda, cuda:N or cpu"),
    (["--seconds", "soon"], "--seconds takes a number"),
    (["--workers", "-1"], "--workers takes a whole number"),
    (["--frobnicate"], "unknown argument '--frobnicate'"),
    (["--scale-modes", "fp8"], "--scale-modes takes bf16 and/or bf16+compile"),
])
def test_gpu_sh_refuses_bad_arguments(args, message):
    out = gpu_sh(*args, "--dry-run")
    assert out.returncode == 2 and message in out.stderr and "--help" in out.stderr


def test_gpu_sh_help_lists_its_options():
    out = gpu_sh("--help")
    assert out.returncode == 0 and all(o in out.stdout for o in ("--device", "--tiny", "--budget", "--dry-run"))


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_gpu_sh_without_cuda_says_so_and_how_to_smoke_test():
    out = gpu_sh()
    assert out.returncode == 1 and "no CUDA device here" in out.stderr and "--device cpu --tiny" in out.stderr


@pytest.mark.parametrize("argv, message", [
    (["nosuchnet", "--prepare"], "unknown model entry nosuchnet"),
    (["ae", "data.size=3"], "unknown overrides data.size"),
    (["ae", "data.image_size=64,128", "--batch-size", "1,2,3"], "--batch-size gives 3 values for 2 image sizes"),
])
def test_throughput_refuses_unknown_entries_and_overrides(argv, message, capsys):
    throughput = bench_script("throughput")
    with pytest.raises(SystemExit) as exit_:
        throughput.main(argv)
    assert exit_.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.slow
def test_embedding_speed_runs_small(capsys):
    bench_script("embedding_speed").main(["--points", "300", "--styles", "5", "--dim", "128"])
    out = capsys.readouterr().out
    assert "| PCA 128 -> 32 | 300 |" in out and "| finalize, in all |" in out
    assert "embedding_points=300" in out and "umap_fit_points=300" in out


@pytest.mark.slow
def test_restyle_per_style_scores_each_target_style_of_a_saved_run(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ARTZOO_CACHE", str(tmp_path / "cache"))
    restyle_per_style = bench_script("restyle_per_style")
    import numpy as np

    import registry
    from zoo.tasks.restyle import render_all, restyle_targets
    from zoo.task import labels_of, to_uint8

    test = registry.dataset("synthart", split="test", image_size=32, size=100)
    labels = labels_of(test)
    targets = restyle_targets(labels, len(test.classes))
    images = to_uint8(torch.stack([test[i][0] for i in range(len(test))]))
    truth = to_uint8(render_all(test, range(len(test)), targets))
    run = tmp_path / "run" / "outputs" / "restyle"
    run.mkdir(parents=True)

    def scores(restyled: np.ndarray) -> dict[str, dict[str, str]]:
        np.savez(run / "test.npz", images=images, restyled=restyled, labels=labels, targets=targets,
                 ground_truth=truth, classes=np.array(test.classes, dtype=str))
        restyle_per_style.main([str(tmp_path / "run"), "--size", "100", "--image-size", "32", "--judge-steps", "5"])
        lines = capsys.readouterr().out.splitlines()
        start = lines.index(next(line for line in lines if line.startswith("| target style |")))
        header = [c.strip() for c in lines[start].strip("|").split("|")]
        return {r["target style"]: r for r in (dict(zip(header, (c.strip() for c in line.strip("|").split("|"))))
                                               for line in lines[start + 2:] if line.startswith("|"))}

    # a model that leaves every image as it was: its restyle scores what the input scores
    rows = scores(images)
    present = {test.classes[t] for t in targets}
    assert set(rows) == present | {"all"}
    assert sum(int(rows[s]["n"]) for s in present) == int(rows["all"]["n"]) == len(test)
    assert all(r["psnr_gt restyle"] == r["psnr_gt input"] for r in rows.values())
    assert all(r["mostly called"] in test.classes for r in rows.values())
    # a model that paints the ground truth itself beats the input and a resample in every style
    rows = scores(truth)
    assert all(float(r["psnr_gt restyle"]) > max(float(r["psnr_gt input"]), float(r["psnr_gt resample"]))
               for r in rows.values())
    assert "critic: style on real" not in rows["all"], "no checkpoint beside the npz: no critic columns"

    # with the run's checkpoint: its critic's probability of each style, on real images and restyles
    from runners import checkpoint
    from zoo.tasks.restyle import StyleCritic

    sure = int(targets[0])
    critic = StyleCritic(3, len(test.classes))
    torch.nn.init.zeros_(critic.net[-1].weight)
    with torch.no_grad():
        critic.net[-1].bias.copy_(torch.nn.functional.one_hot(torch.tensor(sure), len(test.classes) + 1) * 30.0)
    checkpoint.save(tmp_path / "run" / "checkpoints" / "last.pt", {"task": {"critic": critic.state_dict()}})
    rows = scores(images)
    name = test.classes[sure]
    assert float(rows[name]["critic: style on restyles"]) == 1.0
    if (labels == sure).any():
        assert float(rows[name]["critic: style on real"]) == 1.0
    assert all(float(r["critic: style on restyles"]) == 0.0 for s, r in rows.items() if s not in (name, "all"))
    # a critic of another shape (another version's run) is reported, and the rest still printed
    checkpoint.save(tmp_path / "run" / "checkpoints" / "last.pt",
                    {"task": {"critic": StyleCritic(3, len(test.classes) + 1).state_dict()}})
    rows = scores(images)
    assert "critic: style on real" not in rows["all"] and rows["all"]["n"] == str(len(test))

    with pytest.raises(SystemExit, match="no restyle/test.npz"):
        restyle_per_style.main([str(tmp_path / "cache")])


def test_restyle_per_style_table_gives_the_mean_and_spread_of_several_runs(tmp_path, capsys):
    restyle_per_style = bench_script("restyle_per_style")
    for i, (a, b) in enumerate([(0.5, 1.0), (0.7, 0.0)]):  # two runs' own tables
        folder = tmp_path / f"run{i}" / "outputs" / "tables"
        folder.mkdir(parents=True)
        (folder / "restyle_per_style.csv").write_text(
            f"style,restyles,acc_cnn,acc_timm_net,panel,psnr_gt\nCubism,10,{a},0.9,{min(a, 0.9)},20\n"
            f"Pop_Art,12,{b},1.0,{b},{22 + 2 * i}\n")
    restyle_per_style.main(["--table", str(tmp_path / "run0"), str(tmp_path / "run1")])
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.strip().strip("|").split("|")[1:]]
            for line in capsys.readouterr().out.splitlines() if line.startswith("| ") and "---" not in line}
    assert rows["target style"] == ["acc_cnn", "acc_timm_net", "panel", "psnr_gt"]
    assert rows["Cubism"] == ["0.60 ± 0.10", "0.90 ± 0.00", "0.60 ± 0.10", "20.00 ± 0.00"]
    assert rows["Pop_Art"] == ["0.50 ± 0.50", "1.00 ± 0.00", "0.50 ± 0.50", "23.00 ± 1.00"]
    assert rows["mean over styles"][2] == "0.55 ± 0.20"  # restyle_acc_panel: 0.75 and 0.35
    with pytest.raises(SystemExit, match="no tables/restyle_per_style.csv"):
        restyle_per_style.main(["--table", str(tmp_path / "run0"), str(tmp_path)  + "/none"])


def test_restyle_bounds_pop_art_table_ranks_outlines_as_the_readme_says(capsys):
    restyle_bounds = bench_script("restyle_bounds")
    import registry

    test = registry.dataset("synthart", split="test", image_size=64, size=100)
    restyle_bounds.pop_art(test, 15)
    rows = {line.split("|")[1].strip(): (float(line.split("|")[2]), float(line.split("|")[3]))
            for line in capsys.readouterr().out.splitlines() if line.startswith("| the ")}
    none, seen, every = (rows[f"the scene{s}"][0] for s in (", no outlines", " + outlines where its colour changes",
                                                                " + outlines round every region"))
    # Pop_Art's ground truth is the scene with its outlines: drawing more of them gets closer to it
    assert none + 3 < seen < every
    # a 4-pixel code places the outlines nearly as well; the input's own 4×4 colours, sharpened, beat the input
    structure = {name: scores[1] for name, scores in rows.items()}
    assert structure["the scene's regions as a 4-pixel code holds them, + outlines round them"] > (
        0.9 * structure["the scene + outlines round every region"])
    assert structure["the input's 4×4-pixel colours, sharpened, + outlines where they change"] > (
        structure["the input"] + 0.05)
    # sharpened: a ramp between two flat regions becomes a step at its middle
    ramp = torch.cat([torch.zeros(6), torch.linspace(0, 1, 5), torch.ones(6)]).expand(1, 1, 4, 17)
    crisp = restyle_bounds.sharpened(ramp)[0, 0, 0]
    assert crisp.tolist() == [0.0] * 8 + [0.0 if crisp[8] == 0 else 1.0] + [1.0] * 8


def test_restyle_bounds_texture_table_shows_the_probe_telling_a_styles_marks_from_another_styles(capsys):
    restyle_bounds = bench_script("restyle_bounds")
    import registry

    from zoo.tasks.restyle import render_all, restyle_targets
    from zoo.task import labels_of

    test = registry.dataset("synthart", split="test", image_size=64, size=320)  # 48 test paintings
    targets = restyle_targets(labels_of(test), len(test.classes))[:48]
    x = torch.stack([test[i][0] for i in range(48)])
    restyle_bounds.texture_measures(test, x, render_all(test, range(48), targets), targets)
    rows = {tuple(c.strip() for c in line.split("|")[1:3]): float(line.split("|")[3])
            for line in capsys.readouterr().out.splitlines() if line.startswith("| the ")}
    probe, gram = "per-channel loudness (the probe)", "whole Gram matrices"
    again, third, blurred = (rows[name, probe] for name in ("the truth painted again (other marks)",
                                                           "the scene painted in a third style", "the truth blurred (σ 2 px)"))
    assert again < 0.4 * third and third > 0.8 and blurred > 1.5  # the right marks near, wrong or none far
    assert rows["the truth painted again (other marks)", gram] > again  # what the Gram statistic could not see


@pytest.mark.slow
def test_restyle_bounds_paired_smooth_path_learns_from_pairs(capsys):
    restyle_bounds = bench_script("restyle_bounds")
    import registry

    from zoo.tasks.restyle import render_all, restyle_targets
    from zoo.task import labels_of

    train = registry.dataset("synthart", split="train", image_size=32, size=400)
    test = registry.dataset("synthart", split="test", image_size=32, size=400)
    targets = restyle_targets(labels_of(test), len(test.classes))[:40]
    x = torch.stack([test[i][0] for i in range(40)])
    rows = restyle_bounds.paired_smooth(train, x, render_all(test, range(40), targets), targets, scenes=48, steps=150)
    (_, given), (name, trained) = rows.items()
    assert "ground-truth pairs" in name and name in capsys.readouterr().out
    # it starts as the input's own colours (the smooth path's correction starts at zero); the
    # pairs teach it the target styles' colours, Pop_Art's dark outlines among them
    assert trained[-1] > given[-1] + 0.3
    assert trained[test.classes.index("Pop_Art")] > given[test.classes.index("Pop_Art")] + 0.5


def _row(entry: str, remedy: str, balanced: list[float], few: list[float], val: float = 0.5,
         recalls: list[float] | None = None) -> dict:
    """A bench row as run_row makes it; ``recalls``: per-class test recalls of styles A, B
    (many-shot in the long tail) and C (few-shot), the same for every seed."""
    import pandas as pd

    values = {m: [0.5] * len(balanced) for m in ("acc", "macro_f1", "recall_many", "recall_medium", "ece")}
    table = pd.DataFrame({"recall": recalls or [0.5, 0.5, 0.5], "shots": ["many", "many", "few"]},
                         index=pd.Index(["A", "B", "C"], name="class"))
    return {"entry": entry, "remedy": remedy, "minutes": 1.0, "val": val, "per_class": [table] * len(balanced),
            "values": {**values, "balanced_acc": balanced, "recall_few": few}}


def test_imbalance_targets_compare_the_best_remedy_with_none_and_the_balanced_ceiling():
    imbalance = bench_script("imbalance")
    assert imbalance.remedies() == ["none", "sampler", "weights", "cb", "drw", "logit_adjust", "crt"]
    rows = [_row("cnn", "none", [0.70, 0.72, 0.74], [0.2, 0.3, 0.4]),  # std 0.02
            _row("cnn", "weights", [0.78, 0.80, 0.82], [0.5, 0.5, 0.5], val=0.8),  # 0.08 above: 4× the std
            _row("cnn", "cb", [0.84, 0.85, 0.86], [0.9, 0.9, 0.9], val=0.7),  # better on test, worse on validation
            _row("cnn", imbalance.CEILING, [0.82, 0.82, 0.82], [np.nan] * 3, recalls=[0.9, 0.9, 0.6])]
    imbalance.with_ceiling(rows)
    lines = imbalance.targets(rows)
    assert lines[0] == "best remedy by mean validation score (val/macro_f1_best): weights"
    assert "a gap of 0.080, 4.0× the larger std (0.020); target > 3×: met" in lines[1]
    assert "+0.200; target > 0.1: met" in lines[2]
    assert "none's balanced accuracy 0.720; target < 0.9 (not saturated): met" in lines[3]
    # the ceiling's few-shot recall is its recall of style C, few-shot in the long tail: 0.6
    assert rows[3]["values"]["recall_few"] == [0.6] * 3 and rows[3]["values"]["recall_many"] == [0.9] * 3
    assert "0.020 below the balanced ceiling's, few-shot recall 0.100 below" in lines[4] and "NOT met" in lines[4]
    rows[1] = _row("cnn", "weights", [0.75, 0.76, 0.77], [0.55, 0.55, 0.55], val=0.8)  # 0.04 above none: 2×
    imbalance.with_ceiling(rows)
    lines = imbalance.targets(rows)
    assert "target > 3×: NOT met" in lines[1]
    assert "0.060 below the balanced ceiling's" in lines[4] and "NOT met" in lines[4]
    table = imbalance.markdown(rows).splitlines()
    assert table[0].startswith("| model | remedy | acc |") and len(table) == 2 + len(rows)
    assert "| cnn | none | 0.500 ± 0.000 |" in table[2] and "0.720 ± 0.020" in table[2]
    assert table[3].endswith("| 0.060 | 0.050 | 1.00 |")  # weights: its gaps to the ceiling


@pytest.mark.slow
def test_imbalance_bench_runs_small_and_writes_its_table(tmp_path, monkeypatch, capsys):
    imbalance = bench_script("imbalance")
    monkeypatch.setattr(sys, "argv", ["imbalance.py", "--seeds", "0", "--remedies", "none", "drw", "--models", "cnn",
                                      "--out", str(tmp_path), "data.size=200", "data.held_out_per_class=3",
                                      "data.image_size=16", "train.epochs=2"])
    imbalance.main()
    written = (tmp_path / "imbalance.md").read_text()
    assert written.strip() in capsys.readouterr().out
    assert "| cnn | none |" in written and "| cnn | drw |" in written and "timm_net" not in written
    assert "best remedy by mean validation score (val/macro_f1_best): drw" in written
    assert "cores" in written.splitlines()[0] and "balanced ceiling" in written
    rows = [line for line in written.splitlines() if line.startswith("| cnn |")]
    assert [r.split(" | ")[1] for r in rows] == ["none", "drw", imbalance.CEILING]
    assert all(line.count("±") == 7 for line in rows)
    # every cnn run, the ceiling's too, trained with the benchmark's recipe
    runs = mlflow.search_runs(experiment_names=["bench-imbalance"], output_format="list")
    assert len(runs) == 3 and {r.data.params["train.weight_decay"] for r in runs} == {"0.05"}


def test_median_marks_paint_the_outline_that_a_boundary_sets_where_the_smooth_image_has_it():
    from zoo.models.cond_ae import split_tiles

    gen = torch.Generator().manual_seed(0)

    def paintings(n: int, columns: torch.Tensor) -> torch.Tensor:
        """Two flat colours meeting at a column, inked with a dark line 2 px wide where they meet."""
        left, right = torch.rand(n, 3, 1, 1, generator=gen), torch.rand(n, 3, 1, 1, generator=gen)
        x = torch.arange(16).view(1, 1, 1, 16)
        split = columns.view(n, 1, 1, 1)
        image = torch.where(x < split, left, right).expand(n, 3, 16, 16).clone()
        return torch.where((x == split) | (x == split - 1), torch.tensor(0.05), image)

    net = bench_script("marks_placement").median_marks(paintings(64, torch.randint(4, 13, (64,), generator=gen)), 4,
                                                       "bilinear", steps=150, width=16)
    new = paintings(8, torch.randint(5, 12, (8,), generator=gen))
    marks = split_tiles(new, 4, "bilinear")[1]
    with torch.no_grad():
        painted = net(new - marks)
    line = marks.mean(1) < -0.1  # where the true marks darken the painting: the line
    assert painted.mean(1)[line].mean() < painted.mean(1)[~line].mean() - 0.1


@pytest.fixture
def tiny_restyle_run() -> tuple[dict, str, dict[str, float]]:
    """A finished cond_ae run of a few steps (its config, id and logged metrics)."""
    from mlflow.tracking import MlflowClient

    from runners import config, train

    cfg = config.resolve("cond_ae", ["data.size=100", "data.image_size=32", "train.epochs=1", "train.batch_size=16",
                                     "train.judge_steps=5", "train.umap=false", "train.log_model=false",
                                     "train.system_metrics=false"])
    run_id = train.train(cfg)["run_id"]
    return cfg, run_id, MlflowClient().get_run(run_id).data.metrics


@pytest.mark.slow
def test_the_marks_benches_score_what_the_restyle_run_scored(capsys, tmp_path, tiny_restyle_run):
    import registry

    cfg, run_id, logged = tiny_restyle_run
    capsys.readouterr()
    bench_script("marks_gain").main([f"artzoo_runs/{run_id}", "--gains", "1", "0.5", "--by-style"])
    out = capsys.readouterr().out
    styles = [[line for line in part.splitlines() if line.startswith("| ")] for part in out.split("\n\n")][1]
    rows = table(out, "gain")
    assert [r["gain"] for r in rows] == ["1", "0.5"]
    trained = rows[0]
    assert float(trained["identity_psnr"]) == pytest.approx(logged["test/identity_psnr"], abs=0.01)
    for judge in ("cnn", "timm_net"):
        assert float(trained[f"acc {judge}"]) == pytest.approx(logged[f"test/restyle_acc_by_{judge}"], abs=1e-3)
    assert float(trained["panel"]) == pytest.approx(logged["test/restyle_acc_panel"], abs=1e-3)
    assert rows[1]["identity_psnr"] != trained["identity_psnr"], "the gain reaches the marks"
    # per style: the identity of its images, weighted by their count, makes the row's identity;
    # the panel on restyles into it is the row's per-style panel
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in styles[1:]]
    assert [c[0] for c in cells] == registry.dataset_of(cfg, "test").classes
    for g, row in enumerate(rows):
        per = [(int(c[1]), *c[2 + g].split(" / ")) for c in cells]
        mean = sum(n * float(identity) for n, identity, _ in per if n) / sum(n for n, _, _ in per)
        assert mean == pytest.approx(float(row["identity_psnr"]), abs=0.02)
        assert [panel for _, _, panel in per if panel != "-"] == row["per-style panel"].split()

    with pytest.raises(SystemExit, match="no config.json"):
        bench_script("marks_gain").main(["artzoo_runs"])

    # marks_placement: the restyle as trained scores the structure the run logged for the style
    # (Pop_Art: the one whose median marks, its outlines, are not nothing)
    style = next(r for r in csv.DictReader(Path(mlflow.artifacts.download_artifacts(
        run_id=run_id, artifact_path=Artifact.PER_STYLE, dst_path=str(tmp_path))).read_text().splitlines())
                 if r["style"] == "Pop_Art")
    bench_script("marks_placement").main([f"artzoo_runs/{run_id}", "--split", "test", "--style", style["style"],
                                          "--median-steps", "100"])
    rows = {r["marks"]: r for r in table(capsys.readouterr().out, "marks")}
    trained = rows["the restyle as trained (the nearest tile's marks)"]
    assert float(trained["structure"]) == pytest.approx(float(style["structure"]), abs=1e-3)
    assert float(trained["restyle_psnr_gt (dB)"]) == pytest.approx(float(style["psnr_gt"]), abs=0.01)
    assert rows["the input"]["how far"] == "0.00" and rows["the truth painted again (other marks)"]["how far"] == "1.00"
    # an oracle that may keep the marks as painted, tile by tile, does no worse than them
    for oracle in ("oracle: per tile, the best of 49 shifts of those marks",
                   "oracle: per tile, the best of the 16 nearest kept tiles"):
        assert float(rows[oracle]["structure"]) >= float(trained["structure"]) - 0.02
    # the median marks keep the colours at the code's scale
    smooth = rows["the smooth image alone (no marks)"]
    median = [r for name, r in rows.items() if name.startswith("the median marks given the smooth image")]
    assert len(median) == 2
    for row in median:
        assert float(row["restyle_psnr_gt (dB)"]) == pytest.approx(float(smooth["restyle_psnr_gt (dB)"]), abs=0.1)
    # ... and do paint marks, louder in the second row: each moves the structure elsewhere
    assert len({smooth["structure"], *(row["structure"] for row in median)}) == 3, "marks painted at two gains"

    # dictionary_atoms: the kept tiles score what the run logged; distilled atoms keep the colours
    bench_script("dictionary_atoms").main([f"artzoo_runs/{run_id}", "--split", "test"])
    rows = {r["recipe"]: r for r in table(capsys.readouterr().out, "recipe")}
    kept = rows.pop("the kept tiles (exemplar marks)")
    assert float(kept["unseen panel"]) == pytest.approx(logged["test/restyle_acc_panel_unseen"], abs=1e-3)
    assert float(kept["texture ratio"]) == pytest.approx(logged["test/restyle_texture_ratio"], abs=1e-3)
    assert float(kept["restyle_psnr_gt"]) == pytest.approx(logged["test/restyle_psnr_gt"], abs=0.01)
    assert kept["atoms near a kept tile"] == "1.000", "a kept tile is itself"
    assert len(rows) == 8 and sum(name.endswith("(the default)") for name in rows) == 1
    for row in rows.values():  # marks without a mean over the code's squares leave the colours as they were
        assert float(row["restyle_psnr_gt"]) == pytest.approx(float(kept["restyle_psnr_gt"]), abs=0.1)
    # clusters of one tile are the tiles themselves; the default's atoms are none of them
    single = next(row for name, row in rows.items() if "≥ 1 tiles" in name)
    default = next(row for name, row in rows.items() if name.endswith("(the default)"))
    assert float(single["atoms near a kept tile"]) > 0.9 > 0.5 > float(default["atoms near a kept tile"])


@pytest.mark.slow
def test_restyle_evidence_compares_marks_on_the_validation_and_test_splits(tmp_path, monkeypatch, capsys):
    evidence = bench_script("restyle_evidence")
    monkeypatch.setattr(sys, "argv", ["restyle_evidence.py", "--seeds", "0", "--out", str(tmp_path), "data.size=100",
                                      "data.image_size=16", "train.epochs=1", "train.judge_steps=10", "train.umap=false",
                                      "train.max_steps_per_epoch=3"])
    evidence.main()
    written = (tmp_path / "restyle_evidence.md").read_text()
    assert written.strip() in capsys.readouterr().out and "cores" in written.splitlines()[0]
    header = [c.strip() for c in written.splitlines()[2].strip("|").split("|")]
    rows = [dict(zip(header, (c.strip() for c in line.strip("|").split("|")))) for line in written.splitlines()[4:]]
    assert [(r["marks"], r["split"]) for r in rows] == [("exemplar", "valid"), ("exemplar", "test"),
                                                         ("learned", "valid"), ("learned", "test")]
    run = mlflow.search_runs(search_all_experiments=True, output_format="list",
                             filter_string="params.`model.marks` = 'exemplar'")[0]
    test = next(r for r in rows if (r["marks"], r["split"]) == ("exemplar", "test"))
    assert float(test["restyle_copy_rate"].split(" ± ")[0]) == pytest.approx(run.data.metrics["test/restyle_copy_rate"],
                                                                               abs=1e-3)
    assert float(test["stored_training_bytes"].split()[0]) > 0
    assert next(r for r in rows if r["marks"] == "learned")["stored_training_bytes"] == "0.00 MB", \
        "learned marks keep no training pixels"


def test_the_scale_folder_has_wikiarts_movements_in_wikiarts_proportions():
    scale = bench_script("scale")
    counts = scale.class_counts(15000)
    assert sum(counts.values()) == 15000 and len(counts) == 27
    biggest, smallest = max(counts, key=counts.get), min(counts, key=counts.get)
    assert (biggest, smallest) == ("Impressionism", "Action_painting")
    assert counts[biggest] / counts[smallest] == pytest.approx(13060 / 98, rel=0.05)
    assert all(min(scale.split_counts(n).values()) >= 1 for n in scale.class_counts(81).values())
    assert scale.split_counts(1000) == {"train": 700, "valid": 200, "test": 100}


def test_the_scale_bench_times_each_phase_a_run_prints_a_judge_inside_the_validation_apart():
    scale = bench_script("scale")
    printed = ["started run abc; if it stops, …", "epoch 1, batch 16/165: loss=2.3, 30 images/s",
               "epoch 1: validating 3000 images …", "training the judge cnn (400 steps, then cached in /x) …",
               "training the judge cnn (400 steps, then cached in /x): done in 48.0 s", "epoch 1/1: val/acc=0.5",
               "scoring the test split (1500 images) …", "restyling the 1500 test images …",
               "restyling the 1500 test images: done in 5.0 s", "test: acc=0.5"]
    phase, within, seen = scale.SETUP, [], []
    for line in printed:
        phase = scale.phase_of(line, phase, within)
        seen.append(phase)
    assert seen == [scale.TRAIN, scale.TRAIN, scale.VALIDATE, "training the judge cnn",
                    scale.VALIDATE, scale.AFTER, scale.TEST, "restyling the N test images",
                    scale.TEST, "log the test metrics"]
    # the judges' training (once per folder and size, then cached) is neither validation nor analysis
    row = scale.Row("cond_ae", 64, 700, 100, 11, 11, phases={
        scale.TRAIN: 10.0, scale.VALIDATE: 5.0, "training the judge cnn": 48.0, scale.AFTER: 0.1, scale.TEST: 3.0,
        "training the judge timm_net": 30.0, "restyling the N test images": 5.0, scale.MODEL: 2.0})
    assert (row.validate_s, row.analysis_s, row.judges_s) == (5.0, 8.0, 78.0)


@pytest.mark.slow
def test_scale_bench_runs_small_end_to_end_and_writes_its_table(tmp_path, monkeypatch, capsys):
    scale = bench_script("scale")
    monkeypatch.setattr(scale, "FEED_SECONDS", 0.2)
    store, cache = mlflow.get_tracking_uri(), os.environ.get("ARTZOO_CACHE")
    rows = scale.main(["--images", "81", "--sizes", "16", "--entries", "cond_ae", "--out", str(tmp_path),
                       "--set", "train.judge_steps=2", "train.panel=", "train.umap=false", "train.batch_size=16"])
    folder = tmp_path / "wikiart81"
    assert sorted(p.name for p in (folder / "train").iterdir()) == sorted(scale.WIKIART)
    assert {p.parent.name for p in (folder / "test").rglob("*.jpg")} == set(scale.WIKIART), "every movement tested"
    out = capsys.readouterr().out
    [row] = rows
    assert row.images_per_s > 0 and row.peak_rss_gb > 0 and row.checkpoint_mb > 0 and row.model_mb > 0
    assert row.runs_page_s > 0 and row.run_page_s > 0 and row.cache_build_s > 0 and row.peak_phase in row.phases
    assert {scale.TRAIN, scale.CACHE, scale.MODEL, scale.VALIDATE, "restyling the N test images",
            "looking for copied tiles in N of the restyles"} <= set(row.phases)
    assert f"| cond_ae | 16 | {row.train_images:,} | {row.images_per_s:.1f} |" in out and "cost, not accuracy" in out
    projected = out[out.index("At WikiArt's size"):]
    assert "81,444 paintings" in projected and "| cond_ae | " in projected and "Limits (" in out
    assert row.input_images_per_s > 0 and row.judges_s > 0, "a first run on the folder trains its judges"
    # the table is kept in --out and built on by the next part of the benchmark
    assert [(r.entry, r.size, r.run_id) for r in scale._read_csv(tmp_path / "scale.csv")] == [("cond_ae", 16, row.run_id)]
    assert (mlflow.get_tracking_uri(), os.environ.get("ARTZOO_CACHE")) == (store, cache), "the caller's store and cache"
    scale.main(["--report", "--out", str(tmp_path)])  # the tables again, from what --out holds
    assert f"| cond_ae | 16 | {row.train_images:,} |" in capsys.readouterr().out
