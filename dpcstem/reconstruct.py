"""Segments → deflection → field → charge density and potential.

The chain (DESIGN.md §1, §3):

- deflection θ (mrad, scan frame) from the four segments through the detector response;
- projected in-plane field E⊥ = −(pv/e)·θ/t (V/m);
- total charge density ρ = ε0 ∇·E (C/m³) and, with εr, the free charge ε0 εr ∇·E;
- thickness-averaged potential V = (pv/e)/t · ∫θ dl (V), zero at a reference region.
"""

from __future__ import annotations

import numpy as np

from . import _validate, physics
from .calibration import Calibration
from .calibration.descan import fit_descan
from .calibration.gains import gains_from_vacuum
from .errors import CalibrationError, InputDataError
from .options import ReconstructionOptions, check_options
from .fourier import integrate_gradient, spectral_divergence
from .kernels import deflection_linear, deflection_table, divergence
from .memory import reconstruction_bytes, require_memory
from .response import LinearResponse, response_model
from .result import DPCResult



def check_segments(segments, name="segments"):
    """Validate a (4, ny, nx) segment stack and return it as a C-contiguous array of its dtype."""
    arr = np.asarray(segments)
    if arr.ndim != 3 or arr.shape[0] != 4:
        raise InputDataError(
            f"{name} must have shape (4, ny, nx) with segments A, B, C, D, got shape {arr.shape}")
    if arr.shape[1] == 0 or arr.shape[2] == 0:
        raise InputDataError(f"{name} is empty (shape {arr.shape})")
    if arr.dtype.kind not in "uif":
        raise InputDataError(f"{name} must hold numbers, got dtype {arr.dtype}")
    if arr.dtype.kind == "f" and arr.dtype.itemsize < 4:
        arr = arr.astype(np.float32)
    ny, nx = arr.shape[1:]
    copy = 0 if arr.flags.c_contiguous else arr.nbytes
    require_memory(copy + reconstruction_bytes((ny, nx)), f"reconstructing a {ny} x {nx} scan")
    return np.ascontiguousarray(arr)


def check_calibration(calibration) -> Calibration:
    """``calibration`` itself; anything but a :class:`~dpcstem.Calibration` is refused, naming the parameter."""
    if not isinstance(calibration, Calibration):
        raise CalibrationError(f"calibration must be a dpcstem.Calibration, got {type(calibration).__name__} "
                               f"{calibration!r:.80}")
    return calibration


def segment_deflection(segments, calibration: Calibration, *, options: ReconstructionOptions | None = None,
                       vacuum=None, with_total: bool = True):
    """Deflection maps from four segment images, through the fused kernel.

    Parameters
    ----------
    segments : array_like, shape (4, ny, nx)
        Segment images A, B, C, D (any integer or float dtype), in counts.
    calibration : Calibration
    options : ReconstructionOptions, optional
        Its ``response``, ``gains`` and ``offsets`` are used: true counts =
        (raw − offset) / gain, inverted through the response.
    vacuum : array_like, shape (4, ny, nx) or (4,), optional
        Vacuum reference from which the gains are taken (overrides ``options.gains``).
    with_total : bool
        False where the caller does not use the segment sum: the kernel does not write it
        (4 of the 13 bytes a pixel it writes), and ``total`` is None.

    Returns
    -------
    theta_x, theta_y : ndarray, float32, (ny, nx)
        Deflection in mrad, scan frame; NaN where invalid.
    total : ndarray, float32, or None
        Gain-corrected segment sum A+B+C+D in counts (None without ``with_total``).
    valid : ndarray of bool
        False where the sum is not positive and finite, a segment is saturated (at its
        integer type's full scale), or the signals lie outside the response.
    """
    options = check_options(options)
    check_calibration(calibration)
    seg = check_segments(segments)
    offsets = np.zeros(4) if options.offsets is None else options.offsets
    gains = options.gains if vacuum is None else gains_from_vacuum(vacuum, offsets=offsets)
    gains = np.ones(4) if gains is None else _validate.four("gains", gains, positive_only=True)
    ny, nx = seg.shape[1:]
    theta_x = np.empty((ny, nx), np.float32)
    theta_y = np.empty((ny, nx), np.float32)
    total = np.empty((ny, nx), np.float32) if with_total else None
    valid = np.empty((ny, nx), np.uint8)
    axes = np.ascontiguousarray(calibration.frame_matrix.T)  # rows: the A and B axes in scan (x, y)
    common = (seg, offsets, 1.0 / gains)
    outputs = (theta_x, theta_y, total, valid)
    full_scale = float(np.iinfo(seg.dtype).max) if seg.dtype.kind in "ui" else np.inf
    model = response_model(options.response, calibration)
    if isinstance(model, LinearResponse):
        deflection_linear(*common, model.slope, axes, calibration.alpha_mrad, *outputs, full_scale)
    else:
        table = model.inverse_table()
        poly = model.inverse_polynomial() if hasattr(model, "inverse_polynomial") else None
        near = () if poly is None or poly.reach == 0 else (poly.kernel_coefficients(), poly.reach)
        deflection_table(*common, table.u, table.v, table.origin, table.step, axes, calibration.alpha_mrad,
                         *outputs, full_scale, *near)
    return theta_x, theta_y, total, valid.view(bool)


