"""Fourier-space operations on gradient maps: integration (iDPC) and a low-pass divergence.

Wave numbers are in cycles per unit length (k = m / (N·step)), so ∂/∂x ↔ 2πi·kx.
Boundaries: a bare periodic FFT wraps one edge onto the other and bends the result; the
``mirror`` method extends the map to twice its size with the reflection that keeps an
integrated scalar even (the gradient's normal component odd), and the ``dct`` method solves
the discrete Poisson equation with Neumann boundaries by a discrete cosine transform.

Speed: a map extended evenly about both edges is a cosine series of the map's own size (its
discrete Fourier transform is a DCT-II), and one extended oddly a sine series (a DST-II).
So the mirror integration and the spectral divergence are computed with real DCTs and DSTs
sized to the scan, not with complex FFTs of the mirror four times its size: the same numbers
(to 10⁻¹⁵ of the largest value), about ten times faster. Every transform runs on all cores
(``scipy.fft`` workers). The arithmetic stays float64: float32 transforms were no faster here
once the conversions are counted, and the integration divides the lowest frequencies by
|k|², which would lift float32 rounding of a noisy gradient to 10⁻⁴ of the potential.
"""

from __future__ import annotations

import numpy as np
from scipy import fft

from .errors import InputDataError

INTEGRATION_METHODS = ("mirror", "dct", "periodic")

#: scipy.fft workers: every core.
WORKERS = -1


def _fill_invalid(g, valid):
    if valid is None:
        return np.asarray(g, dtype=np.float64)
    g = np.array(g, dtype=np.float64)
    g[~valid] = 0.0
    return g


def integrate_gradient(gx, gy, *, step_x, step_y, method="mirror", valid=None):
    """The scalar f whose gradient is (gx, gy), up to a constant (mean zero).

    Parameters
    ----------
    gx, gy : ndarray, shape (ny, nx)
        Gradient components along x (columns) and y (rows).
    step_x, step_y : float
        Pixel spacing; f is in units of g × step.
    method : {"mirror", "dct", "periodic"}
        Boundary treatment (module docstring). ``periodic`` is offered for comparison only.
    valid : ndarray of bool, optional
        Pixels to use; the others are taken as zero gradient.

    Returns
    -------
    ndarray, shape (ny, nx), float64
    """
    if method not in INTEGRATION_METHODS:
        raise InputDataError(f"integration method must be one of {INTEGRATION_METHODS}, got {method!r}")
    gx = _fill_invalid(gx, valid)
    gy = _fill_invalid(gy, valid)
    if method == "dct":
        f = _integrate_dct(gx, gy, step_x, step_y)
    elif method == "mirror":
        f = _integrate_mirror(gx, gy, step_x, step_y)
    else:
        f = _integrate_periodic(gx, gy, step_x, step_y)
    return f - f.mean()


def _angular(n, step):
    """Angular wave numbers π·m/(n·step), m = 0..n−1, of the cosine series of n samples."""
    return np.pi * np.arange(n) / (n * step)


def _sine_by_frequency(s, axis):
    """DST-II coefficients (index m−1 holds frequency m) re-indexed by frequency m = 0..n−1.

    Frequency 0 has no sine; frequency n (the last coefficient, (−1)ⁿ at the samples) drops
    out: the mirror's Fourier solution has no real part there.
    """
    out = np.zeros_like(s)
    dst_, src = [slice(None)] * s.ndim, [slice(None)] * s.ndim
    dst_[axis], src[axis] = slice(1, None), slice(0, -1)
    out[tuple(dst_)] = s[tuple(src)]
    return out


def _frequency_to_sine(c, axis):
    """The inverse re-indexing: coefficients by frequency → DST-II order (frequency n zero)."""
    out = np.zeros_like(c)
    dst_, src = [slice(None)] * c.ndim, [slice(None)] * c.ndim
    dst_[axis], src[axis] = slice(0, -1), slice(1, None)
    out[tuple(dst_)] = c[tuple(src)]
    return out


def _integrate_mirror(gx, gy, step_x, step_y):
    """f even about both edges: gx odd in x, even in y (DST along x, DCT along y), gy the other
    way round; least squares in the cosine basis, as the Fourier solve of the mirror."""
    ny, nx = gx.shape
    zx = _sine_by_frequency(fft.dst(fft.dct(gx, type=2, axis=0, workers=WORKERS), type=2, axis=1,
                                    workers=WORKERS), 1)
    zy = _sine_by_frequency(fft.dct(fft.dst(gy, type=2, axis=0, workers=WORKERS), type=2, axis=1,
                                    workers=WORKERS), 0)
    a = _angular(nx, step_x)[None, :]
    b = _angular(ny, step_y)[:, None]
    norm = a**2 + b**2
    norm[0, 0] = 1.0
    c = -(a * zx + b * zy) / norm
    c[0, 0] = 0.0
    return fft.idctn(c, type=2, workers=WORKERS)


