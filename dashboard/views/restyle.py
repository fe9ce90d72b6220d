"""Repaint a test image, or your own picture at its own size, in another style with a run's
checkpoint, live on the CPU, or in a blend of two styles set with a slider; and see, per target
style, how often each judge of the panel calls the run's restyles that style."""

import copy
import hashlib

import numpy as np
import plotly.express as px
import streamlit as st
import torch

import registry
from dashboard import store, ui
from zoo.data import UnreadableImage
from zoo import pictures
from zoo.imageio import IMAGE_SUFFIXES, read_picture
from zoo.tasks.restyle import LEGACY_TEST_GRID, TEST_GRID
from zoo.schema import Artifact, Tag
from zoo.task import to_rgb8

# Uploads: the server caps the bytes (dashboard/.streamlit/config.toml); this caps the pixels before any
# is decoded. 64 megapixels admits a phone's 48-50 MP photo and bounds the memory a file costs.
UPLOAD_MB = 20
UPLOAD_PIXELS = 64_000_000
NOISE_SEED = 0  # learned marks are painted from noise: a fixed seed keeps a picture steady across reruns


SIDES = (2048, 1024, 512, 256)  # short sides offered for an upload, beside its own size


@st.cache_data(show_spinner="Restyling…", max_entries=64)
def restyle(_task, run_id: str, image: np.ndarray, weights: tuple[float, ...], in_chans: int, image_size: int,
            mark_scale: float | str = "auto") -> np.ndarray:
    """``image`` (H×W×3 uint8, any size) painted at its size in a blend of styles (weights per
    style, summing to 1), by the task's own ``predict`` (zoo/pictures.py). ``run_id`` stands for
    ``_task`` (not hashed) in the cache key."""
    x = pictures.as_tensor(image, in_chans)[None]
    style = torch.tensor([weights], dtype=torch.float32)
    out = pictures.predict_picture(_task, x, image_size, style=style, seed=NOISE_SEED, mark_scale=mark_scale)
    return to_rgb8(out["restyled"])[0]


@st.cache_resource(show_spinner=False, max_entries=4)
def _test_split(uri: str, run_id: str):
    """The run's test split where its dataset can paint any scene in any style (synthart), else None."""
    from zoo.data import Renders

    cfg = store.config(uri, run_id) or {}
    try:
        dataset = registry.dataset_of(cfg, "test")
    except Exception:  # a dataset plugin not installed here, a folder not on this machine
        return None
    return dataset if isinstance(dataset, Renders) else None


def ground_truth(uri: str, run_id: str, item: int, style: int) -> np.ndarray | None:
    """Test image ``item``'s scene painted by the dataset in ``style`` (H×W×3 uint8), where it can."""
    from zoo.tasks.restyle import render_all

    dataset = _test_split(uri, run_id)
    if dataset is None or item >= len(dataset):
        return None
    return to_rgb8(render_all(dataset, [item], [style]))[0]


@st.cache_resource(show_spinner="Cutting your paintings into tiles…", max_entries=4)
def with_exemplars(_task, run_id: str, style: int, paintings: tuple[bytes, ...], in_chans: int, image_size: int):
    """A copy of the run's task whose ``style`` paints its marks from ``paintings`` (each read at
    the run's size, as the training tiles were), and how many were readable; the run's own task,
    shared by every session, is left as it is."""
    readable, _ = pictures.read_exemplars(paintings, image_size, in_chans)
    mine = copy.deepcopy(_task)
    if readable is not None:
        mine.net.use_exemplars(readable, style)
    return mine, 0 if readable is None else len(readable)


def upload_side(height: int, width: int) -> int | None:
    """The short side an upload is painted with: its own (None), or one the user picks; a picture
    over the painting cap is offered only smaller sizes."""
    short = min(width, height)
    fits = width * height <= pictures.MAX_PIXELS
    choices = ([None] if fits else []) + [side for side in SIDES if side < short]
    if not fits:
        st.info(f"At its own size, {width}×{height}, the picture is over the {pictures.MAX_PIXELS:,} pixels a "
                f"restyle may take: it is painted smaller.")
    return st.selectbox("Painted at", choices, key="side",
                        format_func=lambda side: f"its own size ({width}×{height})" if side is None
                        else f"{side} px on its short side")


uri, frame = ui.all_runs()
run_id = ui.pick_run(frame, fits=frame["task"].map(lambda task: ui.writes(task, Artifact.RESTYLES)).astype(bool),
                     none_fit="No restyle run yet; train one with `python -m runners.run cond_ae`.")
info = ui.header(uri, run_id)
if not ui.writes(info["tags"].get(Tag.TASK, ""), Artifact.RESTYLES):
    st.info(f"Restyling needs a run of the restyle task (a model that encodes and decodes with a style); this "
            f"run's task is {info['tags'].get(Tag.TASK, 'unknown')}. Pick another run in the sidebar.")
    st.stop()

try:
    task, cfg = store.task(uri, run_id)
