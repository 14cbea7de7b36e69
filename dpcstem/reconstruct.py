"""Segments → deflection → field → charge density and potential.

The chain (DESIGN.md §1, §3):

- deflection θ (mrad, scan frame) from the four segments through the detector response;
- projected in-plane field E⊥ = −(pv/e)·θ/t (V/m);
- total charge density ρ = ε0 ∇·E (C/m³) and, with εr, the free charge ε0 εr ∇·E;
- thickness-averaged potential V = (pv/e)/t · ∫θ dl (V), zero at a reference region.
"""

from __future__ import annotations

import numpy as np

from . import physics
from .calibration import Calibration
from .detector import LinearResponse, QuadrantResponse, gains_from_vacuum
from .errors import CalibrationError, InputDataError
from .fourier import integrate_gradient, spectral_divergence
from .kernels import deflection_linear, deflection_table, divergence
from .memory import reconstruction_bytes, require_memory
from .result import DPCResult

RESPONSES = ("exact", "linear")


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


def segment_deflection(segments, calibration: Calibration, *, response="exact", gains=None, offsets=None,
                       vacuum=None):
    """Deflection maps from four segment images, through the fused kernel.

    Parameters
    ----------
    segments : array_like, shape (4, ny, nx)
        Segment images A, B, C, D (any integer or float dtype), in counts.
    calibration : Calibration
    response : {"exact", "linear"} or object with ``inverse_table()``
        The detector response to invert: the exact geometric model (both axes together),
        its first-order slope, or an empirical response (:mod:`dpcstem.calibrate`).
    gains, offsets : array_like, shape (4,), optional
        Per-segment gain and dark offset: true counts = (raw − offset) / gain.
    vacuum : array_like, shape (4, ny, nx) or (4,), optional
        Vacuum reference from which the gains are taken (overrides ``gains``).

    Returns
    -------
    theta_x, theta_y : ndarray, float32, (ny, nx)
        Deflection in mrad, scan frame; NaN where invalid.
    total : ndarray, float32
        Gain-corrected segment sum A+B+C+D in counts.
    valid : ndarray of bool
        False where the sum is not positive and finite, a segment is saturated (at its
        integer type's full scale), or the signals lie outside the response.
    """
    seg = check_segments(segments)
    offsets = np.zeros(4) if offsets is None else _four("offsets", offsets)
    if vacuum is not None:
        gains = gains_from_vacuum(vacuum, offsets=offsets)
    gains = np.ones(4) if gains is None else _four("gains", gains)
    if np.any(gains <= 0):
        raise CalibrationError(f"segment gains must be positive, got {gains}")
    ny, nx = seg.shape[1:]
    theta_x = np.empty((ny, nx), np.float32)
    theta_y = np.empty((ny, nx), np.float32)
    total = np.empty((ny, nx), np.float32)
    valid = np.empty((ny, nx), np.uint8)
    axes = calibration.segment_axes()
    common = (seg, offsets, 1.0 / gains)
    outputs = (theta_x, theta_y, total, valid)
    full_scale = float(np.iinfo(seg.dtype).max) if seg.dtype.kind in "ui" else np.inf
    model = response_model(response, calibration)
    if isinstance(model, LinearResponse):
        deflection_linear(*common, model.slope, axes, calibration.alpha_mrad, *outputs, full_scale)
    else:
        table = model.inverse_table()
        deflection_table(*common, table.u, table.v, table.origin, table.step, axes, calibration.alpha_mrad,
                         *outputs, full_scale)
    return theta_x, theta_y, total, valid.view(bool)


def count_saturated(segments, valid):
    """Pixels among the invalid ones with a segment at its integer type's full scale."""
    seg = np.asarray(segments)
    if seg.dtype.kind not in "ui" or valid.all():
        return 0
    bad = ~np.asarray(valid, bool)
    return int(np.count_nonzero((seg[:, bad] >= np.iinfo(seg.dtype).max).any(axis=0)))


def response_model(response, calibration):
    """The response object for a name ("exact", "linear") or a given response."""
    if response == "exact":
        return QuadrantResponse.from_calibration(calibration)
    if response == "linear":
        return LinearResponse.from_calibration(calibration)
    if hasattr(response, "inverse_table"):
        return response
    raise CalibrationError(f"response must be one of {RESPONSES} or an empirical response, got {response!r}")


