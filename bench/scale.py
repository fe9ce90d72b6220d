"""What artzoo costs at WikiArt's size: every built-in entry, one epoch, on a 416 px folder.

    python bench/scale.py                                  # 15,000 paintings; 64, 128 and 224 px
    python bench/scale.py --sizes 64 --entries cnn,ae      # a part of it
    python bench/scale.py --steps 100 --sizes 224          # 100 training steps, then the whole analysis
    python bench/scale.py --prepare                        # only paint the folder

It paints (once, kept in ``--out``) a folder in the Roboflow export's layout
(``train|valid|test/CLASS/*.jpg``, 416×416 JPEG at quality 90) with WikiArt's 27 movements in
WikiArt's proportions (Impressionism the largest, Action_painting the smallest, about 130:1),
split 70/20/10 as Roboflow splits by default. The pixels are synthart's: its ten techniques are
used again for the movements it has no technique for, so **this benchmark measures cost, not
accuracy**. Then each entry trains one epoch at each size through the normal command line
(``python -m runners.run ENTRY data=FOLDER ...``, its test-split analysis included) in a fresh
process, and the benchmark records, per entry and size: the decode cache's build time and size,
training images/s, the peak resident memory of the run's process tree, where the time went
(phase by phase, from the lines the run prints), checkpoint, logged-model and largest-artifact
sizes, the MLflow database's size and the dashboard's first render of the Runs and Run pages
(Streamlit's AppTest). It prints one table, writes it to ``OUT/scale.csv``, fits each cost
against images and pixels, and projects it to WikiArt's 81,444 paintings.
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import subprocess
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import multiprocessing as mp
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from throughput import cpu_model  # noqa: E402  (bench/, on sys.path as the script's folder)
from zoo import judge  # noqa: E402
from zoo.datasets import synthart  # noqa: E402

OUT = ROOT / "bench" / "out" / "scale"
ENTRIES = ("cnn", "timm_net", "ae", "cond_ae")
SOURCE_SIZE = 416  # the Roboflow export's side
QUALITY = 90
SPLITS = (("train", 0.7), ("valid", 0.2), ("test", 0.1))
# WikiArt's 81,444 paintings by movement (the ArtGAN release the Roboflow export was cut from)
WIKIART = {
    "Abstract_Expressionism": 2782, "Action_painting": 98, "Analytical_Cubism": 110, "Art_Nouveau_Modern": 4334,
    "Baroque": 4240, "Color_Field_Painting": 1615, "Contemporary_Realism": 481, "Cubism": 2235,
    "Early_Renaissance": 1391, "Expressionism": 6736, "Fauvism": 934, "High_Renaissance": 1343,
    "Impressionism": 13060, "Mannerism_Late_Renaissance": 1279, "Minimalism": 1337, "Naive_Art_Primitivism": 2405,
    "New_Realism": 314, "Northern_Renaissance": 2552, "Pointillism": 513, "Pop_Art": 1483,
    "Post_Impressionism": 6450, "Realism": 10733, "Rococo": 2089, "Romanticism": 7019, "Symbolism": 4528,
    "Synthetic_Cubism": 216, "Ukiyo_e": 1167,
}
WIKIART_IMAGES = sum(WIKIART.values())


# -- the folder ----------------------------------------------------------------------------------


def class_counts(images: int) -> dict[str, int]:
    """Paintings per movement for a folder of ``images``: WikiArt's shares, at least three each
    (one per split), rounded so that they add up."""
    names = sorted(WIKIART)
    exact = np.array([WIKIART[n] for n in names], dtype=float) * images / WIKIART_IMAGES
    counts = np.maximum(3, np.rint(exact)).astype(int)
    # settle the rounding one painting at a time, where it moves a movement least from its share
    while (short := images - counts.sum()) != 0:
        if short > 0:
            counts[np.argmax(exact - counts)] += 1
        else:
            counts[np.argmax(np.where(counts > 3, counts - exact, -np.inf))] -= 1
    return dict(zip(names, counts.tolist()))


def split_counts(count: int) -> dict[str, int]:
    """One movement's ``count`` split 70/20/10, at least one in each split."""
    valid = max(1, round(count * SPLITS[1][1]))
    test = max(1, round(count * SPLITS[2][1]))
    return {"train": count - valid - test, "valid": valid, "test": test}


