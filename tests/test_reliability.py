"""Faults, bad input and hostile files: each costs a clear message, never a run, data or trust.

Every test here breaks something on purpose (a SIGKILL, a dead tracking server, two writers on
one sqlite file, a booby-trapped checkpoint, a crash mid-write, a config that cannot work, a
folder of broken files) and checks what holds. docs/reliability.md's fault table lists them.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import unicodedata
from pathlib import Path

import mlflow
import pytest
import torch
from mlflow.tracking import MlflowClient
from PIL import Image

import registry
from conftest import REPO, MlflowServer, assert_resumed_as_uninterrupted, cli, run_id_of, wait_for
from images import PALETTE, RED, UNREADABLE, encoded, odd_images, solid
from runners import checkpoint, config, sync, train
from runners.run import main
from runners.tracking import Run

TINY = ["train.log_model=false", "data.size=100", "data.image_size=32", "train.batch_size=16", "train.log_every=1"]


def all_runs(uri: str | None = None) -> list:
    client = MlflowClient(uri)
    return client.search_runs([e.experiment_id for e in client.search_experiments()])


def history(run_id: str, key: str, uri: str | None = None) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in MlflowClient(uri).get_metric_history(run_id, key))


def in_process(capsys, *args: str) -> subprocess.CompletedProcess:
    """``python -m runners.run ARGS`` in this process (no torch import per call)."""
    code = main(list(args))
    out = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, out.out, out.err)


# -- a process killed without warning -------------------------------------------------------------


def _try_load(path: Path) -> dict | None:
    try:
        return checkpoint.load(path)
    except (ValueError, FileNotFoundError):
        return None


def _logged_steps(run_id: str) -> list[int]:
    try:
        return [step for step, _ in history(run_id, "train/loss")]
    except Exception:  # the store is busy with the trainer's write: look again
        return []


def _freeze_after_a_mid_epoch_checkpoint(proc: subprocess.Popen, run_id: str, ckpt: Path) -> dict:
    """Stop ``proc`` (SIGSTOP) at a moment when its last checkpoint is mid-epoch and it has
    already logged steps after that checkpoint; the checkpoint it holds then."""
    deadline = time.time() + 240
    while time.time() < deadline:
        assert proc.poll() is None, "the run ended before a mid-epoch checkpoint was caught:\n" + proc.stdout.read()
        state = _try_load(ckpt)
        if state and state["batch"] > 0 and max(_logged_steps(run_id), default=0) > state["step"]:
            os.kill(proc.pid, signal.SIGSTOP)  # frozen: what is on disk and in the store holds still
            state = _try_load(ckpt)
            if state and state["batch"] > 0 and max(_logged_steps(run_id), default=0) > state["step"]:
                return state
            os.kill(proc.pid, signal.SIGCONT)
        time.sleep(0.02)
    raise AssertionError("no mid-epoch checkpoint within 240 s")


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_matches_an_uninterrupted_run(capsys, tmp_path):
    args = [*TINY, "train.epochs=2", "train.checkpoint_every=2", "seed=3"]
    whole = train.train(config.resolve("cnn", args))
    capsys.readouterr()

    proc = cli("cnn", *args)
    run_id = run_id_of(wait_for(proc, "started run"))
    # while it trains, the stale-run sweep sees its heartbeat and leaves it alone
    assert "is training it" in dict(sync.mark_stale(0, dry_run=True))[run_id]

    ckpt = train.runs_root() / run_id / "checkpoints" / "last.pt"
    state = _freeze_after_a_mid_epoch_checkpoint(proc, run_id, ckpt)
    proc.kill()  # SIGKILL: nothing is saved, no status is written
    proc.wait(timeout=30)
    proc.stdout.close()
    logged = _logged_steps(run_id)
    assert max(logged) > state["step"], "the killed process logged steps its checkpoint does not hold"
    assert mlflow.get_run(run_id).info.status == "RUNNING", "a SIGKILL leaves the run RUNNING"
    assert "would be marked KILLED" in dict(sync.mark_stale(0, dry_run=True))[run_id], "its process is gone"

    resumed = in_process(capsys, "cnn", f"resume={run_id}")
    assert_resumed_as_uninterrupted(resumed, run_id, whole)
    # The steps the killed process logged past its checkpoint are trained again, not logged
    # again: each step appears once, with the very numbers of the uninterrupted run.
    for key in ("train/loss", "train/lr", "val/loss", "val/acc"):
        mine = history(run_id, key)
        assert len({step for step, _ in mine}) == len(mine), f"{key}: a step appears twice"
        assert mine == history(whole["run_id"], key), key


def _make_run(client: MlflowClient, *, start: float, status: str = "RUNNING", metric_at: float | None = None) -> str:
    exp = client.get_experiment_by_name("stale") or client.get_experiment(client.create_experiment("stale"))
    run_id = client.create_run(exp.experiment_id, start_time=int(start * 1000), tags={"zoo.entry": "cnn"}).info.run_id
    if metric_at is not None:
        client.log_metric(run_id, "train/loss", 1.0, timestamp=int(metric_at * 1000), step=1)
    if status != "RUNNING":
        client.set_terminated(run_id, status)
    return run_id


def _beat(run_id: str, *, pid: int, at: float, host: str | None = None) -> None:
    import socket

    folder = train.runs_root() / run_id
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "heartbeat.json").write_text(json.dumps({"pid": pid, "host": host or socket.gethostname(), "time": at}))


def _reaped_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_mark_stale_marks_only_runs_that_show_no_sign_of_life(tmp_path, capsys):
    client, now, hour = MlflowClient(), time.time(), 3600
    crashed = _make_run(client, start=now - 3 * hour)  # its process died on this machine
    _beat(crashed, pid=_reaped_pid(), at=now - 2 * hour)
    live = _make_run(client, start=now - 3 * hour)  # a live process here beats: never marked
    _beat(live, pid=os.getpid(), at=now)
    elsewhere = _make_run(client, start=now - 3 * hour, metric_at=now - 5 * 60)  # another machine, logging
    silent = _make_run(client, start=now - 3 * hour, metric_at=now - 2 * hour)  # another machine, silent
    finished = _make_run(client, start=now - 3 * hour, status="FINISHED")
    kept = _make_run(client, start=now - 3 * hour)  # it finished while the store was away
    Run(kept, train.runs_root() / kept)._keep("status", {"status": "FINISHED"})

    assert sync.main(["--mark-stale", "--older-than", "60", "--dry-run"]) == 0  # python -m runners.sync ...
    assert f"{crashed}: would be marked KILLED" in capsys.readouterr().out
    assert client.get_run(crashed).info.status == "RUNNING", "--dry-run changes nothing"

    report = dict(sync.mark_stale(60 * 60))
    status = {r: client.get_run(r).info.status for r in (crashed, live, elsewhere, silent, finished, kept)}
    assert status == {crashed: "KILLED", live: "RUNNING", elsewhere: "RUNNING", silent: "KILLED",
                      finished: "FINISHED", kept: "FINISHED"}
    assert f"resume={crashed}" in report[crashed] and "is training it" in report[live]
    assert re.search(r"last sign of life 5\.\d min ago", report[elsewhere]), report[elsewhere]
    assert "sent the records it kept locally" in report[kept] and finished not in report
    assert "no sign of life" in client.get_run(silent).data.tags["zoo.stale"]
    assert client.get_run(silent).info.end_time == int((now - 2 * hour) * 1000), "ended at its last sign of life"


def test_resume_refuses_a_run_that_a_live_process_still_trains(tmp_path):
    run_id = _make_run(MlflowClient(), start=time.time())
    _beat(run_id, pid=os.getppid(), at=time.time())  # pytest's parent: alive, and not this process
    with pytest.raises(RuntimeError, match=f"still being trained by process {os.getppid()}"):
        Run.attach(run_id, local_root=train.runs_root())


# -- the tracking server goes away mid-run ---------------------------------------------------------


@pytest.mark.slow
def test_a_tracking_server_that_goes_away_mid_run_loses_nothing(tmp_path, monkeypatch, empty_store):
    shutil.copy(empty_store, tmp_path / "server.db")  # its tables made: the server starts sooner
    server = MlflowServer(f"sqlite:///{tmp_path / 'server.db'}", tmp_path / "artifacts").start()
    try:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", server.uri)
        proc = cli("cnn", *TINY, "data.size=48", "train.epochs=4")
        lines = wait_for(proc, "epoch 1/4")
        server.stop()  # gone while epochs 2 to 4 train
        out = "".join(lines) + proc.communicate(timeout=300)[0]
        assert proc.returncode == 0, out
        run_id = run_id_of(lines)
        folder = train.runs_root() / run_id
        outbox = folder / "outbox.jsonl"
        assert "training goes on" in out and f"kept in {outbox}" in out, out
        assert f"python -m runners.sync {run_id}" in out
        assert "test: acc=" in out, "training went on to its test evaluation"
        assert outbox.exists() and checkpoint.load(folder / "checkpoints" / "last.pt")["epoch"] == 4

        server.start()  # the same port, the same stores
        assert sync.main([run_id]) == 0
        assert not outbox.exists()
        client = MlflowClient(server.uri)
        run = client.get_run(run_id)
        assert run.info.status == "FINISHED" and "test/acc" in run.data.metrics
        steps = 4 * train.loader.num_batches(48, 16)
        assert {s for s, _ in history(run_id, "train/loss", server.uri)} == set(range(1, steps + 1))
        assert [s for s, _ in history(run_id, "val/loss", server.uri)] == [1, 2, 3, 4]
        assert "checkpoints/last.pt" in {a.path for a in client.list_artifacts(run_id, "checkpoints")}
    finally:
        server.stop()


def test_what_an_earlier_process_kept_is_sent_before_anything_newer(tmp_path):
    # stopped (KILLED) while the store was away, then resumed once it is back: the old status
    # must not land after the new run's FINISHED
    run_id = _make_run(MlflowClient(), start=time.time())
    Run(run_id, train.runs_root() / run_id)._keep("status", {"status": "KILLED"})
    run = Run.start("ignored", resume=run_id, local_root=train.runs_root())
    run.log_metrics({"train/loss": 0.5}, step=1)
    run.end("FINISHED")
    assert run.flush()  # what the runner does last
    assert MlflowClient().get_run(run_id).info.status == "FINISHED"


def test_a_line_cut_short_in_the_outbox_is_skipped_not_fatal(tmp_path, capsys):
    run_id = _make_run(MlflowClient(), start=time.time())
    run = Run(run_id, train.runs_root() / run_id)
    run._keep("batch", {"metrics": [["train/loss", 0.5, 0, 1]]})
    with run.outbox.open("a") as f:
        f.write('{"op": "batch", "metrics": [["train/lo')  # the process died mid-append
    assert sync.main([run_id]) == 0
    assert history(run_id, "train/loss") == [(1, 0.5)]
    assert "line 2 is cut short" in capsys.readouterr().err


# -- two writers on one sqlite file ----------------------------------------------------------------


def _start_at_once(barrier, results) -> None:
    MlflowClient().search_experiments()  # each process has its own connection before the race
    barrier.wait()
    try:
        results.put(Run.start("shared", name="racer").id)
    except Exception as exc:
        results.put(f"{type(exc).__name__}: {exc}"[:300])


def test_runs_started_at_the_same_instant_share_their_new_experiment(tmp_path):
    ctx, n = multiprocessing.get_context("fork"), 4
    barrier, results = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=_start_at_once, args=(barrier, results)) for _ in range(n)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    outcomes = [results.get(timeout=5) for _ in procs]
    assert all(len(o) == 32 for o in outcomes), outcomes  # run ids, not errors
    exp = MlflowClient().get_experiment_by_name("shared")
    assert {r.info.run_id for r in MlflowClient().search_runs([exp.experiment_id])} == set(outcomes)


def test_a_write_waits_out_a_locked_sqlite_file_instead_of_going_offline(tmp_path, monkeypatch):
    # MLflow's sqlite engine waits 20 s for a lock; a store written by many processes can wait
    # longer, and a locked file is busy, not away: the write waits its turn and is sent
    from mlflow.exceptions import MlflowException

    run = Run.start("locked", local_root=train.runs_root())
    real, calls = run.client.log_batch, []

    def busy_twice(*args, **kwargs):
        calls.append(1)
        if len(calls) <= 2:
            raise MlflowException("(sqlite3.OperationalError) database is locked")
        return real(*args, **kwargs)

    monkeypatch.setattr(run.client, "log_batch", busy_twice)
    run.log_metrics({"train/loss": 0.25}, step=1)
    assert len(calls) == 3 and not run.offline and not run.outbox.exists()
    assert history(run.id, "train/loss") == [(1, 0.25)]


@pytest.mark.slow
def test_two_trainings_on_one_sqlite_store_both_finish(tmp_path):
    procs = [cli("cnn", *TINY, "data.size=48", "train.epochs=1", f"seed={seed}") for seed in (0, 1)]
    outs = [p.communicate(timeout=400)[0] for p in procs]
    for p, out in zip(procs, outs):
        assert p.returncode == 0, out
        assert "does not answer" not in out, "no write had to wait for the outbox"
    ids = [out.strip().splitlines()[-1].split()[1] for out in outs]
    runs = {r.info.run_id: r for r in all_runs()}
    assert set(runs) == set(ids)
    for run_id in ids:
        assert runs[run_id].info.status == "FINISHED" and "test/acc" in runs[run_id].data.metrics
        steps = [s for s, _ in history(run_id, "train/loss")]
        assert steps == list(range(1, train.loader.num_batches(48, 16) + 1))
    assert len({r.info.experiment_id for r in runs.values()}) == 1


# -- hostile and half-written checkpoints ----------------------------------------------------------


class _RunsCode:
    """Unpickling this calls ``os.system``: what a booby-trapped checkpoint holds."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch '{self.marker}'",)


