"""Render docs/images/phantom-bac-exam.png: one BAC-positive phantom exam, four views, vessel mask outlined.

    .venv/bin/python docs/images/render_bac_exam_figure.py [SPACING_MM]

The first exam of seed 3 with BAC is drawn at 0.2 mm pixels (the default of `synth --exams`);
each view shows the windowed image with the calcified vessel mask outlined in red, and a
zoomed inset (yellow box, no outline) shows the tram-line walls.
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy import ndimage  # noqa: E402

from microcalcai.phantom.exam import ExamSettings, make_exam, plan_exam  # noqa: E402

OUT = Path(__file__).with_name("phantom-bac-exam.png")


def main(spacing_mm: float = 0.2) -> Path:
    settings = ExamSettings(exams=200, seed=3, spacing_mm=spacing_mm).validate()
    index = next(i for i in range(settings.exams) if plan_exam(settings, i).exam_bac)
    plan, images = make_exam(settings, index)
    fig, axes = plt.subplots(2, 4, figsize=(14, 9.5), gridspec_kw={"height_ratios": [3, 1.3]})
    for k, im in enumerate(images):
        ax, zoom = axes[0, k], axes[1, k]
        display = im.view_image.display()
        mask = im.view_image.labels > 0
        ax.imshow(display, cmap="gray", vmin=0, vmax=1)
        if mask.any():
            # outline: the mask's border, thickened so that it shows at figure scale
            edge = mask & ~ndimage.binary_erosion(mask)
            edge = ndimage.binary_dilation(edge, iterations=2)
            ax.contour(edge, levels=[0.5], colors="red", linewidths=0.6)
            rows, cols = np.nonzero(mask)
            cy, cx = int(np.median(rows)), int(np.median(cols))
        else:
            rows, cols = np.nonzero(display > 0)
            cy, cx = int(np.median(rows)), int(np.median(cols))
        half = int(12.0 / spacing_mm)  # a 24 mm window
        r0, c0 = max(cy - half, 0), max(cx - half, 0)
        window = (slice(r0, r0 + 2 * half), slice(c0, c0 + 2 * half))
        zoom.imshow(display[window], cmap="gray", vmin=0, vmax=1)
        ax.add_patch(plt.Rectangle((c0, r0), 2 * half, 2 * half, fill=False, color="yellow", lw=0.8))
        state = "BAC" if im.bac else "no BAC"
        ax.set_title(f"{im.side}{im.view}: {state}, {len(im.arteries)} arteries", fontsize=10)
        zoom.set_title("24 mm around the vessel" if im.bac else "24 mm inside the breast", fontsize=9)
        for a in (ax, zoom):
            a.set_xticks([])
            a.set_yticks([])
    sides = " and ".join(plan.bac_sides)
    fig.suptitle(
        f"Phantom exam {plan.patient_id}: breast arterial calcification in {sides} "
        f"({spacing_mm} mm pixels); red: vessel mask",
        fontsize=11,
    )
    fig.tight_layout()
    fig.savefig(OUT, dpi=110)
    return OUT


if __name__ == "__main__":
    print(main(float(sys.argv[1]) if len(sys.argv) > 1 else 0.2))
