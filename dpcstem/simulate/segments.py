"""Four-segment acquisitions made the way a detector makes them."""

from __future__ import annotations

import numpy as np

from ..calibration import Calibration
from ..response.geometry import segment_areas
from .blurred import blurred_segment_areas


def segments_from_deflection(theta_x_mrad, theta_y_mrad, calibration: Calibration, *, dose=None, gains=None,
                             offsets=None, rng=None, dtype=None, edge_blur=0.0):
    """Segment images A, B, C, D for a deflection map, through the exact detector response.

    Parameters
    ----------
    theta_x_mrad, theta_y_mrad : ndarray, shape (ny, nx)
        Deflection in mrad, scan frame.
    calibration : Calibration
        α, collection angles, detector rotation and flip are used.
    dose : float, optional
        Mean electrons per probe position in the bright-field disc. With a dose the counts
        are Poisson-distributed (``rng`` needed); without, the expected counts for a dose of
        1 are returned (area of the disc on each segment over the disc's area).
    gains, offsets : array_like, shape (4,), optional
        Detector response: raw = gain · electrons + offset.
    rng : numpy.random.Generator, optional
    dtype : numpy dtype, optional
        Output type; integer types are rounded and clipped to their range (uint16 as a
        detector writes it).
    edge_blur : float
        Blur of the disc edge, Gaussian standard deviation in units of α; 0 (default) is
        the sharp disc of the exact response, a blur is computed numerically
        (:func:`dpcstem.simulate.blurred.blurred_segment_areas`).

    Returns
    -------
    ndarray, shape (4, ny, nx)
    """
    tx = np.asarray(theta_x_mrad, dtype=float)
    ty = np.asarray(theta_y_mrad, dtype=float)
    # Shift along the segment axes, in units of α.
    u, v = (w / calibration.alpha_mrad for w in calibration.to_detector_frame(tx, ty))
    if edge_blur:
        areas = blurred_segment_areas(u, v, inner=calibration.inner_over_alpha, outer=calibration.outer_over_alpha,
                                      blur=edge_blur)
    else:
        areas = segment_areas(u, v, inner=calibration.inner_over_alpha, outer=calibration.outer_over_alpha)
    expected = areas / np.pi
    if dose is None:
        counts = expected
    else:
        if rng is None:
            raise ValueError("a dose needs an rng (numpy.random.Generator) for the counting noise")
        counts = rng.poisson(expected * dose).astype(float)
    if gains is not None:
        counts = counts * np.asarray(gains, float)[:, None, None]
    if offsets is not None:
        counts = counts + np.asarray(offsets, float)[:, None, None]
    if dtype is not None and np.dtype(dtype).kind in "ui":
        info = np.iinfo(dtype)
        counts = np.clip(np.rint(counts), info.min, info.max)
    return counts.astype(dtype or np.float64)
