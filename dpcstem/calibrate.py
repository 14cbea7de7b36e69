"""Calibration from the data: detector rotation and flip, descan, and an empirical response.

- :func:`find_rotation` finds the detector rotation ψ and flip that make the scan-frame
  deflection curl-free (a field from charges has no curl), in closed form for each flip;
  :func:`apply_rotation` re-expresses a deflection map with a given ψ and flip.
- :func:`fit_descan`, :func:`remove_descan`, :func:`subtract_reference` remove the
  deflection the scan coils add (descan) by a robust plane or quadratic fit over a
  field-free region, or with a vacuum reference scan.
- :func:`fit_response` builds an empirical detector response from a beam-tilt series, to be
  used instead of the geometric model (``reconstruct(..., response=empirical)``);
  :func:`save_response` and :func:`load_response` keep it in a small ``.npz`` file.

References
----------
Brown et al., Ultramicroscopy 182 (2017) 169, doi:10.1016/j.ultramic.2017.07.002
(empirical response from a tilt series).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .calibration import Calibration
from .detector import TABLE_SIZE, InverseTable
from .errors import CalibrationError, InputDataError, MissingMetadataError, UnreadableFileError
from .kernels import curl, divergence

# --------------------------------------------------------------------------------------
# Detector rotation and flip
# --------------------------------------------------------------------------------------

#: The flip is called undetermined (a warning) when the other flip's curl ratio is below this multiple.
FLIP_MARGIN = 1.25


@dataclass(frozen=True)
class RotationFit:
    """The detector rotation and flip that make the scan-frame deflection curl-free.

    Attributes
    ----------
    rotation_deg : float
        ψ in degrees, in [0, 360): azimuth of segment A from scan +x toward scan +y.
    flip : bool
        Whether the detector's y axis is mirrored (B at ψ−90°).
    curl_ratio : float
        rms curl / rms divergence of the deflection rotated by ``rotation_deg`` with
        ``flip``: the quality figure (0 for a perfect fit; noise raises it).
    curl_ratio_other_flip : float
        The same figure at the best rotation for the other flip. Close to ``curl_ratio``
        when the data cannot tell the flips apart (a field along one direction only).
    rotation_deg_other_flip : float
        Best rotation for the other flip (polarity settled the same way), in degrees.
    mean_square_curl : tuple of float
        Minimum mean squared curl for flip False and flip True (mrad²/nm²).
    polarity : str
        How the 180° ambiguity was settled: ``"skew"``, ``"charge sign"``,
        ``"reference"``.
    charge_skew : float
        Skewness of the charge-density proxy −∇·θ at the chosen rotation.
    n_pixels : int
        Pixels where both curl and divergence were defined.
    """

    rotation_deg: float
    flip: bool
    curl_ratio: float
    curl_ratio_other_flip: float
    rotation_deg_other_flip: float
    mean_square_curl: tuple
    polarity: str
    charge_skew: float
    n_pixels: int

    def calibration(self, calibration: Calibration) -> Calibration:
        """``calibration`` with this rotation and flip."""
        return calibration.replace(detector_rotation_deg=self.rotation_deg, flip=self.flip)

    def attrs(self) -> dict:
        """Provenance for a result file's root attributes."""
        return {"rotation_fit_deg": self.rotation_deg, "rotation_fit_flip": self.flip,
                "rotation_fit_curl_ratio": self.curl_ratio,
                "rotation_fit_curl_ratio_other_flip": self.curl_ratio_other_flip,
                "rotation_fit_polarity": self.polarity}


def _deflection_pair(theta_x, theta_y, name="deflection"):
    tx = np.asarray(theta_x, dtype=np.float64)
    ty = np.asarray(theta_y, dtype=np.float64)
    if tx.ndim != 2 or tx.shape != ty.shape or tx.size == 0:
        raise InputDataError(f"{name} maps must be two non-empty 2-D arrays (ny, nx) of one shape, "
                             f"got {tx.shape} and {ty.shape}")
    return tx, ty


def _mask(mask, shape, name):
    if mask is None:
        return np.ones(shape, bool)
    m = np.asarray(mask)
    if m.shape != shape:
        raise InputDataError(f"{name} must have the scan's shape {shape}, got {m.shape}")
    return m.astype(bool)


def _detector_frame(tx, ty, calibration):
    """α·(u, v): the deflection along the A and B axes of ``calibration``'s detector."""
    axes = np.eye(2) if calibration is None else calibration.segment_axes()
    return axes[0, 0] * tx + axes[0, 1] * ty, axes[1, 0] * tx + axes[1, 1] * ty


