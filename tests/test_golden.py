"""Golden metrics: tiny runs of every kind of task give the numbers they gave when the golden file
was recorded, bit for bit on the CPU model it was recorded on (elsewhere: every metric, and the
training curves to 0.1 %). A change to the training core that
is meant to change no behaviour (a refactor) must pass this unchanged.

Record again, where a change is meant to move the numbers or on another CPU model:
``python tests/test_golden.py`` (it adds or replaces this machine's entry in golden_metrics.json).
"""

from __future__ import annotations

import json
import math
import platform
import sys
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

GOLDEN = Path(__file__).with_name("golden_metrics.json")
TINY = ["train.log_model=false", "data=digits", "data.image_size=16", "train.epochs=2", "train.batch_size=32",
        "train.max_steps_per_epoch=3", "train.log_every=1", "seed=5"]
# one run per kind of training: a classifier, clipped and warmed up; an autoencoder whose style network trains beside it;
# a restyler with its critic, its moving average and judges; a third party's task on a built-in
# model, with a remedy of its parent
RUNS = {
    "cnn": ["cnn", "train.grad_clip=0.5", "train.warmup_steps=2"],
    "ae": ["ae", "train.max_points=120", "train.style_steps=4", "train.style_batch=8"],
    "cond_ae": ["cond_ae", "train.judge_steps=10", "train.umap=false"],
    "focal": ["tinynet", "task=focal", "train.gamma=1", "train.imbalance=weights", "data=stripes"],
}
# measured, not computed: the clock's and the machine's numbers differ from run to run
VARYING = ("system/", "images_per_s", "_seconds")


def cpu_key() -> str:
    """This machine's CPU (its name, family and model, the vector unit torch uses) and torch's
    thread count: on another, floats are summed in another order."""
    fields = {}
    if Path("/proc/cpuinfo").exists():
        for line in Path("/proc/cpuinfo").read_text().split("\n\n")[0].splitlines():
            key, _, value = line.partition(":")
            fields[key.strip()] = value.strip()
    name = fields.get("model name") or platform.processor() or platform.machine()
    return (f"{name} (family {fields.get('cpu family', '?')} model {fields.get('model', '?')}, "
            f"{torch.backends.cpu.get_cpu_capability()}); {torch.get_num_threads()} threads")


def metrics_of(name: str) -> dict[str, list[float]]:
    """Every metric the tiny run ``name`` logs that does not depend on the clock, step by step."""
    from runners import config, train

    entry, *overrides = RUNS[name]
    run_id = train.train(config.resolve(entry, [*TINY, *overrides]))["run_id"]
    client = MlflowClient()
    keys = sorted(k for k in client.get_run(run_id).data.metrics if not any(v in k for v in VARYING))
    return {k: [m.value for m in sorted(client.get_metric_history(run_id, k), key=lambda m: (m.step, m.timestamp))]
            for k in keys}


def same(a: float, b: float, rel: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return a == b if rel == 0 else math.isclose(a, b, rel_tol=rel, abs_tol=rel)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(RUNS))
def test_a_tiny_run_gives_its_golden_numbers(name, with_plugin):
    golden = json.loads(GOLDEN.read_text())
    here = golden["machines"].get(cpu_key())
    # elsewhere floats are summed in another order: the metrics must all be there, and the
    # training curves close (the scores after it, a judge's or k-means' verdicts near a boundary and
    # a UMAP layout, may move by more than rounding)
    expected, rel = (here, 0.0) if here is not None else (golden["machines"][golden["recorded_on"]], 1e-3)
    got = metrics_of(name)
    want = expected[name]
    assert sorted(got) == sorted(want), "the run logs the metrics it logged"
    compared = [k for k in want if here is not None or k.startswith("train/")]
    assert compared, "some numbers are compared"
    moved = {k: (want[k], got[k]) for k in compared
             if len(got[k]) != len(want[k]) or not all(same(a, b, rel) for a, b in zip(got[k], want[k]))}
    assert not moved, f"numbers moved ({'bit for bit' if rel == 0 else f'beyond {rel:.0%}'}): {moved}"


if __name__ == "__main__":  # record this machine's numbers
    import os
    import tempfile

    sys.path.insert(0, str(Path(__file__).parent))
    from conftest import install_plugin

    key = cpu_key()  # as the test reads it, before any run
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp}/mlflow.db"
        os.environ["ARTZOO_CACHE"] = f"{tmp}/cache"
        os.environ["ARTZOO_RUNS"] = f"{tmp}/runs"
        sys.path.insert(0, str(install_plugin(Path(tmp) / "site", Path(tmp))))
        numbers = {name: metrics_of(name) for name in RUNS}
    golden = json.loads(GOLDEN.read_text()) if GOLDEN.exists() else {"machines": {}}
    golden["machines"][key] = numbers
    golden["recorded_on"] = golden.get("recorded_on") or key
    GOLDEN.write_text(json.dumps(golden, indent=1, sort_keys=True) + "\n")
    print(f"recorded {len(numbers)} runs for {key} in {GOLDEN}")
