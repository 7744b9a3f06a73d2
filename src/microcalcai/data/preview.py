"""A picture to check an import by eye: ROIs of each label cut from their images, outline drawn.

A wrong coordinate convention (a y axis counted from the bottom, x and y swapped) is obvious on
this sheet and invisible in a table of numbers.
"""

from __future__ import annotations

from io import BytesIO
from pathlib import Path

import pandas as pd
from microcalcai_logic.contract import LABELS

from microcalcai.errors import MicrocalcError


def _context_px(row: pd.Series, minimum: int) -> int:
    """Side of the preview window: twice the lesion's extent, at least `minimum` pixels."""
    extent = row.get("roi_size")
    if pd.isna(extent) and pd.notna(row.get("roi_radius")):
        extent = 2 * row["roi_radius"]
    return int(max(minimum, 2 * extent if pd.notna(extent) else minimum))


def write_preview(
    frame: pd.DataFrame, path: str | Path, *, per_label: int = 6, min_px: int = 64, seed: int = 0
) -> Path:
    """Save a PNG with up to `per_label` ROIs per label (a seeded sample), one row per label."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Circle, Rectangle

    from microcalcai.atomic import atomic_write_bytes
    from microcalcai.io import read_image
    from microcalcai.roi import crop_roi

    samples = {
        label: group.sample(n=min(per_label, len(group)), random_state=seed)
        for label, group in frame.groupby("label")
        if label in LABELS
    }
    columns = max((len(s) for s in samples.values()), default=1)
    figure, axes = plt.subplots(
        len(LABELS), columns, figsize=(max(2.2 * columns, 4.8), 2.6 * len(LABELS)), squeeze=False
    )
    for ax in axes.ravel():
        ax.axis("off")
    images: dict[str, object] = {}
    for r, label in enumerate(LABELS):
        if label not in samples:
            axes[r, 0].text(
                0.5, 0.5, f"no {label} ROIs", ha="center", va="center", transform=axes[r, 0].transAxes
            )
        for c, (_, row) in enumerate(samples.get(label, frame.iloc[:0]).iterrows()):
            ax = axes[r, c]
            side = _context_px(row, min_px)
            try:
                if row["image_path"] not in images:
                    spacing = row.get("spacing_mm")
                    images[row["image_path"]] = read_image(
                        row["image_path"], default_spacing_mm=spacing if pd.notna(spacing) else None
                    )
                crop = crop_roi(images[row["image_path"]], (row["roi_x"], row["roi_y"]), size_px=side)
            except MicrocalcError as exc:
                ax.text(
                    0.5,
                    0.5,
                    f"cannot show:\n{str(exc)[:60]}",
                    ha="center",
                    va="center",
                    fontsize=6,
                    transform=ax.transAxes,
                    wrap=True,
                )
                continue
            ax.imshow(crop.pixels, cmap="gray", vmin=0, vmax=1)
            centre = (side - 1) / 2.0
            if pd.notna(row.get("roi_size")):
                half = row["roi_size"] / 2.0
                ax.add_patch(
                    Rectangle(
                        (centre - half, centre - half),
                        2 * half,
                        2 * half,
                        fill=False,
                        edgecolor="tab:orange",
                        linewidth=1,
                    )
                )
            elif pd.notna(row.get("roi_radius")):
                ax.add_patch(
                    Circle(
                        (centre, centre), row["roi_radius"], fill=False, edgecolor="tab:orange", linewidth=1
                    )
                )
            ax.plot([centre], [centre], marker="+", color="tab:red", markersize=8)
            ax.set_title(f"{label}\n{row['patient_id']} ({row['roi_x']:.0f}, {row['roi_y']:.0f})", fontsize=7)
    figure.suptitle(f"{len(frame)} ROIs; + at (roi_x, roi_y); outline: roi_size or roi_radius", fontsize=8)
    figure.tight_layout()
    buffer = BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    plt.close(figure)
    return atomic_write_bytes(path, buffer.getvalue())