def _hostile(path: Path, marker: Path, kind: str) -> Path:
    state = {"model": {"w": torch.zeros(2)}, "epoch": _RunsCode(marker)}
    if kind == "zip":  # torch.save's format
        torch.save(state, path)
    elif kind == "legacy":  # torch's older format, which torch.load still reads
        torch.save(state, path, _use_new_zipfile_serialization=False)
    else:  # a bare pickle: torch.load unpickles it before it can tell it is no checkpoint
        import pickle

        path.write_bytes(pickle.dumps({"epoch": _RunsCode(marker)}, protocol=2))
    return path


@pytest.mark.parametrize("kind", ["zip", "legacy", "pickle"])
def test_a_checkpoint_crafted_to_run_code_is_refused(tmp_path, kind):
    # the file really is hostile: an unguarded load runs its command
    armed = tmp_path / "armed"
    with contextlib.suppress(RuntimeError):
        torch.load(_hostile(tmp_path / "proof.pt", armed, kind), weights_only=False)
    assert armed.exists()

    marker = tmp_path / "pwned"
    with pytest.raises(ValueError, match="weights_only=True") as caught:
        checkpoint.load(_hostile(tmp_path / "last.pt", marker, kind))
    message = str(caught.value)
    assert "is not a loadable artzoo checkpoint (Trying to load unsupported GLOBAL posix.system" in message, message
    assert "refused, never run" in message and "will likely succeed" not in message
    assert not marker.exists()


