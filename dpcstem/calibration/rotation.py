"""Detector rotation and flip from the data.

:func:`find_rotation` finds the detector rotation ψ and flip that make the scan-frame
deflection curl-free (a field from charges has no curl), in closed form for each flip;
:func:`apply_rotation` re-expresses a deflection map with a given ψ and flip. Both go
through the one frame rotation, :meth:`dpcstem.Calibration.to_detector_frame` /
:meth:`~dpcstem.Calibration.to_scan_frame`.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

from .. import _validate
from ..errors import InputDataError
from ..kernels import curl, divergence
from .core import Calibration, apply_matrix, frame_matrix


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
    skew_noise : float
        The skew's standard error for uncorrelated pixels, sqrt(6/N).
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
    skew_noise: float
    n_pixels: int

    def calibration(self, calibration: Calibration) -> Calibration:
        """``calibration`` with this rotation and flip."""
        return calibration.replace(detector_rotation_deg=self.rotation_deg, flip=self.flip)

    def attrs(self) -> dict:
        """Provenance for a result file's root attributes."""
        return {"rotation_fit_deg": self.rotation_deg, "rotation_fit_flip": self.flip,
                "rotation_fit_curl_ratio": self.curl_ratio,
                "rotation_fit_curl_ratio_other_flip": self.curl_ratio_other_flip,
                "rotation_fit_polarity": self.polarity, "rotation_fit_charge_skew": self.charge_skew,
                "rotation_fit_skew_noise": self.skew_noise}


def _mask(mask, shape, name):
    return np.ones(shape, bool) if mask is None else _validate.mask(name, mask, shape)


def _detector_frame(tx, ty, calibration):
    """α·(u, v): the deflection along the A and B axes of ``calibration``'s detector (identity for None)."""
    return (tx, ty) if calibration is None else calibration.to_detector_frame(tx, ty)


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
    tx, ty = _validate.pair("deflection", theta_x_mrad, theta_y_mrad)
    wx, wy = _detector_frame(tx, ty, measured_with)
    return apply_matrix(frame_matrix(rotation_deg, flip), wx, wy)


def find_rotation(theta_x_mrad, theta_y_mrad, calibration: Calibration, *, valid=None, flip=None, region=None,
                  charge_sign=None, reference=None, warn_polarity=True) -> RotationFit:
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
    warn_polarity : bool
        Warn when the skew that settles the 180° branch is within three times its noise
        (the caller may warn in its own words instead).

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
    tx, ty = _validate.pair("deflection", theta_x_mrad, theta_y_mrad)
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
                                           -wy if flip else wy, warn=warn_polarity)
    psi_other, _, _ = _settle_polarity(other, tx.shape, region, charge_sign, reference, wx, wy if flip else -wy,
                                       warn=False)
    return RotationFit(rotation_deg=psi, flip=flip, curl_ratio=chosen["ratio"], curl_ratio_other_flip=other["ratio"],
                       rotation_deg_other_flip=psi_other,
                       mean_square_curl=(fits[False]["mean_square_curl"], fits[True]["mean_square_curl"]),
                       polarity=polarity, charge_skew=skew, skew_noise=math.sqrt(6.0 / max(chosen["n"], 1)),
                       n_pixels=chosen["n"])


def curl_ratio(theta_x_mrad, theta_y_mrad, calibration: Calibration, *, valid=None) -> float:
    """rms curl / rms divergence of a scan-frame deflection map, as :func:`find_rotation` measures it.

    Near 0 when the rotation and flip the map was made with are right (a field from
    charges has no curl); near 1 or above when they are not.
    """
    tx, ty = _validate.pair("deflection", theta_x_mrad, theta_y_mrad)
    use = _mask(valid, tx.shape, "valid") & np.isfinite(tx) & np.isfinite(ty)
    fit = _best_rotation(tx, ty, use, calibration)
    c, d = fit["curl"][fit["ok"]], fit["div"][fit["ok"]]
    div = float(np.mean(d * d))
    return math.sqrt(float(np.mean(c * c)) / div) if div > 0 else math.inf


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
        theta_x, theta_y = apply_matrix(frame_matrix(psi), wx, wy)
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