def technique(movement: str) -> str:
    """The synthart technique that paints ``movement``: its own where synthart has one, else one of
    the ten in turn (the benchmark measures cost, not whether styles can be told apart)."""
    techniques = list(synthart.TECHNIQUES)
    if movement in techniques:
        return movement
    others = [m for m in sorted(WIKIART) if m not in techniques]
    return techniques[others.index(movement) % len(techniques)]


def wikiart_folder(images: int, out: Path = OUT) -> Path:
    """The Roboflow-layout folder of ``images`` paintings, painted once (``.complete`` marks it done)."""
    folder = out / f"wikiart{images}"
    done = folder / ".complete"
    if done.exists() and done.read_text().strip() == str(images):
        return folder
    jobs, painted = [], {split: 0 for split, _ in SPLITS}  # each painting its own scene in its split
    for movement, count in class_counts(images).items():
        for split, n in split_counts(count).items():
            recipe = synthart.Recipe(0, split, SOURCE_SIZE)
            for index in range(painted[split], painted[split] + n):
                jobs.append((recipe, technique(movement), index, folder / split / movement / f"{index:05d}.jpg"))
            painted[split] += n
    todo = [j for j in jobs if not j[3].exists()]  # a stopped painting run goes on where it stopped
    for path in {j[3].parent for j in todo}:
        path.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    workers = len(os.sched_getaffinity(0))
    print(f"painting {len(todo)} of {len(jobs)} synthart JPEGs of {SOURCE_SIZE} px into {folder} "
          f"({workers} processes) …", file=sys.stderr, flush=True)
    with ProcessPoolExecutor(workers, mp_context=mp.get_context("fork")) as pool:
        for k, _ in enumerate(pool.map(_paint, todo, chunksize=16), 1):
            if k % 1000 == 0 or k == len(todo):
                rate = k / (time.perf_counter() - started)
                print(f"  {k}/{len(todo)} ({rate:.0f}/s, {(len(todo) - k) / rate / 60:.1f} min left)",
                      file=sys.stderr, flush=True)
    done.write_text(str(images))
    return folder


def _paint(job: tuple) -> None:
    recipe, style, index, path = job
    tmp = path.with_suffix(".part")
    Image.fromarray(recipe.paint(index, style)).save(tmp, format="JPEG", quality=QUALITY)
    tmp.rename(path)  # a painting stopped halfway is painted again, never read half-written



# -- one run -------------------------------------------------------------------------------------


@dataclass
class Row:
    entry: str
    size: int
    train_images: int
    test_images: int
    steps: int  # training steps run (the epoch's, or --steps)
    epoch_steps: int  # steps of a whole epoch
    wall_s: float = 0.0
    images_per_s: float = float("nan")
    peak_rss_gb: float = float("nan")  # the run's process
    peak_anon_gb: float = float("nan")  # its memory that is no file's pages (RSS less the mapped cache, libraries)
    peak_tree_gb: float = float("nan")  # the run's process and its children (PSS), summed, at the worst moment
    peak_phase: str = ""  # the phase running when the process's resident set was largest
    cache_build_s: float = 0.0  # decoding the folder into the cache (0: it was there)
    cache_mb: float = 0.0  # the cache entries of this size, all splits
    checkpoint_mb: float = 0.0  # the largest checkpoint
    model_mb: float = 0.0  # the logged MLflow model, all its files
    largest_artifact: str = ""
    largest_artifact_mb: float = 0.0
    artifacts_mb: float = 0.0
    db_mb: float = 0.0
    input_images_per_s: float = float("nan")  # the data path alone at this size, no model (one process)
    runs_page_s: float = float("nan")
    run_page_s: float = float("nan")
    run_id: str = ""
    phases: dict[str, float] = field(default_factory=dict)

    @property
    def epoch_s(self) -> float:
        """A whole epoch's training, from the steps run (a run cut by --steps is scaled up)."""
        return self.train_images / self.images_per_s if self.images_per_s > 0 else float("nan")

    def _between(self, first: str, last: str | None) -> float:
        """Seconds of the phases from ``first`` (included) to ``last`` (not), in the order they
        began, less the judges' training (:attr:`judges_s`)."""
        names = list(self.phases)
        if first not in names:
            return 0.0
        names = names[names.index(first):]
        return sum(self.phases[k] for k in names[: names.index(last) if last in names else len(names)]
                   if not k.startswith(JUDGES))

    @property
    def validate_s(self) -> float:
        """The epoch's validation."""
        return self._between(VALIDATE, AFTER)

    @property
    def analysis_s(self) -> float:
        """The test split's scoring and the task's analysis, to the last artifact logged."""
        return self._between(TEST, MODEL)

    @property
    def judges_s(self) -> float:
        """The restyle judges' training, wherever it ran (the first in the validation): once per
        folder and size, then cached, so a run finds them trained or not; kept apart."""
        return sum(v for k, v in self.phases.items() if k.startswith(JUDGES))


