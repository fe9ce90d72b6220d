"""Pieces every page shares: the store's runs (or why there are none), the run picker, the header
that says what state a run is in, and image helpers."""

from __future__ import annotations

import io
import json
import math
import re

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.io
import streamlit as st
from PIL import Image

import registry
from dashboard import store
from zoo import schema
from zoo.schema import Artifact, Tag

FIRST_RUN = "python -m runners.run cond_ae"
PAGES = {"run": "views/run.py", "clusters": "views/clusters.py", "restyle": "views/restyle.py"}


def all_runs() -> tuple[str, pd.DataFrame]:
    """The store's URI and its runs; stops the page with a hint when there are none to show."""
    uri = store.tracking_uri()
    try:
        frame = store.runs(uri)
    except store.StoreError as exc:
        st.error(f"{exc}\n\nCheck `MLFLOW_TRACKING_URI`, or unset it to read `sqlite:///mlflow.db` here.")
        st.stop()
    if frame.empty:
        st.info(f"No runs in `{uri}` yet. Make the first one (a few minutes on a laptop CPU), then refresh:")
        st.code(FIRST_RUN, language="bash")
        st.caption("Or point the dashboard at another store: `MLFLOW_TRACKING_URI=... streamlit run dashboard/app.py`.")
        st.stop()
    return uri, frame


def describe(row: pd.Series) -> str:
    """How a run is named in pickers: name, model on dataset, short id, and its state unless finished."""
    state = "" if row["status"] == "FINISHED" else f" ({row['status'].lower()})"
    model = row["model"] or row["entry"] or "?"
    return f"{row['name']}{state} · {model} on {row['dataset'] or '?'} · {row['run_id'][:6]}"


def pick_run(frame: pd.DataFrame, *, fits: pd.Series | None = None, none_fit: str = "") -> str:
    """A run chosen in the sidebar, kept in the URL (``?run=<id>``) and across pages.

    ``fits`` marks the runs this page is meant for. A link's run (``?run=`` or ``?run_id=``) is
    shown whatever it is; else the run chosen on another page if it fits here; else the newest
    finished run that fits.
    """
    fits = pd.Series(True, index=frame.index) if fits is None else fits.reindex(frame.index, fill_value=False)
    if not fits.any() and none_fit:
        st.info(none_fit)
    ids = list(frame["run_id"])
    # Not bound to the URL by Streamlit: a bound selectbox matches the URL against its labels,
    # and a link should carry the run id. The sidebar's navigation drops the URL's query.
    # ?run_id= is what people type by hand; the URL is rewritten to the ?run= that links carry.
    typed = st.query_params.pop("run_id", None)
    linked = st.query_params.get("run") or typed
    if linked and linked not in ids:
        st.warning(f"No run `{linked}` in this tracking store: the link's run was deleted, or lives in another "
                   f"store (MLFLOW_TRACKING_URI). Showing another run; pick one in the sidebar.")
    kept = st.session_state.get("run")
    if linked in ids:
        wanted = linked
    elif kept in set(frame.loc[fits, "run_id"]):
        wanted = kept
    else:
        wanted = ids[int((fits * 2 + (frame["status"] == "FINISHED")).to_numpy().argmax())]
    labels = dict(zip(ids, frame.apply(describe, axis=1)))
    chosen = st.sidebar.selectbox("Run", ids, index=ids.index(wanted), format_func=labels.get)
    st.session_state["run"] = st.query_params["run"] = chosen
    return chosen


def headline(tasks) -> list[str]:
    """The test metrics the tasks name as their headline (``headline_metrics``), in the tasks'
    order, each once; none for a task whose plugin is not installed or is broken."""
    found = [schema.test(m) for task in tasks for m in getattr(task_class(task), "headline_metrics", ())]
    return list(dict.fromkeys(found))


def reports(task: str, metric: str) -> bool:
    """Whether runs of ``task`` report ``metric`` (``test/...``) among its headline metrics: a page
    picks what to show by what a task declares, never by the task's name."""
    return metric in headline([task])


def writes(task: str, artifact: str) -> bool:
    """Whether runs of ``task`` write ``artifact`` (zoo.schema.Artifact) by its declaration
    (``Task.artifacts``): a page picks its runs and views by it, never by a task's name or by a
    metric it happens to log."""
    return artifact in getattr(task_class(task), "artifacts", ())


def task_class(task: str):
    """The task's class, or None where its plugin is not installed or is broken."""
    try:
        return registry.load("task", task)
    except registry.PluginError:
        return None


