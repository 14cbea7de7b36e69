"""Fourier-space operations on gradient maps: integration (iDPC) and a low-pass divergence.

Wave numbers are in cycles per unit length (k = m / (N·step)), so ∂/∂x ↔ 2πi·kx.
Boundaries: a bare periodic FFT wraps one edge onto the other and bends the result; the
``mirror`` method extends the map to twice its size with the reflection that keeps an
integrated scalar even (the gradient's normal component odd), and the ``dct`` method solves
the discrete Poisson equation with Neumann boundaries by a discrete cosine transform.
"""

from __future__ import annotations

import numpy as np
from scipy import fft

from .errors import InputDataError

INTEGRATION_METHODS = ("mirror", "dct", "periodic")


def _wavenumbers(ny, nx, step_y, step_x):
    ky = fft.fftfreq(ny, d=step_y)[:, None]
    kx = fft.fftfreq(nx, d=step_x)[None, :]
    return ky, kx


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
    else:
        if method == "mirror":
            # f even about both edges: gx odd in x and even in y, gy the other way round.
            gx = np.block([[gx, -gx[:, ::-1]], [gx[::-1, :], -gx[::-1, ::-1]]])
            gy = np.block([[gy, gy[:, ::-1]], [-gy[::-1, :], -gy[::-1, ::-1]]])
        f = _integrate_periodic(gx, gy, step_x, step_y)
        f = f[: gx.shape[0] // (2 if method == "mirror" else 1), : gx.shape[1] // (2 if method == "mirror" else 1)]
    return f - f.mean()


def _integrate_periodic(gx, gy, step_x, step_y):
    ny, nx = gx.shape
    ky, kx = _wavenumbers(ny, nx, step_y, step_x)
    k2 = kx**2 + ky**2
    k2[0, 0] = 1.0
    spectrum = (kx * fft.fft2(gx) + ky * fft.fft2(gy)) / (2j * np.pi * k2)
    spectrum[0, 0] = 0.0
    return fft.ifft2(spectrum).real


def _integrate_dct(gx, gy, step_x, step_y):
    """Discrete Neumann Poisson solve: fluxes at half-pixels, zero through the boundary."""
    ny, nx = gx.shape
    flux_x = np.zeros((ny, nx + 1))
    flux_x[:, 1:-1] = 0.5 * (gx[:, 1:] + gx[:, :-1])
    flux_y = np.zeros((ny + 1, nx))
    flux_y[1:-1, :] = 0.5 * (gy[1:, :] + gy[:-1, :])
    rhs = np.diff(flux_x, axis=1) / step_x + np.diff(flux_y, axis=0) / step_y
    lam_x = (2 * np.cos(np.pi * np.arange(nx) / nx) - 2) / step_x**2
    lam_y = (2 * np.cos(np.pi * np.arange(ny) / ny) - 2) / step_y**2
    lam = lam_y[:, None] + lam_x[None, :]
    lam[0, 0] = 1.0
    spectrum = fft.dctn(rhs, type=2, norm="ortho") / lam
    spectrum[0, 0] = 0.0
    return fft.idctn(spectrum, type=2, norm="ortho")


def spectral_divergence(fx, fy, *, step_x, step_y, cutoff=None, valid=None):
    """∂fx/∂x + ∂fy/∂y by Fourier differentiation with an explicit low-pass window.

    Each component is extended evenly about both edges before the transform: the extension
    then has at most a kink at the edges, never a jump (an odd extension of a component that
    does not vanish at the edge would put a line of false charge there).

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
    ex = _even(fx)
    ey = _even(fy)
    ky, kx = _wavenumbers(2 * ny, 2 * nx, step_y, step_x)
    spectrum = 2j * np.pi * (kx * fft.fft2(ex) + ky * fft.fft2(ey)) * lowpass_window(np.hypot(kx, ky), cutoff)
    return fft.ifft2(spectrum).real[:ny, :nx]


def _even(f):
    return np.block([[f, f[:, ::-1]], [f[::-1, :], f[::-1, ::-1]]])


def lowpass_window(k, cutoff):
    """Raised-cosine window: 1 for k ≤ cutoff/2, falling to 0 at k = cutoff (None → 1)."""
    if cutoff is None:
        return np.ones_like(k)
    k = np.asarray(k, dtype=float)
    x = np.clip((k - cutoff / 2) / (cutoff / 2), 0.0, 1.0)
    return 0.5 * (1 + np.cos(np.pi * x))