def count_saturated(segments, valid):
    """Pixels among the invalid ones with a segment at its integer type's full scale."""
    seg = np.asarray(segments)
    if seg.dtype.kind not in "ui" or valid.all():
        return 0
    bad = ~np.asarray(valid, bool)
    return int(np.count_nonzero((seg[:, bad] >= np.iinfo(seg.dtype).max).any(axis=0)))


def vacuum_reference(vacuum, calibration: Calibration, *, options: ReconstructionOptions | None = None):
    """Segment gains and the descan from a vacuum scan (no specimen, same scan and detector).

    With the beam centred every segment collects the same area, so the vacuum's segment
    means give the gains; the vacuum's own deflection, which only the descan moves, is
    fitted with a robust plane (``options.descan_order=1``) or quadratic (2) so that its
    counting noise does not enter the data it corrects. ``options.response`` and
    ``options.offsets`` are used; its gains are not (the vacuum gives them).

    Returns
    -------
    gains : ndarray, shape (4,)
    descan : dpcstem.calibration.descan.DescanFit
        ``descan.subtract(theta_x, theta_y)`` removes it from a deflection map of the
        same scan shape.
    """
    options = check_options(options)
    vac = check_segments(vacuum, "vacuum reference")
    gains = gains_from_vacuum(vac, offsets=options.offsets)
    vx, vy, _, ok = segment_deflection(vac, calibration, options=options.replace(gains=gains), with_total=False)
    return gains, fit_descan(vx, vy, mask=ok, order=options.descan_order)


def reconstruct(segments, calibration: Calibration, *, options: ReconstructionOptions | None = None,
                vacuum=None) -> DPCResult:
    """Reconstruct deflection, field, charge density and potential from four segments.

    Parameters
    ----------
    segments : array_like, shape (4, ny, nx)
        Segment images A, B, C, D in counts.
    calibration : Calibration
    options : ReconstructionOptions, optional
        Response, gains, offsets, descan order, charge and potential methods (defaults:
        ``ReconstructionOptions()``), validated before any kernel runs.
    vacuum : array_like, shape (4, ny, nx), optional
        A vacuum scan of the same size: gives the segment gains and the descan (a robust
        surface of ``options.descan_order`` fitted to its deflection), see
        :func:`vacuum_reference`.

    Returns
    -------
    DPCResult
        With the gain-corrected segment sum as ``extra["segment_sum"]`` (counts).

    Examples
    --------
    >>> import numpy as np
    >>> from dpcstem import Calibration
    >>> from dpcstem.simulate import segments_from_deflection
    >>> cal = Calibration(kv=200, alpha_mrad=10, step_x_nm=1, thickness_nm=100)
    >>> tx = np.full((8, 8), 2.0); ty = np.zeros((8, 8))
    >>> result = reconstruct(segments_from_deflection(tx, ty, cal), cal)
    >>> round(float(result.deflection_x.mean()), 3)
    2.0
    """
    options = check_options(options)
    check_calibration(calibration)
    descan = None
    if vacuum is not None:
        gains, descan = vacuum_reference(vacuum, calibration, options=options)
        options = options.replace(gains=gains)
    theta_x, theta_y, total, valid = segment_deflection(segments, calibration, options=options)
    if not valid.any():
        raise InputDataError(
            "no pixel could be reconstructed: every pixel has a zero, negative or non-finite segment sum "
            "or a signal outside the detector response")
    if descan is not None:
        if np.shape(vacuum)[1:] != theta_x.shape:
            raise InputDataError(f"the vacuum reference scan has shape {np.shape(vacuum)[1:]}, the data "
                                 f"{theta_x.shape}: it must be the same scan")
        theta_x, theta_y = descan.subtract(theta_x, theta_y)
    model = response_model(options.response, calibration)
    result = reconstruct_deflection(theta_x, theta_y, calibration, valid=valid, options=options)
    result.extra["segment_sum"] = (total, "counts")
    result.attrs["response"] = model.name
    result.attrs["n_bad_input"] = int(valid.size - np.count_nonzero(valid))
    result.attrs["n_saturated"] = count_saturated(segments, valid)
    if options.gains is not None:
        result.attrs["segment_gains"] = np.array(options.gains)
    if descan is not None:
        result.attrs.update(descan.attrs())
    return result


def _float32_where(a, valid):
    """``a`` as a new float32 array, NaN where not ``valid``."""
    out = np.asarray(a).astype(np.float32)
    np.copyto(out, np.nan, where=~valid)
    return out


