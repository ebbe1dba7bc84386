"""The demo page (Streamlit): pick a bundled NIH case or upload an X-ray, read the models' answer.

Models are loaded once per process (`st.cache_resource`) from `CHEXVISION_DEMO_MODELS`; analyses are cached per
image, TTA setting and Grad-CAM count (`st.cache_data`), so toggling back is instant. Every failure the user can
cause (a bad file, a bad model spec) is a message on the page: `BadInputError`'s one line, never a traceback.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

import numpy as np
import streamlit as st

from chexvision.demo.analysis import (
    ENSEMBLE,
    UPLOAD_TYPES,
    Analysis,
    DecodedInput,
    analyse,
    decision_rows,
    decode_input,
    load_samples,
    model_rows,
    model_specs,
    probability_table,
)
from chexvision.errors import CheXVisionError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from chexvision.inference.predictor import Predictor

__all__ = ["main"]

NOTICE = (
    "**Research demo — not for clinical use.** CheXVision models learn from NIH ChestX-ray14 (or, for a smoke "
    "test, synthetic images: see *Models that answered*), whose labels were text-mined from radiology reports and "
    "are noisy; they are not a medical device and must not be used for diagnosis, triage or any decision about a "
    "patient."
)
CAM_TOP = 3  # Grad-CAM overlays for this many of the most probable findings


@st.cache_resource(show_spinner="Loading the models ...")
def _predictors(specs: tuple[str, ...]) -> list[Predictor]:
    """Each spec's `Predictor`, once per process (resolved as `chexvision predict --model` resolves it)."""
    import os

    from chexvision.hub.resolve import load_predictor

    device = os.environ.get("CHEXVISION_DEMO_DEVICE", "auto")
    return [load_predictor(spec, device=device) for spec in specs]


@st.cache_data(show_spinner="Reading the X-ray with the models ...", max_entries=64)
def _analysis(specs: tuple[str, ...], key: str, name: str, _pixels: np.ndarray, note: str, tta: bool) -> Analysis:
    """`key` (the pixels' sha256) stands for `_pixels`, which Streamlit leaves out of the cache key."""
    return analyse(_predictors(specs), DecodedInput(name, _pixels, note), tta=tta, top_k=CAM_TOP)


def _cam_figure(analysis: Analysis) -> Figure:
    """The top findings' Grad-CAM overlays side by side, with one colour bar for all of them."""
    from matplotlib.figure import Figure

    assert analysis.cams is not None and analysis.cam_base is not None
    k = len(analysis.cam_labels)
    fig = Figure(figsize=(3.2 * k + 0.8, 3.6), dpi=100, layout="constrained")
    axes = fig.subplots(1, k, squeeze=False)[0]
    image = None
    probs = analysis.headline.probabilities
    for ax, label, cam in zip(axes, analysis.cam_labels, analysis.cams, strict=True):
        ax.imshow(analysis.cam_base, cmap="gray", vmin=0, vmax=255)
        image = ax.imshow(cam, cmap="jet", alpha=0.45, vmin=0.0, vmax=1.0)
        ax.set_title(f"{label}  p = {probs[label]:.2f}", fontsize=10)
        ax.set_axis_off()
    assert image is not None
    bar = fig.colorbar(image, ax=list(axes), shrink=0.85)
    bar.set_label("Grad-CAM (1 = the map's peak)")
    return fig


def _pick_input() -> DecodedInput | None:
    """The uploaded file if there is one, else the chosen bundled sample (the first when the page opens)."""
    samples = load_samples()
    with st.sidebar:
        st.header("Input")
        index = st.selectbox(
            "Bundled NIH case", range(len(samples)), format_func=lambda i: samples[i].title, key="sample"
        )
        upload = st.file_uploader(
            "... or upload a chest X-ray (PNG, JPEG or DICOM)", type=list(UPLOAD_TYPES), key="upload"
        )
    if upload is not None:
        try:
            return decode_input(upload.name, upload.getvalue())
        except CheXVisionError as exc:
            st.error(f"Cannot use this file: {exc.one_line()}")
            return None
    sample = samples[int(index or 0)]
    decoded = decode_input(sample.image_index, sample.read_bytes())
    labels = ", ".join(sample.labels) or "No Finding"
    note = f"NIH case {sample.image_index} — NIH labels: **{labels}** ({sample.sex}, {sample.age} y, {sample.view})"
    return DecodedInput(decoded.name, decoded.pixels, note)


