"""Pixelated 4D-STEM, the post-processing: centre of mass → deflection → field and charge.

Pure functions of the per-position sums of :mod:`~dpcstem.fourd.engine` (as LiberTEM's
CoM post-processing): the angular pixel size (:func:`mrad_per_px`), the descan of the
pattern centre (the one robust fit of :mod:`dpcstem.calibration.descan`, over the scan or
a region of it, or a reference), and the detector's orientation against the scan from the
:class:`~dpcstem.calibration.Calibration` (:meth:`~dpcstem.Calibration.to_scan_frame`): the
detector's +kx axis points along scan azimuth ψ = ``detector_rotation_deg`` (from scan +x
toward scan +y) and its +ky axis along ψ+90°, or ψ−90° with ``flip`` (DESIGN.md §2).
:func:`reconstruct_com` runs the whole chain and hands the deflection to
:func:`dpcstem.reconstruct.reconstruct_deflection`.
"""

from __future__ import annotations

import math

import numpy as np

from .. import _validate
from ..calibration import Calibration
from ..calibration.descan import fit_descan
from ..errors import CalibrationError, InputDataError
from ..options import check_options
from .engine import as_frames, centre_of_mass
from .masks import disc_mask
from .response import apply_com_response


def mrad_per_px(*, camera_length_mm=None, detector_pixel_um=None, mrad_per_px=None) -> float:
    """Angular size of one detector pixel in mrad.

    Either given directly, or from the camera length L (mm) and the detector pixel pitch p
    (µm) as p / L (small-angle: a pitch of 55 µm at 100 mm is 0.55 mrad).
    """
    if mrad_per_px is not None:
        if camera_length_mm is not None or detector_pixel_um is not None:
            raise CalibrationError("give mrad_per_px, or camera_length_mm with detector_pixel_um, not both")
        return _validate.positive("mrad_per_px", mrad_per_px)
    if camera_length_mm is None or detector_pixel_um is None:
        raise CalibrationError("the detector's angular pixel size is needed: give mrad_per_px "
                               "(--mrad-per-px), or camera_length_mm and detector_pixel_um "
                               "(--camera-length MM --detector-pixel-um UM)")
    length = _validate.positive("camera_length_mm", camera_length_mm)
    pitch = _validate.positive("detector_pixel_um", detector_pixel_um)
    return pitch / length  # µm / mm = mrad


def _angular_pixel_size(value) -> float:
    return _validate.positive("mrad_per_px", value, what="mrad per detector pixel")


def deflection_from_com(com_x, com_y, calibration: Calibration, *, mrad_per_px: float, reference=None,
                        region=None, order=2):
    """Beam deflection in the scan frame (mrad) from the centre of mass (detector pixels).

    Parameters
    ----------
    com_x, com_y : ndarray, shape (ny, nx)
        Centre of mass in detector pixels (column, row), detector frame.
    calibration : Calibration
        ``detector_rotation_deg`` ψ and ``flip``: the detector's +kx axis lies along scan
        azimuth ψ (from scan +x toward +y), its +ky axis along ψ+90° (ψ−90° with flip).
    mrad_per_px : float
        Angular size of a detector pixel (see :func:`mrad_per_px`).
    reference : (com_x, com_y) of scalars or (ny, nx) maps, optional
        The undeflected pattern centre in pixels (a vacuum scan's centre of mass, or a
        known centre).
    region : ndarray of bool, shape (ny, nx), optional
        A field-free region: the descan is the one robust surface of ``order``
        (:func:`dpcstem.calibration.descan.fit_descan`) fitted to the centre of mass there.
    order : {1, 2}
        Plane or quadratic descan over ``region``.

    Returns
    -------
    theta_x_mrad, theta_y_mrad : ndarray of float64, shape (ny, nx)
        Deflection along scan x and scan y in mrad.

    Notes
    -----
    With neither ``reference`` nor ``region`` no descan is removed (the default of every
    command): the undeflected pattern centre is the median centre of mass over the scan,
    one constant, which leaves a field over less than half the scan as it is. A plane
    fitted over the whole scan would take real field with it (a junction's field 39 % low).
    """
    mrad_per_px = _angular_pixel_size(mrad_per_px)
    com_x = np.asarray(com_x, dtype=np.float64)
    com_y = np.asarray(com_y, dtype=np.float64)
    if com_x.ndim != 2 or com_x.shape != com_y.shape:
        raise InputDataError(f"centre-of-mass maps must be two 2-D arrays of one shape, got {com_x.shape}, "
                             f"{com_y.shape}")
    if reference is not None and region is not None:
        raise InputDataError("give a descan reference or a descan region, not both")
    finite = np.isfinite(com_x) & np.isfinite(com_y)
    if reference is None and region is None:
        if not finite.any():
            raise InputDataError("no frame has a finite centre of mass")
        ref_x, ref_y = pattern_centre(com_x, com_y)
    elif reference is None:
        if not (_validate.mask("descan region", region, com_x.shape) & finite).any():
            raise InputDataError("the descan region holds no pixel with a finite centre of mass")
        ref_x, ref_y = fit_descan(com_x, com_y, mask=region, order=order).surface(com_x.shape)
    else:
        ref_x, ref_y = (np.asarray(r, dtype=np.float64) for r in reference)
        for r in (ref_x, ref_y):
            if r.ndim not in (0, 2) or (r.ndim == 2 and r.shape != com_x.shape):
                raise InputDataError(f"a descan reference must be a number or a map of the scan's shape "
                                     f"{com_x.shape}, got shape {r.shape}")
    # The detector's +kx, +ky axes are the frame's u, v axes.
    return calibration.to_scan_frame((com_x - ref_x) * mrad_per_px, (com_y - ref_y) * mrad_per_px)