SETUP, CACHE, TRAIN, VALIDATE, AFTER, TEST, MODEL = (
    "start-up and data", "decode cache", "train one epoch", "epoch N: validating N images",
    "served checkpoint", "score the test split", "log the MLflow model")
JUDGES = judge.TRAINING  # the phases that train a restyle judge
# the run's printed lines that open a phase (the rest of the lines belong to the phase before)
MARKS = ((re.compile(r"^caching "), CACHE), (re.compile(r"^started run "), TRAIN),
         (re.compile(r"^epoch \d+/\d+: "), AFTER), (re.compile(r"^scoring the test split"), TEST),
         (re.compile(r"^logging the MLflow model"), MODEL), (re.compile(r"^test: "), "log the test metrics"))
PROGRESS = re.compile(r"^(\S.*?) …\s*$")  # zoo.task.progress's line: a named phase of the analysis
DONE = re.compile(r"^(\S.*?): done in [\d.]+ s$")  # and its last: back to the phase it ran within


def phase_of(line: str, current: str, within: list[str]) -> str:
    """The phase ``line`` opens, or ``current`` where it opens none; ``within`` is the stack of
    the phases that a named phase runs inside (a judge trained during the validation)."""
    for pattern, name in MARKS:
        if pattern.search(line):
            within.clear()
            return name
    for pattern, closes in ((PROGRESS, False), (DONE, True)):
        found = pattern.match(line)
        if found and current not in (SETUP, CACHE):
            label = re.sub(r"\s*\(.*", "", found.group(1))  # "(then cached in /a/long/path)" and the like
            label = re.sub(r"\d[\d,.]*", "N", label)
            if closes:
                return within.pop() if within and label == current else current
            within.append(current)
            return label
    return current


