"""``dpcstem reconstruct``: one four-segment acquisition, as one call."""

from __future__ import annotations

import numpy as np

from ..errors import InputDataError
from .common import (
    Outcome,
    PYTHON_NAMES,
    _descan_line,
    _outcome,
    _to_scan_frame,
    check_reference,
    checked_response,
    describe_calibration,
    descan_plane_lines,
    read_reference,
    scan_regions,
    segment_calibration,
    segment_offsets,
)


def reconstruct_acquisition(segments, *, calibration=None, dataset=None, reference=None, dark=None, offsets=None,
                            response="exact", descan_region=None, descan_order=2, fit_rotation=False,
                            charge_sign_region=None, charge_method="finite-difference", cutoff=None,
                            potential_method="mirror", potential_reference=None, dose=None,
                            counts_per_electron=None, interface=None, half_range_nm=None,
                            names=None, progress=False) -> Outcome:
    """``dpcstem reconstruct``: one four-segment acquisition → deflection, field, charge, potential.

    Parameters
    ----------
    segments : path-like or str
        The acquisition (any format :func:`dpcstem.io.read_segments` takes).
    calibration : dict, optional
        Calibration field → value the user gives (``kv``, ``alpha_mrad``, ``step_x_nm``,
        ``step_y_nm``, ``thickness_nm`` (number or map), ``eps_r``, ``collection_inner_mrad``,
        ``collection_outer_mrad`` (``inf``: no outer edge), ``detector_rotation_deg``,
        ``flip`` (True or False)); it wins over the file, with a warning.
    reference : path-like, optional
        Vacuum scan of the same scan, optics and detector: segment gains and the descan.
    dark, offsets : optional
        A beam-blanked scan whose segment means are the dark offsets, or the four offsets
        in counts (A, B, C, D).
    descan_region : (x0, y0, x1, y1), optional
        Field-free rectangle (nm, scan frame) over which the descan surface is fitted and removed.
    fit_rotation : bool
        Find the detector rotation (and the flip, unless ``calibration['flip']`` fixes it)
        that makes the deflection curl-free.
    charge_sign_region : (x0, y0, x1, y1, sign), optional
        Settles the 180° branch of the fitted rotation: a rectangle (nm) where the charge
        density has the sign '+' or '-'.
    dose, counts_per_electron : float, optional
        Counting statistics: uncertainty maps (electrons per probe position, or detector
        counts per electron).
    interface : (x1, y1, x2, y2), optional
        Two points (nm) on an interface: profiles across it and the layer figures.
    names : dict, optional
        Spelling of each input in messages (the CLI gives its option names).
    progress : bool
        A bar through the stages on a terminal (:class:`dpcstem.progress.Stages`); their
        times are printed at the end either way.

    Returns
    -------
    Outcome
    """
    from ..calibration.descan import fit_descan
    from ..calibration.gains import gains_from_vacuum
    from ..io import read_segments
    from ..noise import uncertainty_maps
    from ..options import ReconstructionOptions
    from ..reconstruct import count_saturated, reconstruct_deflection, segment_deflection
    from ..progress import Stages
    from ..response import response_model

    names = {**PYTHON_NAMES, **(names or {})}
    stages = Stages("reconstruct", progress, announce=False)
    stages.stage("reading")
    acquisition = read_segments(segments, dataset=dataset)
    shape = acquisition.segments.shape[1:]
    user = dict(calibration or {})
    cal = segment_calibration(acquisition.calibration_values, user, shape, source=segments, names=names)
    response = checked_response(response, cal)
    offsets, offsets_source, dark_paths = segment_offsets(offsets, dark, names=names)
    potential_mask, descan_mask, sign_region = scan_regions(
        shape, cal, names, descan_region=descan_region, charge_sign_region=charge_sign_region,
        potential_reference=potential_reference, fit_rotation=fit_rotation)
    options = ReconstructionOptions(
        response=response, offsets=offsets, descan_order=descan_order, charge_method=charge_method, cutoff=cutoff,
        potential_method=potential_method, potential_reference=potential_mask)
    inputs = list(acquisition.paths) + dark_paths
    lines, attrs = [], {}
    # Everything is measured in the detector frame (ψ = 0, no flip) and turned into the scan
    # frame once the rotation is settled: one pass through the kernel per acquisition.
    raw = cal.replace(detector_rotation_deg=0.0, flip=False)
    vacuum_descan = None
    gains_source = "default"
    if reference is not None:
        vac = read_reference(reference, names)
        check_reference(vac, cal, shape, names=names)
        stages.stage("segment kernel")
        gains = gains_from_vacuum(vac.segments, offsets=offsets)
        options = options.replace(gains=gains)
        vx, vy, _, vok = segment_deflection(vac.segments, raw, options=options, with_total=False)
        vacuum_descan = fit_descan(vx, vy, mask=vok, order=descan_order)
        gains_source = "vacuum"
        inputs += list(vac.paths)
    stages.stage("segment kernel")
    wx, wy, total, valid = segment_deflection(acquisition.segments, raw, options=options)
    if not valid.any():
        raise InputDataError("no pixel could be reconstructed: every pixel has a zero, negative or non-finite "
                             "segment sum or a signal outside the detector response")
    stages.stage("descan and rotation")
    descan_source, descan_fits = "none", []
    if vacuum_descan is not None:
        wx, wy = vacuum_descan.subtract(wx, wy)
        descan_source, descan_fits = "vacuum", [vacuum_descan]
    if descan_mask is not None:
        region_fit = fit_descan(wx, wy, mask=descan_mask & valid, order=descan_order)
        wx, wy = region_fit.subtract(wx, wy)
        descan_source = "region" if descan_source == "none" else "vacuum and region"
        descan_fits.append(region_fit)
    cal, tx, ty = _to_scan_frame(wx, wy, cal, valid, fit_rotation=fit_rotation, flip=user.get("flip"),
                                 sign_region=sign_region, names=names, lines=lines, attrs=attrs)
    stages.stage("field, charge and potential")
    result = reconstruct_deflection(tx, ty, cal, valid=valid, options=options)
    model = response_model(options.response, cal)
    result.extra["segment_sum"] = (total, "counts")
    result.attrs.update(response=model.name, n_bad_input=int(valid.size - np.count_nonzero(valid)),
                        n_saturated=count_saturated(acquisition.segments, valid))
    if dose is not None or counts_per_electron is not None:
        stages.stage("uncertainty maps")
        result.extra.update(uncertainty_maps(acquisition.segments, cal, options=options, dose=dose,
                                             counts_per_electron=counts_per_electron, valid=valid))
    for k, fit_ in enumerate(descan_fits):
        attrs.update(fit_.attrs(cal, "descan" if k == 0 else "descan_region"))
    attrs.update(descan_source=descan_source, offsets_source=offsets_source, gains_source=gains_source,
                 segment_offsets=np.zeros(4) if offsets is None else np.asarray(offsets, float),
                 segment_gains=np.ones(4) if options.gains is None else np.asarray(options.gains, float))
    if hasattr(response, "attrs"):
        attrs.update(response.attrs())
    lines += describe_calibration(cal)
    lines.append(_descan_line(descan_source, tx, ty, valid, names))
    if descan_source == "none":
        stages.stage("descan and rotation")
        lines += descan_plane_lines(tx, ty, valid, cal, names, attrs)
    if offsets_source == "default":
        lines.append(f"segment offsets: 0 counts assumed (a black level lowers the field in proportion; "
                     f"{names['offsets']} or {names['dark']} sets them)")
    else:
        lines.append(f"segment offsets: {', '.join(f'{o:.4g}' for o in offsets)} counts ({offsets_source})")
    if gains_source == "default":
        lines.append(f"segment gains: equal (assumed; {names['reference']} measures them)")
    stages.stage("summary and profiles")
    outcome = _outcome(result, cal, attrs, lines, inputs, interface, half_range_nm)
    outcome.lines.append(stages.summary())
    return outcome
