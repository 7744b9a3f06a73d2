"""Breast arterial calcification (BAC): calcified arteries drawn once in 3D, projected into CC and MLO.

An artery is a tortuous centreline in a frame fixed to the breast, with the nipple at the origin:
u runs along the posterior nipple line toward the chest wall, v medial-lateral and w
cranio-caudal (mm). The calcified stretches of its wall (runs along the arc length, with
uncalcified gaps between them) are hollow tubes, whose projection is the two parallel bright
"tram lines" of a calcified vessel wall seen side-on, with the lumen between them.

Each view projects the same 3D artery: CC keeps (u, v), MLO keeps (u, v sin a + w cos a) with the
oblique angle a (about 45 degrees). So a calcified artery is in both views of its breast, at the
same depth along the posterior nipple line (the coordinate a reader matches a finding by across
CC and MLO, as the phantom's clusters are placed at the same nipple distance in both views),
with the same calcified runs, but with a view-dependent course: what two real projections of one
vessel look like. The geometry goes through the phantom's renderer as an ordinary finding (a
`FindingGeometry` of tube particles placed at the nipple), so the calcium, noise and detector
model, and the vessel mask (the pixels at least half covered by the calcified tube), are those
of every other calcification.

Sizes: calcified breast arteries are 1-3 mm across (outer radius here 0.6-1.1 mm) with calcified
walls of 0.08-0.18 mm; they run from the chest wall (lateral thoracic and internal mammary branches)
toward the nipple over several centimetres, tortuous, the calcification discontinuous.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from microcalcai.phantom.anatomy import Breast, BreastSize
from microcalcai.phantom.morphology import FindingGeometry, Particle, Tube

STEP_MM = 0.25  # centreline sampling step
MLO_ANGLE = math.radians(45.0)
# The arteries stay inside this fraction of the breast's half-ellipse (depth x half height), so
# that they lie inside the breast in both views despite their different outlines.
ENVELOPE = 0.72
MORPHOLOGY = "arterial"
# Calcium density of the wall (fraction of the phantom's effective calcium attenuation): vessel-wall
# calcification is a thin, partly mineralised layer, fainter than the solid clusters' particles.
DENSITY = (0.5, 1.0)


@dataclass
class Artery:
    """One artery in the breast's 3D frame (mm); `runs` are the calcified stretches of it."""

    centreline: np.ndarray  # (K, 3): u, v, w
    outer_radius: float
    wall_mm: float
    runs: list[tuple[int, int, float]]  # (first point, last point + 1, calcium density 0..1)

    @property
    def length_mm(self) -> float:
        return float(np.sum(np.linalg.norm(np.diff(self.centreline, axis=0), axis=1)))

    @property
    def calcified_mm(self) -> float:
        steps = np.linalg.norm(np.diff(self.centreline, axis=0), axis=1)
        return float(sum(steps[a : b - 1].sum() for a, b, _ in self.runs))


def half_height_mm(size: BreastSize) -> float:
    """Half the breast's extent along the chest wall in CC, as `anatomy.make_breast` draws it."""
    return size.height_ratio * size.nipple_depth_mm + 30.0


def _inside_envelope(points: np.ndarray, depth: float, half_height: float) -> np.ndarray:
    u, rho = points[:, 0], np.hypot(points[:, 1], points[:, 2])
    return ((depth - u) / depth) ** 2 + (rho / half_height) ** 2 <= ENVELOPE**2


def make_artery(rng: np.random.Generator, size: BreastSize) -> Artery:
    """A tortuous artery entering near the chest wall and running toward the nipple.

    The course is a straight line from an entry point near the chest wall to an end point
    15-35 mm behind the nipple, bent by a smooth random displacement across it (a few sinusoids
    of 1-2.5 mm amplitude and 12-40 mm period in both directions across the course), so the vessel
    looks serpentine, as calcified breast arteries do. Only its longest stretch inside the
    envelope is kept.
    """
    depth, half = size.nipple_depth_mm, half_height_mm(size)
    u0 = depth * rng.uniform(0.8, 0.95)
    reach = ENVELOPE * half * math.sqrt(max(1.0 - ((depth - u0) / (depth * ENVELOPE)) ** 2, 0.05))
    phi = rng.uniform(0, 2 * math.pi)
    rho = reach * math.sqrt(rng.uniform(0.05, 0.7))
    start = np.array([u0, rho * math.cos(phi), rho * math.sin(phi)])
    end = np.array([rng.uniform(15.0, 35.0), *(start[1:] * rng.uniform(0.2, 0.7))])
    course = end - start
    length = float(np.linalg.norm(course))
    n = max(8, int(length / STEP_MM))
    t = np.linspace(0.0, 1.0, n)
    arc = t * length
    along = course / length
    across = np.cross(along, [0.0, 0.0, 1.0])
    across /= np.linalg.norm(across)
    normals = (across, np.cross(along, across))
    line = start + np.outer(t, course)
    for normal in normals:
        shift = np.zeros(n)
        for _ in range(3):
            period = rng.uniform(12.0, 40.0)
            shift += rng.uniform(0.8, 2.5) * np.sin(2 * np.pi * arc / period + rng.uniform(0, 6.3))
        shift *= np.sin(np.pi * t) ** 0.3  # the ends stay near the line's ends
        line += np.outer(shift, normal)
    keep = _inside_envelope(line, depth, half) & (line[:, 0] > 8.0)
    line = line[_longest_run(keep)]
    outer = rng.uniform(0.6, 1.1)
    wall = rng.uniform(0.08, min(0.18, 0.25 * outer))
    return Artery(line, float(outer), float(wall), _calcified_runs(rng, len(line)))


