"""Calcifications inserted into a real mammogram used as background.

The background is read with `microcalcai.io.read_image` (0..1, higher = denser) at its own pixel
spacing, so a finding keeps its size in millimetres whatever the scanner. The breast is found by
Otsu's threshold (scikit-image) on a coarse copy, keeping the largest connected region. The
image is treated as a log-exposure image whose breast interior spans `TISSUE_LOG_RANGE`: the
calcium path is added in those units, blurred by the detector PSF, like the synthetic images.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from microcalcai.errors import InputError
from microcalcai.phantom import physics
from microcalcai.phantom.anatomy import Breast
from microcalcai.phantom.grid import block_mean, upsample
from microcalcai.phantom.render import render_finding
from microcalcai.phantom.scene import Placement, SyntheticView

# Log-exposure span of the 1st..99th percentiles of a breast interior (measured on the
# synthetic images of this package, 1.0 to 1.5); maps the background's 0..1 scale to log units.
TISSUE_LOG_RANGE = 1.2
_COARSE_MM = 0.5
INTERIOR_MM = 10.0  # the tissue whose contrast calibrates the findings lies this deep inside the breast


def load_background(path: str, *, spacing_mm: float | None, rng: np.random.Generator):
    """(Mammogram, Breast) for a background file; the Breast holds the in-plane depth only."""
    from microcalcai.io import read_image

    image = read_image(path, default_spacing_mm=spacing_mm)
    if image.spacing_mm is None:
        raise InputError(
            f"background {path} has no pixel spacing; give it with --background-spacing-mm "
            "(background_spacing_mm=...), e.g. 0.05 for CBIS-DDSM scans"
        )
    row_mm, col_mm = image.spacing_mm
    if abs(row_mm - col_mm) > 0.01 * max(row_mm, col_mm):
        raise InputError(
            f"background {path} has non-square pixels ({row_mm} x {col_mm} mm); resample it first"
        )
    spacing = float(col_mm)
    pixels = image.pixels
    factor = max(1, int(round(_COARSE_MM / spacing)))
    coarse = block_mean(pixels, factor)
    from skimage.filters import threshold_otsu

    mask = coarse > threshold_otsu(coarse)
    labels, n = ndimage.label(mask)
    if n == 0:
        raise InputError(f"background {path}: no breast found (the image looks empty)")
    sizes = ndimage.sum(mask, labels, index=np.arange(1, n + 1))
    mask = ndimage.binary_fill_holes(labels == (1 + int(np.argmax(sizes))))
    mask = ndimage.binary_opening(mask, iterations=2)
    if not mask.any():
        raise InputError(f"background {path}: no breast found (no region of tissue a few mm across)")
    cols = mask.any(axis=0).nonzero()[0]
    # The chest wall is the side where the breast touches the image edge most.
    chest_wall = "left" if mask[:, 0].sum() >= mask[:, -1].sum() else "right"
    depth_c = ndimage.distance_transform_edt(np.pad(mask, ((0, 0), (8, 8)), mode="edge"))[:, 8:-8]
    depth = upsample(depth_c * (spacing * factor), factor, pixels.shape)
    depth[upsample(mask.astype(np.float32), factor, pixels.shape) < 0.5] = 0.0
    if not (depth > INTERIOR_MM).any():
        # Findings are calibrated on the tissue deeper than this; a spot view or a crop has none.
        raise InputError(
            f"background {path}: the breast found reaches only {depth.max():.1f} mm from its edge "
            f"(at {spacing:g} mm a pixel), and findings need tissue deeper than {INTERIOR_MM:g} mm; "
            "use a whole mammogram view at its true pixel spacing"
        )
    nipple_col = cols.max() if chest_wall == "left" else cols.min()
    nipple_row = int(np.mean(mask[:, nipple_col].nonzero()[0]))
    shape = pixels.shape
    zeros = np.zeros(shape, np.float32)
    breast = Breast(
        shape=shape,
        spacing_mm=spacing,
        view=image.view or "CC",
        laterality=image.laterality or "L",
        chest_wall=chest_wall,
        thickness_mm=50.0,
        depth_mm=depth,
        tissue_mm=zeros,
        skin_mm=zeros,
        muscle_mm=zeros,
        nipple_xy=(float(nipple_col * factor), float(nipple_row * factor)),
        box=(slice(0, shape[0]), slice(0, shape[1])),
    )
    return image, breast


def insert_findings(
    image, breast: Breast, placements: list[Placement], detector: physics.Detector, rng: np.random.Generator
) -> SyntheticView:
    """Render the placed findings into the background; stored at `detector.bits_stored` bits."""
    spacing = breast.spacing_mm
    calcium = np.zeros(breast.shape, np.float32)
    labels = np.zeros(breast.shape, np.uint8)
    rendered = {}
    inside = breast.depth_mm > 2.0
    for p in placements:
        rendered[p.finding_id] = render_finding(
            p.geometry.rotated(p.angle), p.x, p.y, spacing, calcium, labels, p.finding_id, inside=inside
        )
    pixels = image.pixels
    interior = breast.depth_mm > INTERIOR_MM
    lo, hi = np.percentile(pixels[interior][:: max(1, int(interior.sum()) // 200_000)], [1, 99])
    gain = max(float(hi - lo), 1e-3) / TISSUE_LOG_RANGE  # background units per log unit
    mu_tissue = physics.MU_FAT + 0.3 * (physics.MU_GLAND - physics.MU_FAT)
    contrast = (detector.calcium_mu_per_mm - mu_tissue) / (1.0 + detector.spr_per_mm * breast.thickness_mm)
    signal = calcium * np.float32(contrast * gain)
    if detector.psf_sigma_mm > 0:
        signal = ndimage.gaussian_filter(signal, detector.psf_sigma_mm / spacing)
    values = np.clip(pixels + signal, 0.0, 1.0)
    stored = np.rint(values * detector.max_value).astype(np.uint16)
    window = physics.display_window(stored, breast.depth_mm > 0)
    return SyntheticView(stored, window, labels, rendered)
