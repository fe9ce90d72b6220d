"""One run: its headline scores with what each says (the rest in a table), metric curves,
params, the classifier's confusion matrix, recall against training count and per-class table
(a restyle's per-style table), and the logged image grids with a slider over epochs."""

import json

import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from dashboard import store, ui
from zoo.schema import Artifact, Tag

uri, frame = ui.all_runs()
run_id = ui.pick_run(frame)
info = ui.header(uri, run_id)
files = store.artifact_paths(uri, run_id)
metrics = info["metrics"]

# -- scores --------------------------------------------------------------------------------------
hidden = ("/count", "_seconds", "_points")  # bookkeeping, not scores
row = frame[frame["run_id"] == run_id].iloc[0]
children = frame[frame["parent"] == run_id]
# A multi-seed parent logs each test metric of its seeds as <metric>_mean and <metric>_std; any
# other run's metric named ..._mean is a metric like the others.
multi = row["multi_seed"]
if multi:
    names = {k.removesuffix("_mean") for k in metrics if k.endswith("_mean")}
else:
    names = {k for k in metrics if k.startswith("test/")}
names = ui.ordered({k for k in names if not k.endswith(hidden)}, [row["task"]])
num_classes = len(json.loads(info["tags"].get(Tag.CLASSES, "[]")))
if multi:
    st.subheader(f"Over {len(children)} seeds (mean ± std)")
    ui.scores(names, {k: ui.metric_text(metrics[f"{k}_mean"], metrics.get(f"{k}_std")) for k in names}, row["task"],
              {k: metrics[f"{k}_mean"] for k in {k.removesuffix("_mean") for k in metrics if k.endswith("_mean")}},
              num_classes)
    for col, (_, child) in zip(st.columns(max(len(children), 1)), children.sort_values("name").iterrows()):
        col.page_link(ui.PAGES["run"], label=child["name"], query_params={"run": child["run_id"]})
elif names:
    st.subheader("Test scores")
    ui.scores(names, {k: ui.metric_text(metrics[k]) for k in names}, row["task"], metrics, num_classes)
if row["sweep"]:
    st.subheader(f"A {row['sweep']} of {len(children)} " + ("configurations" if row["sweep"] == "grid" else "trials"))
    if names:
        st.caption("The test scores above are the best configuration's (mean over its seeds where it has them).")
    ui.sweep(uri, run_id, info["tags"], key="sweep")
elif not names:
    st.info("No test scores: the run ended before its test evaluation, or is still training.")
if row["parent"]:
    up = frame[frame["run_id"] == row["parent"]]
    kind = up["sweep"].iloc[0] if len(up) else ""
    label = {"grid": "One configuration of a grid: see all of them", "search": "One trial of a search: see the study"}
    st.page_link(ui.PAGES["run"], label=label.get(kind, "One seed of a multi-seed run: see the mean ± std over its seeds"),
                 query_params={"run": row["parent"]})

tab_curves, tab_images, tab_classes, tab_params = st.tabs(["Curves", "Images", "Classes", "Params"])

# -- curves --------------------------------------------------------------------------------------
with tab_curves:
    curves = sorted(k for k in metrics if k.startswith(("train/", "val/")))
    if not curves:
        st.info("This run logged no training or validation curves.")
    else:
        # val/<metric>_best is one number, not a curve: offered, not drawn by default
        default = [k for k in curves if k == "train/loss" or (k.startswith("val/") and not k.endswith(("/count", "_best")))]
        chosen = st.multiselect("Curves", curves, default=default[:8])
        for start in range(0, len(chosen), 2):
            for col, key in zip(st.columns(2), chosen[start : start + 2]):
                h = store.history(uri, run_id, key)
                fig = go.Figure(go.Scatter(x=h["step"], y=h["value"], mode="lines+markers" if len(h) < 30 else "lines"))
                fig.update_layout(title=key, xaxis_title="epoch" if key.startswith("val/") else "step",
                                  height=300, margin=dict(t=40, b=40))
                col.plotly_chart(fig, key=f"curve_{key}")