except store.ModelError as exc:
    task, cfg = None, store.config(uri, run_id) or {}
    st.warning(f"This run's model cannot be loaded, so nothing can be restyled live: {exc}.")
logged = store.arrays(uri, run_id, Artifact.RESTYLES)
classes = [str(c) for c in (cfg.get("classes") or (logged["classes"] if logged is not None else []))]
size = int(cfg.get("data", {}).get("image_size") or (logged["images"].shape[1] if logged is not None else 64))

live, by_style, grids = st.tabs(["Restyle", "By style", "Logged grids"])
with live:
    if task is not None and len(classes) >= 2:
        choices = (["a test image"] if logged is not None else []) + ["your own picture"]
        source = st.radio("Restyle", choices, horizontal=True, key="source")
        image, label, item, position = None, None, None, None
        if source == "a test image":
            n, split = len(logged["images"]), len(logged["labels"])
            sample = "" if n == split else f", a sample of the test split's {split}"
            item = st.number_input(f"Test image (0–{n - 1}{sample})", 0, n - 1, 0, step=1, key="item")
            # their positions in the test split (runs before 2026-12-06 kept the whole split)
            position = int(logged["index"][item]) if "index" in logged else item
            image, label = logged["images"][item], int(logged["labels"][position])
        else:
            suffixes = sorted(s.lstrip(".") for s in IMAGE_SUFFIXES)
            upload = st.file_uploader("Your picture", type=suffixes, max_upload_size=UPLOAD_MB,
                                      help="restyled at its own size and aspect ratio, or a smaller one you pick")
            if upload is not None:
                try:
                    image = read_picture(upload.getvalue(), max_pixels=UPLOAD_PIXELS)  # checked before any side is offered
                    side = upload_side(*image.shape[:2])
                    if side is not None:
                        image = read_picture(upload.getvalue(), side, max_pixels=UPLOAD_PIXELS)
                except UnreadableImage as exc:
                    st.error(f"{upload.name} cannot be used: {exc}")
            else:
                st.info("Upload a JPEG, PNG, WebP, … picture to restyle it.")

        if image is not None:
            cols = st.columns(3)
            others = [i for i in range(len(classes)) if i != label]
            target = cols[0].selectbox("Target style", range(len(classes)), index=others[0],
                                       format_func=lambda i: classes[i], key="target")
            weights = np.eye(len(classes))[target]
            name = classes[target]
            second = cols[1].selectbox("Blend with", [None, *range(len(classes))], key="blend",
                                       format_func=lambda i: "(no blend)" if i is None else classes[i])
            if second is not None:
                share = cols[2].slider(f"Share of {classes[second]}", 0.0, 1.0, 0.5, 0.05, key="share")
                weights = (1 - share) * weights + share * np.eye(len(classes))[second]
                name = f"{1 - share:.0%} {classes[target]} + {share:.0%} {classes[second]}"  # what each weighs
            key = (task, run_id, image, tuple(float(w) for w in weights), int(cfg.get("in_chans", 3)), size)
            scale = pictures.mark_scale_of("auto", *image.shape[:2], size)
            out = restyle(*key)
            caption = f"{name} · live · {out.shape[1]}×{out.shape[0]}"

            pics = st.columns(4)  # as PNG: a JPEG would blur the very marks a restyle paints
            source_caption = f"source · {classes[label]}" if label is not None else "your picture"
            pics[0].image(image, caption=source_caption, width="stretch", output_format="PNG")
            pics[1].image(out, caption=caption + (f" · marks as in training (×{scale:.3g})" if scale > 1 else ""),
                          width="stretch", output_format="PNG")
            pics[1].download_button("Download", ui.png(out), file_name=f"restyled-{classes[target]}.png",
                                    mime="image/png")
            if scale > 1:  # larger than the run's images: the marks at their trained size too
                fine = restyle(*key, mark_scale=1)
                pics[2].image(fine, caption=f"{caption} · marks at their trained size (×1)", width="stretch", output_format="PNG")
                pics[2].download_button("Download", ui.png(fine), key="fine",
                                        file_name=f"restyled-{classes[target]}-fine-marks.png", mime="image/png")
            if item is not None and (second is None or share in (0.0, 1.0)):
                chosen = target if second is None or share == 0 else second
                truth = ground_truth(uri, run_id, position, chosen)
                if truth is not None:  # the scene painted in the chosen style by the dataset itself
                    pics[2].image(truth, caption=f"ground truth · {classes[chosen]}", width="stretch", output_format="PNG")
                if int(logged["targets"][position]) == chosen:  # what the run scored at its end, for this style
                    pics[3].image(logged["restyled"][item], caption=f"logged · {classes[chosen]}", width="stretch", output_format="PNG")

            if getattr(getattr(task, "net", None), "exemplars", None) is not None and second is None:
                with st.expander(f"{classes[target]}'s marks from your own paintings", expanded=False):
                    st.caption(f"The model copies its marks from tiles of its training paintings of each style. Upload "
                               f"paintings of {classes[target]} of your own, and its marks come from them instead "
                               f"(for this page only).")
                    mine = st.file_uploader("Your paintings", type=sorted(s.lstrip(".") for s in IMAGE_SUFFIXES),
                                            accept_multiple_files=True, max_upload_size=UPLOAD_MB, key="exemplars")
                    if mine:
                        data = tuple(f.getvalue() for f in mine)
                        guided, readable = with_exemplars(task, run_id, target, data, int(cfg.get("in_chans", 3)), size)
                        if readable < len(data):
                            st.warning(f"{len(data) - readable} of the {len(data)} files are not pictures and were skipped.")
                        if readable:
                            digest = hashlib.sha256(b"".join(data)).hexdigest()[:16]
                            own = restyle(guided, f"{run_id}:{target}:{digest}", image, tuple(float(w) for w in weights),
                                          int(cfg.get("in_chans", 3)), size)
                            st.image(own, caption=f"{classes[target]} · marks from your {readable} paintings",
                                     output_format="PNG")
                            st.download_button("Download", ui.png(own), key="own_marks",
                                               file_name=f"restyled-{classes[target]}-your-marks.png", mime="image/png")

            with st.expander("Every style", expanded=False):
                strip = [restyle(task, run_id, image, tuple(float(w) for w in np.eye(len(classes))[s]),
                                 int(cfg.get("in_chans", 3)), size) for s in range(len(classes))]
                for start in range(0, len(strip), 8):
                    for col, s in zip(st.columns(8), range(start, min(start + 8, len(strip)))):
                        col.image(strip[s], caption=f"{classes[s]} · every style", width="stretch", output_format="PNG")
    elif task is not None:
        st.info("This run has fewer than two styles: there is nothing to restyle into.")