def _four(name, values):
    arr = np.asarray(values, dtype=np.float64).ravel()
    if arr.shape != (4,) or not np.all(np.isfinite(arr)):
        raise CalibrationError(f"{name} must be 4 finite numbers (A, B, C, D), got {values!r}")
    return arr


def vacuum_reference(vacuum, calibration: Calibration, *, response="exact", offsets=None, descan_order=2):
    """Segment gains and the descan from a vacuum scan (no specimen, same scan and detector).

    With the beam centred every segment collects the same area, so the vacuum's segment
    means give the gains; the vacuum's own deflection, which only the descan moves, is
    fitted with a robust plane (``descan_order=1``) or quadratic (2) so that its counting
    noise does not enter the data it corrects.

    Returns
    -------
    gains : ndarray, shape (4,)
    descan : dpcstem.calibrate.DescanFit
        ``descan.subtract(theta_x, theta_y)`` removes it from a deflection map of the
        same scan shape.
    """
    from .calibrate import fit_descan

    vac = check_segments(vacuum, "vacuum reference")
    gains = gains_from_vacuum(vac, offsets=offsets)
    vx, vy, _, ok = segment_deflection(vac, calibration, response=response, gains=gains, offsets=offsets)
    return gains, fit_descan(vx, vy, mask=ok, order=descan_order)


