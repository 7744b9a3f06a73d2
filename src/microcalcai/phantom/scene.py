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
    """Thin curvilinear fibrous strands (Cooper's ligaments, duct walls): the zero set of a smooth
    random field is a network of curves; exp(-(f/w)^2) draws it as lines ~0.3 mm wide. Made on a
    grid twice as coarse (the lines are several pixels wide) and interpolated."""
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
    width = np.float32(0.35) * slope  # ~0.35 mm
    lines = np.exp(-((smooth / width) ** 2))
    # only some stretches of the network are fibrous: fade the rest with a second smooth field
    fade = power_law_field(coarse_shape, 4.0, rng, spacing_mm=spacing_mm * factor, workers=workers)
    lines *= np.clip(fade / np.float32(fade.std() + 1e-6), 0.0, 1.0)
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
    )
    g = np.float32(density) + np.float32(TEXTURE_AMPLITUDE) * tex
    g += np.float32(STRAND_AMPLITUDE) * _strands(depth.shape, breast.spacing_mm, angle, rng, workers)
    depth_weight = np.clip(depth / np.float32(SUBCUTANEOUS_FAT_MM), 0.0, 1.0)
    g *= depth_weight
    return np.clip(g, 0.0, 1.0, out=g)


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
    calcium = np.zeros(breast.shape, np.float32)
    labels = np.zeros(breast.shape, np.uint8)
    mass = None
    inside = np.zeros(breast.shape, bool)
    inside[breast.box] = breast.depth_mm > 2.0
    rendered = {}
    for p in placements:
        geom = p.geometry.rotated(p.angle)
        if geom.masses:
            mass = np.zeros(breast.shape, np.float32) if mass is None else mass
            render_masses(geom.masses, p.x, p.y, spacing, mass)
        rendered[p.finding_id] = render_finding(
            geom, p.x, p.y, spacing, calcium, labels, p.finding_id, inside=inside
        )
    box = breast.box
    line = physics.attenuation(
        tissue_mm=breast.tissue_mm,
        glandular_fraction=g,
        skin_mm=breast.skin_mm,
        muscle_mm=breast.muscle_mm,
        mass_mm=None if mass is None else mass[box],
        calcium_mm=calcium[box],
        calcium_mu=detector.calcium_mu_per_mm,
    )
    mask = breast.mask
    total = breast.tissue_mm + breast.skin_mm + breast.muscle_mm
    equalise = np.float32(breast.thickness_mm) - total
    # The window is fitted to the tissue, as a reader would set it; calcifications may saturate.
    stored_box, window = physics.acquire(
        line, mask, equalise, breast.thickness_mm, detector, rng, window_mask=mask & (calcium[box] <= 0)
    )
    # Outside the breast the processed image is black, as on a reading station.
    stored = np.zeros(breast.shape, np.uint16)
    stored[box] = np.where(mask, stored_box, 0)
    return SyntheticView(stored, window, labels, rendered, g)