def _integrate_periodic(gx, gy, step_x, step_y):
    ny, nx = gx.shape
    ky = fft.fftfreq(ny, d=step_y)[:, None]
    kx = fft.rfftfreq(nx, d=step_x)[None, :]
    k2 = kx**2 + ky**2
    k2[0, 0] = 1.0
    # The real part of the complex solve has no ky·Gy term on the Nyquist row of an even ny
    # (its two signs of ky cancel); the half spectrum must drop it to give the same numbers.
    ky_num = ky.copy()
    if ny % 2 == 0:
        ky_num[ny // 2] = 0.0
    spectrum = (kx * fft.rfft2(gx, workers=WORKERS) + ky_num * fft.rfft2(gy, workers=WORKERS)) / (2j * np.pi * k2)
    spectrum[0, 0] = 0.0
    return fft.irfft2(spectrum, s=(ny, nx), workers=WORKERS)


def flux_divergence(gx, gy, step_x, step_y):
    """The source of the discrete Neumann Poisson problem: the divergence of the gradient's fluxes
    through the half-pixel faces (the mean of the two neighbours), zero through the boundary."""
    ny, nx = gx.shape
    flux_x = np.zeros((ny, nx + 1))
    flux_x[:, 1:-1] = 0.5 * (gx[:, 1:] + gx[:, :-1])
    flux_y = np.zeros((ny + 1, nx))
    flux_y[1:-1, :] = 0.5 * (gy[1:, :] + gy[:-1, :])
    return np.diff(flux_x, axis=1) / step_x + np.diff(flux_y, axis=0) / step_y


def _integrate_dct(gx, gy, step_x, step_y):
    """Discrete Neumann Poisson solve: fluxes at half-pixels, zero through the boundary."""
    ny, nx = gx.shape
    rhs = flux_divergence(gx, gy, step_x, step_y)
    lam_x = (2 * np.cos(np.pi * np.arange(nx) / nx) - 2) / step_x**2
    lam_y = (2 * np.cos(np.pi * np.arange(ny) / ny) - 2) / step_y**2
    lam = lam_y[:, None] + lam_x[None, :]
    lam[0, 0] = 1.0
    spectrum = fft.dctn(rhs, type=2, norm="ortho", workers=WORKERS) / lam
    spectrum[0, 0] = 0.0
    return fft.idctn(spectrum, type=2, norm="ortho", workers=WORKERS)


def spectral_divergence(fx, fy, *, step_x, step_y, cutoff=None, valid=None):
    """∂fx/∂x + ∂fy/∂y by Fourier differentiation with an explicit low-pass window.

    Each component is extended evenly about both edges before the transform: the extension
    then has at most a kink at the edges, never a jump (an odd extension of a component that
    does not vanish at the edge would put a line of false charge there). The even extension
    is a cosine series of the map's size, so it is computed by DCTs (module docstring).

    Parameters
    ----------
    fx, fy : ndarray, shape (ny, nx)
    step_x, step_y : float
        Pixel spacing; the result is in units of f per step unit.
    cutoff : float, optional
        Spatial frequency (cycles per step unit) where the raised-cosine window W(k) falls to
        zero; it is 1 below cutoff/2. None keeps every frequency below Nyquist (W = 1).
    valid : ndarray of bool, optional
        Pixels to use; the others are taken as zero.

    Returns
    -------
    ndarray, shape (ny, nx), float64
    """
    fx = _fill_invalid(fx, valid)
    fy = _fill_invalid(fy, valid)
    ny, nx = fx.shape
    a = _angular(nx, step_x)[None, :]
    b = _angular(ny, step_y)[:, None]
    window = lowpass_window(np.hypot(a, b) / (2 * np.pi), cutoff)
    cx = fft.dctn(fx, type=2, workers=WORKERS) * (-a * window)
    cy = fft.dctn(fy, type=2, workers=WORKERS) * (-b * window)
    dx = fft.idst(_frequency_to_sine(fft.idct(cx, type=2, axis=0, workers=WORKERS), 1), type=2, axis=1,
                  workers=WORKERS)
    dy = fft.idst(_frequency_to_sine(fft.idct(cy, type=2, axis=1, workers=WORKERS), 0), type=2, axis=0,
                  workers=WORKERS)
    return dx + dy


def lowpass_window(k, cutoff):
    """Raised-cosine window: 1 for k ≤ cutoff/2, falling to 0 at k = cutoff (None → 1)."""
    if cutoff is None:
        return np.ones_like(k)
    k = np.asarray(k, dtype=float)
    x = np.clip((k - cutoff / 2) / (cutoff / 2), 0.0, 1.0)
    return 0.5 * (1 + np.cos(np.pi * x))