def _longest_run(keep: np.ndarray) -> slice:
    """The longest stretch of consecutive True values (an empty slice if there is none)."""
    edges = np.flatnonzero(np.diff(np.r_[0, keep.astype(np.int8), 0]))
    if edges.size == 0:
        return slice(0, 0)
    starts, stops = edges[::2], edges[1::2]
    best = int(np.argmax(stops - starts))
    return slice(int(starts[best]), int(stops[best]))


def _calcified_runs(rng: np.random.Generator, n_points: int) -> list[tuple[int, int, float]]:
    """Calcified stretches 4-20 mm long with 1-6 mm gaps, at least one."""
    runs, k = [], int(rng.integers(0, max(1, int(4.0 / STEP_MM))))
    while k < n_points - 2:
        m = max(3, int(rng.uniform(4.0, 20.0) / STEP_MM))
        runs.append((k, min(k + m, n_points), float(rng.uniform(*DENSITY))))
        k += m + max(1, int(rng.uniform(1.0, 6.0) / STEP_MM))
    if not runs:
        runs.append((0, n_points, float(rng.uniform(*DENSITY))))
    return runs


def project(artery: Artery, view: str, laterality: str) -> np.ndarray:
    """(K, 2) centreline in the view's finding frame: +x away from the nipple (depth u), +y the
    projected offset, in the image's row direction for either breast (see `placement_angle`)."""
    u, v, w = artery.centreline.T
    across = v if view == "CC" else v * math.sin(MLO_ANGLE) + w * math.cos(MLO_ANGLE)
    if laterality == "L":
        across = -across  # the frame is turned by 180 degrees for a left breast
    return np.column_stack([u, across])


def placement_angle(breast: Breast) -> float:
    """Rotation of the finding frame: +x toward the chest wall (the image's left edge for a
    left breast, its right edge for a right breast)."""
    return math.pi if breast.chest_wall == "left" else 0.0


def artery_geometry(arteries: list[Artery], view: str, laterality: str) -> FindingGeometry:
    """The calcified runs of the arteries as tube particles, in the view's finding frame."""
    particles = []
    for artery in arteries:
        line = project(artery, view, laterality)
        for a, b, density in artery.runs:
            seg = line[a:b]
            if len(seg) < 2:
                continue
            centre = seg[len(seg) // 2]
            radii = np.full(len(seg), artery.outer_radius)
            particle = Particle(
                float(centre[0]),
                float(centre[1]),
                [Tube(seg - centre, radii, artery.wall_mm)],
                density=density,
            )
            particle.size_mm = float(np.sum(np.hypot(*np.diff(seg, axis=0).T))) + 2 * artery.outer_radius
            # the calcified wall is the thinnest feature: the renderer supersamples by it
            particle.width_mm = artery.wall_mm
            particles.append(particle)
    extent = max((float(np.max(np.linalg.norm(a.centreline, axis=1))) for a in arteries), default=0.0)
    return FindingGeometry(MORPHOLOGY, "linear", particles, [], extent)


def fraction_inside(geometry: FindingGeometry, breast: Breast) -> float:
    """Share of the particles whose centre falls inside the breast (deeper than 2 mm, as the
    renderer requires) when the geometry is placed at the nipple of `breast`."""
    if not geometry.particles:
        return 0.0
    angle = placement_angle(breast)
    c, s = math.cos(angle), math.sin(angle)
    r0, c0 = breast.origin
    inside = 0
    for p in geometry.particles:
        x = breast.nipple_xy[0] + (c * p.x - s * p.y) / breast.spacing_mm
        y = breast.nipple_xy[1] + (s * p.x + c * p.y) / breast.spacing_mm
        row, col = int(round(y)) - r0, int(round(x)) - c0
        if 0 <= row < breast.depth_mm.shape[0] and 0 <= col < breast.depth_mm.shape[1]:
            inside += bool(breast.depth_mm[row, col] > 2.0)
    return inside / len(geometry.particles)