def test_resume_refuses_a_crafted_checkpoint_and_leaves_the_run_as_it_was(tmp_path, capsys):
    cfg = config.resolve("cnn", [*TINY, "train.epochs=1"])
    client = MlflowClient()
    run = Run.start("cnn", name="victim", local_root=train.runs_root())
    run.log_dict(cfg, "config.json")
    run.end("KILLED")
    marker = tmp_path / "pwned"
    (train.runs_root() / run.id / "checkpoints").mkdir(parents=True)
    _hostile(train.runs_root() / run.id / "checkpoints" / "last.pt", marker, "zip")

    out = in_process(capsys, "cnn", f"resume={run.id}")
    assert out.returncode == 1
    assert "is not a loadable artzoo checkpoint" in out.stderr and "weights_only=True" in out.stderr
    assert not marker.exists()
    assert "started run" not in out.stdout
    assert client.get_run(run.id).info.status == "KILLED", "a refused resume does not touch the run"


def test_a_checkpoint_write_that_fails_keeps_the_previous_one(tmp_path, monkeypatch):
    path = tmp_path / "checkpoints" / "last.pt"
    checkpoint.save(path, {"step": 1, "w": torch.ones(3)})

    def disk_full(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint.os, "replace", disk_full)
    with pytest.raises(OSError, match="No space left"):
        checkpoint.save(path, {"step": 2, "w": torch.zeros(3)})
    assert checkpoint.load(path)["step"] == 1
    assert os.listdir(path.parent) == ["last.pt"], "the temporary file is removed"