def apply_rotation(theta_x_mrad, theta_y_mrad, *, rotation_deg, flip=False, measured_with=None):
    """A deflection map re-expressed in the scan frame of a given detector rotation and flip.

    Parameters
    ----------
    theta_x_mrad, theta_y_mrad : ndarray, shape (ny, nx)
        Deflection in mrad as reconstructed with ``measured_with``'s rotation and flip
        (default: ψ = 0 and no flip, i.e. the detector frame: x along segment A, y along B).
    rotation_deg : float
        ψ in degrees (azimuth of segment A from scan +x toward scan +y).
    flip : bool
        Detector y axis mirrored (B at ψ−90°).
    measured_with : Calibration, optional
        The calibration the map was reconstructed with.

    Returns
    -------
    theta_x, theta_y : ndarray, float64, shape (ny, nx)
        The deflection in mrad, scan frame, as a reconstruction with ``rotation_deg`` and
        ``flip`` would have given it.

    Notes
    -----
    With the detector-frame deflection w = α(u, v), the scan-frame deflection is
    θ = R(ψ)·w without flip and θ = R(ψ)·(w_x, −w_y) with flip.
    """
    tx, ty = _deflection_pair(theta_x_mrad, theta_y_mrad)
    wx, wy = _detector_frame(tx, ty, measured_with)
    if flip:
        wy = -wy
    c, s = math.cos(math.radians(rotation_deg)), math.sin(math.radians(rotation_deg))
    return c * wx - s * wy, s * wx + c * wy


def find_rotation(theta_x_mrad, theta_y_mrad, calibration: Calibration, *, valid=None, flip=None, region=None,
                  charge_sign=None, reference=None) -> RotationFit:
    """Detector rotation ψ and flip that minimise the mean squared curl of the deflection.

    Parameters
    ----------
    theta_x_mrad, theta_y_mrad : ndarray, shape (ny, nx)
        Deflection in mrad, reconstructed with ``calibration``'s rotation and flip (give a
        calibration with ψ = 0 and no flip for the raw detector-frame deflection). NaN
        pixels are left out.
    calibration : Calibration
        Scan steps (nm) and the rotation and flip the map was reconstructed with.
    valid : ndarray of bool, optional
        Pixels to use (e.g. leave out vacuum or a damaged region).
    flip : bool, optional
        Fix the flip instead of choosing the one with the smaller curl.
    region, charge_sign : optional
        Settle the 180° ambiguity from a region (bool mask, (ny, nx)) where the charge
        density is known to be positive (``charge_sign=+1``) or negative (``-1``).
    reference : tuple of two arrays or of two numbers, optional
        Settle it from an expected deflection direction (θx, θy) in the scan frame, maps
        of shape (ny, nx) or one vector: the rotation whose deflection has the positive
        mean projection on it is taken. (The field points opposite to the deflection.)

    Returns
    -------
    RotationFit
        The absolute ψ and flip (what the calibration should hold).

    Notes
    -----
    With w the detector-frame deflection (mirrored in y for a flip), rotating it by ψ
    gives curl(Rw) = cos ψ·curl w + sin ψ·div w, so the mean squared curl is the quadratic
    form (cos ψ, sin ψ)·M·(cos ψ, sin ψ)ᵀ with M = [[⟨curl²⟩, ⟨curl·div⟩], [⟨curl·div⟩,
    ⟨div²⟩]]: its minimum is the smaller eigenvalue, at the eigenvector, for each flip.
    The divergence there is the larger eigenvalue, so rms curl / rms div = sqrt(λmin/λmax).
    Derivatives are the masked central differences of :mod:`dpcstem.kernels` (honouring
    the scan steps) of the field smoothed 1-4-1 across the derivative's direction. That
    makes ∂/∂x and ∂/∂y the exact derivatives times one common operator
    1 + (Δx²∂x² + Δy²∂y²)/6 to second order, so the discrete curl of a gradient field
    vanishes; plain central differences leave a curl that biases ψ by about
    (Δ²/16)·⟨f''²⟩/⟨f'²⟩·sin 4n for a layer f whose normal is at n (0.7° for a sharp
    depletion layer 10 pixels wide at n = 25°).

    ψ is fixed only modulo 180°. Without ``region``/``charge_sign`` or ``reference`` the
    branch is chosen whose charge density (∝ −∇·θ) has a positive skew: the assumption is
    compact positive charges on a diffuse negative background (atomic columns; the dense
    counter charge of a depletion layer with a positive potential drop). Where the skew is
    too small to tell (under three times its noise, sqrt(6/N)), a warning says so.

    A field that varies along one direction only (a straight interface) is mirror
    symmetric: both flips then fit equally well (``curl_ratio_other_flip`` ≈
    ``curl_ratio``; a warning says so when the other flip's ratio is within
    :data:`FLIP_MARGIN` times the chosen one's) and the flip must come from elsewhere
    (give ``flip``).
    """
    tx, ty = _deflection_pair(theta_x_mrad, theta_y_mrad)
    use = _mask(valid, tx.shape, "valid") & np.isfinite(tx) & np.isfinite(ty)
    if (region is None) != (charge_sign is None):
        raise InputDataError("region and charge_sign go together: the region where the charge density is "
                             "known to have the sign charge_sign (+1 or -1)")
    if charge_sign is not None and charge_sign not in (1, -1):
        raise InputDataError(f"charge_sign must be +1 or -1, got {charge_sign!r}")
    if region is not None and reference is not None:
        raise InputDataError("give either region with charge_sign or reference, not both")
    region = None if region is None else _mask(region, tx.shape, "region")
    wx, wy = _detector_frame(tx, ty, calibration)
    fits = {}
    for candidate in (False, True):
        fits[candidate] = _best_rotation(wx, -wy if candidate else wy, use, calibration)
    choose = flip is None
    if choose:
        flip = fits[True]["mean_square_curl"] < fits[False]["mean_square_curl"]
    flip = bool(flip)
    chosen, other = fits[flip], fits[not flip]
    if choose and other["ratio"] < FLIP_MARGIN * chosen["ratio"]:
        warnings.warn(f"both flips leave nearly the same curl (rms curl/div {chosen['ratio']:.3g} with flip={flip}, "
                      f"{other['ratio']:.3g} with flip={not flip}): the field varies along one direction only and cannot tell "
                      "the flip; give flip (--flip or not)", stacklevel=2)
    psi, polarity, skew = _settle_polarity(chosen, tx.shape, region, charge_sign, reference, wx,
                                           -wy if flip else wy)
    psi_other, _, _ = _settle_polarity(other, tx.shape, region, charge_sign, reference, wx, wy if flip else -wy,
                                       warn=False)
    return RotationFit(rotation_deg=psi, flip=flip, curl_ratio=chosen["ratio"], curl_ratio_other_flip=other["ratio"],
                       rotation_deg_other_flip=psi_other,
                       mean_square_curl=(fits[False]["mean_square_curl"], fits[True]["mean_square_curl"]),
                       polarity=polarity, charge_skew=skew, n_pixels=chosen["n"])