def measure(entry: str, size: int, folder: Path, out: Path, *, steps: int, extra: list[str]) -> Row:
    """Train ``entry`` one epoch at ``size`` px in a fresh process and measure it."""
    import psutil

    counts = {s: sum(1 for _ in (folder / s).rglob("*.jpg")) for s, _ in SPLITS}
    extra = _taken(entry, extra)
    batch = _batch_size(entry, extra)
    epoch_steps = -(-counts["train"] // batch)
    row = Row(entry, size, counts["train"], counts["test"], min(steps, epoch_steps) if steps else epoch_steps,
              epoch_steps)
    cmd = [sys.executable, "-u", "-m", "runners.run", entry, f"data={folder}", f"data.image_size={size}",
           "train.epochs=1", "experiment=scale", *([f"train.max_steps_per_epoch={steps}"] if steps else []), *extra]
    cache = out / "cache"
    before = _sizes(cache)
    log = out / "logs" / f"{entry}-{size}px-{folder.name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    print(f"\n{entry} at {size} px: {' '.join(cmd[3:])}", file=sys.stderr, flush=True)
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=out, env=_env(out), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            bufsize=1)
    peak = _Peak()
    sampler = threading.Thread(target=_sample_rss, args=(psutil.Process(proc.pid), peak), daemon=True)
    sampler.start()
    phase, since, lines, within = SETUP, started, [], []
    with open(log, "w") as f:
        for line in proc.stdout:
            now = time.perf_counter()
            f.write(f"{now - started:8.1f} {line}")
            f.flush()  # the log is where a user looks while a long phase runs
            lines.append(line.rstrip("\n"))
            opened = phase_of(line.strip(), phase, within)
            if opened != phase:
                row.phases[phase] = row.phases.get(phase, 0.0) + now - since
                phase, since = opened, now
                peak.now = phase
                print(f"  {now - started:7.1f} s  {opened}", file=sys.stderr, flush=True)
    proc.wait()
    end = time.perf_counter()
    row.phases[phase] = row.phases.get(phase, 0.0) + end - since
    row.wall_s = end - started
    sampler.join()
    row.peak_rss_gb, row.peak_tree_gb, row.peak_anon_gb = peak.rss / 1e9, peak.tree / 1e9, peak.anon / 1e9
    row.peak_phase = peak.rss_phase
    if proc.returncode != 0:
        tail = "\n".join(lines[-30:])
        raise RuntimeError(f"{entry} at {size} px failed (exit {proc.returncode}); its log: {log}\n{tail}")
    row.run_id = lines[-1].removeprefix("run_id: ").strip()
    row.cache_build_s = row.phases.get(CACHE, 0.0)
    grown = {k: v for k, v in _sizes(cache).items() if k not in before}
    row.cache_mb = sum(v for k, v in (grown or _sizes(cache)).items()
                       if k.startswith(f"{folder.name}-") and f"-{size}px-" in k) / 1e6
    _store_sizes(row, out)
    return row


def _taken(entry: str, extra: list[str]) -> list[str]:
    """The ``key=value`` settings that ``entry``'s config has (train.judge_steps is restyle's alone)."""
    from runners.config import ConfigError, resolve

    taken = []
    for setting in extra:
        try:
            resolve(entry, [setting])
            taken.append(setting)
        except ConfigError:
            pass
    return taken


def _batch_size(entry: str, extra: list[str]) -> int:
    given = [e.split("=", 1)[1] for e in extra if e.startswith("train.batch_size=")]
    if given:
        return int(given[-1])
    from runners.config import resolve

    return resolve(entry, [])["train"]["batch_size"]


def _env(out: Path) -> dict[str, str]:
    return {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{out / 'mlflow.db'}", "ARTZOO_CACHE": str(out / "cache"),
            "ARTZOO_RUNS": str(out / "runs"), "PYTHONPATH": str(ROOT),
            "NUMBA_CACHE_DIR": os.environ.get("NUMBA_CACHE_DIR", str(out / "numba")),
            "PYTHONWARNINGS": "ignore"}


@dataclass
class _Peak:
    """The largest memory :func:`_sample_rss` saw, in bytes: ``rss``, the process's resident set,
    and ``rss_phase``, the phase then; ``tree``, the sum over it and its children of their
    proportional sets (PSS: the pages a forked decoder shares with its parent counted once);
    ``anon``, its resident set less file-backed pages (the libraries, any mapped file). ``now``:
    the phase the run is in, kept up to date by the reader of its lines."""

    rss: int = 0
    tree: int = 0
    anon: int = 0
    rss_phase: str = SETUP
    now: str = SETUP


def _sample_rss(process, peak: _Peak) -> None:
    """Every 0.2 s until ``process`` ends: its memory into ``peak``."""
    import psutil

    while True:
        try:
            memory = process.memory_info()
            if memory.rss > peak.rss:
                peak.rss, peak.rss_phase = memory.rss, peak.now
            peak.anon = max(peak.anon, memory.rss - memory.shared)
            total = 0
            for p in [process, *process.children(recursive=True)]:
                try:
                    total += p.memory_full_info().pss
                except psutil.Error:
                    pass
            peak.tree = max(peak.tree, total)
            if process.status() == psutil.STATUS_ZOMBIE:
                return
        except psutil.Error:
            return
        time.sleep(0.2)


