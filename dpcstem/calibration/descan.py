"""Descan: the deflection the scan coils add, removed by one robust fit.

One fit (:func:`fit_descan`: Huber then Tukey-biweight reweighted least squares of a plane
or quadratic over a field-free region) and one coordinate convention (column and row
offsets in pixels from the scan centre, :func:`descan_design`) serve every path: the
segment reconstruction, the vacuum reference, the bias series and the 4D centre of mass.
The simulators make their descan with :func:`descan_surface`, the surface the fit evaluates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .. import _validate
from ..errors import CalibrationError, InputDataError


DESCAN_TERMS = ("1", "x", "y", "x^2", "x*y", "y^2")
#: Orders of the descan surface: plane, quadratic.
DESCAN_ORDERS = (1, 2)


def check_order(order, name="descan_order") -> int:
    """A descan order, 1 (plane) or 2 (quadratic); anything else (a bool too) is refused, naming ``name``."""
    if isinstance(order, (bool, np.bool_)) or order not in DESCAN_ORDERS:
        raise CalibrationError(f"{name} must be 1 (plane) or 2 (quadratic), got {order!r}")
    return int(order)

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
        return descan_surface(self.coefficients_x, self.coefficients_y, shape)

    def subtract(self, theta_x_mrad, theta_y_mrad):
        """The maps minus the descan surface (float64, mrad)."""
        tx, ty = _validate.pair("deflection", theta_x_mrad, theta_y_mrad)
        px, py = self.surface(tx.shape)
        return tx - px, ty - py

    def attrs(self, calibration=None, prefix="descan") -> dict:
        """Provenance for a result file's root attributes: order, terms and coefficients.

        ``calibration``: the fit was made in the detector frame (ψ = 0, no flip); its
        coefficients are recorded in the scan frame, turned by this calibration's rotation.
        ``prefix`` names the attributes (``descan``, ``descan_region``, ...).
        """
        cx, cy = self.coefficients_x, self.coefficients_y
        if calibration is not None:
            cx, cy = calibration.to_scan_frame(cx, cy)
        return {f"{prefix}_order": self.order, f"{prefix}_terms": ",".join(self.terms),
                f"{prefix}_x_coefficients_mrad": np.asarray(cx, float),
                f"{prefix}_y_coefficients_mrad": np.asarray(cy, float), f"{prefix}_origin": "scan centre, pixels"}


def descan_surface(coefficients_x, coefficients_y, shape):
    """The descan (θx, θy) of a surface on a scan of ``shape`` (ny, nx), float64.

    θ = Σ cᵢ·termᵢ with the terms :data:`DESCAN_TERMS` (3 coefficients: a plane, 6: a
    quadratic) of x, y, the column and row offsets in pixels from the scan centre
    ((nx−1)/2, (ny−1)/2); the coefficients in the unit of θ per pixel to the power of the term.

    Examples
    --------
    >>> tx, ty = descan_surface([1.0, 0.5, 0.0], [0.0, 0.0, 2.0], (3, 3))
    >>> tx[1].tolist(), ty[:, 1].tolist()
    ([0.5, 1.0, 1.5], [-2.0, 0.0, 2.0])
    """
    cx, cy = np.asarray(coefficients_x, dtype=np.float64), np.asarray(coefficients_y, dtype=np.float64)
    design = descan_design(shape, 2 if cx.size == 6 else 1).reshape(*shape, -1)
    return design @ cx, design @ cy


def descan_design(shape, order):
    """Design matrix (ny·nx, terms) of the descan surface: the :data:`DESCAN_TERMS` of its order."""
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
    tx, ty = _validate.pair("deflection", theta_x_mrad, theta_y_mrad)
    order = check_order(order, "order")
    region = np.ones(tx.shape, bool) if mask is None else _validate.mask("descan mask", mask, tx.shape)
    use = (region & np.isfinite(tx) & np.isfinite(ty)).ravel()
    design = descan_design(tx.shape, order)
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
_ROBUST_SUBSET = 50_000


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


@dataclass(frozen=True)
class PlaneCheck:
    """Whether a deflection map holds a plane across the scan: the mark of a descan left in it.

    Attributes
    ----------
    fit : DescanFit
        The robust plane (:func:`fit_descan`, order 1) over every valid pixel.
    plane_mrad : float
        max |plane| over the scan (the magnitude of (θx, θy)), mrad: how far off the
        deflection is where the plane is descan that nothing removed.
    left_mrad : float
        95th percentile of |θ − plane| over the valid pixels, mrad: the deflection the map
        holds besides the plane.
    significance : float
        The largest slope of the plane over its standard error (the residual scale over
        the spread of the pixels' x or y): below a few, the plane is noise.
    """

    fit: DescanFit
    plane_mrad: float
    left_mrad: float
    significance: float

    #: A plane is reported when it exceeds this fraction of the deflection left besides it...
    RATIO = 0.05
    #: ...and its largest slope this many standard errors...
    SIGNIFICANCE = 5.0
    #: ...measured on at least this many pixels (on fewer, the residual scale is itself noise).
    MIN_PIXELS = 64

    @property
    def holds_plane(self) -> bool:
        return (self.fit.n_pixels >= self.MIN_PIXELS and self.significance > self.SIGNIFICANCE
                and self.plane_mrad > self.RATIO * self.left_mrad)


def check_plane(theta_x_mrad, theta_y_mrad, *, valid=None) -> PlaneCheck | None:
    """Look for a plane across the scan in a deflection map from which no descan was removed.

    A descan moves the pattern linearly with the scan position; a field rarely spans the
    scan as a plane. So a robust plane (:func:`fit_descan`: the field's own pixels weigh
    little when they are a minority) that is significant and not small against the rest
    of the map is most likely descan that nothing removed, though a field that spans the
    scan (a uniform charge, or more field on one side) gives one too: the check says the
    map *may* be that far off, and by how much.

    Returns
    -------
    PlaneCheck, or None where the valid pixels cannot hold a plane (fewer than 6, or on one
    line).
    """
    tx, ty = _validate.pair("deflection", theta_x_mrad, theta_y_mrad)
    use = np.isfinite(tx) & np.isfinite(ty)
    if valid is not None:
        use &= _validate.mask("valid", valid, tx.shape)
    try:
        fit = fit_descan(tx, ty, mask=use, order=1)
    except InputDataError:
        return None
    px, py = fit.surface(tx.shape)
    plane = float(np.max(np.hypot(px, py)))
    left = float(np.percentile(np.hypot(tx - px, ty - py)[use], 95))
    y, x = np.nonzero(use)
    spread = (float(np.sqrt(np.sum((x - x.mean()) ** 2))), float(np.sqrt(np.sum((y - y.mean()) ** 2))))
    t = []
    for coefficients, scale in ((fit.coefficients_x, fit.residual_scale_x), (fit.coefficients_y, fit.residual_scale_y)):
        for slope, s in zip(coefficients[1:], spread):
            error = scale / s if s > 0 else math.inf
            t.append(abs(slope) / error if error > 0 else (math.inf if slope != 0 else 0.0))
    return PlaneCheck(fit=fit, plane_mrad=plane, left_mrad=left, significance=max(t))


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
    tx, ty = _validate.pair("deflection", theta_x_mrad, theta_y_mrad)
    rx, ry = _validate.pair("reference deflection", reference_x_mrad, reference_y_mrad)
    if rx.shape != tx.shape:
        raise InputDataError(f"the vacuum reference scan has shape {rx.shape}, the data {tx.shape}: a reference "
                             "subtracted pixel by pixel must be the same scan; give order=1 or 2 to fit it")
    if order is None:
        return tx - rx, ty - ry, None
    fit = fit_descan(rx, ry, order=order)
    return (*fit.subtract(tx, ty), fit)
