"""Rasterise calcification geometry onto the image grid as projected calcium path length.

Each particle is evaluated analytically (chord lengths through ellipsoids and tubes) on a
supersampled patch around it and area-averaged down to detector pixels, which is what a
detector element integrates; sub-pixel calcifications therefore keep their true integrated
signal. The mask marks pixels at least half covered by calcium, plus each particle's brightest
pixel so that no particle is missing from the mask however small it is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from microcalcai.phantom.morphology import Ellipsoid, FindingGeometry, Mass, Particle, Tube


@dataclass
class RenderedParticle:
    x: float  # pixel coordinates of the particle centre
    y: float
    size_mm: float
    width_mm: float
    density: float
    pixels: int  # mask pixels
    box: tuple[slice, slice] | None = None  # the pixels its calcium was added to (rows, columns)


def _chord(r2: np.ndarray, d2: np.ndarray) -> np.ndarray:
    return 2.0 * np.sqrt(np.maximum(r2 - d2, 0.0))


def _ellipsoid(e: Ellipsoid, X: np.ndarray, Y: np.ndarray) -> np.ndarray:
    c, s = math.cos(e.angle), math.sin(e.angle)
    u, v = (X - e.dx) * c + (Y - e.dy) * s, -(X - e.dx) * s + (Y - e.dy) * c
    q = (u / e.a) ** 2 + (v / e.b) ** 2
    t = e.c * _chord(1.0, q)
    if e.wall:
        ai, bi, ci = e.a - e.wall, e.b - e.wall, e.c - e.wall
        if min(ai, bi, ci) > 0:
            t = t - ci * _chord(1.0, (u / ai) ** 2 + (v / bi) ** 2)
    return t


def _tube(tube: Tube, X: np.ndarray, Y: np.ndarray, scale: float) -> np.ndarray:
    """Max over the polyline's capsules of the chord through a (hollow) cylinder.

    A hollow tube is the union of the outer capsules minus the union of the lumens: the two
    maxima are taken separately and subtracted at the end (subtracting per capsule would leave
    the end cap of each capsule's shell as a bright ring across the lumen at every joint)."""
    out = np.zeros_like(X)
    lumen = np.zeros_like(X) if tube.wall else None
    pts, radii = tube.points, tube.radii
    for k in range(len(pts) - 1):
        p0, p1 = pts[k], pts[k + 1]
        r = max(radii[k], radii[k + 1])
        lo = np.floor((np.minimum(p0, p1) - r) * scale).astype(int)
        hi = np.ceil((np.maximum(p0, p1) + r) * scale).astype(int)
        # X, Y are regular grids: index the sub-window that can be touched by this capsule.
        x0, y0 = X[0, 0], Y[0, 0]
        c0 = max(0, int(lo[0] - x0 * scale))
        c1 = min(X.shape[1], int(hi[0] - x0 * scale) + 2)
        r0 = max(0, int(lo[1] - y0 * scale))
        r1 = min(X.shape[0], int(hi[1] - y0 * scale) + 2)
        if c0 >= c1 or r0 >= r1:
            continue
        xs, ys = X[r0:r1, c0:c1], Y[r0:r1, c0:c1]
        seg = p1 - p0
        length2 = float(seg @ seg) or 1e-12
        t = np.clip(((xs - p0[0]) * seg[0] + (ys - p0[1]) * seg[1]) / length2, 0.0, 1.0)
        d2 = (xs - p0[0] - t * seg[0]) ** 2 + (ys - p0[1] - t * seg[1]) ** 2
        rad = radii[k] + t * (radii[k + 1] - radii[k])
        chord = _chord(rad * rad, d2)
        if lumen is not None:
            inner = np.maximum(rad - tube.wall, 0.0)
            np.maximum(lumen[r0:r1, c0:c1], _chord(inner * inner, d2), out=lumen[r0:r1, c0:c1])
        np.maximum(out[r0:r1, c0:c1], chord, out=out[r0:r1, c0:c1])
    return out if lumen is None else np.maximum(out - lumen, 0.0)


def _supersampling(particle: Particle, spacing_mm: float) -> int:
    # Features thinner than ~3 pixels are sampled finer; large particles need no more.
    return 1 if particle.width_mm > 3 * spacing_mm else (4 if particle.width_mm < spacing_mm else 3)


def render_particle(particle: Particle, cx: float, cy: float, spacing_mm: float, shape):
    """(row slice, col slice, calcium path mm, coverage 0..1) on the pixel grid, or None if outside."""
    ss = _supersampling(particle, spacing_mm)
    extent = particle.extent_mm() + spacing_mm
    px, py = cx + particle.x / spacing_mm, cy + particle.y / spacing_mm
    half = extent / spacing_mm
    c0, c1 = int(math.floor(px - half)), int(math.ceil(px + half)) + 1
    r0, r1 = int(math.floor(py - half)), int(math.ceil(py + half)) + 1
    c0c, c1c, r0c, r1c = max(c0, 0), min(c1, shape[1]), max(r0, 0), min(r1, shape[0])
    if c0c >= c1c or r0c >= r1c:
        return None
    # Sample positions (mm, relative to the particle centre): ss x ss per pixel, at sub-pixel centres.
    sub = (np.arange(ss) + 0.5) / ss - 0.5
    xs = ((np.arange(c0c, c1c)[:, None] + sub[None, :]).ravel() - px) * spacing_mm
    ys = ((np.arange(r0c, r1c)[:, None] + sub[None, :]).ravel() - py) * spacing_mm
    X, Y = np.meshgrid(xs.astype(np.float32), ys.astype(np.float32))
    fine = np.zeros_like(X)
    scale = ss / spacing_mm
    for part in particle.parts:
        t = _ellipsoid(part, X, Y) if isinstance(part, Ellipsoid) else _tube(part, X, Y, scale)
        np.maximum(fine, t, out=fine)
    covered = (fine > 0).astype(np.float32)
    if particle.blur_mm > 0:
        fine = ndimage.gaussian_filter(fine, particle.blur_mm * scale, mode="constant")
    rows, cols = r1c - r0c, c1c - c0c
    path = fine.reshape(rows, ss, cols, ss).mean(axis=(1, 3)) * np.float32(particle.density)
    coverage = covered.reshape(rows, ss, cols, ss).mean(axis=(1, 3))
    return slice(r0c, r1c), slice(c0c, c1c), path, coverage


def render_finding(
    finding: FindingGeometry,
    cx: float,
    cy: float,
    spacing_mm: float,
    calcium: np.ndarray,
    labels: np.ndarray,
    label: int,
    *,
    inside: np.ndarray | None = None,
) -> list[RenderedParticle]:
    """Add a finding's calcium path (mm) into `calcium` and its mask into `labels` (value `label`).

    Particles whose centre falls outside `inside` (the breast) are left out.
    """
    shape = calcium.shape
    out = []
    for particle in finding.particles:
        px, py = cx + particle.x / spacing_mm, cy + particle.y / spacing_mm
        ix, iy = int(round(px)), int(round(py))
        if not (0 <= ix < shape[1] and 0 <= iy < shape[0]):
            continue
        if inside is not None and not inside[iy, ix]:
            continue
        rendered = render_particle(particle, cx, cy, spacing_mm, shape)
        if rendered is None:
            continue
        rs, cs, path, coverage = rendered
        calcium[rs, cs] += path
        mask = coverage >= 0.5
        if path.max() > 0:
            mask.flat[int(np.argmax(path))] = True
        labels[rs, cs][mask] = label
        out.append(
            RenderedParticle(
                px, py, particle.size_mm, particle.width_mm, particle.density, int(mask.sum()), (rs, cs)
            )
        )
    return out


def render_masses(
    masses: list[Mass], cx: float, cy: float, spacing_mm: float, out: np.ndarray
) -> list[tuple[slice, slice]]:
    """Add soft-tissue masses (projected path, mm) with a smooth margin; returns the pixel boxes
    (rows, columns) they were added to."""
    boxes = []
    for m in masses:
        px, py = cx + m.x / spacing_mm, cy + m.y / spacing_mm
        half = (max(m.a, m.b) + 1.0) / spacing_mm
        r0, r1 = max(int(py - half), 0), min(int(py + half) + 1, out.shape[0])
        c0, c1 = max(int(px - half), 0), min(int(px + half) + 1, out.shape[1])
        if r0 >= r1 or c0 >= c1:
            continue
        Y, X = np.mgrid[r0:r1, c0:c1].astype(np.float32)
        X, Y = (X - px) * spacing_mm, (Y - py) * spacing_mm
        e = Ellipsoid(0.0, 0.0, m.a, m.b, min(m.a, m.b), m.angle)
        out[r0:r1, c0:c1] += _ellipsoid(e, X, Y)
        boxes.append((slice(r0, r1), slice(c0, c1)))
    return boxes