def _best_rotation(wx, wy, use, calibration):
    """Closed-form minimum of the mean squared curl over rotations, for one flip."""
    valid = np.ascontiguousarray(use, dtype=np.uint8)
    fx = np.where(use, wx, 0.0)
    fy = np.where(use, wy, 0.0)
    # ∂/∂x of the field smoothed 1-4-1 along y (and vice versa) is ∂x·L with
    # L = 1 + (Δx²∂x² + Δy²∂y²)/6 to second order: one operator for both axes, so a
    # gradient field stays curl-free (see find_rotation's notes).
    across_y = {name: _smooth_141(f, use, axis=0) for name, f in (("x", fx), ("y", fy))}
    across_x = {name: _smooth_141(f, use, axis=1) for name, f in (("x", fx), ("y", fy))}
    c_map, c_ok = np.empty(fx.shape), np.empty(fx.shape, np.uint8)
    d_map, d_ok = np.empty(fx.shape), np.empty(fx.shape, np.uint8)
    step_x, step_y = calibration.step_x_nm, calibration.step_y_nm
    curl(across_x["x"], across_y["y"], valid, step_x, step_y, c_map, c_ok)
    divergence(across_y["x"], across_x["y"], valid, step_x, step_y, d_map, d_ok)
    ok = (c_ok != 0) & (d_ok != 0)
    n = int(ok.sum())
    if n < 2:
        raise InputDataError(f"the rotation fit needs valid pixels with valid neighbours in x and y; found {n}")
    c, d = c_map[ok], d_map[ok]
    m = np.array([[np.mean(c * c), np.mean(c * d)], [np.mean(c * d), np.mean(d * d)]])
    eigenvalues, vectors = np.linalg.eigh(m)
    if not eigenvalues[1] > 0:
        raise InputDataError("the deflection map has neither divergence nor curl (a uniform deflection?): "
                             "the rotation cannot be found from it; give --detector-rotation")
    lam_min = max(float(eigenvalues[0]), 0.0)
    e = vectors[:, 0]
    return {"psi": math.degrees(math.atan2(e[1], e[0])) % 180.0, "mean_square_curl": lam_min,
            "ratio": math.sqrt(lam_min / eigenvalues[1]), "n": n, "curl": c_map, "div": d_map, "ok": ok}