def _show_answer(predictors: list[Predictor], analysis: Analysis) -> None:
    row = analysis.row
    several = len(row.predictions) > 1
    head = analysis.headline
    who = ENSEMBLE if several else row.members[0]
    st.metric(f"Abnormal probability ({who}{', TTA' if analysis.tta else ''})", f"{head.abnormal:.3f}")
    st.subheader("Decision at the operating points")
    lines = []
    for d in decision_rows(predictors, row):
        if d["threshold"] is None:
            lines.append(f"- **{d['model']}**: no operating points recorded (`chexvision evaluate` chooses them)")
        else:
            lines.append(f"- **{d['model']}** at {d['operating point']} (p >= {d['threshold']:.3f}, chosen on "
                         f"{d['chosen on']}): **{d['call']}** (p = {d['p(abnormal)']:.3f})")  # fmt: skip
    st.markdown("\n".join(lines))
    if several:
        st.caption("The ensemble is the mean probability; operating points are each model's own (none was "
                   "chosen for the mean).")  # fmt: skip


def _show_table(analysis: Analysis) -> None:
    table = probability_table(analysis.row)
    st.subheader(f"Probabilities of the 14 findings — {analysis.row.image}")
    st.dataframe(table, column_config={c: st.column_config.NumberColumn(format="%.3f") for c in table.columns},
                 height=35 * (len(table) + 1) + 3, key="probabilities")  # fmt: skip
    findings = table.drop(index=table.index[-1])
    st.bar_chart(findings, horizontal=True, stack=False, sort=False, y_label="probability", height=420)


def _show_models(predictors: list[Predictor], names: tuple[str, ...]) -> None:
    st.subheader("Models that answered")
    st.dataframe(model_rows(predictors, names), hide_index=True, column_config={
        "macro AUC": st.column_config.NumberColumn(format="%.3f"),
        "abnormal AUC": st.column_config.NumberColumn(format="%.3f"),
    })  # fmt: skip
    for name, p in zip(names, predictors, strict=True):
        if p.synthetic:
            st.warning(f"{name} was trained on synthetic images: its numbers say nothing about real X-rays.")


def _image_key(image: DecodedInput) -> str:
    return hashlib.sha256(image.pixels.tobytes() + repr(image.pixels.shape).encode()).hexdigest()


def main() -> None:
    """The page, top to bottom."""
    st.set_page_config(page_title="CheXVision demo", layout="wide")
    st.title("CheXVision: chest X-ray findings")
    st.warning(NOTICE)
    try:
        specs = tuple(model_specs())
        predictors = _predictors(specs)
    except CheXVisionError as exc:
        st.error(f"Cannot load the models: {exc.one_line()}")
        st.stop()
        return
    with st.sidebar:
        st.header("Options")
        tta = st.toggle("Test-time augmentation (4 views)", value=False, key="tta",
                        help="Average over identity, horizontal flip and +-7 degree rotations.")  # fmt: skip
    image = _pick_input()
    if image is None:
        return
    try:
        analysis = _analysis(specs, _image_key(image), image.name, image.pixels, image.note, tta)
    except CheXVisionError as exc:
        st.error(f"Cannot analyse {image.name}: {exc.one_line()}")
        return
    left, right = st.columns([1, 2])
    with left:
        st.image(image.pixels, caption=image.name, clamp=True, width="stretch")
        st.caption(image.note)
    with right:
        _show_answer(predictors, analysis)
    _show_table(analysis)
    if analysis.cams is not None:
        st.subheader("Grad-CAM: where the top findings' scores come from")
        st.pyplot(_cam_figure(analysis), clear_figure=False)
        source = "mean of the models' maps" if len(analysis.cam_models) > 1 else analysis.cam_models[0]
        st.caption(f"Grad-CAM ({source}) on the last convolutional map; coarse (stride 32) and not a localisation.")
    _show_models(predictors, analysis.row.members)
