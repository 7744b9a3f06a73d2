"""The breast as the detector sees it: outline, chest wall, skin, pectoral muscle, thickness.

A compressed breast is modelled as a slab of thickness T whose free edge is a half cylinder of
radius T/2, wrapped in skin 1.5 mm thick. Projected path lengths through skin, inner tissue and
(in the MLO view) the pectoral muscle follow from the in-plane distance to the skin line, which is
computed once on a coarse grid (distances to a densely sampled skin line, scipy's KD-tree) and
interpolated; the distance is smooth (its curvature is that of the skin line, radii of
centimetres), so bilinear interpolation from 1 mm cells is exact to a few micrometres.

Images are built with the chest wall at column 0 and mirrored (on the coarse grid, before
interpolation) for the side whose chest wall is on the right. Following the usual DICOM
orientation of mammograms (Patient Orientation A/P), the left breast has its chest wall on the
left of the image and the right breast on the right.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from microcalcai.phantom.grid import upsample

SKIN_MM = 1.5
# Standard detector fields (mm, rows x columns): the small one when the breast fits.
DETECTORS_MM = ((240.0, 180.0), (300.0, 240.0))
_COARSE_MM = 1.0
MAX_DEPTH_MM = 45.0  # in-plane depths beyond this are reported as this (> half of T)
# Nothing uses in-plane depths beyond half the thickness (the path lengths are constant there)
# or beyond this (the deepest placement rule, 15 mm): deeper depths are reported as the larger.
MIN_DEPTH_CAP_MM = 16.0


@dataclass
class BreastSize:
    """What the two views of one breast share: its size and compressed thickness (CC)."""

    nipple_depth_mm: float  # chest wall to nipple
    height_ratio: float  # half height along the chest wall, as a fraction of the depth (+30 mm)
    thickness_mm: float

    @classmethod
    def draw(cls, rng: np.random.Generator) -> BreastSize:
        return cls(
            float(rng.uniform(70.0, 140.0)), float(rng.uniform(0.55, 0.75)), float(rng.uniform(35.0, 70.0))
        )


@dataclass
class Breast:
    """Projected anatomy (float32 maps in mm) over `box`, the part of the image holding the breast.

    Maps have the box's shape; pixel (x, y) of the image is map element (y - box rows start,
    x - box columns start). Outside the box is air. In-plane depths are exact up to
    `depth_cap_mm` (at least half the thickness and 16 mm) and reported as it beyond.
    """

    shape: tuple[int, int]
    spacing_mm: float
    view: str
    laterality: str
    chest_wall: str  # "left" or "right": the image edge the chest wall touches
    thickness_mm: float  # compressed thickness T
    depth_mm: np.ndarray  # in-plane distance from the skin line (0 outside the breast)
    tissue_mm: np.ndarray  # path through fat and gland (inside the skin, outside the muscle)
    skin_mm: np.ndarray
    muscle_mm: np.ndarray
    nipple_xy: tuple[float, float]  # (x, y) in pixels
    box: tuple[slice, slice] = (slice(0, 0), slice(0, 0))
    spot: bool = False  # a spot field filled with tissue: no skin line, no chest wall

    @property
    def mask(self) -> np.ndarray:
        return self.depth_mm > 0

    @property
    def origin(self) -> tuple[int, int]:
        """(row, column) of the box's first pixel in the image."""
        return self.box[0].start, self.box[1].start

    def tissue_points(
        self, min_depth_mm: float, *, step: int = 8, chest_wall_mm: float = 0.0, edge_px: int = 0
    ):
        """Image (x, y) of every `step`-th pixel at least `min_depth_mm` inside the skin, off the
        pectoral muscle, at least `chest_wall_mm` from the chest-wall edge of the image and
        `edge_px` pixels from every image edge (so an ROI there stays inside the image)."""
        ok = (self.depth_mm[::step, ::step] >= min_depth_mm) & (self.muscle_mm[::step, ::step] <= 0)
        ys, xs = np.nonzero(ok)
        r0, c0 = self.origin
        xs, ys = xs * step + c0, ys * step + r0
        wall = xs if self.chest_wall == "left" else self.shape[1] - 1 - xs
        rows, cols = self.shape
        keep = (wall * self.spacing_mm >= chest_wall_mm) & (xs >= edge_px) & (ys >= edge_px)
        keep &= (xs < cols - edge_px) & (ys < rows - edge_px)
        return xs[keep].astype(float), ys[keep].astype(float)

    def nipple_direction(self, x: float, y: float) -> float:
        """Angle (radians, image axes) of the direction from (x, y) away from the nipple."""
        return float(np.arctan2(y - self.nipple_xy[1], x - self.nipple_xy[0]))


