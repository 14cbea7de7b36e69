"""The probe: Airy-disc intensity of an aberration-free probe, and the deflection it measures.

A probe formed by a round aperture of semi-angle α has, at focus, the amplitude
2·J1(v)/v with v = 2π α r / λ; its intensity (2·J1(v)/v)² has its first zero at
v = 3.8317, r = 0.6098 λ/α. What a DPC detector measures at a scan position is the
probe-weighted deflection: the deflection map convolved with the probe intensity
(normalised to unit sum). This is exact for the centre of mass of the diffraction pattern
and holds for the segmented signal where the field is uniform across the probe
(DESIGN.md §3).

References
----------
Born & Wolf, *Principles of Optics*, 7th ed. (1999), §8.5.2 (Fraunhofer diffraction at a
circular aperture).
Müller et al., Nat. Commun. 5 (2014) 5653, doi:10.1038/ncomms6653 (probe-weighted momentum).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import signal, special

from .. import _validate, physics
from ..errors import InputDataError

#: First zero of J1, v = 3.8317…; the Airy intensity's first zero lies at r = v·λ/(2πα).
_J1_FIRST_ZERO = float(special.jn_zeros(1, 1)[0])

#: Default radius of the sampled probe, in units of its first-zero radius (holds ~98 % of
#: the intensity; the rest lies in the slowly falling rings).
KERNEL_RADIUS_ZEROS = 10.0


def _wavelength_nm(kv):
    return float(physics.wavelength_m(kv)) * physics.M_TO_NM


def _alpha_rad(alpha_mrad):
    alpha = _validate.positive("alpha_mrad", alpha_mrad, what="convergence semi-angle in mrad")
    return alpha * physics.MRAD_TO_RAD


def airy_first_zero_nm(kv, alpha_mrad) -> float:
    """Radius of the first dark ring of the probe intensity, in nm (0.6098 λ/α).

    Parameters
    ----------
    kv : float
        Accelerating voltage in kV.
    alpha_mrad : float
        Convergence semi-angle in mrad.

    Examples
    --------
    >>> round(airy_first_zero_nm(200, 1.0), 4)  # 0.6098 × 2.5079 pm / 1 mrad
    1.5294
    """
    return _J1_FIRST_ZERO / (2 * math.pi) * _wavelength_nm(kv) / _alpha_rad(alpha_mrad)


def airy_intensity(r_nm, kv, alpha_mrad):
    """Intensity of the aberration-free probe at distance ``r_nm`` from its centre.

    Parameters
    ----------
    r_nm : array_like
        Distance from the probe centre in nm.
    kv, alpha_mrad : float
        Accelerating voltage (kV) and convergence semi-angle (mrad).

    Returns
    -------
    ndarray, float64, shape of ``r_nm``
        (2·J1(v)/v)² with v = 2π α r / λ: 1 at the centre (not normalised to unit area).
    """
    v = 2 * math.pi * _alpha_rad(alpha_mrad) / _wavelength_nm(kv) * np.abs(np.asarray(r_nm, dtype=float))
    small = v < 1e-8
    amplitude = np.where(small, 1.0, 2 * special.j1(v) / np.where(small, 1.0, v))
    return amplitude**2


def probe_kernel(kv, alpha_mrad, step_x_nm, step_y_nm, *, radius_nm=None, subsamples=5):
    """The probe intensity on a grid of pixels, each the intensity integrated over its area.

    Parameters
    ----------
    kv, alpha_mrad : float
        Accelerating voltage (kV) and convergence semi-angle (mrad).
    step_x_nm, step_y_nm : float
        Pixel spacing along x (columns) and y (rows), nm.
    radius_nm : float, optional
        Radius beyond which the probe is cut off, nm; default
        :data:`KERNEL_RADIUS_ZEROS` first-zero radii.
    subsamples : int
        Points per pixel side at which the intensity is averaged over a pixel.

    Returns
    -------
    ndarray, float64, shape (2·ky + 1, 2·kx + 1)
        Weights summing to 1, centred on the middle pixel, indexed [y, x].
    """
    if radius_nm is None:
        radius_nm = KERNEL_RADIUS_ZEROS * airy_first_zero_nm(kv, alpha_mrad)
    kx = int(math.ceil(radius_nm / step_x_nm))
    ky = int(math.ceil(radius_nm / step_y_nm))
    if (2 * kx + 1) * (2 * ky + 1) > 4096**2:
        raise InputDataError(
            f"the probe ({radius_nm:.4g} nm across its rings) spans more than 4096 pixels of {step_x_nm:.4g} nm; "
            "give a larger scan step or a larger alpha")
    offsets = (np.arange(subsamples) + 0.5) / subsamples - 0.5
    y = (np.arange(-ky, ky + 1)[:, None] + offsets[None, :]).ravel() * step_y_nm
    x = (np.arange(-kx, kx + 1)[:, None] + offsets[None, :]).ravel() * step_x_nm
    intensity = airy_intensity(np.hypot(y[:, None], x[None, :]), kv, alpha_mrad)
    intensity[np.hypot(y[:, None], x[None, :]) > radius_nm] = 0.0
    kernel = intensity.reshape(2 * ky + 1, subsamples, 2 * kx + 1, subsamples).sum(axis=(1, 3))
    return kernel / kernel.sum()


def probe_weighted(theta_x_mrad, theta_y_mrad, kernel):
    """The probe-weighted deflection: each map convolved with the probe kernel.

    Parameters
    ----------
    theta_x_mrad, theta_y_mrad : ndarray, shape (ny + 2·ky, nx + 2·kx)
        Deflection in mrad (scan frame) on a grid that extends ``ky`` rows and ``kx``
        columns beyond the positions wanted on each side, so no edge is invented.
    kernel : ndarray, shape (2·ky + 1, 2·kx + 1)
        From :func:`probe_kernel`, on the same pixel spacing.

    Returns
    -------
    theta_x, theta_y : ndarray, float64, shape (ny, nx)
        Deflection in mrad at the inner positions.
    """
    return (signal.fftconvolve(np.asarray(theta_x_mrad, float), kernel, mode="valid"),
            signal.fftconvolve(np.asarray(theta_y_mrad, float), kernel, mode="valid"))