def _smooth_141(f, use, axis):
    """(f[i−1] + 4 f[i] + f[i+1]) / 6 along ``axis`` over valid pixels, renormalised (C-contiguous)."""
    weight = use.astype(np.float64)
    total = 4 * f * weight
    norm = 4 * weight
    for shift in (1, -1):
        total += _shifted(f * weight, shift, axis)
        norm += _shifted(weight, shift, axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.ascontiguousarray(np.where(use, total / norm, 0.0))


def _shifted(a, shift, axis):
    """a moved by ``shift`` along ``axis``, zero-filled (out[i] = a[i − shift])."""
    out = np.zeros_like(a)
    src = [slice(None)] * 2
    dst = [slice(None)] * 2
    if shift > 0:
        src[axis], dst[axis] = slice(None, -shift), slice(shift, None)
    else:
        src[axis], dst[axis] = slice(-shift, None), slice(None, shift)
    out[tuple(dst)] = a[tuple(src)]
    return out


def _settle_polarity(fit, shape, region, charge_sign, reference, wx, wy, *, warn=True):
    """Choose ψ or ψ + 180° (the curl cannot tell); return (ψ in [0, 360), method, skew)."""
    psi = fit["psi"]
    c, s = math.cos(math.radians(psi)), math.sin(math.radians(psi))
    ok = fit["ok"]
    # Charge-density proxy −∇·θ at ψ: ∇·(R w) = cos ψ ∇·w − sin ψ ∇×w.
    charge = -(c * fit["div"] - s * fit["curl"])
    skew = _skewness(charge[ok])
    if region is not None:
        inside = region & ok
        if not inside.any():
            raise InputDataError("the polarity region holds no pixel where the divergence is defined")
        turn = np.sign(charge[inside].mean()) != charge_sign
        method = "charge sign"
    elif reference is not None:
        try:
            rx, ry = (np.broadcast_to(np.asarray(r, dtype=float), shape) for r in reference)
        except (TypeError, ValueError):
            raise InputDataError(f"reference must be two maps of the scan's shape {shape} or two numbers "
                                 "(θx, θy)") from None
        theta_x = c * wx - s * wy
        theta_y = s * wx + c * wy
        use = np.isfinite(theta_x) & np.isfinite(theta_y) & np.isfinite(rx) & np.isfinite(ry)
        projection = np.sum(theta_x[use] * rx[use] + theta_y[use] * ry[use])
        if projection == 0:
            raise InputDataError("the reference deflection is perpendicular to (or absent from) the data: "
                                 "it cannot settle the 180° ambiguity")
        turn = projection < 0
        method = "reference"
    else:
        turn = skew < 0
        method = "skew"
        noise = 3 * math.sqrt(6.0 / max(fit["n"], 1))
        if warn and abs(skew) < noise:
            warnings.warn(f"the 180° choice of the detector rotation rests on a charge-density skew of {skew:.3g}, "
                          f"within its noise (±{noise:.2g}); give a region of known charge sign or a reference "
                          "deflection", stacklevel=3)
    if turn:
        psi += 180.0
        skew = -skew
    return psi % 360.0, method, skew


def _skewness(values):
    centred = values - values.mean()
    spread = np.sqrt(np.mean(centred**2))
    return float(np.mean(centred**3) / spread**3) if spread > 0 else 0.0


# --------------------------------------------------------------------------------------
# Descan
# --------------------------------------------------------------------------------------

DESCAN_TERMS = ("1", "x", "y", "x^2", "x*y", "y^2")

#: Tukey biweight tuning constant (95 % efficiency for Gaussian residuals).
_TUKEY_C = 4.685
#: Huber tuning constant, for the convex start of the biweight iterations.
_HUBER_C = 1.345


@dataclass(frozen=True)
class DescanFit:
    """A smooth descan surface per deflection component.

    θ(x, y) = Σ cᵢ·termᵢ with the terms ``terms`` of x, y, the column and row offsets in
    pixels from the scan centre ((nx−1)/2, (ny−1)/2).

    Attributes
    ----------
    order : int
        1 (plane) or 2 (quadratic).
    coefficients_x, coefficients_y : ndarray, float64
        Coefficients for θx and θy, in mrad, mrad/px, mrad/px².
    terms : tuple of str
    residual_scale_x, residual_scale_y : float
        Robust (MAD) scale of the residuals over the fitted pixels, in mrad: the noise.
    n_pixels : int
        Pixels the fit used.
    n_rejected : int
        Of those, pixels given zero weight (outliers) in the final biweight iteration.
    """

    order: int
    coefficients_x: np.ndarray
    coefficients_y: np.ndarray
    terms: tuple
    residual_scale_x: float
    residual_scale_y: float
    n_pixels: int
    n_rejected: int

    def surface(self, shape):
        """The descan (θx, θy) in mrad on a scan of ``shape`` (ny, nx)."""
        design = _design(shape, self.order).reshape(*shape, -1)
        return design @ self.coefficients_x, design @ self.coefficients_y

    def subtract(self, theta_x_mrad, theta_y_mrad):
        """The maps minus the descan surface (float64, mrad)."""
        tx, ty = _deflection_pair(theta_x_mrad, theta_y_mrad)
        px, py = self.surface(tx.shape)
        return tx - px, ty - py

    def attrs(self) -> dict:
        """Provenance for a result file's root attributes."""
        return {"descan_order": self.order, "descan_terms": ",".join(self.terms),
                "descan_x_coefficients_mrad": self.coefficients_x, "descan_y_coefficients_mrad": self.coefficients_y,
                "descan_origin": "scan centre, pixels"}


def _design(shape, order):
    ny, nx = shape
    y, x = np.mgrid[0:ny, 0:nx].astype(np.float64)
    x = (x - (nx - 1) / 2).ravel()
    y = (y - (ny - 1) / 2).ravel()
    columns = [np.ones_like(x), x, y]
    if order == 2:
        columns += [x * x, x * y, y * y]
    return np.column_stack(columns)


def fit_descan(theta_x_mrad, theta_y_mrad, *, mask=None, order=1) -> DescanFit:
    """Robust plane or quadratic fit of the deflection over a field-free region.

    Parameters
    ----------
    theta_x_mrad, theta_y_mrad : ndarray, shape (ny, nx)
        Deflection in mrad, scan frame (a specimen scan, or a vacuum reference scan).
    mask : ndarray of bool, shape (ny, nx), optional
        Where the deflection is the descan alone (vacuum, a field-free region). Default:
        every pixel, which is right only for a vacuum scan or a field that is a small,
        outlying part of the scan. NaN pixels are always left out.
    order : {1, 2}
        Plane or quadratic surface.

    Returns
    -------
    DescanFit

    Notes
    -----
    Iteratively reweighted least squares: Huber weights (k = 1.345) from the ordinary
    fit, with the scale re-estimated each iteration as 1.4826 × the median absolute
    residual, then Tukey's biweight (c = 4.685) at the scale the Huber fit ends with.
    Outliers (dead pixels, a particle) thus get zero weight; a field covering most of the
    mask does not, so mask it out.
    """
    tx, ty = _deflection_pair(theta_x_mrad, theta_y_mrad)
    if order not in (1, 2):
        raise InputDataError(f"descan order must be 1 (plane) or 2 (quadratic), got {order!r}")
    use = (_mask(mask, tx.shape, "descan mask") & np.isfinite(tx) & np.isfinite(ty)).ravel()
    design = _design(tx.shape, order)
    n_terms = design.shape[1]
    n = int(use.sum())
    if n < 2 * n_terms:
        raise InputDataError(f"the descan fit of order {order} needs at least {2 * n_terms} valid pixels in its mask, "
                             f"got {n}")
    rank = np.linalg.matrix_rank(design[use])
    if rank < n_terms:
        raise InputDataError(f"the descan mask's pixels do not span the scan in x and y (rank {rank} < {n_terms}); "
                             "a plane needs pixels off one row or column")
    coef_x, scale_x, rejected_x = _robust_fit(design[use], tx.ravel()[use])
    coef_y, scale_y, rejected_y = _robust_fit(design[use], ty.ravel()[use])
    return DescanFit(order=order, coefficients_x=coef_x, coefficients_y=coef_y, terms=DESCAN_TERMS[:n_terms],
                     residual_scale_x=scale_x, residual_scale_y=scale_y, n_pixels=n,
                     n_rejected=int(np.count_nonzero(rejected_x | rejected_y)))


#: Pixels the reweighting iterations use at most (a fixed random subset beyond); the
#: final biweight solves use every pixel.
_ROBUST_SUBSET = 250_000


def _robust_fit(design, values, *, iterations=30, tol=1e-7):
    """Huber, then Tukey biweight IRLS; returns (coefficients, robust scale, rejected)."""
    norms = np.sqrt(np.sum(design**2, axis=0))
    full_a = design / norms
    if values.size > _ROBUST_SUBSET:
        subset = np.sort(np.random.default_rng(0).choice(values.size, _ROBUST_SUBSET, replace=False))
        a, y = full_a[subset], values[subset]
    else:
        a, y = full_a, values

    def solve(a, y, weights):  # weighted normal equations (columns scaled to unit norm)
        weighted = a * weights[:, None]
        return np.linalg.solve(weighted.T @ a, weighted.T @ y)

    def mad(residual):  # residuals of a fit with a constant term are centred on zero
        return 1.4826 * float(np.median(np.abs(residual)))

    def biweight(residual, scale):
        return np.clip(1 - (residual / (_TUKEY_C * scale)) ** 2, 0.0, None) ** 2

    coef = solve(a, y, np.ones_like(y))
    scale = mad(y - a @ coef)
    for kind in ("huber", "tukey"):
        for _ in range(iterations):
            if scale == 0:
                break
            residual = y - a @ coef
            if kind == "huber":
                weights = np.minimum(1.0, _HUBER_C * scale / np.maximum(np.abs(residual), 1e-300))
            else:
                weights = biweight(residual, scale)
            new = solve(a, y, weights)
            converged = np.all(np.abs(new - coef) <= tol * (1 + np.abs(coef)))
            coef = new
            if kind == "huber":  # the biweight keeps the scale the Huber fit ends with
                scale = mad(y - a @ coef)
            if converged:
                break
    weights = np.ones_like(values)
    if scale > 0:
        for _ in range(2 if a is not full_a else 0):
            weights = biweight(values - full_a @ coef, scale)
            coef = solve(full_a, values, weights)
        weights = biweight(values - full_a @ coef, scale)
    return coef / norms, mad(values - full_a @ coef), weights == 0


def remove_descan(theta_x_mrad, theta_y_mrad, *, mask=None, order=1):
    """Fit the descan over ``mask`` (:func:`fit_descan`) and subtract it.

    Returns
    -------
    theta_x, theta_y : ndarray, float64, (ny, nx)
        Corrected deflection in mrad.
    fit : DescanFit
    """
    fit = fit_descan(theta_x_mrad, theta_y_mrad, mask=mask, order=order)
    return (*fit.subtract(theta_x_mrad, theta_y_mrad), fit)


def subtract_reference(theta_x_mrad, theta_y_mrad, reference_x_mrad, reference_y_mrad, *, order=None):
    """Subtract a vacuum reference scan's deflection (same scan size and settings).

    Parameters
    ----------
    theta_x_mrad, theta_y_mrad : ndarray, shape (ny, nx)
        Deflection in mrad, scan frame.
    reference_x_mrad, reference_y_mrad : ndarray, shape (ny, nx)
        The vacuum scan's deflection, reconstructed with the same calibration.
    order : {None, 1, 2}
        None subtracts pixel by pixel (keeps any descan shape, adds the reference's noise);
        1 or 2 subtracts a robust plane or quadratic fitted to the whole reference.

    Returns
    -------
    theta_x, theta_y : ndarray, float64
        Corrected deflection in mrad.
    fit : DescanFit or None
    """
    tx, ty = _deflection_pair(theta_x_mrad, theta_y_mrad)
    rx, ry = _deflection_pair(reference_x_mrad, reference_y_mrad, "reference deflection")
    if rx.shape != tx.shape:
        raise InputDataError(f"the vacuum reference scan has shape {rx.shape}, the data {tx.shape}: a reference "
                             "subtracted pixel by pixel must be the same scan; give order=1 or 2 to fit it")
    if order is None:
        return tx - rx, ty - ry, None
    fit = fit_descan(rx, ry, order=order)
    return (*fit.subtract(tx, ty), fit)


# --------------------------------------------------------------------------------------
# Empirical response
# --------------------------------------------------------------------------------------

RESPONSE_FORMAT = "dpcstem.empirical_response"
RESPONSE_VERSION = 1
_RESPONSE_KEYS = ("format", "version", "tilt_u", "tilt_v", "d_a", "d_b", "table_u", "table_v", "origin", "step",
                  "alpha_mrad", "smoothing")


@dataclass(frozen=True, eq=False)
class EmpiricalResponse:
    """A detector response measured with a beam-tilt series, as an inverse lookup table.

    Plugs into :func:`dpcstem.reconstruct.reconstruct` as ``response=``; it has the
    ``name`` and ``inverse_table()`` of the geometric models.

    Attributes
    ----------
    tilt_u, tilt_v : ndarray, float64, (n,)
        Beam tilts of the series as disc shifts along the detector's A and B axes, in
        units of α.
    d_a, d_b : ndarray, float64, (n,)
        Normalised difference signals (A−C)/S and (B−D)/S measured at those tilts.
    table : InverseTable
        Shift (units of α) for each (dA, dB) on the grid; NaN outside the measured range.
    alpha_mrad : float or None
        α of the calibration the tilts (in mrad) were given with; a calibration used with
        this response must have the same α (:meth:`check`).
    smoothing : float
        Smoothing of the thin-plate-spline fit (0: through every point).
    path, sha256 : str or None
        The file it was loaded from and that file's SHA-256.
    """

    tilt_u: np.ndarray
    tilt_v: np.ndarray
    d_a: np.ndarray
    d_b: np.ndarray
    table: InverseTable
    alpha_mrad: float | None = None
    smoothing: float = 0.0
    path: str | None = field(default=None, compare=False)
    sha256: str | None = field(default=None, compare=False)

    @property
    def name(self) -> str:
        return "empirical"

    def inverse_table(self) -> InverseTable:
        return self.table

    def check(self, calibration: Calibration) -> None:
        """Refuse a calibration whose α differs from the tilt series' (tilts given in mrad).

        The table holds shifts in units of α; a reconstruction multiplies them by the
        calibration's α, so the two must agree.
        """
        if self.alpha_mrad is not None and not math.isclose(self.alpha_mrad, calibration.alpha_mrad, rel_tol=1e-6):
            where = f" ({Path(self.path).name})" if self.path else ""
            raise CalibrationError(
                f"the empirical response{where} was measured at alpha = {self.alpha_mrad:g} mrad, the calibration "
                f"has alpha_mrad = {calibration.alpha_mrad:g}; give the tilt series' alpha")

    def attrs(self) -> dict:
        """Provenance for a result file's root attributes."""
        out = {"response": self.name, "response_tilts": len(self.tilt_u)}
        if self.path is not None:
            out["response_file"] = Path(self.path).name
            out["response_sha256"] = self.sha256
        if self.alpha_mrad is not None:
            out["response_alpha_mrad"] = self.alpha_mrad
        return out


def difference_signals(segments, *, gains=None, offsets=None):
    """Normalised differences dA = (A−C)/S, dB = (B−D)/S of segment counts.

    Parameters
    ----------
    segments : array_like, shape (4, ...)
        Counts of A, B, C, D (e.g. (4, n) means over vacuum scans at n tilts).
    gains, offsets : array_like, shape (4,), optional
        True counts = (raw − offset) / gain.

    Returns
    -------
    d_a, d_b : ndarray, float64, shape (...)
    """
    seg = np.asarray(segments, dtype=np.float64)
    if seg.ndim < 1 or seg.shape[0] != 4:
        raise InputDataError(f"segments must have A, B, C, D along the first axis, got shape {seg.shape}")
    extra = (1,) * (seg.ndim - 1)
    if offsets is not None:
        seg = seg - np.asarray(offsets, float).reshape(4, *extra)
    if gains is not None:
        seg = seg / np.asarray(gains, float).reshape(4, *extra)
    total = seg.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (seg[0] - seg[2]) / total, (seg[1] - seg[3]) / total


def fit_response(tilt_x, tilt_y, d_a, d_b, *, calibration: Calibration | None = None,
                 smoothing=0.0) -> EmpiricalResponse:
    """An empirical detector response from difference signals at known beam tilts.

    Parameters
    ----------
    tilt_x, tilt_y : array_like, shape (n,)
        Beam tilts. Without ``calibration``: the shift (u, v) of the disc along the
        detector's A and B segment axes, in units of α. With it: the tilt (θx, θy) in mrad
        in the scan frame, turned into (u, v) with the calibration's detector rotation,
        flip and α. The tilts should cover, in both directions, the largest deflection the
        specimen gives: signals outside the range the series measured are not
        extrapolated (those pixels become invalid).
    d_a, d_b : array_like, shape (n,)
        Normalised difference signals (A−C)/S and (B−D)/S at those tilts
        (:func:`difference_signals`).
    calibration : Calibration, optional
        For tilts in mrad in the scan frame; its α is recorded, and a reconstruction with
        this response must use the same α.
    smoothing : float
        Thin-plate-spline smoothing (scipy ``RBFInterpolator``); 0 passes through every
        point, larger values average the series' noise.

    Returns
    -------
    EmpiricalResponse

    Notes
    -----
    The inverse map (dA, dB) → (u, v) is fitted directly, both axes together, by a
    thin-plate spline with a linear polynomial part. This assumes nothing about why the
    response departs from the geometric model (a blurred disc edge, a non-uniform disc,
    segment gaps, amplifier non-linearity): it is exact for a linear response and smooth
    in between the tilts. It is tabulated on the grid of :class:`~dpcstem.detector.InverseTable`
    inside the convex hull of the measured signals, NaN outside.
    """
    from scipy.interpolate import RBFInterpolator
    from scipy.spatial import Delaunay, QhullError

    arrays = []
    for name, value in (("tilt_x", tilt_x), ("tilt_y", tilt_y), ("d_a", d_a), ("d_b", d_b)):
        arr = np.asarray(value, dtype=np.float64).ravel()
        if not np.all(np.isfinite(arr)):
            raise InputDataError(f"the tilt series' {name} holds non-finite values")
        arrays.append(arr)
    tu, tv, da, db = arrays
    if not (tu.size == tv.size == da.size == db.size):
        raise InputDataError(f"tilt_x, tilt_y, d_a, d_b must have one length, got {tu.size}, {tv.size}, "
                             f"{da.size}, {db.size}")
    alpha_mrad = None
    if calibration is not None:
        alpha_mrad = calibration.alpha_mrad
        wu, wv = _detector_frame(tu, tv, calibration)
        tu, tv = wu / alpha_mrad, wv / alpha_mrad
    if tu.size < 9:
        raise InputDataError(f"a tilt series needs at least 9 tilts spread over both axes, got {tu.size}")
    if not smoothing >= 0:
        raise InputDataError(f"smoothing must be zero or positive, got {smoothing!r}")
    signals = np.column_stack([da, db])
    try:
        hull = Delaunay(signals)
    except QhullError:
        raise InputDataError("the tilt series' signals lie on a line: tilt the beam along both axes") from None
    try:
        inverse = RBFInterpolator(signals, np.column_stack([tu, tv]), kernel="thin_plate_spline",
                                  smoothing=float(smoothing), degree=1)
    except (np.linalg.LinAlgError, ValueError) as exc:
        raise InputDataError(f"the tilt series cannot be fitted ({exc}); are two tilts repeated with "
                             "different signals?") from None
    reach = float(np.max(np.abs(signals)))
    grid = np.linspace(-reach, reach, TABLE_SIZE)
    grid_b, grid_a = np.meshgrid(grid, grid, indexing="ij")
    points = np.column_stack([grid_a.ravel(), grid_b.ravel()])
    inside = hull.find_simplex(points) >= 0
    shift = np.full((points.shape[0], 2), np.nan)
    shift[inside] = inverse(points[inside])
    table = InverseTable(u=shift[:, 0].reshape(grid_a.shape), v=shift[:, 1].reshape(grid_a.shape),
                         origin=-reach, step=float(grid[1] - grid[0]), name="empirical")
    return EmpiricalResponse(tilt_u=tu, tilt_v=tv, d_a=da, d_b=db, table=table, alpha_mrad=alpha_mrad,
                             smoothing=float(smoothing))


def save_response(path, response: EmpiricalResponse, *, overwrite=False):
    """Write an empirical response to a ``.npz`` file, atomically.

    The file holds the tilt series and the tabulated inverse, so reloading gives the same
    table without refitting.
    """
    from .io.results import atomic_output

    alpha = math.nan if response.alpha_mrad is None else response.alpha_mrad
    table = response.table
    with atomic_output(path, overwrite=overwrite) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, format=np.array(RESPONSE_FORMAT), version=np.array(RESPONSE_VERSION),
                     tilt_u=response.tilt_u, tilt_v=response.tilt_v, d_a=response.d_a, d_b=response.d_b,
                     table_u=table.u, table_v=table.v, origin=np.array(table.origin), step=np.array(table.step),
                     alpha_mrad=np.array(alpha), smoothing=np.array(response.smoothing))


