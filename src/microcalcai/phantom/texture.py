"""Parenchymal texture: Gaussian random fields with a power-law (1/f^beta) spectrum.

Mammographic parenchyma has a power spectrum close to 1/f^beta with beta about 2.5 to 3.5
(Burgess, Jacobson and Judy, Med. Phys. 28:419, 2001; Heine and Velthuizen, Med. Phys. 29:647,
2002). The field is made the standard way, by shaping white noise in the Fourier domain with
numpy/scipy FFTs; `radial_power_spectrum` and `spectral_slope` measure the slope back, so the
tests (and a user) can check any image against the beta it was made with.
"""

from __future__ import annotations

import numpy as np
import scipy.fft

from microcalcai.errors import InputError

# Below this frequency (cycles/mm) the spectrum flattens, so a field's variance does not grow
# without bound with its size: structures larger than ~40 mm are the breast's shape, not texture.
KNEE_CYCLES_PER_MM = 1.0 / 40.0


def _check_beta(beta: float) -> float:
    beta = float(beta)
    if not 2.0 < beta < 5.0 or not np.isfinite(beta):
        raise InputError(
            f"beta={beta!r} is outside the supported range (2, 5); mammographic "
            "parenchyma measures about 2.5 to 3.5"
        )
    return beta


def power_law_field(
    shape: tuple[int, int],
    beta: float,
    rng: np.random.Generator,
    *,
    spacing_mm: float = 0.1,
    anisotropy: float = 1.0,
    angle_rad: float = 0.0,
    workers: int = 1,
) -> np.ndarray:
    """A zero-mean float32 field with power spectrum P(f) ~ (f^2 + f0^2)^(-beta/2).

    The amplitude is set in physical units: an infinitely large field would have unit standard
    deviation, so a small field (a spot view) and a full field share the same local texture.
    anisotropy > 1 stretches structures along the direction `angle_rad` (radians from the
    column axis) by that factor, as ducts and ligaments run toward the nipple; the radially
    averaged spectrum keeps the slope -beta.
    """
    beta = _check_beta(beta)
    rows, cols = (int(n) for n in shape)
    if rows < 2 or cols < 2:
        raise InputError(f"texture shape {shape} must be at least 2 x 2 pixels")
    if spacing_mm <= 0:
        raise InputError(f"spacing_mm={spacing_mm} must be positive")
    if anisotropy <= 0:
        raise InputError(f"anisotropy={anisotropy} must be positive")
    # Pad to sizes the FFT factors well; the crop keeps the statistics (the field is stationary).
    fr, fc = scipy.fft.next_fast_len(rows, real=True), scipy.fft.next_fast_len(cols, real=True)
    noise = rng.standard_normal((fr, fc), dtype=np.float32)
    spectrum = scipy.fft.rfft2(noise, workers=workers)
    fy = scipy.fft.fftfreq(fr, d=spacing_mm).astype(np.float32)[:, None]
    fx = scipy.fft.rfftfreq(fc, d=spacing_mm).astype(np.float32)[None, :]
    if anisotropy != 1.0:
        c, s = np.float32(np.cos(angle_rad)), np.float32(np.sin(angle_rad))
        along = fx * c + fy * s  # frequency along the stretch direction
        across = -fx * s + fy * c
        f2 = (along * np.float32(anisotropy)) ** 2 + (across / np.float32(anisotropy)) ** 2
    else:
        f2 = fx * fx + fy * fy
    f0 = np.float32(KNEE_CYCLES_PER_MM)
    # Integral of the continuous spectrum over the plane: 2*pi*f0^(2-beta)/(beta-2); dividing by
    # it (and by the pixel area, the discrete-to-continuous factor) gives unit variance.
    total = 2.0 * np.pi * KNEE_CYCLES_PER_MM ** (2.0 - beta) / (beta - 2.0)
    gain = np.float32(1.0 / np.sqrt(total * spacing_mm**2))
    spectrum *= gain * (f2 + f0 * f0) ** np.float32(-beta / 4.0)
    spectrum[0, 0] = 0.0
    field = scipy.fft.irfft2(spectrum, s=(fr, fc), workers=workers)[:rows, :cols]
    return np.ascontiguousarray(field, dtype=np.float32)


def radial_power_spectrum(image: np.ndarray, spacing_mm: float = 1.0, *, window: bool = True):
    """Radially averaged power spectrum: (frequencies in cycles/mm, mean power per ring).

    A Hann window keeps the edges of the patch from adding a 1/f^2 leakage tail.
    """
    img = np.asarray(image, dtype=np.float64)
    if img.ndim != 2 or min(img.shape) < 8:
        raise InputError(f"need a 2D image of at least 8 x 8 pixels; got shape {img.shape}")
    img = img - img.mean()
    if window:
        img = img * np.outer(np.hanning(img.shape[0]), np.hanning(img.shape[1]))
    power = np.abs(np.fft.fftshift(np.fft.fft2(img))) ** 2
    fy = np.fft.fftshift(np.fft.fftfreq(img.shape[0], d=spacing_mm))
    fx = np.fft.fftshift(np.fft.fftfreq(img.shape[1], d=spacing_mm))
    radius = np.hypot(*np.meshgrid(fy, fx, indexing="ij"))
    step = max(fx[1] - fx[0], fy[1] - fy[0])
    rings = np.rint(radius / step).astype(int)
    counts = np.bincount(rings.ravel())
    sums = np.bincount(rings.ravel(), weights=power.ravel())
    keep = counts > 0
    freqs = np.arange(len(counts))[keep] * step
    return freqs[1:], (sums[keep] / counts[keep])[1:]


def spectral_slope(image: np.ndarray, spacing_mm: float, f_range: tuple[float, float]) -> float:
    """beta measured on an image: minus the slope of log power vs log frequency in `f_range`."""
    freqs, power = radial_power_spectrum(image, spacing_mm)
    lo, hi = f_range
    sel = (freqs >= lo) & (freqs <= hi) & (power > 0)
    if sel.sum() < 3:
        raise InputError(
            f"the frequency range {f_range} cycles/mm holds fewer than 3 rings of this "
            f"{image.shape} image at {spacing_mm} mm; widen it"
        )
    slope, _ = np.polyfit(np.log(freqs[sel]), np.log(power[sel]), 1)
    return float(-slope)
