"""Calcification sizes (mm, measured on the masks), counts and distribution extents."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from skimage.measure import regionprops

from microcalcai.phantom.morphology import make_finding
from microcalcai.phantom.render import render_finding

SPACING = 0.05  # fine pixels so sub-millimetre sizes can be measured


def _render(morphology, distribution, seed, size=1600):
    geom = make_finding(morphology, distribution, np.random.default_rng(seed))
    calcium = np.zeros((size, size), np.float32)
    labels = np.zeros((size, size), np.uint8)
    centre = (size - 1) / 2
    parts = render_finding(geom, centre, centre, SPACING, calcium, labels, 1)
    return geom, calcium, labels, parts


def _isolated_components(labels, parts):
    """Mask components holding exactly one particle centre, paired with that particle."""
    comp, _ = ndimage.label(labels > 0)
    owners = {}
    for p in parts:
        c = comp[int(round(p.y)), int(round(p.x))]
        if c:
            owners.setdefault(c, []).append(p)
    props = {r.label: r for r in regionprops(comp)}
    return [(props[c], ps[0]) for c, ps in owners.items() if len(ps) == 1]


@pytest.mark.parametrize("morphology, lo, hi", [("punctate", 0.1, 0.5), ("round", 0.5, 1.25)])
def test_round_particles_have_their_bi_rads_diameter(morphology, lo, hi):
    measured, claimed = [], []
    for seed in range(3):
        _, _, labels, parts = _render(morphology, "regional", seed)
        for region, particle in _isolated_components(labels, parts):
            measured.append(region.equivalent_diameter_area * SPACING)
            claimed.append(np.sqrt(particle.size_mm * particle.width_mm))
    measured, claimed = np.array(measured), np.array(claimed)
    assert len(measured) >= 10
    # the mask reproduces each particle's size to about a pixel
    assert np.all(np.abs(measured - claimed) < 1.5 * SPACING), np.abs(measured - claimed).max()
    assert measured.min() >= lo - SPACING and measured.max() <= hi + SPACING, (measured.min(), measured.max())


def test_fine_morphologies_stay_fine_and_coarse_ones_coarse():
    def feret(morphology, distribution, seed):
        _, _, labels, parts = _render(morphology, distribution, seed)
        return np.array([r.feret_diameter_max * SPACING for r, _ in _isolated_components(labels, parts)])

    pleo = np.concatenate([feret("fine_pleomorphic", "regional", s) for s in range(2)])
    assert len(pleo) >= 10 and np.median(pleo) < 0.5 and pleo.max() < 0.5 + 3 * SPACING
    popcorn = np.concatenate([feret("coarse_popcorn", "grouped", s) for s in range(3)])
    assert popcorn.min() > 2.0  # coarse "popcorn" calcifications are larger than 2-3 mm
    coarse = np.concatenate([feret("coarse_heterogeneous", "regional", s) for s in range(2)])
    assert 0.5 < np.median(coarse) < 1.6


def test_fine_linear_casts_are_thin_and_elongated():
    _, _, labels, parts = _render("fine_linear_branching", "segmental", 1)
    mask = labels > 0
    widths = 2 * ndimage.distance_transform_edt(mask)[mask].max() * SPACING
    assert widths < 0.5  # BI-RADS: fine linear, less than 0.5 mm wide
    regions = [r for r in regionprops(ndimage.label(mask)[0]) if r.area > 20]
    elongation = [r.axis_major_length / max(r.axis_minor_length, 1) for r in regions]
    assert np.median(elongation) > 3


def test_rim_calcifications_have_a_lucent_centre():
    _, calcium, labels, parts = _render("rim", "regional", 2)
    checked = 0
    for _region, particle in _isolated_components(labels, parts):
        if particle.size_mm < 1.5:
            continue
        r, c = int(round(particle.y)), int(round(particle.x))
        radius_px = particle.width_mm / 2 / SPACING
        ring = calcium[r, int(c + 0.95 * radius_px)]
        assert calcium[r, c] < 0.5 * ring  # the centre is much thinner than the wall seen edge-on
        checked += 1
    assert checked >= 1


def test_vascular_calcifications_form_parallel_tracks():
    """Tram lines: runs that are parallel and 1-2 mm apart across the vessel, lumen uncalcified."""
    geom, calcium, labels, parts = _render("vascular", "linear", 4, size=1400)
    assert geom.extent_mm >= 12 and len(parts) >= 4
    runs = []
    for p in geom.particles:
        pts = p.parts[0].points
        d = pts[-1] - pts[0]
        runs.append((np.array([p.x, p.y]), d / np.linalg.norm(d)))
    centre = (calcium.shape[0] - 1) / 2
    pairs = 0
    for i, (ci, di) in enumerate(runs):
        for cj, dj in runs[i + 1 :]:
            if abs(di @ dj) < np.cos(np.radians(15)):
                continue
            offset = cj - ci
            across = abs(offset[0] * -di[1] + offset[1] * di[0])
            along = abs(offset @ di)
            mid = (ci + cj) / 2 / SPACING + centre
            if 0.8 < across < 2.2 and along < 5 and calcium[int(mid[1]), int(mid[0])] == 0:
                pairs += 1
    assert pairs >= 2


@pytest.mark.parametrize(
    "distribution, min_mm, max_mm",
    [("grouped", 0.0, 11.0), ("regional", 18.0, 50.0), ("segmental", 18.0, 85.0)],
)
def test_distribution_extent(distribution, min_mm, max_mm):
    spans = []
    for seed in range(3):
        _, _, labels, parts = _render("punctate", distribution, seed, size=1800)
        xy = np.array([[p.x, p.y] for p in parts]) * SPACING
        spans.append(np.ptp(xy, axis=0).max())
    assert min_mm <= np.median(spans) <= max_mm, spans


def test_linear_distribution_is_elongated():
    ratios = []
    for seed in range(3):
        _, _, _, parts = _render("punctate", "linear", seed, size=1800)
        xy = np.array([[p.x, p.y] for p in parts])
        ev = np.sort(np.linalg.eigvalsh(np.cov(xy.T)))
        ratios.append(np.sqrt(ev[1] / max(ev[0], 1e-9)))
    assert np.median(ratios) > 4


def test_cluster_counts_match_the_mask():
    """Every rendered particle is in the mask; separate particles are separate components."""
    for morphology in ("punctate", "round", "amorphous"):
        _, _, labels, parts = _render(morphology, "regional", 3)
        n_components = ndimage.label(labels > 0)[1]
        assert all(labels[int(round(p.y)), int(round(p.x))] == 1 for p in parts)
        assert 0.8 * len(parts) <= n_components <= len(parts)