KILLED_WRITER = """
import sys, torch
from pathlib import Path
from runners import checkpoint
path = Path(sys.argv[1])
checkpoint.save(path, {"version": 0, "w": torch.zeros(4)})
print("ready", flush=True)
big = torch.ones(16_000_000)  # 64 MB: each save takes a while
version = 1
while True:
    checkpoint.save(path, {"version": version, "w": big})
    version += 1
"""


@pytest.mark.slow
def test_a_writer_killed_mid_save_never_leaves_a_checkpoint_that_loads_wrongly(tmp_path):
    path = tmp_path / "checkpoints" / "last.pt"
    proc = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(path)], stdout=subprocess.PIPE, text=True,
                            cwd=REPO)
    assert proc.stdout.readline().strip() == "ready"
    deadline = time.time() + 120
    while time.time() < deadline:  # kill it while a temporary file is half written
        partial = [p for p in path.parent.glob(".last.pt.*") if p.exists() and p.stat().st_size > 1_000_000]
        if partial:
            break
        time.sleep(0.001)
    proc.kill()
    proc.wait(timeout=30)
    assert partial, "never caught a save in progress"

    state = checkpoint.load(path)  # the old state or a whole new one, never a part
    assert state["version"] == 0 or (state["w"].numel() == 16_000_000 and bool((state["w"] == 1).all()))
    checkpoint.save(path, {"version": -1, "w": torch.zeros(1)})
    assert os.listdir(path.parent) == ["last.pt"], "the next save clears what the killed writer left"