def scores(names: list[str], text: dict[str, str], task: str, values: dict[str, float], num_classes: int) -> None:
    """Test scores (``test/...`` names, in order): the task's headline metrics as tiles, each with
    what it says and its baseline and ceiling (the task's ``metric_meanings`` and
    ``metric_bounds``: zoo/task.py), the rest in a table below them. ``text`` is each one's value
    as shown; ``values`` the numbers the bounds are read from."""
    from zoo.task import metric_meaning

    cls = task_class(task)
    first = [n for n in headline([task]) if n in names]
    for start in range(0, len(first), 4):
        for col, name in zip(st.columns(4), first[start : start + 4]):
            short = name.removeprefix("test/")
            col.metric(short, text[name])
            if cls is not None and (meaning := metric_meaning(cls, short, values, num_classes)):
                col.caption(meaning)
    rest = [n for n in names if n not in first]
    if rest:
        table = pd.DataFrame({"test metric": [n.removeprefix("test/") for n in rest], "value": [text[n] for n in rest]})
        with st.expander(f"{'Other test scores' if first else 'Test scores'} ({len(rest)})", expanded=not first):
            st.dataframe(table, hide_index=True, column_config={"test metric": st.column_config.TextColumn(width="large")})


def ordered(names, tasks) -> list[str]:
    """Metric names as people read them: the tasks' headline metrics first, then the rest sorted."""
    first = [m for m in headline(tasks) if m in names]
    return first + sorted(set(names) - set(first))


def header(uri: str, run_id: str) -> dict:
    """Title and state of a run; stops the page when the store no longer has it."""
    info = store.run_info(uri, run_id)
    if info is None:
        st.warning(f"Run {run_id} is not in {uri} (deleted?). Pick another run in the sidebar.")
        st.stop()
    tags = info["tags"]
    st.title(info["name"])
    parts = [f"**{info['status'].lower()}**", tags.get(Tag.MODEL, "?"), tags.get(Tag.TASK, "?"),
             f"on {tags.get(Tag.DATASET, '?')}", f"`{run_id}`"]
    st.caption(" · ".join(parts))
    if info["status"] == "FAILED":
        st.error(f"This run failed: {tags.get(Tag.ERROR) or 'no reason was logged'}. Below is what it logged "
                 f"before it stopped.")
    elif info["status"] == "KILLED":
        st.warning("This run was stopped before its end (it can continue: "
                   f"`python -m runners.run {tags.get(Tag.ENTRY, 'ENTRY')} resume={run_id}`). "
                   "Below is what it logged until then.")
    elif info["status"] in ("RUNNING", "SCHEDULED"):
        st.info("This run is still training (or its process died without a word); refresh for news.")
    return info


def lacks(what: str, run_id: str, uri: str) -> None:
    """Say that a run lacks an artifact, and what it does have."""
    files = store.artifact_paths(uri, run_id)
    have = ", ".join(sorted({f.split("/")[0] + ("/" if "/" in f else "") for f in files})) or "no artifacts at all"
    st.info(f"This run has no `{what}`. It has: {have}.")


