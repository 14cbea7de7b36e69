"""``dpcstem com``: one 4D-STEM acquisition, as one call."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np

from ..errors import CalibrationError, InputDataError
from .common import (
    Outcome,
    PYTHON_NAMES,
    _descan_line,
    _outcome,
    _same,
    _to_scan_frame,
    describe_calibration,
    descan_plane_lines,
    merge_calibration,
    response_from_name,
    scan_regions,
)


def com_acquisition(data, *, calibration=None, mrad_per_px=None, camera_length_mm=None, detector_pixel_um=None,
                    mask_radius_px=None, dataset=None, scan_shape=None, raw=None, scheduler=None, workers=None,
                    reference=None, descan_region=None, descan_order=2, fit_rotation=False, charge_sign_region=None,
                    charge_method="finite-difference", cutoff=None, potential_method="mirror",
                    potential_reference=None, dose=None, interface=None, half_range_nm=None, response=None,
                    names=None) -> Outcome:
    """``dpcstem com``: a 4D-STEM acquisition → centre of mass → deflection, field, charge, potential.

    The frames are read once, chunk by chunk. The options mean what they mean for
    :func:`reconstruct_acquisition`; besides: the detector's angular pixel size
    (``mrad_per_px``, or ``camera_length_mm`` with ``detector_pixel_um``; default: what the
    file records), ``mask_radius_px`` (centre of mass inside a disc around the bright-field
    disc), ``reference`` (a 4D vacuum scan of the same scan and frame shape whose centre of
    mass is the undeflected pattern centre), and ``dose`` (electrons per frame: the counting
    noise of a centre of mass of N electrons in a disc of semi-angle α, σθ = α/(2√N) per
    component, carried to the field and charge as uncertainty maps).
    """
    from ..fourd import bright_field_disc, centre_of_mass, disc_mask
    from ..fourd.com import deflection_from_com, pattern_centre
    from ..fourd.response import correct_com
    from ..calibration.descan import fit_descan
    from ..io.pixelated import open_pixelated
    from ..noise import uncertainty_from_covariance
    from ..options import ReconstructionOptions
    from ..progress import Stages
    from ..reconstruct import reconstruct_deflection

    names = {**PYTHON_NAMES, **(names or {})}
    # the frames' reduction draws its own bar; the stages only keep their times for the summary
    stages = Stages("com", enabled=False)
    stages.stage("opening and finding the disc")
    frames = open_pixelated(data, dataset=dataset, scan_shape=scan_shape, **(raw or {}))
    scale, scale_source = _angular_pixel(frames.mrad_per_px, mrad_per_px, camera_length_mm, detector_pixel_um,
                                         names)
    centre, radius = bright_field_disc(frames)
    user = dict(calibration or {})
    model = None if response is None else response_from_name(response)
    # α: the file's, the user's, else the tilt series' of a response (the response is scaled by it),
    # else measured from the disc (which a blurred or cut disc makes wrong)
    response_alpha = getattr(model, "alpha_mrad", None)
    from_response = (response_alpha is not None and user.get("alpha_mrad") is None
                     and (frames.calibration or {}).get("alpha_mrad") is None)
    cal = merge_calibration(frames.calibration, user, source=data, names=names,
                            alpha_measured=response_alpha if from_response else radius * scale, geometry=False)
    cal.require_thickness()
    shape = tuple(frames.scan_shape)
    potential_mask, descan_mask, sign_region = scan_regions(
        shape, cal, names, descan_region=descan_region, charge_sign_region=charge_sign_region,
        potential_reference=potential_reference, fit_rotation=fit_rotation)
    options = ReconstructionOptions(
        descan_order=descan_order, charge_method=charge_method, cutoff=cutoff, potential_method=potential_method,
        potential_reference=potential_mask)
    if reference is not None and descan_region is not None:
        raise InputDataError(f"give {names['reference']} or {names['descan_region']}, not both")
    engine = {"scheduler": scheduler, "workers": workers}
    mask = disc_mask(frames.frame_shape, centre, mask_radius_px) if mask_radius_px is not None else None
    inputs = [Path(data)]
    ref = None
    stages.stage("centre of mass")
    if reference is not None:
        vacuum = open_pixelated(reference, dataset=dataset, scan_shape=scan_shape, **(raw or {}))
        if vacuum.scan_shape != frames.scan_shape or vacuum.frame_shape != frames.frame_shape:
            raise InputDataError(f"{names['reference']} {reference}: shape {vacuum.shape} differs from the data's "
                                 f"{frames.shape}: a descan is never extrapolated to another scan")
        for name in ("kv", "alpha_mrad", "step_x_nm", "step_y_nm"):
            theirs = vacuum.calibration.get(name)
            if theirs is not None and not _same(theirs, getattr(cal, name)):
                raise CalibrationError(f"{names['reference']} {reference}: the vacuum scan records {name} {theirs!r}, "
                                       f"the data {getattr(cal, name)!r}: a reference must be recorded with the same "
                                       "optics and scan")
        vac = centre_of_mass(vacuum, mask=mask, **engine)
        ref = (vac.com_x, vac.com_y)
        inputs.append(Path(reference))
    sums = centre_of_mass(frames, mask=mask, **engine)
    stages.stage("descan and rotation")
    raw_cal = cal.replace(detector_rotation_deg=0.0, flip=False)  # the detector frame
    lines, attrs = [], {}
    if ref is None:
        centre_x, centre_y = pattern_centre(sums.com_x, sums.com_y)
        attrs.update(pattern_centre_x_px=centre_x, pattern_centre_y_px=centre_y)
        ref = (centre_x, centre_y)
    wx, wy = deflection_from_com(sums.com_x, sums.com_y, raw_cal, mrad_per_px=scale, reference=ref)
    valid = np.isfinite(wx) & np.isfinite(wy)
    if not valid.any():
        raise InputDataError("no frame has a finite centre of mass: every frame holds zero counts or NaN inside the "
                             "mask (check the data, the mask radius and centre)")
    descan_source = "vacuum" if reference is not None else "none"
    if descan_mask is not None:
        fit = fit_descan(wx, wy, mask=descan_mask & valid, order=descan_order)
        wx, wy = fit.subtract(wx, wy)
        descan_source = "region"
    if response is not None:
        wx, wy, valid = correct_com(wx, wy, valid, model, raw_cal, lines, attrs, descan=descan_source, names=names)
        if from_response:
            lines.append(f"alpha: {response_alpha:.4g} mrad, the tilt series' (from the response file; the disc "
                         f"measures {radius * scale:.4g} mrad)")
    cal, tx, ty = _to_scan_frame(wx, wy, cal, valid, fit_rotation=fit_rotation, flip=user.get("flip"),
                                 sign_region=sign_region, names=names, lines=lines, attrs=attrs)
    if descan_mask is not None:
        attrs.update(fit.attrs(cal))
    stages.stage("field, charge and potential")
    result = reconstruct_deflection(tx, ty, cal, valid=valid, options=options)
    result.extra["com_x"] = (sums.com_x.astype(np.float32), "px")
    result.extra["com_y"] = (sums.com_y.astype(np.float32), "px")
    result.extra["intensity"] = (sums.intensity.astype(np.float32), "counts")
    attrs.update(mrad_per_px=float(scale), mrad_per_px_source=scale_source, descan_source=descan_source)
    if mask_radius_px is not None:
        attrs.update(mask_radius_px=float(mask_radius_px), mask_centre_y_px=float(centre[0]),
                     mask_centre_x_px=float(centre[1]))
    if dose is not None:
        from .. import _validate

        n = _validate.positive("dose", dose, what="electrons per frame")
        sigma = cal.alpha_mrad / (2 * math.sqrt(n))
        variance = np.where(result.valid, sigma**2, np.nan)
        result.extra.update(uncertainty_from_covariance(variance, variance, np.zeros_like(variance), cal,
                                                        valid=result.valid, options=options))
        lines.append(f"counting noise: {n:g} electrons per frame in a disc of {cal.alpha_mrad:.4g} mrad give "
                     f"σθ = α/(2√N) = {sigma:.3g} mrad per component (a uniform disc; the frames' own counts are "
                     "not used)")
        attrs["dose_electrons_per_frame"] = n
    lines.insert(0, f"reduced {shape[0]} x {shape[1]} frames of {frames.frame_shape[0]} x {frames.frame_shape[1]} px "
                    f"({scale:.4g} mrad/px, bright-field disc radius {radius:.1f} px)")
    lines += describe_calibration(cal)
    if descan_source == "none":
        lines.append(f"descan: none removed; the undeflected pattern centre is the median centre of mass "
                     f"({ref[0]:.3f}, {ref[1]:.3f}) px, which leaves a field over less than half the scan as it is "
                     f"and takes a uniform one; {names['reference']} or {names['descan_region']} sets it")
        lines += descan_plane_lines(tx, ty, valid, cal, names, attrs)
    else:
        lines.append(_descan_line(descan_source, tx, ty, valid, names))
    stages.stage("summary and profiles")
    outcome = _outcome(result, cal, attrs, lines, inputs, interface, half_range_nm,
                       drop=("collection_inner_mrad", "collection_outer_mrad"))  # a camera has no segments
    outcome.lines.append(stages.summary())
    return outcome


def _angular_pixel(file_value, mrad_per_px, camera_length_mm, detector_pixel_um, names):
    """The detector's angular pixel size (mrad) and its source."""
    from ..fourd import mrad_per_px as angular

    given = mrad_per_px is not None or camera_length_mm is not None or detector_pixel_um is not None
    if not given:
        if file_value is None:
            units = (" X", " MM", " UM") if names["mrad_per_px"].startswith("--") else ("", "", "")
            raise CalibrationError(f"the detector's angular pixel size is needed: give {names['mrad_per_px']}{units[0]}, "
                                   f"or {names['camera_length']}{units[1]} with {names['detector_pixel']}{units[2]}")
        return file_value, "file"
    try:
        value = angular(camera_length_mm=camera_length_mm, detector_pixel_um=detector_pixel_um,
                        mrad_per_px=mrad_per_px)
    except CalibrationError as exc:
        spelt = {"mrad_per_px": names["mrad_per_px"], "camera_length_mm": names.get("camera_length", "camera_length_mm"),
                 "detector_pixel_um": names.get("detector_pixel", "detector_pixel_um")}
        named = [option for name, option in spelt.items() if name in str(exc)]
        raise CalibrationError(f"{' and '.join(named)}: {exc}" if named else str(exc)) from None
    if file_value is not None and abs(file_value - value) > 1e-9 * value:
        warnings.warn(f"mrad_per_px: the file says {file_value!r}, using the given {value!r}", stacklevel=3)
    return value, "user"
