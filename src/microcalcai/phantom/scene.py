"""One synthetic view: anatomy + parenchyma + calcifications through the acquisition model."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from microcalcai.phantom import physics
from microcalcai.phantom.anatomy import Breast
from microcalcai.phantom.grid import upsample
from microcalcai.phantom.morphology import FindingGeometry
from microcalcai.phantom.render import RenderedParticle, render_finding, render_masses
from microcalcai.phantom.texture import power_law_field

SUBCUTANEOUS_FAT_MM = 8.0  # glandular tissue thins out over this distance below the skin
TEXTURE_AMPLITUDE = 0.16  # standard deviation of the glandular fraction's texture
STRAND_AMPLITUDE = 0.12  # glandular fraction added along fibrous strands


@dataclass
class Placement:
    """A finding placed in one view: its centre in pixels and the rotation of its frame."""

    finding_id: int  # value in the mask image
    geometry: FindingGeometry
    x: float
    y: float
    angle: float


@dataclass
class SyntheticView:
    stored: np.ndarray  # uint16
    window: tuple[float, float]
    labels: np.ndarray  # uint8: 0 background, finding_id where calcified
    particles: dict[int, list[RenderedParticle]] = field(default_factory=dict)
    glandular_fraction: np.ndarray | None = None

    def display(self) -> np.ndarray:
        """float32 0..1, higher = denser, as a reader applying the stored window sees it."""
        return physics.apply_window(self.stored, self.window)


def _strands(shape, spacing_mm: float, angle: float, rng: np.random.Generator, workers: int) -> np.ndarray:
    """Thin curvilinear fibrous strands (Cooper's ligaments, duct walls), as glandular fraction
    (STRAND_AMPLITUDE on a strand): the zero set of a smooth random field is a network of curves;
    exp(-(f/w)^2) draws it as lines ~0.3 mm wide. Made on a grid twice as coarse (the lines are
    several pixels wide) and interpolated."""
    factor = 2 if spacing_mm < 0.12 else 1
    coarse_shape = (-(-shape[0] // factor), -(-shape[1] // factor))
    smooth = power_law_field(
        coarse_shape,
        4.0,
        rng,
        spacing_mm=spacing_mm * factor,
        anisotropy=2.0,
        angle_rad=angle,
        workers=workers,
    )
    # the local slope of the field sets how wide its zero crossings look; normalise by its rms
    gy, gx = np.gradient(smooth)
    slope = np.float32(np.sqrt(np.mean(gx * gx + gy * gy)) / (spacing_mm * factor))
    del gy, gx
    lines = np.multiply(smooth, np.float32(1.0) / (np.float32(0.35) * slope))  # width ~0.35 mm
    np.square(lines, out=lines)
    np.negative(lines, out=lines)
    np.exp(lines, out=lines)
    # only some stretches of the network are fibrous: fade the rest with a second smooth field,
    # made 4x coarser still (a 1/f^4 field has ~0.1% of its variance above that grid's Nyquist)
    fade_shape = (-(-coarse_shape[0] // 4), -(-coarse_shape[1] // 4))
    fade = power_law_field(fade_shape, 4.0, rng, spacing_mm=spacing_mm * factor * 4, workers=workers)
    fade = np.multiply(fade, np.float32(1.0 / (fade.std() + 1e-6)))
    np.clip(fade, 0.0, 1.0, out=fade)
    lines *= upsample(fade, 4, coarse_shape)
    lines *= np.float32(STRAND_AMPLITUDE)
    return lines if factor == 1 else upsample(lines, factor, shape)


def glandular_fraction(
    breast: Breast, density: float, beta: float, rng: np.random.Generator, *, workers: int = 1
) -> np.ndarray:
    """Fraction of the inner path that is fibroglandular: density + power-law texture, clipped.

    Computed over `breast.box` only (the returned array has the box's shape).

    The field is linear in the texture where it is not clipped, so the log image keeps the
    1/f^beta spectrum there. Structures are stretched toward the nipple, as ducts and Cooper's
    ligaments are.
    """
    f32 = np.float32
    angle = 0.0 if breast.view == "CC" else (-0.5 if breast.chest_wall == "left" else 0.5)
    depth = breast.depth_mm
    tex = power_law_field(
        depth.shape,
        beta,
        rng,
        spacing_mm=breast.spacing_mm,
        anisotropy=float(rng.uniform(1.2, 1.6)),
        angle_rad=angle,
        workers=workers,
        scale=TEXTURE_AMPLITUDE,
    )
    g = np.add(tex, f32(density))
    del tex
    strands = _strands(depth.shape, breast.spacing_mm, angle, rng, workers)
    g += strands
    del strands
    weight = np.multiply(depth, f32(1.0 / SUBCUTANEOUS_FAT_MM))
    np.minimum(weight, f32(1.0), out=weight)
    g *= weight
    return np.clip(g, 0.0, 1.0, out=g)


def _findings_box(boxes: list[tuple[slice, slice]], box: tuple[slice, slice]) -> tuple[slice, slice] | None:
    """The smallest box holding all `boxes` (pixel slices of the image), within `box`; None if
    they lie outside it or there are none."""
    if not boxes:
        return None
    r0 = max(min(b[0].start for b in boxes), box[0].start)
    r1 = min(max(b[0].stop for b in boxes), box[0].stop)
    c0 = max(min(b[1].start for b in boxes), box[1].start)
    c1 = min(max(b[1].stop for b in boxes), box[1].stop)
    return (slice(r0, r1), slice(c0, c1)) if r0 < r1 and c0 < c1 else None


def synthesize_view(
    breast: Breast,
    placements: list[Placement],
    rng: np.random.Generator,
    *,
    density: float,
    beta: float,
    detector: physics.Detector,
    workers: int = 1,
) -> SyntheticView:
    spacing = breast.spacing_mm
    g = glandular_fraction(breast, density, beta, rng, workers=workers)
    # Full-image buffers for the findings: np.zeros pages are only materialised where a finding
    # is drawn, and the physics below reads them only inside the findings' box.
    calcium = np.zeros(breast.shape, np.float32)
    labels = np.zeros(breast.shape, np.uint8)
    mass = None
    inside = np.zeros(breast.shape, bool)
    inside[breast.box] = breast.depth_mm > 2.0
    rendered, touched = {}, []
    for p in placements:
        geom = p.geometry.rotated(p.angle)
        if geom.masses:
            mass = np.zeros(breast.shape, np.float32) if mass is None else mass
            touched += render_masses(geom.masses, p.x, p.y, spacing, mass)
        rendered[p.finding_id] = render_finding(
            geom, p.x, p.y, spacing, calcium, labels, p.finding_id, inside=inside
        )
        touched += [part.box for part in rendered[p.finding_id] if part.box is not None]
    box = breast.box
    r0, c0 = breast.origin
    muscle = breast.muscle_mm if breast.muscle_mm.any() else None
    line = physics.attenuation(
        tissue_mm=breast.tissue_mm, glandular_fraction=g, skin_mm=breast.skin_mm, muscle_mm=muscle
    )
    mask = breast.mask
    window_mask = mask
    # the findings' box, in image coordinates (`near`) and in the breast box's (`local`)
    near = _findings_box(touched, box)
    if near is not None:
        local = (slice(near[0].start - r0, near[0].stop - r0), slice(near[1].start - c0, near[1].stop - c0))
        physics.add_lesions(
            line[local],
            tissue_mm=breast.tissue_mm[local],
            glandular_fraction=g[local],
            mass_mm=None if mass is None else mass[near],
            calcium_mm=calcium[near],
            calcium_mu=detector.calcium_mu_per_mm,
        )
        # The window is fitted to the tissue, as a reader would set it; calcifications may saturate.
        window_mask = mask.copy()
        window_mask[local] &= calcium[near] <= 0
    equalise = np.add(breast.tissue_mm, breast.skin_mm)
    if muscle is not None:
        equalise += muscle
    np.subtract(np.float32(breast.thickness_mm), equalise, out=equalise)
    # Outside the breast the processed image is black, as on a reading station.
    stored = np.zeros(breast.shape, np.uint16)
    _, window = physics.acquire(
        line, mask, equalise, breast.thickness_mm, detector, rng, window_mask=window_mask, out=stored[box]
    )
    return SyntheticView(stored, window, labels, rendered, g)