# -- images --------------------------------------------------------------------------------------
with tab_images:
    by_name = ui.step_images(files)  # the grids logged every epoch
    stepped = {p for epochs in by_name.values() for p in epochs.values()}
    loose = [p for p in files if p.startswith("images/") and p.endswith(".png") and p not in stepped]
    if not by_name and not loose:
        ui.lacks("images/", run_id, uri)
    for name, epochs in sorted(by_name.items()):
        st.subheader(name.replace("_", " "))
        steps = sorted(epochs)
        epoch = steps[-1] if len(steps) == 1 else st.select_slider(
            "epoch (0: before training)" if 0 in steps else "epoch", steps, value=steps[-1], key=f"epoch_{name}")
        ui.artifact_image(uri, run_id, epochs[epoch],
                          caption=f"{name}, before training" if epoch == 0 else f"{name}, epoch {epoch}")
    for path in loose:
        st.subheader(path.removeprefix("images/").removesuffix(".png").replace("_", " "))
        ui.artifact_image(uri, run_id, path, caption=path)
    plots = [p for p in files if p.startswith("plots/") and p.endswith(".png")
             and not p.startswith(("plots/confusion", "plots/recall_vs_count"))]
    if plots:
        with st.expander("Logged plots"):
            for path in plots:
                ui.artifact_image(uri, run_id, path, caption=path)

# -- classes -------------------------------------------------------------------------------------
with tab_classes:
    confusion = store.table(uri, run_id, Artifact.CONFUSION)
    per_class = store.table(uri, run_id, Artifact.PER_CLASS)
    per_style = store.table(uri, run_id, Artifact.PER_STYLE)
    if per_style is not None:
        st.subheader("Per target style (test restyles)")
        st.caption("How often each judge calls the restyles into a style that style; the panel column is the "
                   "strictest judge's. The Restyle page draws them.")
        st.dataframe(per_style.reset_index(), hide_index=True,
                     column_config={per_style.index.name: st.column_config.TextColumn(width="large")})
    elif confusion is None and per_class is None:
        if ui.writes(info["tags"].get(Tag.TASK, ""), Artifact.CONFUSION):
            ui.lacks(Artifact.CONFUSION, run_id, uri)
        else:
            st.info("This run's task, "
                    f"{info['tags'].get(Tag.TASK, 'unknown')}, writes no per-class table: a confusion matrix is "
                    "made for classifiers, a per-style table for restyles.")
    by_count = per_class is not None and {"train_count", "recall"} <= set(per_class.columns)
    left, right = st.columns(2) if confusion is not None and by_count else (st.container(), st.container())
    if confusion is not None:
        left.subheader("Confusion matrix (test set)")
        fig = px.imshow(confusion.values, x=list(confusion.columns), y=list(confusion.index), text_auto=True,
                        color_continuous_scale="Blues", labels=dict(x="predicted", y="true", color="images"),
                        aspect="auto")
        fig.update_layout(height=120 + 28 * len(confusion), margin=dict(t=30, b=40))
        left.plotly_chart(fig, key="confusion")
    if by_count:
        # the long tail at a glance: does a style's recall fall with its share of the training set?
        right.subheader("Recall against training images")
        scored = per_class[per_class["support"] > 0].reset_index()
        fig = px.scatter(scored, x="train_count", y="recall", text=per_class.index.name, log_x=True,
                         color="shots" if "shots" in scored else None,
                         color_discrete_map={"many": "#1f77b4", "medium": "#ff7f0e", "few": "#d62728"},
                         labels=dict(train_count="training images (log scale)", recall="test recall"),
                         range_y=[-0.05, 1.08])
        fig.update_traces(textposition="top center", marker_size=10)
        fig.update_layout(height=120 + 28 * max(len(per_class), 8), margin=dict(t=30, b=40))
        right.plotly_chart(fig, key="recall_vs_count")
    if per_class is not None:
        st.subheader("Per class")
        # A text column sized for long style names: the index column would cut them short.
        st.dataframe(per_class.reset_index(), hide_index=True,
                     column_config={per_class.index.name: st.column_config.TextColumn(width="large")})

# -- params --------------------------------------------------------------------------------------
with tab_params:
    params = sorted(info["params"].items())
    if params:
        st.dataframe({"key": [k for k, _ in params], "value": [v for _, v in params]}, hide_index=True)
    else:
        st.info("This run logged no params.")
    with st.expander("Tags"):
        st.dataframe({"tag": list(info["tags"]), "value": list(info["tags"].values())}, hide_index=True)
    if files:
        with st.expander(f"Artifacts ({len(files)})"):
            st.text("\n".join(files))