def _sizes(folder: Path) -> dict[str, int]:
    """Bytes under each entry of ``folder``."""
    if not folder.is_dir():
        return {}
    return {p.name: sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) for p in folder.iterdir()}


def _store_sizes(row: Row, out: Path) -> None:
    """Checkpoint, logged model and artifact sizes of ``row``'s run, and the database's."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{out / 'mlflow.db'}")  # this process's own store is left alone
    run = client.get_run(row.run_id)
    history = client.get_metric_history(row.run_id, "train/images_per_s")
    row.images_per_s = history[-1].value if history else float("nan")
    checkpoints = list((out / "runs" / row.run_id / "checkpoints").glob("*.pt"))
    row.checkpoint_mb = max((p.stat().st_size for p in checkpoints), default=0) / 1e6
    artifacts = Path(run.info.artifact_uri.removeprefix("file://"))
    files = [(f.stat().st_size, f.relative_to(artifacts).as_posix()) for f in artifacts.rglob("*") if f.is_file()]
    models = client.search_logged_models(experiment_ids=[run.info.experiment_id],
                                         filter_string=f"source_run_id = '{row.run_id}'")
    for model in models:
        where = Path(model.artifact_location.removeprefix("file://"))
        sizes = [(f.stat().st_size, f"model/{f.relative_to(where).as_posix()}") for f in where.rglob("*") if f.is_file()]
        row.model_mb += sum(s for s, _ in sizes) / 1e6
        files += sizes
    row.artifacts_mb = sum(s for s, _ in files) / 1e6
    if files:
        size, name = max(files)
        row.largest_artifact, row.largest_artifact_mb = name, size / 1e6
    row.db_mb = (out / "mlflow.db").stat().st_size / 1e6


# -- the data path alone -------------------------------------------------------------------------


FEED_SECONDS = 5.0  # timed per size


def input_rate(folder: Path, size: int, out: Path, seconds: float | None = None) -> float:
    """Training images/s that the runner's data path (the decode cache, runners.loader, flips)
    yields at ``size`` px on this CPU in one process, with no model: the most it could feed a GPU."""
    import torch

    import registry
    from throughput import _artzoo, _input_rate

    before = os.environ.get("ARTZOO_CACHE")
    os.environ["ARTZOO_CACHE"] = str(out / "cache")  # the runs' cache: built already
    try:
        data = registry.dataset(str(folder), split="train", image_size=size)
    finally:
        if before is None:
            del os.environ["ARTZOO_CACHE"]
        else:
            os.environ["ARTZOO_CACHE"] = before
    cpu = torch.device("cpu")
    return _input_rate(_artzoo(data, min(64, len(data)), cpu, workers=0), 20, seconds or FEED_SECONDS, cpu)


# -- the dashboard -------------------------------------------------------------------------------


def dashboard_first_load(run_id: str, out: Path) -> tuple[float, float]:
    """Seconds of the Runs page's and then the Run page's first render of ``run_id``, in a fresh
    process (a user opening the dashboard): Streamlit's AppTest."""
    done = subprocess.run([sys.executable, __file__, "--probe", run_id, "--out", str(out)], env=_env(out), cwd=out,
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"the dashboard failed on run {run_id}:\n{done.stderr[-3000:]}")
    runs, run = map(float, done.stdout.split()[-2:])
    return runs, run


def _probe(run_id: str) -> None:
    from streamlit.testing.v1 import AppTest

    seconds = []
    for page in ("views/runs.py", "views/run.py"):
        at = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=600)
        at.query_params["run"] = run_id
        started = time.perf_counter()
        at.switch_page(page).run()
        seconds.append(time.perf_counter() - started)
        if at.exception:
            raise SystemExit(f"{page} raised: {at.exception[0].value}")
    print(*(f"{s:.2f}" for s in seconds))


# -- the table, the fit and the projection ---------------------------------------------------------

