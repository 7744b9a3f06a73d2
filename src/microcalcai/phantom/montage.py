"""Figures that let a person judge the phantom at a glance: examples per morphology, a full field."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from microcalcai.phantom import malignancy
from microcalcai.phantom.anatomy import make_breast
from microcalcai.phantom.morphology import make_finding
from microcalcai.phantom.physics import Detector
from microcalcai.phantom.scene import Placement, synthesize_view


def example_roi(
    morphology: str,
    distribution: str,
    seed: int,
    *,
    spacing_mm: float = 0.07,
    size: int = 320,
    density: float = 0.3,
    beta: float = 3.0,
    detector: Detector | None = None,
):
    """One spot field of `size` pixels with a single finding at its centre: (display 0..1, labels)."""
    rng = np.random.default_rng(seed)
    geom = make_finding(morphology, distribution, rng)
    breast = make_breast(rng, spacing_mm=spacing_mm, view="CC", laterality="L", field_shape=(size, size))
    centre = (size - 1) / 2.0
    placement = Placement(1, geom, centre, centre, float(rng.uniform(-0.3, 0.3)))
    detector = detector or Detector(spacing_mm=spacing_mm)
    view = synthesize_view(breast, [placement], rng, density=density, beta=beta, detector=detector)
    return view.display(), view.labels


def morphology_montage(
    out_png: str | os.PathLike,
    *,
    seed: int = 0,
    per_morphology: int = 4,
    spacing_mm: float = 0.07,
    size: int = 256,
    morphologies=None,
) -> Path:
    """A grid: one row per BI-RADS morphology, `per_morphology` examples across its distributions.

    Each panel is a spot field of size x size pixels at `spacing_mm`; its title gives the
    distribution and P(malignant) of the table. Written with matplotlib.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from microcalcai.atomic import atomic_write_bytes

    names = list(morphologies or malignancy.MORPHOLOGIES)
    fig, axes = plt.subplots(
        len(names), per_morphology, figsize=(3.0 * per_morphology, 3.15 * len(names)), squeeze=False
    )
    field_mm = size * spacing_mm
    for i, morph in enumerate(names):
        dists = list(malignancy.DISTRIBUTION_WEIGHTS[morph])
        # the grouped (or the only) distribution first: it is the one that shows the morphology best
        dists = sorted(dists, key=lambda d: (d != "grouped", dists.index(d)))
        for j in range(per_morphology):
            dist = dists[j % len(dists)]
            image, _ = example_roi(morph, dist, seed * 1000 + i * 100 + j, spacing_mm=spacing_mm, size=size)
            ax = axes[i, j]
            ax.imshow(image, cmap="gray", vmin=0, vmax=1, interpolation="lanczos")
            ax.set_xticks([])
            ax.set_yticks([])
            p = malignancy.malignancy_probability(morph, dist)
            ax.set_title(f"{dist}, P(mal)={p:.0%}" if p >= 0.01 else f"{dist}, P(mal)<1%", fontsize=8)
            if j == 0:
                ax.set_ylabel(morph.replace("_", " "), fontsize=9)
    fig.suptitle(
        f"microcalcai phantom: BI-RADS calcification morphologies "
        f"({field_mm:.0f} mm fields, {spacing_mm} mm pixels)",
        fontsize=10,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.985))
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)  # panels at about their native 256 pixels
    plt.close(fig)
    # the figure is grey (black text, grey images): one channel makes the file a third as large
    from PIL import Image

    grey = io.BytesIO()
    Image.open(io.BytesIO(buffer.getvalue())).convert("L").save(grey, format="PNG", optimize=True)
    return atomic_write_bytes(out_png, grey.getvalue())


def patient_overview(
    manifest: str | os.PathLike,
    out_png: str | os.PathLike,
    *,
    patient: str | None = None,
    max_side: int = 700,
) -> Path:
    """One patient's images from a generated data set, ROIs outlined (red malignant, green benign,
    blue normal) and labelled with their morphology."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    from microcalcai.atomic import atomic_write_bytes
    from microcalcai.data.manifest import read_manifest
    from microcalcai.io import read_image

    frame = read_manifest(manifest)
    patient = patient or frame.patient_id.iloc[0]
    rows = frame[frame.patient_id == patient]
    images = list(dict.fromkeys(rows.image_path))
    fig, axes = plt.subplots(1, len(images), figsize=(3.2 * len(images), 4.4), squeeze=False)
    colours = {"malignant": "red", "benign": "lime"}
    for ax, path in zip(axes[0], images, strict=True):
        image = read_image(path)
        step = max(1, int(np.ceil(max(image.shape) / max_side)))
        ax.imshow(image.pixels[::step, ::step], cmap="gray", vmin=0, vmax=1)
        for _, r in rows[rows.image_path == path].iterrows():
            half = r.roi_size / 2 / step
            colour = "deepskyblue" if r.finding != "calcification" else colours[r.label]
            ax.add_patch(
                Rectangle(
                    (r.roi_x / step - half, r.roi_y / step - half),
                    2 * half,
                    2 * half,
                    fill=False,
                    edgecolor=colour,
                    linewidth=1.2,
                )
            )
            if r.finding == "calcification":
                ax.text(
                    r.roi_x / step - half,
                    r.roi_y / step - half - 4,
                    str(r.morphology).replace("_", " "),
                    color=colour,
                    fontsize=7,
                )
        first = rows[rows.image_path == path].iloc[0]
        ax.set_title(f"{first.laterality}{first.view}", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"synthetic patient {patient}: red malignant, green benign, blue normal ROIs", fontsize=9)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return atomic_write_bytes(out_png, buffer.getvalue())