# -- bad input, refused before any work -------------------------------------------------------------


def _one_class_folder(root: Path) -> Path:
    for split in ("train", "test"):
        for k in range(3):
            solid(root / split / "Cubism" / f"{k}.png", PALETTE[k])
    return root


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["cnn", "data={one_class}", "data.image_size=16"],
         ["data={one_class}", "1 class with images (only 'Cubism')", "needs at least 2 classes"]),
        (["cond_ae", *TINY, "data.image_size=36", "model.stages=3"],
         ["data.image_size=36", "model.stages=3", "not divisible by 2**stages = 8", "at most 2"]),
        (["ae", "train.imbalance=sampler"],
         ["train.imbalance=sampler", "task classify", "task reconstruct", "without labels"]),
    ],
    ids=["one-class-dataset-for-a-classifier", "image-size-the-model-cannot-take", "sampler-without-labels"],
)
def test_a_config_that_cannot_work_is_refused_before_a_run_is_made(tmp_path, capsys, args, words):
    one_class = str(_one_class_folder(tmp_path / "only cubism"))
    out = in_process(capsys, *(a.format(one_class=one_class) for a in args))
    assert out.returncode == 2, out.stdout + out.stderr
    for word in words:
        assert word.format(one_class=one_class) in out.stderr, out.stderr
    assert "Traceback" not in out.stderr and "started run" not in out.stdout
    assert not all_runs()


# -- a folder of odd and broken files ---------------------------------------------------------------