def load_response(path) -> EmpiricalResponse:
    """Read an empirical response written by :func:`save_response`.

    Raises
    ------
    UnreadableFileError
        The file is missing, not an ``.npz`` archive, or not an empirical response.
    MissingMetadataError
        An entry of the format is missing.
    """
    import zipfile

    from .io.results import sha256_file

    path = Path(path)
    if not path.is_file():
        raise UnreadableFileError(f"{path}: no such response file (an .npz written by dpcstem.calibrate.save_response)")
    try:
        archive = np.load(path, allow_pickle=False)
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise UnreadableFileError(f"{path}: not a readable empirical response file (.npz): {exc}") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise UnreadableFileError(f"{path}: not a readable empirical response file (.npz): it holds one array, "
                                  "not an archive")
    with archive:
        if "format" in archive.files and str(archive["format"]) != RESPONSE_FORMAT:
            raise UnreadableFileError(f"{path}: format {str(archive['format'])!r} is not an empirical response "
                                      f"({RESPONSE_FORMAT!r})")
        missing = [key for key in _RESPONSE_KEYS if key not in archive.files]
        if missing:
            raise MissingMetadataError(f"{path}: the empirical response file lacks {', '.join(missing)}")
        try:
            data = {key: archive[key] for key in _RESPONSE_KEYS}
        except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
            raise UnreadableFileError(f"{path}: not a readable empirical response file (.npz): {exc}") from None
    if int(data["version"]) > RESPONSE_VERSION:
        raise UnreadableFileError(f"{path}: empirical response format version {int(data['version'])} is newer than "
                                  f"this dpcstem reads ({RESPONSE_VERSION})")
    table_u, table_v = np.asarray(data["table_u"], np.float64), np.asarray(data["table_v"], np.float64)
    if table_u.ndim != 2 or table_u.shape != table_v.shape or table_u.shape[0] != table_u.shape[1] \
            or table_u.shape[0] < 2 or not float(data["step"]) > 0:
        raise UnreadableFileError(f"{path}: the inverse table must be two square arrays of one shape with a positive "
                                  f"step, got {table_u.shape}, {table_v.shape}, step {float(data['step'])}")
    alpha = float(data["alpha_mrad"])
    table = InverseTable(u=table_u, v=table_v, origin=float(data["origin"]), step=float(data["step"]),
                         name="empirical")
    return EmpiricalResponse(tilt_u=np.asarray(data["tilt_u"], float), tilt_v=np.asarray(data["tilt_v"], float),
                             d_a=np.asarray(data["d_a"], float), d_b=np.asarray(data["d_b"], float), table=table,
                             alpha_mrad=None if math.isnan(alpha) else alpha, smoothing=float(data["smoothing"]),
                             path=str(path), sha256=sha256_file(path))
