"""Every run across experiments: filter, compare metric curves, the sweeps and the multi-seed groups."""

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from dashboard import store, ui

uri, frame = ui.all_runs()
st.title("Runs")

# -- filters -------------------------------------------------------------------------------------
cols = st.columns([2, 1, 1, 1, 1, 1])
text = cols[0].text_input("Search", placeholder="name, model, dataset or run id")
chosen = {
    col: cols[i + 1].multiselect(col.capitalize(), sorted(frame[col].replace("", "?").unique()))
    for i, col in enumerate(["experiment", "model", "task", "dataset", "status"])
}
members = store.in_sweep(frame)
inside = st.toggle("Show the runs inside sweeps", value=False,
                   help="a sweep is one row; its configurations and trials are listed under Sweeps below")
view = frame if inside else frame[~members]
for col, values in chosen.items():
    if values:
        view = view[view[col].replace("", "?").isin(values)]
if text:
    haystack = view[["name", "model", "entry", "dataset", "run_id", "experiment"]].astype(str).agg(" ".join, axis=1)
    view = view[haystack.str.contains(text, case=False, regex=False)]

# -- the table -----------------------------------------------------------------------------------
# One column per test metric; a multi-seed parent's cell is the mean over its seeds (it logs
# <metric>_mean and <metric>_std, while any other run's metric named ..._mean is its own).
tests = [c for c in view if c.startswith("test/")]
means = view.loc[view["multi_seed"], [c for c in tests if c.endswith("_mean")]]
scores = pd.concat([view.loc[~view["multi_seed"], tests], means.rename(columns=lambda c: c.removesuffix("_mean"))])
scores = scores.reindex(view.index).dropna(axis=1, how="all")
# The newest shown run's task's headline metrics first, then the other shown tasks'.
present = [m for m in ui.headline(view["task"].unique()) if m in scores]
extra = st.multiselect("More metric columns", sorted(set(scores.columns) - set(present)),
                       help="any test metric a run logged, plugins' included")
metrics = present + extra

children = frame[frame["parent"] != ""].groupby("parent")["run_id"].count()
names = dict(zip(frame["run_id"], frame["name"]))
shown = view.drop(columns=tests).join(scores[metrics])
shown["seeds"] = [
    (f"grid of {children.get(r, 0)} (best)" if sweep == "grid" else f"search, {children.get(r, 0)} trials (best)")
    if sweep else f"{children.get(r, 0)} seeds (mean)" if multi else (f"in {names.get(p, p[:8])}" if p else "")
    for r, p, multi, sweep in zip(shown["run_id"], shown["parent"], shown["multi_seed"], shown["sweep"])
]
shown["id"] = shown["run_id"]
columns = ["name", "experiment", "model", "dataset", "status", "start", "duration_s", "seeds", *metrics, "id"]
st.caption(f"{len(view)} of {len(frame)} runs · select rows to compare them")
selection = st.dataframe(
    shown[columns],
    hide_index=True,
    key="runs_table",
    on_select="rerun",
    selection_mode="multi-row",
    column_config={
        "start": st.column_config.DatetimeColumn("start (UTC)", format="YYYY-MM-DD HH:mm"),
        "duration_s": st.column_config.NumberColumn("duration", format="%.0f s"),
        "id": st.column_config.TextColumn("run id"),
        **{m: st.column_config.NumberColumn(m.removeprefix("test/"), format="%.4f", help=m) for m in metrics},
    },
)
picked = shown.iloc[selection.selection.rows] if selection.selection.rows else shown.iloc[:0]

# -- compare -------------------------------------------------------------------------------------
st.header("Compare")
if picked.empty:
    st.info("Select one or more rows above to overlay their metric curves.")
else:
    for _, row in picked.iterrows():
        links = st.columns([3, 1, 1, 1])
        links[0].markdown(ui.describe(row))
        for col, page, label in zip(links[1:], ["run", "clusters", "restyle"], ["Open run", "Clusters", "Restyle"]):
            col.page_link(ui.PAGES[page], label=label, query_params={"run": row["run_id"]})
    logged = [store.run_info(uri, rid) for rid in picked["run_id"]]
    curves = sorted({k for info in logged if info for k in info["metrics"] if k.startswith(("train/", "val/"))})
    default = next((k for k in ("train/loss", *curves) if k in curves), None)
    if default is None:
        st.info("The selected runs logged no training or validation curves.")
    else:
        key = st.selectbox("Metric", curves, index=curves.index(default))
        fig = go.Figure()
        for _, row in picked.iterrows():
            h = store.history(uri, row["run_id"], key)
            if not h.empty:
                fig.add_trace(go.Scatter(x=h["step"], y=h["value"], mode="lines+markers" if len(h) < 30 else "lines",
                                         name=f"{row['name']} ({row['run_id'][:6]})"))
        fig.update_layout(xaxis_title="epoch" if key.startswith("val/") else "step", yaxis_title=key,
                          height=380, margin=dict(t=30, b=40))
        st.plotly_chart(fig, key="compare_chart")

# -- sweeps --------------------------------------------------------------------------------------
sweeps = frame[frame["sweep"] != ""]
if not sweeps.empty:
    st.header("Sweeps")
    for _, parent in sweeps.iterrows():
        n = int(children.get(parent["run_id"], 0))
        what = f"{n} configurations" if parent["sweep"] == "grid" else f"{n} trials"
        with st.expander(f"{parent['name']} · {parent['sweep']} · {what} · {parent['status'].lower()}",
                         expanded=len(sweeps) == 1):
            st.page_link(ui.PAGES["run"], label="Open the sweep's run page", query_params={"run": parent["run_id"]})
            info = store.run_info(uri, parent["run_id"])
            if info is not None:
                ui.sweep(uri, parent["run_id"], info["tags"], key=f"sweep_{parent['run_id']}")

# -- multi-seed groups ---------------------------------------------------------------------------
parents = frame[frame["multi_seed"] & ~members]
if not parents.empty:
    st.header("Multi-seed runs")
    for _, parent in parents.iterrows():
        kids = frame[frame["parent"] == parent["run_id"]].sort_values("name")
        title = f"{parent['name']} · {len(kids)} seeds · {parent['status'].lower()}"
        with st.expander(title, expanded=len(parents) == 1):
            means = ui.ordered({c.removesuffix("_mean") for c in frame.columns
                                if c.endswith("_mean") and pd.notna(parent.get(c))}, [parent["task"]])
            summary = pd.DataFrame({
                "metric": means,
                "mean ± std": [ui.metric_text(parent[f"{m}_mean"], parent.get(f"{m}_std")) for m in means],
                **{kid["name"]: [kid.get(m) for m in means] for _, kid in kids.iterrows()},
            })
            st.dataframe(summary, hide_index=True)