def _reach(y: np.ndarray, view: str, dims: dict) -> np.ndarray:
    """Distance (mm) of the skin line from the chest wall at heights y (mm), 0 outside.

    The skin line is x = depth * f(s), s running from the top of the breast (0) to its bottom (1)
    along the chest wall: CC is a rounded half-egg; MLO starts wide at the axilla (top edge of the
    image), bulges to the nipple below its middle and curves back to the inframammary fold.
    """
    top, bottom = dims["top"], dims["bottom"]
    s = (y - top) / (bottom - top)
    inside = (s >= 0) & (s <= 1)
    sc = np.clip(s, 0.0, 1.0)
    peak = dims["nipple_s"]
    if view == "MLO":
        axilla = dims["axilla_width"]
        up = axilla + (1.0 - axilla) * np.sin(0.5 * np.pi * np.minimum(sc / peak, 1.0)) ** 0.9
        down = np.sqrt(np.clip(1.0 - ((sc - peak) / (1.0 - peak)) ** 2, 0.0, 1.0))
    else:
        up = np.sqrt(np.clip(1.0 - ((peak - sc) / peak) ** 2, 0.0, 1.0)) ** 0.8
        down = np.sqrt(np.clip(1.0 - ((sc - peak) / (1.0 - peak)) ** 2, 0.0, 1.0)) ** 0.8
    return np.where(sc <= peak, up, down) * dims["depth"] * inside


def depth_cap_mm(thickness_mm: float) -> float:
    """In-plane depth beyond which a breast of this thickness looks the same (see MIN_DEPTH_CAP_MM)."""
    return min(MAX_DEPTH_MM, max(thickness_mm / 2.0, MIN_DEPTH_CAP_MM) + 1.0)


def _outline(
    rows: int, cols: int, cell: float, view: str, dims: dict, cap_mm: float = MAX_DEPTH_MM
) -> tuple[np.ndarray, np.ndarray]:
    """(mask, signed distance to the skin line in mm, within +-cap_mm) on the coarse grid,
    chest wall at column 0.

    The distance is to a densely sampled skin line (scipy's KD-tree), not to the coarse cells, so
    interpolated to full resolution its zero crossing is a smooth skin line. The chest wall is
    not skin: tissue does not thin toward it.
    """
    from scipy.spatial import cKDTree

    y = (np.arange(rows, dtype=np.float64) + 0.5) * cell
    x = (np.arange(cols, dtype=np.float64) + 0.5) * cell
    mask = x[None, :] <= _reach(y, view, dims)[:, None]
    # samples every 0.2 mm of arc length (flat stretches of the outline need many per mm of y):
    # the distance to them is within ~0.01 mm of that to the curve at the coarse cells' distances
    fine_y = np.arange(dims["top"], dims["bottom"], 0.01)
    fine_x = _reach(fine_y, view, dims)
    arc = np.concatenate([[0.0], np.cumsum(np.hypot(np.diff(fine_x), np.diff(fine_y)))])
    step = np.floor(arc / 0.2)
    keep = (fine_x > 0) & np.concatenate([[True], step[1:] != step[:-1]])
    skin = np.column_stack([fine_x[keep], fine_y[keep]])
    if view != "MLO":  # the rounded top and bottom ends meet the chest wall
        skin = np.vstack([skin, [[0.0, dims["top"]], [0.0, dims["bottom"]]]])
    # Only cells that can be near the skin are looked up (a cheap distance transform of the mask
    # picks them); beyond the cap the path lengths no longer change.
    near = np.pad(mask, ((0, 0), (8, 0)), mode="edge")  # the chest wall is not skin
    inner = ndimage.distance_transform_edt(near)[:, 8:] * cell < cap_mm + 2 * cell
    outer = ndimage.distance_transform_edt(~near)[:, 8:] <= 2
    rows_i, cols_i = np.nonzero((mask & inner) | (~mask & outer))
    signed = np.where(mask, cap_mm, -cap_mm).astype(np.float64)
    distance, _ = cKDTree(skin).query(np.column_stack([x[cols_i], y[rows_i]]), distance_upper_bound=cap_mm)
    distance = np.minimum(distance, cap_mm)
    signed[rows_i, cols_i] = np.where(mask[rows_i, cols_i], distance, -distance)
    return mask, signed.astype(np.float32)