def pattern_centre(com_x, com_y):
    """The undeflected pattern centre without a reference: the median centre of mass (px), one constant each."""
    finite = np.isfinite(com_x) & np.isfinite(com_y)
    return float(np.median(com_x[finite])), float(np.median(com_y[finite]))


def bright_field_disc(data, *, max_frames=64):
    """Centre (row, column) and radius of the bright-field disc, in detector pixels.

    Found from the mean of up to ``max_frames`` frames of the first scan row: the centre
    of mass of the pixels above half the maximum, and the radius of a disc of their area.
    """
    array, _ = as_frames(data)
    n = min(int(array.shape[1]), int(max_frames))
    sample = np.asarray(array[0, :n], dtype=np.float64)
    finite = np.isfinite(sample)
    counted = finite.sum(axis=0)
    mean = np.where(counted > 0, np.where(finite, sample, 0.0).sum(axis=0) / np.maximum(counted, 1), np.nan)
    if not np.isfinite(mean).any() or np.nanmax(mean) <= 0:
        raise InputDataError("the first frames hold no counts: the bright-field disc cannot be found; "
                             "give the mask centre and radius")
    bright = mean >= 0.5 * np.nanmax(mean)
    y, x = np.indices(mean.shape)
    centre = (float(y[bright].mean()), float(x[bright].mean()))
    radius = math.sqrt(bright.sum() / math.pi)
    return centre, radius


def reconstruct_com(data, calibration: Calibration, *, mrad_per_px: float, mask_radius_px=None,
                    mask_centre_yx=None, reference=None, region=None, response=None, scheduler=None,
                    workers=None, block_bytes=None, progress=None, options=None):
    """Field, charge density and potential from 4D-STEM frames through the centre of mass.

    Parameters
    ----------
    data : array-like, shape (scan_y, scan_x, ky, kx)
        The frames (any source :func:`frame_sums` takes).
    calibration : Calibration
        kV, scan step, thickness, and the detector's rotation and flip against the scan.
    mrad_per_px : float
        Angular size of one detector pixel in mrad.
    mask_radius_px : float, optional
        Restrict the centre of mass to a disc of this radius (pixels) around
        ``mask_centre_yx`` (default: the bright-field disc's centre); default: whole frame.
    reference, region :
        Descan, see :func:`deflection_from_com`.
    response : EmpiricalResponse, optional
        An empirical centre-of-mass response (``signal = "com"``, from a beam-tilt series:
        :func:`dpcstem.fourd.response.fit_com_response`, or a file of ``dpcstem
        calibrate-response``), applied to the deflection once the descan is removed: it
        corrects a camera that cuts a blurred pattern's halo (the centre of mass then reads
        low). Pixels whose signal lies outside the tilts measured become invalid.
    scheduler, workers, block_bytes, progress :
        See :func:`frame_sums`.
    options : ReconstructionOptions, optional
        Charge and potential methods, as for :func:`dpcstem.reconstruct.reconstruct_deflection`.

    Returns
    -------
    DPCResult
        With ``extra`` holding ``com_x``, ``com_y`` (px, detector frame) and
        ``intensity`` (counts) over the mask.
    """
    from ..reconstruct import reconstruct_deflection

    options = check_options(options)
    mrad_per_px = _angular_pixel_size(mrad_per_px)
    array, _ = as_frames(data)
    mask = None
    attrs = {"mrad_per_px": float(mrad_per_px),
             "descan_source": "vacuum" if reference is not None else "region" if region is not None else "none"}
    if mask_radius_px is not None:
        if mask_centre_yx is None:
            mask_centre_yx, _ = bright_field_disc(array)
        mask = disc_mask(tuple(array.shape[2:]), mask_centre_yx, mask_radius_px)
        attrs.update(mask_radius_px=float(mask_radius_px), mask_centre_y_px=float(mask_centre_yx[0]),
                     mask_centre_x_px=float(mask_centre_yx[1]))
    sums = centre_of_mass(array, mask=mask, scheduler=scheduler, workers=workers, block_bytes=block_bytes,
                          progress=progress)
    theta_x, theta_y = deflection_from_com(sums.com_x, sums.com_y, calibration, mrad_per_px=mrad_per_px,
                                           reference=reference, region=region, order=options.descan_order)
    if response is not None:
        theta_x, theta_y = apply_com_response(theta_x, theta_y, response, calibration)
        attrs.update(response.attrs())
    valid = np.isfinite(theta_x) & np.isfinite(theta_y)
    if not valid.any():
        raise InputDataError("no frame has a finite centre of mass: every frame holds zero counts or NaN inside the "
                             "mask (check the data, the mask radius and centre)")
    result = reconstruct_deflection(theta_x, theta_y, calibration, valid=valid, options=options)
    result.extra["com_x"] = (sums.com_x.astype(np.float32), "px")
    result.extra["com_y"] = (sums.com_y.astype(np.float32), "px")
    result.extra["intensity"] = (sums.intensity.astype(np.float32), "counts")
    result.attrs.update(attrs)
    return result
