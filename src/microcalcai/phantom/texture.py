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
from microcalcai.phantom.noise import standard_normal

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
    scale: float = 1.0,
) -> np.ndarray:
    """A zero-mean float32 field with power spectrum P(f) ~ (f^2 + f0^2)^(-beta/2).

    The result is a view into the FFT's padded grid (no copy is made of a full-field texture).

    The amplitude is set in physical units: an infinitely large field would have unit standard
    deviation, so a small field (a spot view) and a full field share the same local texture.
    anisotropy > 1 stretches structures along the direction `angle_rad` (radians from the
    column axis) by that factor, as ducts and ligaments run toward the nipple; the radially
    averaged spectrum keeps the slope -beta. `scale` multiplies the field (in the spectrum,
    where it costs nothing).
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
    # White noise is drawn directly as its half spectrum (independent complex Gaussian
    # coefficients of the same variance as the FFT of real unit white noise, fr * fc), which
    # saves the forward transform; the float32 pairs are viewed as complex64 without a copy.
    half = fc // 2 + 1
    spectrum = standard_normal(rng, (fr, half, 2)).view(np.complex64)[..., 0]
    fy = scipy.fft.fftfreq(fr, d=spacing_mm).astype(np.float32)[:, None]
    fx = scipy.fft.rfftfreq(fc, d=spacing_mm).astype(np.float32)[None, :]
    # f^2 in the stretched frame, expanded as a quadratic form in (fx, fy) so that it costs
    # three passes over the half spectrum.
    c, s = np.cos(angle_rad), np.sin(angle_rad)
    a2 = float(anisotropy) ** 2
    f2 = np.float32(a2 * c * c + s * s / a2) * fx * fx + np.float32(a2 * s * s + c * c / a2) * fy * fy
    if anisotropy != 1.0:
        f2 += np.float32(2.0 * c * s * (a2 - 1.0 / a2)) * fy * fx
    f0 = np.float32(KNEE_CYCLES_PER_MM)
    # Integral of the continuous spectrum over the plane: 2*pi*f0^(2-beta)/(beta-2); dividing by
    # it (and by the pixel area, the discrete-to-continuous factor) gives unit variance. The
    # noise's own variance (fr * fc / 2 per component) is taken out too.
    total = 2.0 * np.pi * KNEE_CYCLES_PER_MM ** (2.0 - beta) / (beta - 2.0)
    gain = scale * np.sqrt(fr * fc / 2.0) / np.sqrt(total * spacing_mm**2)
    # gain * (f2 + f0^2)^(-beta/4) as exp(log): numpy's float32 exp and log are vectorised, its
    # power is not (10x slower on a full-field spectrum).
    f2 += f0 * f0
    np.log(f2, out=f2)
    f2 *= np.float32(-beta / 4.0)
    f2 += np.float32(np.log(gain))
    np.exp(f2, out=f2)
    spectrum *= f2
    spectrum[0, 0] = 0.0
    field = scipy.fft.irfft2(spectrum, s=(fr, fc), workers=workers, overwrite_x=True)
    return field[:rows, :cols]


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