def metric_text(value: float | None, std: float | None = None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    text = f"{value:.4g}"
    return f"{text} ± {std:.2g}" if std is not None and not math.isnan(std) else text


# MLflow's name for an image logged with a key and a step (its UI's slider reads them); a
# "+compressed.webp" twin is its thumbnail. Runs before 2026-12-06 logged images/<key>_epochNNN.png.
_STEP_IMAGE = re.compile(r"images/(?P<key>.+?)(?:\+step\+(?P<step>\d+)\+timestamp\+\d+\+[0-9a-f-]+|_epoch(?P<epoch>\d+))\.png")


def step_images(paths) -> dict[str, dict[int, str]]:
    """Per image key, its logged image at each step (epoch): ``{key: {step: artifact path}}``."""
    found: dict[str, dict[int, str]] = {}
    for path in paths:
        m = _STEP_IMAGE.fullmatch(path)
        if m:
            found.setdefault(m["key"].replace("~", "/"), {})[int(m["step"] or m["epoch"])] = path
    return found


def png(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()



def artifact_image(uri: str, run_id: str, path: str, *, caption: str | None = None) -> None:
    """A logged picture, or a word on why it cannot be shown."""
    local = store.artifact(uri, run_id, path)
    if local is None:
        st.warning(f"`{path}` could not be fetched from the store.")
        return
    try:
        st.image(str(local), caption=caption)
    except (OSError, ValueError) as exc:  # a truncated or foreign file under images/
        st.warning(f"`{path}` is not a readable image ({exc}).")


def per_class_recalls(uri: str, run_id: str) -> pd.DataFrame | None:
    """A classify run's ``tables/per_class.csv`` (train_count and recall by class), or for a
    multi-seed run the mean recall over its seeds'; None where there is none."""
    own = store.table(uri, run_id, Artifact.PER_CLASS)
    if own is not None:
        return own if {"train_count", "recall"} <= set(own.columns) else None
    frame = store.runs(uri)
    seeds = [store.table(uri, r, Artifact.PER_CLASS) for r in frame.loc[frame["parent"] == run_id, "run_id"]]
    seeds = [t for t in seeds if t is not None and {"train_count", "recall"} <= set(t.columns)]
    if not seeds:
        return None
    mean = seeds[0][["train_count"]].copy()
    mean["recall"] = np.mean([t["recall"].reindex(mean.index) for t in seeds], axis=0)
    return mean


def recall_by_count(uri: str, table: pd.DataFrame, keys: list[str], *, key: str) -> None:
    """A grid of classify configurations (imbalance remedies): each one's test recall by class
    against the class's training count, on one figure (mean over seeds)."""
    lines = []
    for _, row in table.iterrows():
        recalls = per_class_recalls(uri, row["run_id"]) if isinstance(row.get("run_id"), str) else None
        if recalls is not None:
            label = ", ".join(f"{k.removeprefix('train.')}={row[k]}" for k in keys) or row["run_id"][:8]
            lines.append(recalls.reset_index().assign(configuration=label).sort_values("train_count"))
    if not lines:
        return
    frame = pd.concat(lines)
    hover = frame.columns[0]
    st.subheader("Recall by class against its training count")
    fig = px.line(frame, x="train_count", y="recall", color="configuration", markers=True, log_x=True,
                  hover_name=hover, labels={"train_count": "training images of the class (log scale)",
                                            "recall": "test recall (mean over seeds)"})
    fig.update_layout(height=420, margin=dict(t=30, b=40), yaxis_range=[-0.03, 1.05])
    st.plotly_chart(fig, key=key)
    st.caption("One line per configuration; the tail (few training images) is on the left, where the remedies "
               "part. The run page of each configuration has its confusion matrix.")


def sweep(uri: str, run_id: str, tags: dict[str, str], *, key: str) -> None:
    """A sweep parent's configurations (a grid) or trials (a search): the table with the best
    marked, its main metric against each swept key, and for a search Optuna's own plots."""
    table = store.table(uri, run_id, "sweep.csv")
    if table is None:
        st.info("This sweep has no `sweep.csv` yet: it is logged when its runs have ended.")
        return
    table = table.reset_index()
    keys = [k for k in json.loads(tags.get(Tag.SWEEP_KEYS, "[]")) if k in table]
    heads = [m for m in headline([tags.get(Tag.TASK, "")]) if f"{m}_mean" in table or m in table][:4]
    if tags.get(Tag.SWEEP) == "grid":
        try:
            main = schema.best(registry.load('task', tags.get(Tag.TASK, '')).main_metric)
        except registry.PluginError:
            main = None
        y, err = (f"{main}_mean", f"{main}_std") if main and f"{main}_mean" in table else (None, None)
        marked = table["best"].astype(str) == "True" if "best" in table else pd.Series(False, index=table.index)
        shown = pd.DataFrame({"": np.where(marked, "★ best", ""),
                              **{k: table[k].astype(str) for k in keys}, "status": table["status"]})
        for m in heads:
            shown[m.removeprefix("test/")] = [metric_text(a, b) for a, b in zip(table[f"{m}_mean"], table[f"{m}_std"])]
        if y:
            shown[f"{main} (ranks)"] = [metric_text(a, b) for a, b in zip(table[y], table[err])]
        st.caption(f"{len(table)} configurations; the best by {main} (mean over seeds), the validation metric "
                   "that also picks each run's best checkpoint. Test scores: mean ± std over seeds.")
    else:
        y, err = "value", None
        best = tags.get(Tag.BEST_TRIAL)
        shown = pd.DataFrame({"": np.where(table["trial"].astype(str) == best, "★ best", ""),
                              "trial": table["trial"], "state": table["state"], "value": table["value"],
                              **{k: table[k] for k in keys}})
        for m in heads:
            if m in table:
                shown[m.removeprefix("test/")] = table[m]
        st.caption(f"{len(table)} trials of study `{tags.get(Tag.STUDY, '?')}`; value: the best "
                   f"{tags.get(Tag.SWEEP_METRIC, 'validation metric')} of each trial over its epochs. A pruned "
                   "trial stopped early, behind the median of the earlier trials.")
    st.dataframe(shown, hide_index=True, key=f"{key}_table")
    if y and y in table and keys:
        for start in range(0, len(keys), 3):
            for col, k in zip(st.columns(3), keys[start : start + 3]):
                numeric = pd.to_numeric(table[k], errors="coerce").notna().all()
                fig = px.scatter(table, x=k, y=y, error_y=err if err in table else None,
                                 color="state" if "state" in table else None,
                                 log_x=bool(numeric and (pd.to_numeric(table[k]) > 0).all()
                                            and pd.to_numeric(table[k]).max() > 20 * pd.to_numeric(table[k]).min()))
                if not numeric:
                    fig.update_xaxes(type="category")
                fig.update_layout(height=300, margin=dict(t=30, b=40), yaxis_title=y)
                col.plotly_chart(fig, key=f"{key}_{k}")
    if tags.get(Tag.SWEEP) == "grid":
        recall_by_count(uri, table, keys, key=f"{key}_recall")
    for name, title in (("optimization_history", "Optimization history"), ("param_importances", "Parameter importances")):
        local = store.artifact(uri, run_id, f"optuna/{name}.json")
        if local is not None:
            st.subheader(title)
            st.plotly_chart(plotly.io.from_json(local.read_text()), key=f"{key}_{name}")
