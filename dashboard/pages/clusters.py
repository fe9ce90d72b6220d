"""The test codes of an autoencoder in 2-D (PCA, UMAP), coloured by true style or by k-means
cluster, with each point's picture, and how well the clusters match the styles."""

import numpy as np
import pandas as pd
import plotly.express as px
import streamlit as st

from dashboard import store, ui

GALLERY = 24  # thumbnails shown for a selection or a cluster

uri, frame = ui.all_runs()
scored = frame.filter(like="test/cluster_nmi").notna().any(axis=1)
run_id = ui.pick_run(frame, fits=scored, none_fit="No run has clustered its test codes yet; train an autoencoder "
                                                  "(`python -m runners.run ae`) to see them here.")
info = ui.header(uri, run_id)
emb = store.arrays(uri, run_id, "embeddings/test.npz")
spaces = [s for s in ("pca", "umap") if emb is not None and s in emb]
if not spaces:
    ui.lacks("embeddings/test.npz", run_id, uri)
    st.stop()

classes = [str(c) for c in emb["classes"]] if "classes" in emb else []
labels = emb["labels"].astype(int)
style = np.array([classes[i] if 0 <= i < len(classes) else str(i) for i in labels])

cols = st.columns([1, 1, 2])
space = cols[0].radio("Layout", spaces, format_func=str.upper, horizontal=True)
colour = cols[1].radio("Colour by", ["true style", "k-means cluster"], horizontal=True,
                       disabled=f"kmeans_{space}" not in emb)
clusters = emb.get(f"kmeans_{space}")
points = pd.DataFrame({"x": emb[space][:, 0], "y": emb[space][:, 1], "style": style, "item": np.arange(len(style)),
                       "cluster": [f"cluster {c}" for c in clusters] if clusters is not None else ""})
by = "cluster" if colour == "k-means cluster" and clusters is not None else "style"
order = sorted(points[by].unique(), key=lambda v: (len(v), v)) if by == "cluster" else classes

left, right = st.columns([3, 1])
with left:
    fig = px.scatter(points, x="x", y="y", color=by, custom_data=["item"], category_orders={by: order},
                     hover_data={"style": True, "cluster": clusters is not None, "item": True, "x": False, "y": False},
                     color_discrete_sequence=px.colors.qualitative.Dark24)
    fig.update_traces(marker=dict(size=6, opacity=0.8))
    fig.update_layout(height=560, margin=dict(t=10, b=10), xaxis_title=f"{space.upper()} 1",
                      yaxis_title=f"{space.upper()} 2", legend_title=by)
    event = st.plotly_chart(fig, key=f"scatter_{space}_{by}", on_select="rerun",
                            selection_mode=("points", "box", "lasso"))
    st.caption("Click a point, or drag a box or lasso, to see the pictures behind it.")

with right:
    st.subheader("Clusters vs styles")
    m = info["metrics"]
    for name, key, help in [("NMI", "cluster_nmi", "normalised mutual information of k-means clusters and styles"),
                            ("ARI", "cluster_ari", "adjusted Rand index of k-means clusters and styles"),
                            ("silhouette", "silhouette", "how compact and apart the styles are, in -1..1")]:
        value = m.get(f"test/{key}_{space}")
        base = m.get(f"test/baseline_{key}_pca")
        st.metric(f"{name} ({space.upper()})", ui.metric_text(value), help=help,
                  delta=None if value is None or base is None else f"{value - base:+.3f} vs pixels")
    st.caption(f"{len(points)} test images, k = {len(classes)} clusters. The baseline clusters the raw pixels "
               "(PCA), so a positive difference means the codes group styles better than pixels do.")

# -- the pictures behind points ------------------------------------------------------------------
selected = [int(p["customdata"][0]) for p in event.selection.points if p.get("customdata")] if event else []
thumbs = emb.get("thumbs")


def gallery(items: list[int]) -> None:
    if thumbs is None:
        st.info("This run's embeddings/test.npz has no thumbnails.")
        return
    shown = items[:GALLERY]
    for start in range(0, len(shown), 8):
        for col, i in zip(st.columns(8), shown[start : start + 8]):
            cap = style[i] + (f" · c{clusters[i]}" if clusters is not None else "")
            col.image(thumbs[i], caption=cap, width=96)
    if len(items) > GALLERY:
        st.caption(f"… and {len(items) - GALLERY} more")


if selected:
    st.subheader(f"Selected: {len(selected)} point{'s' if len(selected) > 1 else ''}")
    gallery(selected)
if clusters is not None:
    st.subheader("Inside a cluster")
    k = st.selectbox("Cluster", sorted(set(clusters.tolist())), format_func=lambda c: f"cluster {c}")
    members = np.flatnonzero(clusters == k)
    counts = pd.Series(style[members]).value_counts()
    st.caption(f"{len(members)} images: " + ", ".join(f"{n} {s}" for s, n in counts.items()))
    gallery(members.tolist())