@pytest.mark.slow
def test_training_on_a_folder_of_odd_and_broken_files_completes_and_names_the_broken_ones(tmp_path, capsys):
    root = tmp_path / "my art (export)"
    classes = [unicodedata.normalize("NFC", "Réalisme ancien"), "Pop Art", "写真 派"]
    broken = list(UNREADABLE.items())
    expected_skips = {}
    for c, name in enumerate(classes):
        for split in ("train", "test"):
            for file, data in odd_images(PALETTE[c]).items():
                (root / split / name).mkdir(parents=True, exist_ok=True)
                (root / split / name / f"{c} {file}").write_bytes(data)
        (root / "train" / name / f"tête à tête {c}.png").write_bytes(encoded(Image.new("RGB", (9, 9), RED), "PNG"))
        for junk in (".DS_Store", "Thumbs.db", "notes.txt", "._0 plain photo.jpg"):
            (root / "train" / name / junk).write_bytes(b"\0\1 not a picture")
    for k, (file, (data, word)) in enumerate(broken):  # the broken files, spread over the classes
        path = root / "train" / classes[k % len(classes)] / f"cassé {file}"
        path.write_bytes(data)
        expected_skips[str(path)] = word

    out = in_process(capsys, "cnn", f"data={root}", "data.image_size=16", "train.epochs=1", "train.batch_size=8")
    assert out.returncode == 0, out.stderr
    run = mlflow.get_run(out.stdout.strip().splitlines()[-1].split()[1])
    assert run.info.status == "FINISHED"
    assert json.loads(run.data.tags["zoo.classes"]) == sorted(classes)
    # the broken files are named in the output and kept with their reasons in the run
    # (the course layout carves valid/ from train/, so a broken file may fall in either)
    skipped = sum(int(n) for n in re.findall(r"(\d+) unreadable file\(s\) skipped", out.stdout))
    assert skipped == len(broken), out.stdout
    readable = len(classes) * (len(odd_images(RED)) + 1)  # train and the valid split carved from it
    used = [registry.dataset(str(root), split=split, image_size=16) for split in ("train", "valid")]
    assert sum(len(ds) for ds in used) == readable, "every readable image is used"
    reported = json.loads(Path(mlflow.artifacts.download_artifacts(
        run_id=run.info.run_id, artifact_path="data/unreadable.json")).read_text())
    reasons = {item["path"]: item["reason"] for split in reported.values() for item in split}
    assert set(reasons) == set(expected_skips)
    for path, word in expected_skips.items():
        assert word in reasons[path], (path, reasons[path])



def test_tracked_run_ends_the_run_by_how_its_block_ends():
    from runners.tracking import Killed, tracked_run

    client = MlflowClient()
    with tracked_run("blocks", name="fine") as fine:
        fine.log_metrics({"x": 1.0}, step=0)
    assert client.get_run(fine.id).info.status == "FINISHED"
    with pytest.raises(Killed), tracked_run("blocks", name="asked") as asked:
        raise Killed("a stop was asked for")
    assert client.get_run(asked.id).info.status == "KILLED"
    with pytest.raises(ZeroDivisionError), tracked_run("blocks", name="broken") as broken:
        1 / 0
    failed = client.get_run(broken.id)
    assert failed.info.status == "FAILED" and failed.data.tags["zoo.error"].startswith("ZeroDivisionError")
    text = Path(client.download_artifacts(broken.id, "error.txt")).read_text()
    assert "Traceback" in text and "1 / 0" in text
    with tracked_run("blocks", enabled=False) as none:  # a torchrun rank other than 0
        assert none is None
    exp = client.get_experiment_by_name("blocks").experiment_id
    assert len(client.search_runs([exp])) == 3


def test_a_resume_on_a_machine_without_the_run_folder_takes_the_checkpoint_from_the_store():
    from runners import checkpoint, config, dist, train
    from zoo.schema import Artifact

    run_id = train.train(config.resolve("cnn", [*TINY, "train.epochs=1"]))["run_id"]
    local = train.runs_root() / run_id
    saved = checkpoint.load(local / Artifact.LAST)["model"]
    shutil.rmtree(local)  # another machine: the run is in the tracking store alone
    path = train._resume_checkpoint(run_id, dist.World())
    assert path == local / Artifact.LAST, "the checkpoint lands in the run's own folder, where training goes on"
    fetched = checkpoint.load(path)["model"]
    assert fetched.keys() == saved.keys() and all(torch.equal(fetched[k], saved[k]) for k in saved)