COLUMNS = ("entry", "size", "train_images", "test_images", "steps", "epoch_steps", "images_per_s", "epoch_s",
           "validate_s", "analysis_s", "judges_s", "wall_s", "peak_rss_gb", "peak_anon_gb", "peak_tree_gb",
           "peak_phase", "cache_build_s", "cache_mb", "checkpoint_mb", "model_mb", "largest_artifact",
           "largest_artifact_mb", "artifacts_mb", "db_mb", "input_images_per_s", "runs_page_s", "run_page_s", "run_id")
LIMITS = {"peak_rss_gb": 4.0, "peak_tree_gb": 4.0, "largest_artifact_mb": 200.0, "runs_page_s": 5.0, "run_page_s": 5.0}


def table(rows: list[Row]) -> str:
    head = ("| entry | px | training paintings | img/s | epoch (min) | validation (s) | analysis (s) | judges (s) | peak memory (GB): RSS / anon / tree | cache build (s) | cache (MB) "
            "| checkpoint (MB) | model (MB) | largest artifact (MB) | db (MB) | Runs / Run page (s) |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        lines.append(f"| {r.entry} | {r.size} | {r.train_images:,} | {r.images_per_s:.1f} | {r.epoch_s / 60:.1f}"
                     f"{'*' if r.steps < r.epoch_steps else ''} | {r.validate_s:.0f} | {r.analysis_s:.0f} | {r.judges_s:.0f} | {r.peak_rss_gb:.2f} / {r.peak_anon_gb:.2f} / "
                     f"{r.peak_tree_gb:.2f} "
                     f"| {r.cache_build_s:.0f} | {r.cache_mb:.0f} | {r.checkpoint_mb:.1f} | {r.model_mb:.1f} "
                     f"| {r.largest_artifact_mb:.1f} ({r.largest_artifact}) | {r.db_mb:.1f} "
                     f"| {r.runs_page_s:.1f} / {r.run_page_s:.1f} |")
    return "\n".join(lines)


def phases_table(rows: list[Row]) -> str:
    lines = ["| entry | px | phase | s |", "|---|---|---|---|"]
    for r in rows:
        for name, seconds in sorted(r.phases.items(), key=lambda kv: -kv[1]):
            if seconds >= 1:
                lines.append(f"| {r.entry} | {r.size} | {name} | {seconds:.0f} |")
    return "\n".join(lines)


def over_limits(rows: list[Row]) -> list[str]:
    found = []
    for r in rows:
        for key, limit in LIMITS.items():
            if getattr(r, key) > limit:
                found.append(f"{r.entry} at {r.size} px: {key} {getattr(r, key):.2f} > {limit:g}"
                             + (f" (during: {r.peak_phase})" if key.startswith("peak_") and r.peak_phase else ""))
        if r.size == 64 and r.analysis_s + r.judges_s > 180:  # a first run on a folder trains its judges
            found.append(f"{r.entry} at 64 px: the analysis took {r.analysis_s + r.judges_s:.0f} s > 180")
    return found


