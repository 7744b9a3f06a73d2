"""Image formation: attenuation, scatter, detector blur, quantum and electronic noise, bit depth.

A monoenergetic model at the effective energy of a mammography beam (about 20 keV):
linear attenuation coefficients of adipose and fibroglandular tissue from Johns and Yaffe,
Phys. Med. Biol. 32:675 (1987); skin and muscle taken as glandular-like. Calcifications are
given an effective coefficient well below that of pure hydroxyapatite (about 2.7/mm at 20 keV,
NIST XCOM), since real calcifications are not solid crystal; with it a 0.3 mm punctate
calcification shows the few-percent-to-tens-of-percent contrast seen clinically.
Scatter is a low-pass copy of the primary image scaled by a scatter-to-primary ratio that grows
with compressed thickness (with an anti-scatter grid, SPR ~0.2-0.45 for 3-7 cm), which is what
makes a calcification's contrast fall with breast thickness. The automatic exposure control sets
the photon count behind the breast; quantum noise is Gaussian with Poisson variance (counts are
in the thousands), the detector's blur is a Gaussian PSF, and electronic noise is added after it.
The stored image is the log of the exposure ("higher = denser", MONOCHROME2), peripherally
equalised as For Presentation images are, and quantised to `bits_stored`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from microcalcai.errors import InputError
from microcalcai.phantom.grid import block_mean, upsample
from microcalcai.phantom.noise import standard_normal

MU_FAT = 0.0456  # 1/mm at 20 keV
MU_GLAND = 0.0802
MU_SKIN = 0.0802
MU_MUSCLE = 0.085
LOG_FULL_SCALE = 8.0  # log exposure mapped to the top of the stored range


@dataclass
class Detector:
    spacing_mm: float = 0.07
    bits_stored: int = 14
    photons_per_mm2: float = 4.0e5  # detected quanta per mm^2 behind the breast (~100 uGy)
    electronic_noise: float = 3.0  # quanta-equivalent per pixel (rms)
    psf_sigma_mm: float = 0.05
    calcium_mu_per_mm: float = 2.0  # effective, see the module docstring
    spr_per_mm: float = 0.0065  # scatter-to-primary ratio per mm of compressed thickness

    def validate(self) -> Detector:
        if not np.isfinite(self.spacing_mm) or self.spacing_mm <= 0:
            raise InputError(
                f"spacing_mm={self.spacing_mm} must be a positive number of millimetres "
                "(mammography detectors: 0.05 to 0.1)"
            )
        if not 8 <= int(self.bits_stored) <= 16:
            raise InputError(f"bits_stored={self.bits_stored} must be between 8 and 16")
        for name in ("photons_per_mm2", "calcium_mu_per_mm"):
            if not getattr(self, name) > 0:
                raise InputError(f"{name}={getattr(self, name)} must be positive")
        for name in ("electronic_noise", "psf_sigma_mm", "spr_per_mm"):
            if not getattr(self, name) >= 0:
                raise InputError(f"{name}={getattr(self, name)} must be zero or positive")
        return self

    @property
    def max_value(self) -> int:
        return (1 << int(self.bits_stored)) - 1


def coarse_stride(spacing_mm: float, cell_mm: float = 1.0) -> int:
    """Every how many pixels `smooth_coarse` samples the image (about 4 samples per cell side)."""
    return max(1, int(round(cell_mm / spacing_mm)) // 4)


def smooth_coarse(
    sample: np.ndarray,
    sigma_mm: float,
    spacing_mm: float,
    shape: tuple[int, int],
    cell_mm: float = 1.0,
    gain: float = 1.0,
) -> np.ndarray:
    """gain x a wide Gaussian low-pass (sigma of several cells) of an image of `shape`, computed
    on a coarse grid and interpolated back. `sample` is image[::s, ::s] with s = coarse_stride():
    a low-pass this wide cannot tell, and only 1/s^2 of the image has to be made."""
    stride = coarse_stride(spacing_mm, cell_mm)
    per_cell = max(1, int(round(cell_mm / (spacing_mm * stride))))
    factor = stride * per_cell
    coarse = ndimage.gaussian_filter(
        block_mean(sample, per_cell), sigma_mm / (spacing_mm * factor), mode="nearest"
    )
    coarse *= np.float32(gain)
    return upsample(coarse, factor, shape)


def attenuation(
    *,
    tissue_mm: np.ndarray,
    glandular_fraction: np.ndarray,
    skin_mm: np.ndarray,
    muscle_mm: np.ndarray | None,
) -> np.ndarray:
    """Line integral of the attenuation coefficient along each ray through the normal breast
    (dimensionless); `add_lesions` adds masses and calcium where they are."""
    f32 = np.float32
    line = np.multiply(glandular_fraction, f32(MU_GLAND - MU_FAT))
    line += f32(MU_FAT)
    line *= tissue_mm
    line += f32(MU_SKIN) * skin_mm
    if muscle_mm is not None:
        line += f32(MU_MUSCLE) * muscle_mm
    return line


def add_lesions(
    line: np.ndarray,
    *,
    tissue_mm: np.ndarray,
    glandular_fraction: np.ndarray,
    mass_mm: np.ndarray | None,
    calcium_mm: np.ndarray | None,
    calcium_mu: float,
) -> None:
    """Add soft-tissue masses and calcium (projected paths, mm) to `line` in place. Called on
    the small windows holding the findings, so a full-field image costs nothing more."""
    f32 = np.float32
    if mass_mm is not None:
        line += f32(MU_GLAND - MU_FAT) * np.minimum(mass_mm, tissue_mm)
    if calcium_mm is not None:
        # calcium displaces the tissue it sits in
        mu_tissue = f32(MU_FAT) + f32(MU_GLAND - MU_FAT) * glandular_fraction
        line += (f32(calcium_mu) - mu_tissue) * calcium_mm


def psf_blur(image: np.ndarray, sigma_px: float) -> np.ndarray:
    """The detector's Gaussian PSF (edges extended). OpenCV's separable SIMD filter is ~8x faster
    than scipy.ndimage.gaussian_filter at this kernel size; the kernel is the same (sampled
    Gaussian truncated at 4 sigma, normalised)."""
    import cv2

    radius = int(4.0 * sigma_px + 0.5)
    if radius < 1:
        return image
    size = 2 * radius + 1
    return cv2.GaussianBlur(image, (size, size), sigma_px, sigmaY=sigma_px, borderType=cv2.BORDER_REPLICATE)


def acquire(
    line_integral: np.ndarray,
    breast_mask: np.ndarray,
    equalise_mm: np.ndarray | None,
    thickness_mm: float,
    detector: Detector,
    rng: np.random.Generator,
    *,
    window_mask: np.ndarray | None = None,
    out: np.ndarray | None = None,
) -> tuple[np.ndarray, tuple[float, float]]:
    """Detected, processed and quantised image (uint16, 0 outside `breast_mask`; written into
    `out` if given, e.g. the breast's box in the full image) and a display window (centre, width).

    equalise_mm: missing path length toward the skin line (T minus the projected path), used
    for peripheral equalisation; None for no equalisation.
    window_mask: the pixels the display window is fitted to (default: the breast).
    Full-field images hold tens of millions of pixels: every step below works in place on
    float32 buffers, so a view costs a few passes over memory rather than dozens of allocations.
    """
    f32 = np.float32
    spacing = detector.spacing_mm
    pixel_photons = detector.photons_per_mm2 * spacing * spacing
    # Automatic exposure control: the mean primary behind the breast, sampled on a 4-pixel grid
    # (an AEC reads a few sensor areas; the mean of a smooth image needs no more).
    grid = (slice(None, None, 4), slice(None, None, 4))
    sample = line_integral[grid][breast_mask[grid] & (line_integral[grid] > 0)]
    mean_primary = float(np.exp(-sample.astype(np.float64)).mean()) if sample.size else 1.0
    open_field = pixel_photons / mean_primary
    log_open = f32(np.log(open_field))
    signal = np.subtract(log_open, line_integral)
    np.exp(signal, out=signal)  # primary quanta per pixel
    # scatter: a wide low-pass of the primary behind the breast, from a subsample of it
    stride = coarse_stride(spacing)
    sub = (slice(None, None, stride), slice(None, None, stride))
    spr = detector.spr_per_mm * thickness_mm
    signal += smooth_coarse(signal[sub] * breast_mask[sub], 10.0, spacing, signal.shape, gain=spr)
    # quantum noise at conversion, then the detector's blur, then electronic noise
    work = np.sqrt(signal)
    work *= standard_normal(rng, signal.shape)
    signal += work
    if detector.psf_sigma_mm > 0:
        signal = psf_blur(signal, detector.psf_sigma_mm / spacing)
    signal += standard_normal(rng, signal.shape, scale=detector.electronic_noise)
    np.maximum(signal, f32(1.0), out=signal)
    log_image = np.log(signal, out=signal)
    np.subtract(log_open, log_image, out=log_image)
    if equalise_mm is not None:
        # For Presentation processing lifts the thinning periphery to the level of the interior
        # (outside the breast the image is set to 0 below).
        np.multiply(equalise_mm, f32(0.85 * MU_FAT), out=work)
        log_image += work
    log_image *= f32(detector.max_value / LOG_FULL_SCALE)
    np.rint(log_image, out=log_image)
    np.clip(log_image, 0.0, detector.max_value, out=log_image)
    stored = np.empty(log_image.shape, np.uint16) if out is None else out
    np.copyto(stored, log_image, casting="unsafe")
    stored *= breast_mask
    window = display_window(stored, breast_mask if window_mask is None else window_mask)
    return stored, window


def display_window(stored: np.ndarray, mask: np.ndarray, headroom: float = 0.35) -> tuple[float, float]:
    """Window (centre, width) spanning the breast's values, as a reading station would open it,
    with `headroom` (a fraction of the tissue range) above the densest tissue so that dense
    calcifications keep their inner structure (a rim's lucent centre) instead of clipping.

    Percentiles of ~200,000 pixels on a regular grid: the same window to a grey level, without
    gathering every masked pixel of a full-field image.
    """
    step = max(1, int(np.sqrt(mask.size / 200_000)))
    values = stored[::step, ::step][mask[::step, ::step]]
    if values.size < 1000:
        values = stored[mask] if mask.any() else stored.ravel()
    lo, hi = np.percentile(values, [0.5, 99.9])
    width = max(float(hi - lo) * (1.0 + headroom), 2.0)
    return float(lo + width / 2.0), width


def apply_window(stored: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    """DICOM LINEAR VOI function (PS3.3 C.11.2.1.2.1) to float32 0..1."""
    centre, width = window
    out = (stored.astype(np.float32) - np.float32(centre - 0.5)) / np.float32(width - 1.0) + np.float32(0.5)
    return np.clip(out, 0.0, 1.0)
