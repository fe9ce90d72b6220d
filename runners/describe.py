"""A finished run's description, in Markdown: what MLflow shows as the run's (and its model's)
Description, the ``mlflow.note.content`` tag.

It answers what a reader of the run asks first: the task's headline test metrics, each with what
it measures (the task's ``metric_meanings``) and, where the task names them (``metric_bounds``),
what doing nothing and a perfect answer score; the weights they score; and the commands to look
further.
"""

from __future__ import annotations

import math

NOTE = "mlflow.note.content"  # MLflow's description tag, on runs and logged models alike


def headline_rows(task_cls, metrics: dict[str, float], num_classes: int) -> list[tuple[str, str, str]]:
    """``(name, value, meaning)`` of each headline test metric that ``metrics`` (``test/...``)
    holds, in the task's order; the meaning carries its baseline and ceiling where known."""
    meanings = getattr(task_cls, "metric_meanings", {})
    bounds = getattr(task_cls, "metric_bounds", {})
    rows = []
    for name in getattr(task_cls, "headline_metrics", ()):
        value = metrics.get(f"test/{name}")
        if value is None or not math.isfinite(value):
            continue
        meaning = meanings.get(name, "").replace("{chance}", f"{1 / max(num_classes, 1):.3g}")
        extra = [f"{word} {metrics[f'test/{other}']:.4g}" for word, other in zip(("baseline", "ceiling"),
                                                                             bounds.get(name, (None, None)))
                 if other and f"test/{other}" in metrics]
        rows.append((name, f"{value:.4g}", "; ".join(filter(None, [meaning, ", ".join(extra)]))))
    return rows


def describe(task_cls, cfg: dict, metrics: dict[str, float], *, run_id: str, served: str,
             mlflow_app: str = "artzoo") -> str:
    """The run's description (see the module's docstring)."""
    data = cfg["data"].get("root") or cfg["data"]["name"]
    rows = headline_rows(task_cls, metrics, len(cfg.get("classes", [])))
    count = metrics.get("test/count")
    lines = [f"**{cfg['entry']}** ({cfg['task']['name']}) on {data} at {cfg['data']['image_size']} px, seed "
             f"{cfg['seed']}: the test split" + (f" ({count:.0f} images)" if count else "") +
             f", scored with `{served}`, the weights its MLflow model serves.", ""]
    if rows:
        lines += ["| test metric | value | what it says |", "|---|---|---|"]
        lines += [f"| {name} | {value} | {meaning} |" for name, value, meaning in rows]
        lines.append("")
    lines += ["Look further:", "",
              f"- `streamlit run dashboard/app.py`, then `?run={run_id}` on any page",
              f"- `python -m runners.predict {run_id} my_pictures/ --out out`",
              f"- `mlflow ui --app-name {mlflow_app}`: every metric, its curves and the artifacts"]
    return "\n".join(lines)