def projection(rows: list[Row], images: int = WIKIART_IMAGES, size: int = 224) -> list[str]:
    """Each entry at ``images`` paintings of ``size`` px, as a Markdown table: the epoch on this
    machine, training seconds per image fitted as a power of the pixels over the sizes measured
    (an epoch is linear in its images); the analysis fitted as a + b × test images over the
    folder sizes measured at the smallest image size, times its growth from there to ``size``
    px as measured (without two folder sizes: linear in the test images, an upper bound, as its
    sampled parts are capped); and the shortest epoch the data path allows in one loader
    process, from its rate alone (what a GPU could be fed; the GPU's own rate is bench/gpu.sh's)."""
    split = [split_counts(c) for c in class_counts(images).values()]
    train_images, test_images = (sum(s[name] for s in split) for name in ("train", "test"))
    lines = [f"{images:,} paintings ({train_images:,} training, {test_images:,} test) at {size} px:", "",
             "| entry | epoch on this machine | fitted on | analysis on this machine | fitted on "
             "| epoch floor set by the data path (one loader process) |", "|---|---|---|---|---|---|"]
    for entry in dict.fromkeys(r.entry for r in rows):
        mine = [r for r in rows if r.entry == entry and r.images_per_s > 0]
        if not mine:
            continue
        main = [r for r in mine if r.train_images == max(m.train_images for m in mine)]
        pixels = np.array([r.size**2 for r in main], dtype=float)
        per_image = np.array([1 / r.images_per_s for r in main])
        if len(main) >= 2:
            slope, icept = np.polyfit(np.log(pixels), np.log(per_image), 1)
        else:  # one size: proportional to the pixels
            slope, icept = 1.0, float(np.log(per_image[0] / pixels[0]))
        epoch = train_images * float(np.exp(icept + slope * np.log(size**2)))
        analysis, how = _analysis_at(mine, main, test_images, size)
        fed = [r for r in main if r.size == size and r.input_images_per_s > 0]
        floor = f"{train_images / fed[0].input_images_per_s / 60:.1f} min" if fed else f"(no {size} px row)"
        lines.append(f"| {entry} | {epoch / 3600:.1f} h | {', '.join(str(r.size) for r in main)} px "
                     f"(s/image ∝ pixels^{slope:.2f}) | {analysis / 60:.0f} min | {how} | {floor} |")
    lines.append(f"\nThe decode cache: {images * 3 * size * size / 1e9:.1f} GB on disk at {size} px, read from its "
                 f"file a batch at a time.")
    return lines


def _analysis_at(mine: list[Row], main: list[Row], test_images: int, size: int) -> tuple[float, str]:
    small = min(r.size for r in mine)
    at_small = {r.test_images: r.analysis_s for r in mine if r.size == small}
    nearest = min(main, key=lambda r: abs(r.size - size))
    base = next(r for r in main if r.size == small) if any(r.size == small for r in main) else nearest
    grow = nearest.analysis_s / base.analysis_s * (size / nearest.size) ** 2 if base.analysis_s > 0 else 1.0
    if len(at_small) >= 2:
        slope, icept = np.polyfit(list(at_small), list(at_small.values()), 1)
        counts = ", ".join(f"{n:,}" for n in sorted(at_small))
        return (icept + slope * test_images) * grow, (f"{icept:.0f} s + {slope:.3f} s × test images at {small} px "
                                                      f"({counts}), × {grow:.2f} to {size} px")
    return (nearest.analysis_s * (size / nearest.size) ** 2 * test_images / nearest.test_images,
            f"linear from {nearest.test_images:,} test images at {nearest.size} px (upper bound)")


