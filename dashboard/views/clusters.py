"""A run's test embeddings in 2-D (PCA, UMAP): the style statistics, the content code, and their
baselines (the untrained network's statistics, raw pixels), coloured by true style or by k-means
cluster; how well each groups the styles, side by side; and the paintings nearest to one."""

import numpy as np
import pandas as pd
import plotly.express as px
import streamlit as st

from dashboard import store, ui
from zoo.schema import Artifact, Tag, embedding_metric, precision_metric, test

GALLERY = 24  # thumbnails shown for a selection or a cluster
# (array and metric prefix, name of its neighbours and p@10, what the user reads)
EMBEDDINGS = [("style_", "style", "style statistics"), ("", "code", "content code"),
              ("untrained_style_", "untrained_style", "untrained network's style statistics"),
              ("baseline_", "baseline", "raw pixels")]

uri, frame = ui.all_runs()
scored = frame["task"].map(lambda task: ui.writes(task, Artifact.EMBEDDINGS)).astype(bool)
run_id = ui.pick_run(frame, fits=scored, none_fit="No run has clustered its test codes yet; train an autoencoder "
                                                  "(`python -m runners.run ae`) to see them here.")
info = ui.header(uri, run_id)
emb = store.arrays(uri, run_id, Artifact.EMBEDDINGS)
if emb is None or "pca" not in emb:
    ui.lacks(Artifact.EMBEDDINGS, run_id, uri)
    st.stop()

m = info["metrics"]
restyle = ui.writes(info["tags"].get(Tag.TASK, ""), Artifact.RESTYLES)  # a content code built without style
classes = [str(c) for c in emb["classes"]] if "classes" in emb else []
labels = emb["labels"].astype(int)
style = np.array([classes[i] if 0 <= i < len(classes) else str(i) for i in labels])
present = [e for e in EMBEDDINGS if f"{e[0]}pca" in emb]

# -- the scores side by side -----------------------------------------------------------------------
st.subheader("Which representation groups the paintings by style")
rows = []
for prefix, name, label in present:
    columns = [("NMI (PCA)", "cluster_nmi", "pca"), ("NMI (UMAP)", "cluster_nmi", "umap"),
               ("ARI (PCA)", "cluster_ari", "pca"), ("silhouette (PCA)", "silhouette", "pca")]
    score = {title: m.get(test(embedding_metric(name, key, space))) for title, key, space in columns}
    rows.append({"embedding": label, **score, "precision@10": m.get(test(precision_metric(name)))})
scores = pd.DataFrame(rows).set_index("embedding").astype(float).dropna(axis=1, how="all")
# shown as text: a score an embedding has no layout for is a dash, never "None"
st.dataframe(scores.map(lambda v: "–" if pd.isna(v) else f"{v:.3f}"),
             column_config={"embedding": st.column_config.TextColumn(width="large")})
notes = ["NMI and ARI: k-means clusters (k = number of styles) against the true styles, 1 a perfect match and 0 "
         "chance. Silhouette: how apart the true styles lie, -1..1. precision@10: the share of each painting's 10 "
         "nearest test neighbours that share its style. The untrained network (the same architecture at the "
         "run's starting weights) and raw pixels are the baselines: what training adds is the gap to them."]
if restyle:
    notes.append("This run's content code is built to carry **no** style, so for the content code a *lower* "
                 "NMI is better: it is a disentanglement score. Its style statistics come from the style critic.")
st.caption(" ".join(notes))

# -- the layout ------------------------------------------------------------------------------------
cols = st.columns([2, 1, 1])
by_name = {e[1]: e for e in present}
name = cols[0].radio("Embedding", list(by_name), format_func=lambda n: by_name[n][2], horizontal=True)
prefix, _, label = by_name[name]
spaces = [s for s in ("pca", "umap") if f"{prefix}{s}" in emb]
space = cols[1].radio("Layout", spaces, format_func=str.upper, horizontal=True)
kmeans = emb.get("kmeans_baseline") if prefix == "baseline_" else emb.get(f"kmeans_{prefix}{space}")
colour = cols[2].radio("Colour by", ["true style", "k-means cluster"], horizontal=True, disabled=kmeans is None)
layout = emb[f"{prefix}{space}"]
points = pd.DataFrame({"x": layout[:, 0], "y": layout[:, 1], "style": style, "item": np.arange(len(style)),
                       "cluster": [f"cluster {c}" for c in kmeans] if kmeans is not None else ""})
by = "cluster" if colour == "k-means cluster" and kmeans is not None else "style"
order = sorted(points[by].unique(), key=lambda v: (len(v), v)) if by == "cluster" else classes

