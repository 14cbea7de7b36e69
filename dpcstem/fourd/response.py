"""An empirical response for the 4D centre of mass: measured deflection against known beam tilt.

The centre of mass of a pixelated pattern equals the probe-weighted deflection only when
the camera holds the whole pattern. A finite camera that cuts a blurred disc's halo (a
thick specimen's plasmon scattering), a non-linear camera, or a mask reads it scaled and
distorted. As for segments (:mod:`dpcstem.response.empirical`, Brown et al. 2017), a
beam-tilt series recorded through the specimen calibrates it: :func:`fit_com_response`
fits the inverse map from the measured centre-of-mass deflection to the known tilt, kept in
the same file format (:mod:`dpcstem.io.response_file`, ``signal = "com"``), and
:func:`apply_com_response` corrects a deflection map with it.

The signal of this response is the centre-of-mass deflection along the detector's +kx and
+ky axes, in units of α, after the descan (the undeflected centre) is removed: exactly what
:func:`dpcstem.fourd.com.deflection_from_com` turns into the scan frame.
"""

from __future__ import annotations

import warnings

import numpy as np

from ..calibration import Calibration
from .. import _validate
from ..errors import InputDataError
from ..response.empirical import EmpiricalResponse, fit_response


def fit_com_response(tilt_x_mrad, tilt_y_mrad, com_x_px, com_y_px, calibration: Calibration, *, mrad_per_px: float,
                     centre_px, smoothing=0.0) -> EmpiricalResponse:
    """An empirical centre-of-mass response from a beam-tilt series.

    Parameters
    ----------
    tilt_x_mrad, tilt_y_mrad : array_like, shape (n,)
        The known beam tilts, mrad, scan frame.
    com_x_px, com_y_px : array_like, shape (n,)
        The centre of mass (detector column, row, pixels) of the pattern at each tilt.
    calibration : Calibration
        α, the detector rotation and flip (the frames of the tilts and of the camera).
    mrad_per_px : float
        Angular size of a camera pixel.
    centre_px : (float, float)
        The undeflected pattern centre (column, row) in pixels: where the centre of mass
        lies without tilt and without field (the vacuum or zero-tilt pattern's).
    smoothing : float
        Thin-plate-spline smoothing (:func:`~dpcstem.response.empirical.fit_response`).

    Returns
    -------
    EmpiricalResponse
        With ``signal = "com"``; save it with :func:`dpcstem.io.response_file.save_response`.
    """
    cx, cy = (float(c) for c in centre_px)
    if not (np.isfinite(cx) and np.isfinite(cy)):
        raise InputDataError(f"centre_px must be two finite pixel coordinates, got {centre_px!r}")
    mrad_per_px = _validate.positive("mrad_per_px", mrad_per_px, what="mrad per camera pixel")
    scale = mrad_per_px / calibration.alpha_mrad
    d_a = (np.asarray(com_x_px, dtype=np.float64) - cx) * scale
    d_b = (np.asarray(com_y_px, dtype=np.float64) - cy) * scale
    return fit_response(tilt_x_mrad, tilt_y_mrad, d_a, d_b, calibration=calibration, smoothing=smoothing,
                        signal="com")


def apply_com_response(theta_x_mrad, theta_y_mrad, response: EmpiricalResponse, calibration: Calibration):
    """A centre-of-mass deflection map (mrad, scan frame) corrected by an empirical response.

    Parameters
    ----------
    theta_x_mrad, theta_y_mrad : ndarray
        The deflection :func:`dpcstem.fourd.com.deflection_from_com` gives (descan removed).
    response : EmpiricalResponse
        Fitted by :func:`fit_com_response` (or read from its file) with the same α.
    calibration : Calibration
        The acquisition's: α, the detector rotation and flip.

    Returns
    -------
    theta_x_mrad, theta_y_mrad : ndarray of float64
        The corrected deflection, NaN where the signal lies outside the range the tilt
        series covered (never extrapolated).
    """
    response.check(calibration, signal="com")
    u, v = calibration.to_detector_frame(np.asarray(theta_x_mrad, np.float64), np.asarray(theta_y_mrad, np.float64))
    alpha = calibration.alpha_mrad
    su, sv = response.inverse_table().lookup(u / alpha, v / alpha)
    return calibration.to_scan_frame(su * alpha, sv * alpha)


def correct_com(wx_mrad, wy_mrad, valid, response: EmpiricalResponse, calibration: Calibration, lines, attrs, *,
                descan="none", names=None):
    """Apply an empirical response to the descan-corrected deflection of ``dpcstem com``.

    Parameters
    ----------
    wx_mrad, wy_mrad : ndarray
        The deflection along the detector's +kx, +ky axes (mrad; ``calibration`` is the
        detector frame: no rotation, no flip), the descan removed.
    valid : ndarray of bool
        Pixels with a finite centre of mass.
    response : EmpiricalResponse
        ``signal = "com"``, with the acquisition's α.
    calibration : Calibration
        The detector frame's (α; rotation 0, no flip).
    lines, attrs : list, dict
        The printed lines and the result attributes, extended with the response's provenance.
    descan : {"none", "vacuum", "region"}
        How the descan was removed. The response measures from the centre of mass of the
        pattern through the field-free specimen at zero tilt; a vacuum reference's centre
        differs from it where the camera cuts the specimen's halo (the blurred pattern's
        centre of mass moves toward the side the camera keeps more of), which offsets the
        whole map: with ``"vacuum"`` a warning gives the median deflection the vacuum
        leaves (that offset, where most of the scan is field-free) and the fix.
    names : dict, optional
        How ``reference`` and ``descan_region`` are spelt (the command line's options).

    Returns
    -------
    wx_mrad, wy_mrad, valid
        Corrected; pixels outside the tilts the series measured become invalid.
    """
    if not isinstance(response, EmpiricalResponse):
        raise InputDataError(f"response: the centre of mass takes an empirical response (a file that dpcstem "
                             f"calibrate-response makes from a 4D beam-tilt series), got {response!r}")
    if descan == "vacuum":
        names = {"reference": "reference", "descan_region": "descan_region", **(names or {})}
        offset = float(np.hypot(np.median(wx_mrad[valid]), np.median(wy_mrad[valid])))
        warnings.warn(f"response: it measures from the specimen's own zero-tilt centre of mass, {names['reference']} "
                      f"from the vacuum's; where the camera cuts the specimen's halo the two differ and the whole "
                      f"map is offset (the median deflection with the vacuum removed is {offset:.3g} mrad, that "
                      f"offset where most of the scan is field-free): give {names['descan_region']} over field-free "
                      f"specimen instead, or no {names['reference']} (the median centre)", stacklevel=3)
    wx, wy = apply_com_response(wx_mrad, wy_mrad, response, calibration)
    corrected = valid & np.isfinite(wx) & np.isfinite(wy)
    attrs.update(response.attrs())
    reach = float(np.max(np.hypot(response.tilt_u, response.tilt_v))) * calibration.alpha_mrad
    where = f" {response.path}" if response.path else ""
    outside = int(np.count_nonzero(valid & ~corrected))
    lines.append(f"response: empirical centre-of-mass response{where} ({len(response.tilt_u)} tilts up to "
                 f"{reach:.3g} mrad at alpha {calibration.alpha_mrad:g} mrad); {outside} pixels outside the tilts "
                 "it measured are invalid")
    return wx, wy, corrected