def reconstruct_deflection(theta_x_mrad, theta_y_mrad, calibration: Calibration, *, valid=None,
                           options: ReconstructionOptions | None = None, projected_potential=None) -> DPCResult:
    """Field, charge density and potential from a deflection map.

    Parameters
    ----------
    theta_x_mrad, theta_y_mrad : ndarray, shape (ny, nx)
        Deflection in mrad, scan frame.
    calibration : Calibration
        Needs ``thickness_nm`` (a number or an (ny, nx) map) for anything beyond deflection.
    valid : ndarray of bool, optional
        Pixels to use; default: where both components are finite.
    options : ReconstructionOptions, optional
        Its ``charge_method``, ``cutoff``, ``potential_method`` and ``potential_reference``
        are used (see :class:`~dpcstem.options.ReconstructionOptions`).
    projected_potential : ndarray, shape (ny, nx), optional
        The projected potential (V·nm) of this deflection where the caller has it already,
        used instead of integrating: the integration is linear, so the difference of two
        maps' projected potentials over the same valid pixels is that of their difference
        (a bias series' net map). Only its valid pixels are read; its mean over the
        potential reference is removed as for an integrated one.

    Returns
    -------
    DPCResult
    """
    options = check_options(options)
    check_calibration(calibration)
    charge_method, cutoff = options.charge_method, options.cutoff
    tx = np.asarray(theta_x_mrad)
    ty = np.asarray(theta_y_mrad)
    if tx.ndim != 2 or tx.shape != ty.shape or tx.size == 0:
        raise InputDataError(f"deflection maps must be two non-empty 2-D arrays of one shape, got {tx.shape}, {ty.shape}")
    finite = np.isfinite(tx) & np.isfinite(ty)
    valid = finite if valid is None else (_validate.mask("valid", valid, tx.shape) & finite)
    potential_reference = _validate.mask("potential_reference", options.potential_reference, tx.shape)
    tx = _float32_where(tx, valid)
    ty = _float32_where(ty, valid)
    result = DPCResult(deflection_x=tx, deflection_y=ty, valid=valid, calibration=calibration)
    if calibration.thickness_nm is None:
        return result
    thickness = calibration.thickness_nm
    if np.ndim(thickness) == 2 and np.shape(thickness) != tx.shape:
        raise CalibrationError(f"thickness map shape {np.shape(thickness)} does not match the scan {tx.shape}")
    # E = k·θ, k the field of 1 mrad (a number, or a map with a thickness map), in float64
    per_mrad = physics.field_v_per_m_from_deflection(1.0, calibration.kv, thickness)
    field_x = np.multiply(tx, per_mrad, dtype=np.float64)
    field_y = np.multiply(ty, per_mrad, dtype=np.float64)
    step_x_m = calibration.step_x_nm * physics.NM_TO_M
    step_y_m = calibration.step_y_nm * physics.NM_TO_M
    if charge_method == "finite-difference":  # the kernel reads valid pixels only (the others are NaN)
        div = np.empty(tx.shape)
        div_valid = np.empty(tx.shape, np.uint8)
        divergence(field_x, field_y, valid.view(np.uint8), step_x_m, step_y_m, div, div_valid)
        valid = valid & div_valid.view(bool)
    else:  # "spectral"
        cutoff_per_m = None if cutoff is None else cutoff * physics.M_TO_NM
        div = spectral_divergence(field_x, field_y, step_x=step_x_m, step_y=step_y_m, cutoff=cutoff_per_m,
                                  valid=valid)
    if not valid.any():
        raise InputDataError(
            f"no pixel of the {tx.shape[0]} x {tx.shape[1]} scan has the valid neighbours a divergence needs: "
            "the charge density needs at least 2 x 2 valid pixels")

    def masked(a):
        return _float32_where(a, valid)

    result.valid = valid
    invalid = ~valid
    for t in (tx, ty):  # float32 copies already: the pixels the charge density lost are set NaN in place
        np.copyto(t, np.nan, where=invalid)
    result.field_x, result.field_y = masked(field_x), masked(field_y)
    del field_x, field_y  # the float64 maps go before the integration allocates its own
    div *= physics.VACUUM_PERMITTIVITY_F_M  # ε0∇·E, C/m³
    result.charge_density = masked(div)
    if calibration.eps_r is not None:
        result.free_charge_density = masked(div * calibration.eps_r)
    del div
    if projected_potential is None:
        projected = calibration.pv_over_e_v * physics.MRAD_TO_RAD * integrate_gradient(
            tx, ty, step_x=calibration.step_x_nm, step_y=calibration.step_y_nm, method=options.potential_method,
            valid=valid)
    else:
        projected = np.array(projected_potential, dtype=np.float64)
        if projected.shape != tx.shape:
            raise InputDataError(f"the projected potential has shape {projected.shape}, the deflection {tx.shape}")
    reference = valid if potential_reference is None else (potential_reference & valid)
    if not reference.any():
        raise InputDataError("the potential reference region holds no valid pixel")
    projected -= projected[reference].mean()
    result.potential = masked(projected / thickness)
    result.extra["projected_potential"] = (masked(projected), "V*nm")
    result.attrs.update(options.attrs())
    return result