left, right = st.columns([3, 1])
with left:
    fig = px.scatter(points, x="x", y="y", color=by, custom_data=["item"], category_orders={by: order},
                     hover_data={"style": True, "cluster": kmeans is not None, "item": True, "x": False, "y": False},
                     color_discrete_sequence=px.colors.qualitative.Dark24)
    fig.update_traces(marker=dict(size=6, opacity=0.8))
    fig.update_layout(height=560, margin=dict(t=10, b=10), xaxis_title=f"{space.upper()} 1",
                      yaxis_title=f"{space.upper()} 2", legend_title=by)
    event = st.plotly_chart(fig, key=f"scatter_{name}_{space}_{by}", on_select="rerun",
                            selection_mode=("points", "box", "lasso"))
    st.caption("Click a point, or drag a box or lasso, to see the pictures behind it and the paintings nearest to it.")

with right:
    st.subheader(label.capitalize())
    metric_space = space if test(embedding_metric(name, "cluster_nmi", space)) in m else "pca"
    for title, key, help in [("NMI", "cluster_nmi", "normalised mutual information of k-means clusters and styles"),
                             ("ARI", "cluster_ari", "adjusted Rand index of k-means clusters and styles"),
                             ("silhouette", "silhouette", "how compact and apart the styles are, in -1..1")]:
        value = m.get(test(embedding_metric(name, key, metric_space)))
        base = m.get(test(embedding_metric("baseline", key, metric_space)))  # the pixels in the same space, or none
        st.metric(f"{title} ({metric_space.upper()})", ui.metric_text(value), help=help,
                  delta=None if value is None or base is None or prefix == "baseline_"
                  else f"{value - base:+.3f} vs pixels ({metric_space.upper()})",
                  delta_color="inverse" if restyle and prefix == "" else "normal")
    st.metric("precision@10", ui.metric_text(m.get(test(precision_metric(name)))),
              help="share of each painting's 10 nearest neighbours that share its style")
    st.caption(f"{len(points)} test images, k = {len(classes)} clusters.")

# -- the pictures behind points --------------------------------------------------------------------
selected = [int(p["customdata"][0]) for p in event["selection"]["points"] if p.get("customdata")] if event else []
thumbs = emb.get("thumbs")


def gallery(items: list[int], captions: list[str] | None = None) -> None:
    if thumbs is None:
        st.info("This run's embeddings/test.npz has no thumbnails.")
        return
    shown = items[:GALLERY]
    captions = captions or [style[i] + (f" · c{kmeans[i]}" if kmeans is not None else "") for i in shown]
    for start in range(0, len(shown), 8):
        for col, i, cap in zip(st.columns(8), shown[start : start + 8], captions[start : start + 8]):
            col.image(thumbs[i], caption=cap, width=96)
    if len(items) > GALLERY:
        st.caption(f"… and {len(items) - GALLERY} more")


if selected:
    st.subheader(f"Selected: {len(selected)} point{'s' if len(selected) > 1 else ''}")
    gallery(selected)

neighbours = emb.get(f"neighbours_{name}")
if neighbours is not None and neighbours.shape[1]:
    st.subheader("Similar paintings")
    asked = f"query_{name}"
    # a new click asks about the point clicked; the box keeps what was asked until then (a widget
    # with a key holds its own value, which an index= given later would not change)
    if selected and st.session_state.get(f"{asked}_clicked") != selected[0]:
        st.session_state[asked] = st.session_state[f"{asked}_clicked"] = selected[0]
    query = st.selectbox("Painting", range(len(style)), format_func=lambda i: f"test image {i} ({style[i]})",
                         key=asked)
    near = neighbours[query].tolist()
    same = int((labels[near] == labels[query]).sum())
    st.caption(f"Its {len(near)} nearest paintings by {label}: {same} of {len(near)} share its style "
               f"({style[query]}).")
    if thumbs is not None:
        st.image(thumbs[query], caption=f"{style[query]} (the painting asked about)", width=128)
    gallery(near, [f"{rank + 1}. {style[i]}" + (" ✓" if labels[i] == labels[query] else "") for rank, i in enumerate(near)])

if kmeans is not None:
    st.subheader("Inside a cluster")
    k = st.selectbox("Cluster", sorted(set(kmeans.tolist())), format_func=lambda c: f"cluster {c}")
    members = np.flatnonzero(kmeans == k)
    counts = pd.Series(style[members]).value_counts()
    st.caption(f"{len(members)} images: " + ", ".join(f"{n} {s}" for s, n in counts.items()))
    gallery(members.tolist())
