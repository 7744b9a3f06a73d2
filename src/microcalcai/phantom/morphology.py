"""Calcification geometry in millimetres: BI-RADS morphologies laid out in BI-RADS distributions.

A finding is built in a local frame whose +x axis points away from the nipple (ducts run from
the nipple toward the chest wall, so linear and segmental arrangements and branching casts
follow that axis); each view rotates the frame to its own nipple direction. Particles are unions
of solid or hollow ellipsoids and of solid or hollow tubes along polylines, which is enough for
every morphology in the atlas: spheres (punctate, round), lumpy unions (coarse heterogeneous,
popcorn, pleomorphic), shells with a lucent centre (rim), calcified vessel walls seen as tram
tracks (vascular) and thin discontinuous casts of a branching duct (fine linear branching).
Sizes follow the BI-RADS Atlas, 5th edition: punctate < 0.5 mm, round 0.5-1 mm, popcorn > 2 mm,
fine pleomorphic < 0.5 mm across, fine linear < 0.5 mm wide.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from microcalcai.errors import InputError
from microcalcai.phantom.malignancy import check_distribution, check_morphology

_STEP_MM = 0.15  # polyline sampling step


@dataclass
class Ellipsoid:
    dx: float  # offset from the particle centre, mm
    dy: float
    a: float  # in-plane semi-axes, mm
    b: float
    c: float  # semi-axis along the beam, mm
    angle: float = 0.0  # radians
    wall: float | None = None  # hollow shell of this wall thickness (rim calcifications)


@dataclass
class Tube:
    points: np.ndarray  # (K, 2) mm, relative to the particle centre
    radii: np.ndarray  # (K,) mm
    wall: float | None = None  # hollow tube (calcified vessel wall)


@dataclass
class Particle:
    x: float  # centre in the finding's frame, mm
    y: float
    parts: list
    density: float = 1.0  # fraction of the effective calcium attenuation
    blur_mm: float = 0.0  # indistinct margins (amorphous)
    size_mm: float = 0.0  # largest dimension
    width_mm: float = 0.0  # smallest in-plane dimension

    def rotated(self, angle: float, scale: float = 1.0) -> Particle:
        c, s = math.cos(angle), math.sin(angle)
        rot = np.array([[c, -s], [s, c]])
        parts = []
        for p in self.parts:
            if isinstance(p, Ellipsoid):
                dx, dy = rot @ np.array([p.dx, p.dy]) * scale
                parts.append(
                    Ellipsoid(
                        dx,
                        dy,
                        p.a * scale,
                        p.b * scale,
                        p.c * scale,
                        p.angle + angle,
                        None if p.wall is None else p.wall * scale,
                    )
                )
            else:
                parts.append(
                    Tube(
                        p.points @ rot.T * scale, p.radii * scale, None if p.wall is None else p.wall * scale
                    )
                )
        x, y = rot @ np.array([self.x, self.y]) * scale
        return Particle(
            float(x),
            float(y),
            parts,
            self.density,
            self.blur_mm * scale,
            self.size_mm * scale,
            self.width_mm * scale,
        )

    def extent_mm(self) -> float:
        """Radius of a disc about the centre that holds the whole particle."""
        r = 0.0
        for p in self.parts:
            if isinstance(p, Ellipsoid):
                r = max(r, math.hypot(p.dx, p.dy) + max(p.a, p.b))
            else:
                r = max(r, float(np.max(np.hypot(p.points[:, 0], p.points[:, 1]) + p.radii)))
        return r + 3 * self.blur_mm


@dataclass
class Mass:
    """A soft-tissue mass (the fibroadenoma around popcorn calcification), glandular density."""

    x: float
    y: float
    a: float
    b: float
    angle: float

    def rotated(self, angle: float) -> Mass:
        c, s = math.cos(angle), math.sin(angle)
        return Mass(c * self.x - s * self.y, s * self.x + c * self.y, self.a, self.b, self.angle + angle)


@dataclass
class FindingGeometry:
    morphology: str
    distribution: str
    particles: list[Particle]
    masses: list[Mass] = field(default_factory=list)
    extent_mm: float = 10.0  # radius holding the finding (diffuse: the whole breast)

    def rotated(self, angle: float) -> FindingGeometry:
        return FindingGeometry(
            self.morphology,
            self.distribution,
            [p.rotated(angle) for p in self.particles],
            [m.rotated(angle) for m in self.masses],
            self.extent_mm,
        )


# ---------------------------------------------------------------------------- paths and layouts
def _curve(rng: np.random.Generator, start, heading: float, length: float, wiggle: float) -> np.ndarray:
    """A smooth random polyline (heading does a damped random walk) sampled every _STEP_MM."""
    n = max(2, int(length / _STEP_MM))
    turn = np.cumsum(rng.normal(0.0, wiggle, n)) * 0.3
    turn -= np.linspace(0, 1, n) * turn[-1] * 0.5  # keep the overall direction
    angles = heading + turn
    steps = np.stack([np.cos(angles), np.sin(angles)], axis=1) * _STEP_MM
    return np.asarray(start, float) + np.vstack([[0.0, 0.0], np.cumsum(steps, axis=0)[:-1]])


def duct_tree(
    rng: np.random.Generator, length: float, half_angle: float, *, max_depth: int = 4
) -> list[np.ndarray]:
    """Branching duct centrelines from an apex at (-length/2, 0) fanning out along +x.

    Branches stay inside the wedge of `half_angle` about the x axis, as a duct segment's
    territory does (the segmental distribution is that wedge).
    """
    apex = np.array([-length / 2.0, 0.0])
    branches = []
    stack = [(apex, 0.0, length * rng.uniform(0.35, 0.5), 0)]
    while stack and len(branches) < 40:
        start, heading, seg_len, depth = stack.pop()
        path = _curve(rng, start, heading, seg_len, 0.04)
        rel = path - apex
        inside = (np.abs(np.arctan2(rel[:, 1], np.maximum(rel[:, 0], 1e-6))) <= half_angle + 0.05) & (
            rel[:, 0] <= length
        )
        cut = int(np.argmin(inside)) if not inside.all() else len(path)
        path = path[: max(cut, 2)]
        branches.append(path)
        if depth < max_depth and cut == len(inside):
            end = path[-1]
            end_heading = math.atan2(*(path[-1] - path[-2])[::-1])
            for sign in (-1, 1):
                spread = rng.uniform(0.3, 0.6) * sign
                stack.append((end, end_heading + spread, seg_len * rng.uniform(0.55, 0.8), depth + 1))
    return branches


@dataclass
class Layout:
    """Where a distribution puts calcifications: an area to sample and (optionally) ducts."""

    distribution: str
    extent_mm: float
    ducts: list[np.ndarray] = field(default_factory=list)
    radius_mm: float = 0.0  # for area layouts
    semi_axes: tuple[float, float] = (0.0, 0.0)
    angle: float = 0.0
    count_factor: float = 1.0  # how many more particles than a grouped cluster

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        if self.ducts:
            lengths = np.array([len(d) for d in self.ducts], float)
            which = rng.choice(len(self.ducts), size=n, p=lengths / lengths.sum())
            pts = np.array([self.ducts[i][rng.integers(len(self.ducts[i]))] for i in which])
            return pts + rng.normal(0.0, 0.2, pts.shape)
        if self.distribution == "grouped":
            pts = rng.normal(0.0, self.radius_mm / 2.0, (n * 3, 2))
            pts = pts[np.hypot(pts[:, 0], pts[:, 1]) <= self.radius_mm][:n]
            return pts if len(pts) == n else np.vstack([pts, np.zeros((n - len(pts), 2))])
        # regional (ellipse) and diffuse (disc): uniform over the area, one particle at the centre
        r = np.sqrt(rng.random(n))
        t = rng.uniform(0, 2 * np.pi, n)
        a, b = self.semi_axes
        x, y = a * r * np.cos(t), b * r * np.sin(t)
        c, s = math.cos(self.angle), math.sin(self.angle)
        pts = np.stack([c * x - s * y, s * x + c * y], axis=1)
        pts[0] = 0.0
        return pts


def make_layout(distribution: str, rng: np.random.Generator, *, ductal: bool) -> Layout:
    check_distribution(distribution)
    if distribution == "grouped":
        radius = rng.uniform(2.5, 5.0)
        ducts = duct_tree(rng, 2 * radius, 0.6, max_depth=3) if ductal else []
        return Layout("grouped", radius, ducts=ducts, radius_mm=radius)
    if distribution == "linear":
        length = rng.uniform(12.0, 25.0)
        main = _curve(rng, (-length / 2, 0.0), rng.normal(0, 0.1), length, 0.03)
        ducts = [main]
        if ductal:  # short side branches of the same duct
            for _ in range(rng.integers(1, 4)):
                k = rng.integers(len(main) // 4, len(main) * 3 // 4)
                side = rng.choice([-1, 1]) * rng.uniform(0.4, 0.7)
                ducts.append(_curve(rng, main[k], side, rng.uniform(2.0, 5.0), 0.05))
        return Layout("linear", length / 2, ducts=ducts, count_factor=1.5)
    if distribution == "segmental":
        length = rng.uniform(22.0, 40.0)
        return Layout(
            "segmental", length / 2, ducts=duct_tree(rng, length, rng.uniform(0.25, 0.45)), count_factor=2.5
        )
    if distribution == "regional":
        a, b = rng.uniform(12.0, 22.0), rng.uniform(10.0, 16.0)
        return Layout("regional", max(a, b), semi_axes=(a, b), angle=rng.uniform(0, np.pi), count_factor=2.0)
    radius = 70.0  # diffuse: scattered through the breast (particles outside it are dropped)
    return Layout("diffuse", radius, semi_axes=(radius, radius), count_factor=5.0)


# ----------------------------------------------------------------------------- particle shapes
def _sphere(x, y, d, rng, *, density=1.0, ellipticity=0.1, blur=0.0) -> Particle:
    a = d / 2.0
    b = a * (1.0 - rng.uniform(0.0, ellipticity))
    return Particle(
        float(x),
        float(y),
        [Ellipsoid(0.0, 0.0, a, b, a, rng.uniform(0, np.pi))],
        density=density,
        blur_mm=blur,
        size_mm=2 * a,
        width_mm=2 * b,
    )


def _lumps(x, y, rng, n_lumps, semi_range, spread, *, density) -> Particle:
    """An irregular particle: the union of a few overlapping ellipsoids."""
    parts = []
    for i in range(n_lumps):
        a = rng.uniform(*semi_range)
        b = a * rng.uniform(0.5, 1.0)
        off = (0.0, 0.0) if i == 0 else rng.normal(0.0, spread, 2)
        parts.append(Ellipsoid(float(off[0]), float(off[1]), a, b, (a + b) / 2, rng.uniform(0, np.pi)))
    p = Particle(float(x), float(y), parts, density=density)
    p.size_mm = _feret(parts)
    p.width_mm = min(2 * min(e.a, e.b) for e in parts)
    return p


def _feret(parts: list[Ellipsoid]) -> float:
    """Largest dimension of a union of ellipsoids (max over pairs of far-edge distances)."""
    best = 0.0
    for e in parts:
        for f in parts:
            best = max(best, math.hypot(e.dx - f.dx, e.dy - f.dy) + max(e.a, e.b) + max(f.a, f.b))
    return best


def _tube_particle(path: np.ndarray, radii: np.ndarray, *, density, wall=None) -> Particle:
    centre = path[len(path) // 2]
    length = float(np.sum(np.hypot(*np.diff(path, axis=0).T)))
    p = Particle(float(centre[0]), float(centre[1]), [Tube(path - centre, radii, wall)], density=density)
    p.size_mm = length + 2 * float(radii.max())
    p.width_mm = 2 * float(radii.mean())
    return p


def _fragments(
    rng,
    path: np.ndarray,
    length_range,
    gap_range,
    radius_range,
    *,
    density_range,
    wall=None,
    smooth_radius=True,
) -> list[Particle]:
    """Discontinuous calcified runs along a polyline (duct casts, vessel walls)."""
    out = []
    k = int(rng.integers(0, max(1, int(gap_range[1] / _STEP_MM))))
    while k < len(path) - 2:
        n = max(2, int(rng.uniform(*length_range) / _STEP_MM))
        seg = path[k : k + n]
        if len(seg) >= 2:
            base = rng.uniform(*radius_range)
            if smooth_radius:
                radii = np.full(len(seg), base)
            else:  # casts of necrotic debris: width varies along the run
                radii = np.clip(
                    base
                    * (1 + 0.35 * np.sin(np.linspace(0, rng.uniform(2, 6), len(seg)) + rng.uniform(0, 6))),
                    radius_range[0] * 0.6,
                    None,
                )
            out.append(_tube_particle(seg, radii, density=rng.uniform(*density_range), wall=wall))
        k += n + max(1, int(rng.uniform(*gap_range) / _STEP_MM))
    return out


def _n(rng, lo, hi, layout: Layout) -> int:
    return int(round(rng.integers(lo, hi + 1) * layout.count_factor))


def make_finding(morphology: str, distribution: str, rng: np.random.Generator) -> FindingGeometry:
    """The particles of one finding in its local frame (+x away from the nipple)."""
    check_morphology(morphology)
    check_distribution(distribution)
    ductal = morphology in ("fine_linear_branching", "vascular")
    layout = make_layout(distribution, rng, ductal=ductal)
    particles: list[Particle] = []
    masses: list[Mass] = []

    if morphology == "punctate":
        for x, y in layout.sample(rng, _n(rng, 6, 18, layout)):
            particles.append(_sphere(x, y, rng.uniform(0.15, 0.45), rng, density=rng.uniform(0.8, 1.0)))
    elif morphology == "round":
        for x, y in layout.sample(rng, _n(rng, 4, 10, layout)):
            particles.append(_sphere(x, y, rng.uniform(0.55, 1.2), rng, density=rng.uniform(0.85, 1.0)))
    elif morphology == "amorphous":
        for x, y in layout.sample(rng, _n(rng, 12, 35, layout)):
            particles.append(
                _sphere(
                    x,
                    y,
                    rng.uniform(0.15, 0.35),
                    rng,
                    density=rng.uniform(0.7, 1.0),
                    ellipticity=0.4,
                    blur=rng.uniform(0.03, 0.06),
                )
            )
    elif morphology == "coarse_heterogeneous":
        pts = layout.sample(rng, _n(rng, 5, 14, layout))
        for x, y in pts:
            particles.append(
                _lumps(x, y, rng, int(rng.integers(2, 6)), (0.2, 0.45), 0.3, density=rng.uniform(0.7, 1.0))
            )
    elif morphology == "fine_pleomorphic":
        for x, y in layout.sample(rng, _n(rng, 14, 35, layout)):
            shape = rng.choice(["dot", "rod", "angular", "angular"])
            density = rng.uniform(0.8, 1.0)
            if shape == "dot":
                particles.append(_sphere(x, y, rng.uniform(0.2, 0.45), rng, density=density, ellipticity=0.4))
            elif shape == "rod":
                heading = rng.uniform(0, np.pi)
                length = rng.uniform(0.25, 0.35)
                path = np.outer(np.linspace(-0.5, 0.5, 4), [math.cos(heading), math.sin(heading)]) * length
                p = _tube_particle(path + [x, y], np.full(4, rng.uniform(0.06, 0.1)), density=density)
                particles.append(p)
            else:
                particles.append(
                    _lumps(x, y, rng, int(rng.integers(2, 4)), (0.08, 0.14), 0.06, density=density)
                )
    elif morphology == "fine_linear_branching":
        for duct in layout.ducts:
            particles += _fragments(
                rng, duct, (0.5, 2.5), (0.2, 1.2), (0.06, 0.15), density_range=(0.8, 1.0), smooth_radius=False
            )
    elif morphology == "rim":
        for x, y in layout.sample(rng, _n(rng, 1, 4, layout)):
            a = rng.uniform(0.75, 2.5)
            wall = rng.uniform(0.06, 0.15)  # an eggshell: thin, so the centre stays lucent
            b = a * rng.uniform(0.85, 1.0)
            particles.append(
                Particle(
                    float(x),
                    float(y),
                    [Ellipsoid(0, 0, a, b, a, rng.uniform(0, np.pi), wall)],
                    density=rng.uniform(0.6, 0.9),
                    size_mm=2 * a,
                    width_mm=2 * b,
                )
            )
    elif morphology == "coarse_popcorn":
        centres = layout.sample(rng, max(1, int(round(rng.integers(1, 3) * min(layout.count_factor, 2)))))
        for x, y in centres:
            radius = rng.uniform(1.5, 3.5)  # a clump of 3 to 7 mm
            parts = []
            for i in range(int(rng.integers(6, 12))):
                a = rng.uniform(0.25, 0.5) * radius
                off = (0.0, 0.0) if i == 0 else rng.uniform(-0.6, 0.6, 2) * radius
                parts.append(
                    Ellipsoid(
                        float(off[0]), float(off[1]), a, a * rng.uniform(0.5, 1.0), a, rng.uniform(0, np.pi)
                    )
                )
            p = Particle(float(x), float(y), parts, density=1.0)
            p.size_mm = _feret(parts)
            p.width_mm = min(2 * min(e.a, e.b) for e in parts)
            particles.append(p)
            # the involuting fibroadenoma that holds the popcorn
            r = rng.uniform(5.0, 9.0)
            masses.append(Mass(float(x), float(y), r, r * rng.uniform(0.65, 0.9), rng.uniform(0, np.pi)))
    elif morphology == "vascular":
        # Calcified arterial walls seen side-on: two parallel tracks ("tram lines") along a
        # tortuous vessel, each interrupted where the wall is not calcified.
        length = rng.uniform(25.0, 50.0)
        vessels = [_curve(rng, (-length / 2, 0.0), rng.normal(0, 0.2), length, 0.08)]
        if rng.random() < 0.5:  # a branch
            k = int(rng.integers(len(vessels[0]) // 4, len(vessels[0]) // 2))
            vessels.append(
                _curve(
                    rng,
                    vessels[0][k],
                    rng.choice([-1, 1]) * rng.uniform(0.3, 0.7),
                    length * rng.uniform(0.3, 0.6),
                    0.08,
                )
            )
        lumen = rng.uniform(0.5, 1.0)  # vessel radius, mm
        for vessel in vessels:
            tangent = np.gradient(vessel, axis=0)
            normal = np.stack([-tangent[:, 1], tangent[:, 0]], axis=1)
            normal /= np.linalg.norm(normal, axis=1, keepdims=True)
            for side in (-1.0, 1.0):
                track = vessel + side * lumen * normal
                particles += _fragments(
                    rng, track, (2.0, 9.0), (0.3, 2.5), (0.08, 0.15), density_range=(0.7, 1.0)
                )
        layout.extent_mm = length / 2
    if not particles:
        raise InputError(f"no calcification could be made for {morphology} in a {distribution} distribution")
    return FindingGeometry(morphology, distribution, particles, masses, layout.extent_mm)