with by_style:
    table = store.table(uri, run_id, Artifact.PER_STYLE)
    if table is None:
        ui.lacks(Artifact.PER_STYLE, run_id, uri)
    else:
        judges = [c for c in table.columns if c.startswith("acc_")]
        st.caption("Each judge is a style classifier of its own architecture, trained on the training split alone and "
                   "never part of a training loss. A style counts as painted when every judge agrees: the panel "
                   "column is the lowest judge's accuracy (its mean over styles is restyle_acc_panel). The unseen_ "
                   "judges are the same recipes trained on paintings of the same styles that the restyler never saw "
                   "(another synthart seed): they cannot recognise a copied training tile, only a style.")
        long = table.reset_index().melt(id_vars="style", value_vars=judges, var_name="judge", value_name="accuracy")
        long["judge"] = long["judge"].str.removeprefix("acc_")
        fig = px.bar(long, y="style", x="accuracy", color="judge", barmode="group", orientation="h",
                     range_x=[0, 1.02], labels=dict(accuracy="restyles judged the target style", style="target style"))
        fig.update_layout(height=140 + 22 * len(table) * max(len(judges), 1), margin=dict(t=30, b=40),
                          yaxis=dict(autorange="reversed"))
        st.plotly_chart(fig, key="acc_by_style")
        marks = [c for c in ("texture_ratio", "texture_ratio_resample", "copy_rate", "copy_rate_truth")
                 if c in table.columns]
        if marks:
            st.caption("texture_ratio: how far a restyle's marks are from the true painting's, over how far the input's "
                       "are (0 the truth's marks, 1 no better than leaving the image alone; the loudness of each channel of a "
                       "fixed untrained network; texture_ratio_resample: the true painting painted again with other marks, "
                       "as close as two samples of the style come). copy_rate: the share of a restyle's tiles whose marks copy a training "
                       "painting's; copy_rate_truth: the same of the true painting, what an original scores by chance.")
            long = table.reset_index().melt(id_vars="style", value_vars=marks, var_name="score", value_name="value")
            fig = px.bar(long, y="style", x="value", color="score", barmode="group", orientation="h",
                         labels=dict(style="target style", value="lower is better"))
            fig.update_layout(height=140 + 22 * len(table) * len(marks), margin=dict(t=30, b=40),
                              yaxis=dict(autorange="reversed"))
            st.plotly_chart(fig, key="marks_by_style")
        st.dataframe(table.reset_index(), hide_index=True,
                     column_config={"style": st.column_config.TextColumn(width="large")})

with grids:
    files = store.artifact_paths(uri, run_id)
    grid = next((p for p in (TEST_GRID, LEGACY_TEST_GRID) if p in files), None)
    epochs = ui.step_images(files).get("restyle", {})
    if not epochs and grid is None:
        ui.lacks(f"images/restyle+step+* or {TEST_GRID}", run_id, uri)
    if epochs:
        last = max(epochs)
        ui.artifact_image(uri, run_id, epochs[last], caption=f"restyle, epoch {last}: each row a validation image "
                          f"(first column), then restyled into {', '.join(classes)}")
    if grid is not None:
        ui.artifact_image(uri, run_id, grid,
                          caption="one test image per style, restyled into every style (ground truth below, where known)")