def _chord(depth: np.ndarray, radius: float) -> np.ndarray:
    """Chord of a circle of `radius` at `depth` (>= 0) inside its edge: 2 sqrt(d (2r - d)),
    with d clipped to r (deeper, the chord is the diameter). In place, float32."""
    r = np.float32(radius)
    d = np.minimum(depth, r)
    out = np.subtract(2 * r, d)
    out *= d
    out *= np.float32(4.0)
    return np.sqrt(out, out=out)


def _path_lengths(depth: np.ndarray, thickness: float) -> tuple[np.ndarray, np.ndarray]:
    """(total, inner) projected path lengths at in-plane depth `depth` (>= 0) from the skin line:
    chords of the half cylinder of radius T/2 and of its inside, one skin thinner."""
    r = thickness / 2.0
    total = _chord(depth, r)
    inner_depth = np.subtract(depth, np.float32(SKIN_MM))
    np.maximum(inner_depth, 0.0, out=inner_depth)
    return total, _chord(inner_depth, r - SKIN_MM)


def make_breast(
    rng: np.random.Generator,
    *,
    spacing_mm: float,
    view: str,
    laterality: str,
    field_shape: tuple[int, int] | None = None,
    thickness_mm: float | None = None,
    size: BreastSize | None = None,
) -> Breast:
    """A random breast for one view. `field_shape` set: a spot field filled with tissue.
    `size`: the breast's size shared by its views (default: drawn); the MLO view shows a little
    more depth and is compressed a little less. `thickness_mm` overrides the thickness."""
    drawn = BreastSize.draw(rng)
    size = size or drawn
    mlo = view == "MLO"
    thickness = size.thickness_mm * (1.1 if mlo else 1.0)
    if thickness_mm is not None:
        thickness = float(thickness_mm)
    if field_shape is not None:
        rows, cols = field_shape
        depth = np.full((rows, cols), 1000.0, dtype=np.float32)
        total, inner = _path_lengths(depth, thickness)
        return Breast(
            shape=(rows, cols),
            spacing_mm=spacing_mm,
            view=view,
            laterality=laterality,
            chest_wall="left" if laterality == "L" else "right",
            thickness_mm=thickness,
            depth_mm=depth,
            tissue_mm=inner,
            skin_mm=total - inner,
            muscle_mm=np.zeros((rows, cols), np.float32),
            nipple_xy=(-1000.0 if laterality == "R" else cols + 1000.0, rows / 2.0),
            box=(slice(0, rows), slice(0, cols)),
            spot=True,
        )

    nipple_depth = size.nipple_depth_mm * (1.08 if mlo else 1.0)
    half_height = size.height_ratio * nipple_depth + 30.0
    if view == "MLO":
        half_height *= 1.25
    height_mm, width_mm = next(
        (d for d in DETECTORS_MM if 2 * half_height + 25 <= d[0] and nipple_depth + 15 <= d[1]),
        DETECTORS_MM[-1],
    )
    rows, cols = round(height_mm / spacing_mm), round(width_mm / spacing_mm)
    nipple_depth = min(nipple_depth, width_mm - 15.0)
    if view == "MLO":
        # The axilla runs off the top of the image; the fold is near the bottom.
        bottom = min(height_mm - 8.0, 2 * half_height)
        dims = dict(
            top=-5.0,
            bottom=bottom,
            nipple_s=float(rng.uniform(0.5, 0.62)),
            depth=nipple_depth,
            axilla_width=float(rng.uniform(0.3, 0.45)),
        )
    else:
        centre = height_mm / 2.0 + float(rng.uniform(-8.0, 8.0))
        half_height = min(half_height, height_mm / 2.0 - 8.0)
        dims = dict(
            top=centre - half_height,
            bottom=centre + half_height,
            nipple_s=float(rng.uniform(0.45, 0.55)),
            depth=nipple_depth,
        )

    factor = max(1, int(round(_COARSE_MM / spacing_mm)))
    cell = spacing_mm * factor
    crow, ccol = -(-rows // factor), -(-cols // factor)
    mask, depth_c = _outline(crow, ccol, cell, view, dims, depth_cap_mm(thickness))
    muscle_c = np.zeros_like(depth_c)
    if view == "MLO":
        yy, xx = (np.mgrid[0:crow, 0:ccol].astype(np.float32) + 0.5) * np.float32(cell)
        top_width = float(rng.uniform(0.3, 0.45)) * nipple_depth
        length = float(rng.uniform(0.45, 0.65)) * height_mm
        u, v = xx / top_width, yy / length
        # Signed distance (mm) inside the slightly convex muscle edge x/w + y/L - 0.3 (x/w)(y/L) = 1.
        inside_mm = (1.0 - u - v + 0.3 * u * v) / np.hypot(1.0 / top_width, 1.0 / length)
        share = np.clip(inside_mm / 4.0, 0.0, 1.0) * (0.25 + 0.25 * np.clip(inside_mm / 40.0, 0.0, 1.0))
        muscle_c = (share * thickness * mask).astype(np.float32)

    # Only the breast's bounding box (plus a margin) is computed at full resolution.
    rows_any, cols_any = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
    cr0, cr1 = max(rows_any[0] - 2, 0), min(rows_any[-1] + 3, crow)
    cc0, cc1 = max(cols_any[0] - 2, 0), min(cols_any[-1] + 3, ccol)
    r0, r1, c0, c1 = cr0 * factor, min(cr1 * factor, rows), cc0 * factor, min(cc1 * factor, cols)
    box = (slice(r0, r1), slice(c0, c1))

    # The right breast is the mirror image: the coarse maps are mirrored before interpolation
    # (the full-resolution maps are never copied), aligned on the image's right edge.
    right = laterality == "R"

    def fine(coarse_map: np.ndarray) -> np.ndarray:
        part = coarse_map[cr0:cr1, cc0:cc1]
        return upsample(part[:, ::-1] if right else part, factor, (r1 - r0, c1 - c0), from_end=right)

    depth = fine(depth_c)
    np.maximum(depth, 0.0, out=depth)
    total, inner = _path_lengths(depth, thickness)
    if view == "MLO":
        muscle = np.minimum(fine(muscle_c), inner)
        tissue = np.subtract(inner, muscle)
    else:
        muscle, tissue = np.zeros_like(inner), inner
    reach = np.where(mask, np.arange(ccol)[None, :], -1).max(axis=1)
    nipple_row = int(np.argmax(reach))
    nipple_x = float((reach[nipple_row] + 0.5) * factor)
    if right:
        box = (box[0], slice(cols - c1, cols - c0))
        nipple_x = cols - 1 - nipple_x
    return Breast(
        shape=(rows, cols),
        spacing_mm=spacing_mm,
        view=view,
        laterality=laterality,
        chest_wall="right" if right else "left",
        thickness_mm=thickness,
        depth_mm=depth,
        tissue_mm=tissue,
        skin_mm=np.subtract(total, inner, out=total),
        muscle_mm=muscle,
        nipple_xy=(nipple_x, float((nipple_row + 0.5) * factor)),
        box=box,
    )