def reconstruct(segments, calibration: Calibration, *, response="exact", gains=None, offsets=None, vacuum=None,
                descan_order=2, **options) -> DPCResult:
    """Reconstruct deflection, field, charge density and potential from four segments.

    Parameters
    ----------
    segments : array_like, shape (4, ny, nx)
        Segment images A, B, C, D in counts.
    calibration : Calibration
    response, gains, offsets
        As in :func:`segment_deflection`.
    vacuum : array_like, shape (4, ny, nx), optional
        A vacuum scan of the same size: gives the segment gains and the descan (a robust
        surface of ``descan_order`` fitted to its deflection), see :func:`vacuum_reference`.
    descan_order : {1, 2}
        Plane or quadratic descan fitted to the vacuum scan.
    **options
        Passed to :func:`reconstruct_deflection` (``charge_method``, ``cutoff``,
        ``potential_method``, ``potential_reference``).

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
    descan = None
    if vacuum is not None:
        gains, descan = vacuum_reference(vacuum, calibration, response=response, offsets=offsets,
                                         descan_order=descan_order)
    theta_x, theta_y, total, valid = segment_deflection(
        segments, calibration, response=response, gains=gains, offsets=offsets)
    if not valid.any():
        raise InputDataError(
            "no pixel could be reconstructed: every pixel has a zero, negative or non-finite segment sum "
            "or a signal outside the detector response")
    if descan is not None:
        if np.shape(vacuum)[1:] != theta_x.shape:
            raise InputDataError(f"the vacuum reference scan has shape {np.shape(vacuum)[1:]}, the data "
                                 f"{theta_x.shape}: it must be the same scan")
        theta_x, theta_y = descan.subtract(theta_x, theta_y)
    model = response_model(response, calibration)
    result = reconstruct_deflection(theta_x, theta_y, calibration, valid=valid, **options)
    result.extra["segment_sum"] = (total, "counts")
    result.attrs["response"] = model.name
    result.attrs["n_bad_input"] = int(valid.size - np.count_nonzero(valid))
    result.attrs["n_saturated"] = count_saturated(segments, valid)
    if gains is not None:
        result.attrs["segment_gains"] = np.asarray(gains, float)
    if descan is not None:
        result.attrs.update(descan.attrs())
    return result


CHARGE_METHODS = ("finite-difference", "spectral")


def reconstruct_deflection(theta_x_mrad, theta_y_mrad, calibration: Calibration, *, valid=None,
                           charge_method="finite-difference", cutoff=None, potential_method="mirror",
                           potential_reference=None) -> DPCResult:
    """Field, charge density and potential from a deflection map.

    Parameters
    ----------
    theta_x_mrad, theta_y_mrad : ndarray, shape (ny, nx)
        Deflection in mrad, scan frame.
    calibration : Calibration
        Needs ``thickness_nm`` (a number or an (ny, nx) map) for anything beyond deflection.
    valid : ndarray of bool, optional
        Pixels to use; default: where both components are finite.
    charge_method : {"finite-difference", "spectral"}
        Divergence by central differences that skip invalid neighbours, or by Fourier
        differentiation with a raised-cosine low-pass window falling to zero at ``cutoff``.
    cutoff : float, optional
        Low-pass cutoff of the spectral divergence in cycles/nm (None: no window).
    potential_method : {"mirror", "dct", "periodic"}
        Integration of the deflection (see :func:`dpcstem.fourier.integrate_gradient`).
    potential_reference : ndarray of bool, optional
        Region where the potential is zero (default: mean over valid pixels is zero).

    Returns
    -------
    DPCResult
    """
    tx = np.asarray(theta_x_mrad)
    ty = np.asarray(theta_y_mrad)
    if tx.ndim != 2 or tx.shape != ty.shape or tx.size == 0:
        raise InputDataError(f"deflection maps must be two non-empty 2-D arrays of one shape, got {tx.shape}, {ty.shape}")
    finite = np.isfinite(tx) & np.isfinite(ty)
    for name, mask in (("valid", valid), ("potential_reference", potential_reference)):
        if mask is not None and np.shape(mask) != tx.shape:
            raise InputDataError(f"{name} must be a mask of the scan's shape {tx.shape}, got shape {np.shape(mask)}")
    if cutoff is not None and not (np.isfinite(cutoff) and cutoff > 0):
        raise InputDataError(f"the low-pass cutoff must be a positive spatial frequency in cycles/nm, got {cutoff!r}")
    valid = finite if valid is None else (np.asarray(valid, dtype=bool) & finite)
    tx = np.where(valid, tx, np.nan).astype(np.float32)
    ty = np.where(valid, ty, np.nan).astype(np.float32)
    result = DPCResult(deflection_x=tx, deflection_y=ty, valid=valid, calibration=calibration)
    if calibration.thickness_nm is None:
        return result
    thickness = calibration.thickness_nm
    if np.ndim(thickness) == 2 and np.shape(thickness) != tx.shape:
        raise CalibrationError(f"thickness map shape {np.shape(thickness)} does not match the scan {tx.shape}")
    kv = calibration.kv
    field_x = physics.field_v_per_m_from_deflection(tx.astype(np.float64), kv, thickness)
    field_y = physics.field_v_per_m_from_deflection(ty.astype(np.float64), kv, thickness)
    step_x_m = calibration.step_x_nm * physics.NM_TO_M
    step_y_m = calibration.step_y_nm * physics.NM_TO_M
    if charge_method == "finite-difference":
        div = np.empty(tx.shape)
        div_valid = np.empty(tx.shape, np.uint8)
        divergence(np.nan_to_num(field_x), np.nan_to_num(field_y), valid.view(np.uint8), step_x_m, step_y_m,
                   div, div_valid)
        valid = valid & div_valid.view(bool)
    elif charge_method == "spectral":
        cutoff_per_m = None if cutoff is None else cutoff * physics.M_TO_NM
        div = spectral_divergence(field_x, field_y, step_x=step_x_m, step_y=step_y_m, cutoff=cutoff_per_m,
                                  valid=valid)
    else:
        raise InputDataError(f"charge_method must be one of {CHARGE_METHODS}, got {charge_method!r}")
    if not valid.any():
        raise InputDataError(
            f"no pixel of the {tx.shape[0]} x {tx.shape[1]} scan has the valid neighbours a divergence needs: "
            "the charge density needs at least 2 x 2 valid pixels")
    rho = physics.VACUUM_PERMITTIVITY_F_M * div
    projected = calibration.pv_over_e_v * physics.MRAD_TO_RAD * integrate_gradient(
        tx, ty, step_x=calibration.step_x_nm, step_y=calibration.step_y_nm, method=potential_method, valid=valid)
    reference = valid if potential_reference is None else (np.asarray(potential_reference, bool) & valid)
    if not reference.any():
        raise InputDataError("the potential reference region holds no valid pixel")
    projected -= projected[reference].mean()

    def masked(a):
        return np.where(valid, a, np.nan).astype(np.float32)

    result.valid = valid
    result.deflection_x = masked(tx)
    result.deflection_y = masked(ty)
    result.field_x = masked(field_x)
    result.field_y = masked(field_y)
    result.charge_density = masked(rho)
    if calibration.eps_r is not None:
        result.free_charge_density = masked(rho * calibration.eps_r)
    result.potential = masked(projected / thickness)
    result.extra["projected_potential"] = (masked(projected), "V*nm")
    result.attrs.update(charge_method=charge_method, potential_method=potential_method,
                        lowpass_cutoff_per_nm=cutoff)
    return result
