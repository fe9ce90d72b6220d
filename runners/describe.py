"""A finished run's description, in Markdown: what MLflow shows as the run's (and its model's)
Description, the ``mlflow.note.content`` tag.

It answers what a reader of the run asks first: the task's headline test metrics, each with what
it measures (the task's ``metric_meanings``) and, where the task names them (``metric_bounds``),
what doing nothing and a perfect answer score; the weights they score; and the commands to look
further.
"""

from __future__ import annotations

import math

from runners.mlflow_app import APP_NAME
from zoo import schema
from zoo.schema import Tag
from zoo.task import metric_meaning

NOTE = Tag.NOTE  # MLflow's description tag, on runs and logged models alike


def describe(task_cls, cfg: dict, metrics: dict[str, float], *, run_id: str, served: str) -> str:
    """The run's description (see the module's docstring)."""
    data = cfg["data"].get("root") or cfg["data"]["name"]
    names = [m for m in getattr(task_cls, "headline_metrics", ())
             if math.isfinite(metrics.get(schema.test(m), math.nan))]
    rows = [(m, f"{metrics[schema.test(m)]:.4g}", metric_meaning(task_cls, m, metrics, len(cfg.get("classes", []))))
            for m in names]
    count = metrics.get("test/count")
    lines = [f"**{cfg['entry']}** ({cfg['task']['name']}) on {data} at {cfg['data']['image_size']} px, seed "
             f"{cfg['seed']}: the test split" + (f" ({count:.0f} images)" if count else "") +
             f", scored with `{served}`, the weights its MLflow model serves.", ""]
    if rows:
        lines += ["| test metric | value | what it says |", "|---|---|---|"]
        lines += [f"| {name} | {value} | {meaning} |" for name, value, meaning in rows]
        lines.append("")
    stored = metrics.get("test/stored_training_bytes", 0)
    if stored:  # the model is not only weights: whoever receives it receives these pixels
        lines += [f"The model holds {stored / 2**20:.1f} MB of training paintings' pixels (its exemplar tiles): a "
                  f"copy of its checkpoint or MLflow model is a copy of them. Paintings under copyright: train with "
                  f"`model.marks=dictionary` (marks distilled from its tiles, none kept) to share the model.", ""]
    lines += ["Look further:", "",
              f"- `streamlit run dashboard/app.py`, then `?run={run_id}` on any page",
              f"- `python -m runners.predict {run_id} my_pictures/ --out out`",
              f"- `mlflow ui --app-name {APP_NAME}`: every metric, its curves and the artifacts"]
    return "\n".join(lines)