# -- main ----------------------------------------------------------------------------------------


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v]


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__.split("\n\n", 2)[2],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=15000, help="paintings in the folder, all splits (default 15000)")
    parser.add_argument("--sizes", type=_ints, default=[64, 128, 224], help="training sizes in px (default 64,128,224)")
    parser.add_argument("--entries", default=",".join(ENTRIES), help=f"model entries (default {','.join(ENTRIES)})")
    parser.add_argument("--steps", type=int, default=0,
                        help="training steps per run (0: the whole epoch); the epoch's time is then scaled up")
    parser.add_argument("--set", dest="extra", nargs="*", default=[], metavar="KEY=VALUE",
                        help="more config for the entries whose config has the key (e.g. train.judge_steps=100)")
    parser.add_argument("--out", type=Path, default=OUT, help=f"folder, store and caches (default {OUT})")
    parser.add_argument("--paintings", type=Path, default=None,
                        help="where the painted folder is kept (default: --out), to share it between --out folders")
    parser.add_argument("--prepare", action="store_true", help="only paint the folder")
    parser.add_argument("--report", action="store_true", help="only print the tables of what --out holds")
    parser.add_argument("--probe", metavar="RUN_ID", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.entries = [e for e in args.entries.split(",") if e]
    import registry

    known = registry.entries("model")
    unknown = [e for e in args.entries if e not in known]
    if unknown:
        parser.error(f"unknown entry {', '.join(unknown)}; registered: {', '.join(sorted(known))}")
    if args.images < 3 * len(WIKIART):
        parser.error(f"--images must be at least {3 * len(WIKIART)} (three paintings of each of the 27 movements)")
    if not args.sizes or min(args.sizes) < 8:
        parser.error("--sizes takes sizes of at least 8 px, e.g. 64,128,224")
    return args


def main(argv: list[str] | None = None) -> list[Row]:
    args = parse(argv)
    if args.probe:
        _probe(args.probe)
        return []
    out = args.out.resolve()
    if args.report:
        rows = _read_csv(out / "scale.csv")
        if not rows:
            raise SystemExit(f"{out / 'scale.csv'} holds no rows yet: run the benchmark with this --out first")
        report(rows, out)
        return rows
    out.mkdir(parents=True, exist_ok=True)
    folder = wikiart_folder(args.images, (args.paintings or out).resolve())
    if args.prepare:
        return []
    print(f"{cpu_model()}. Synthart paintings in WikiArt's layout and proportions: this measures cost, "
          f"not accuracy.", file=sys.stderr, flush=True)
    # rows measured before into this --out stay in the table unless measured again
    train = sum(split_counts(c)["train"] for c in class_counts(args.images).values())
    planned = {(e, s, train) for e in args.entries for s in args.sizes}
    rows = [r for r in _read_csv(out / "scale.csv") if (r.entry, r.size, r.train_images) not in planned]
    for size in args.sizes:
        for entry in args.entries:
            row = measure(entry, size, folder, out, steps=args.steps, extra=args.extra)
            row.runs_page_s, row.run_page_s = dashboard_first_load(row.run_id, out)
            rows.append(row)
            rows.sort(key=lambda r: (-r.train_images, r.size, ENTRIES.index(r.entry) if r.entry in ENTRIES
                                     else len(ENTRIES), r.entry))
            _write_csv(rows, out / "scale.csv")
    # the data path alone, once per size, with the machine to itself again
    for size in sorted({r.size for r in rows if r.train_images == train and not r.input_images_per_s > 0}):
        feed = input_rate(folder, size, out)
        for r in rows:
            if r.size == size and r.train_images == train:
                r.input_images_per_s = feed
    _write_csv(rows, out / "scale.csv")
    report(rows, out)
    return rows


def report(rows: list[Row], out: Path) -> None:
    """The tables of ``rows``: costs, where the time went, the projection and the limits."""
    print(f"\nSynthart paintings of {SOURCE_SIZE} px in WikiArt's {len(WIKIART)} movements and proportions (cost, "
          f"not accuracy), one epoch each; {cpu_model()}; {time.strftime('%Y-%m-%d')}\n")
    print(table(rows))
    if any(r.steps < r.epoch_steps for r in rows):
        print("\n* the epoch from the steps run (--steps), at the rate they ran")
    print("\nWhere the time went (phases as the run printed them, seconds)\n")
    print(phases_table(rows))
    print("\nAt WikiArt's size, projected\n")
    print("\n".join(projection(rows)))
    problems = over_limits(rows)
    print("\nLimits (peak RSS ≤ 4 GB, no artifact over 200 MB, pages ≤ 5 s, analysis ≤ 3 min at 64 px): "
          + ("all hold" if not problems else "over: " + "; ".join(problems)))
    print(f"\ntable: {out / 'scale.csv'}; logs: {out / 'logs'}")


def _read_csv(path: Path) -> list[Row]:
    """The rows an earlier run of the benchmark wrote into the same --out (a table built in parts)."""
    if not path.is_file():
        return []
    rows = []
    types = {f.name: f.type for f in Row.__dataclass_fields__.values()}
    with open(path, newline="") as f:
        for record in csv.DictReader(f):
            phases = dict(p.rsplit("=", 1) for p in record.pop("phases").split("; ") if p)
            values = {k: {"int": int, "float": float}.get(types[k], str)(v) for k, v in record.items() if k in types}
            rows.append(Row(**values, phases={k: float(v) for k, v in phases.items()}))
    return rows


def _write_csv(rows: list[Row], path: Path) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([*COLUMNS, "phases"])
        for r in rows:
            writer.writerow([getattr(r, c) for c in COLUMNS] + ["; ".join(f"{k}={v:.1f}" for k, v in r.phases.items())])


if __name__ == "__main__":
    main()
