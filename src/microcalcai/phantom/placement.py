"""Where things go in a view: a finding's centre in the breast (clear of the others, at the same
distance from the nipple in CC and MLO), a finding ROI's centre, and normal ROIs' centres that hold
no calcification."""

from __future__ import annotations

import numpy as np

from microcalcai.phantom.anatomy import Breast
from microcalcai.phantom.scene import Placement, SyntheticView


def _free(xs, ys, spacing: float, extent_mm: float, taken: list, roi_mm: float) -> np.ndarray:
    """Which candidate centres keep this finding clear of the findings already placed (and,
    where the findings are small, out of their ROIs)."""
    ok = np.ones(len(xs), bool)
    for tx, ty, te in taken:
        ok &= np.hypot(xs - tx, ys - ty) * spacing > max(te + extent_mm * 0.5 + 5.0, roi_mm)
    return ok


def _candidates(breast: Breast, extent_mm: float, edge_px: int):
    need = float(np.clip(extent_mm * 0.5, 6.0, 15.0))
    xs, ys = breast.tissue_points(need, chest_wall_mm=0.0 if breast.spot else 12.0, edge_px=edge_px)
    if len(xs) == 0:
        xs, ys = breast.tissue_points(0.5 * float(breast.depth_mm.max()))
    return xs, ys


def place_finding(
    breast: Breast,
    extent_mm: float,
    rng: np.random.Generator,
    taken: list,
    nipple_mm: float | None = None,
    edge_px: int = 0,
) -> tuple[float, float]:
    """A centre deep enough in the breast, off the pectoral muscle and the chest wall, clear of
    other findings; with `nipple_mm` (the other view's distance), at about that distance from
    the nipple, as the same lesion appears in CC and MLO."""
    xs, ys = _candidates(breast, extent_mm, edge_px)
    free = _free(xs, ys, breast.spacing_mm, extent_mm, taken, edge_px * 2 * breast.spacing_mm)
    score = np.where(free, 0.0, 1e3) + rng.random(len(xs))
    if nipple_mm is not None:
        dist = np.hypot(xs - breast.nipple_xy[0], ys - breast.nipple_xy[1]) * breast.spacing_mm
        score += np.abs(dist - (nipple_mm + rng.normal(0, 3.0)))
    i = int(np.argmin(score))
    return float(xs[i]), float(ys[i])


def fit_roi(centre: tuple[int, int], roi: int, shape: tuple[int, int]) -> tuple[int, int]:
    """The nearest ROI centre whose whole roi x roi window (pixels centre - roi // 2 ...
    centre - roi // 2 + roi - 1, as `microcalcai.roi.crop_roi` cuts it) lies inside the image."""
    rows, cols = shape
    half = roi // 2
    x = min(max(centre[0], half), cols - roi + half)
    y = min(max(centre[1], half), rows - roi + half)
    return x, y


def finding_roi_centre(view: SyntheticView, placement: Placement, roi: int) -> tuple[int, int] | None:
    """ROI centre: the middle of the rendered particles' bounding box (None if none rendered),
    moved just enough for the ROI to lie wholly inside the image (a finding larger than the ROI
    is not all in it anyway)."""
    parts = view.particles.get(placement.finding_id) or []
    if not parts:
        return None
    if placement.geometry.distribution == "diffuse":
        centre = int(round(placement.x)), int(round(placement.y))
    else:
        xs = [p.x for p in parts]
        ys = [p.y for p in parts]
        centre = int(round((min(xs) + max(xs)) / 2)), int(round((min(ys) + max(ys)) / 2))
    return fit_roi(centre, roi, view.stored.shape)


def cluster_offset(geometry, angle: float, spacing_mm: float) -> tuple[float, float]:
    """Offset (pixels) from a finding's origin to the middle of its particles, as rotated by
    `angle`: a spot field is centred on the cluster, not on its frame's origin."""
    if geometry.distribution == "diffuse" or not geometry.particles:
        return 0.0, 0.0
    parts = geometry.rotated(angle).particles
    xs = [p.x for p in parts]
    ys = [p.y for p in parts]
    return (min(xs) + max(xs)) / (2 * spacing_mm), (min(ys) + max(ys)) / (2 * spacing_mm)


def _calcified_pixels(labels: np.ndarray, boxes: list[tuple[slice, slice]]):
    """(rows, columns) of the calcified pixels, looked for only inside the particles' boxes."""
    if not boxes:
        return np.zeros(0, np.intp), np.zeros(0, np.intp)
    r0, r1 = min(b[0].start for b in boxes), max(b[0].stop for b in boxes)
    c0, c1 = min(b[1].start for b in boxes), max(b[1].stop for b in boxes)
    cy, cx = np.nonzero(labels[r0:r1, c0:c1])
    return cy + r0, cx + c0


def negative_centres(
    labels: np.ndarray,
    breast: Breast,
    roi: int,
    n: int,
    rng: np.random.Generator,
    boxes: list[tuple[slice, slice]],
) -> list[tuple[int, int]]:
    """ROI centres in breast tissue whose whole ROI holds no calcification pixel (`boxes`: where
    the calcifications were drawn)."""
    if n <= 0:
        return []
    cy, cx = _calcified_pixels(labels, boxes)
    # as deep in the breast as findings are placed, so normal ROIs show tissue, not the skin line
    xs, ys = breast.tissue_points(
        8.0 if breast.spot else 15.0, step=4, chest_wall_mm=0.0 if breast.spot else 12.0, edge_px=roi // 2
    )
    half = roi // 2
    out: list[tuple[int, int]] = []
    for i in rng.permutation(len(xs))[:2000]:
        x, y = int(xs[i]), int(ys[i])
        clear = not np.any(
            (cx >= x - half) & (cx < x - half + roi) & (cy >= y - half) & (cy < y - half + roi)
        )
        if clear and all(abs(x - ox) >= roi or abs(y - oy) >= roi for ox, oy in out):
            out.append((x, y))
            if len(out) == n:
                break
    return out
