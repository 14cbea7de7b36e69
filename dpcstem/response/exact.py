"""The exact response of a quadrant detector to a sharp, uniform bright-field disc, and its inversion.

:class:`QuadrantResponse` gives the difference signals of :mod:`~dpcstem.response.geometry`
for a shift and inverts them, both axes together: by Newton's method to full precision
(:meth:`QuadrantResponse.invert`) or through the :class:`~dpcstem.response.table.InverseTable`
the kernel reads (built once per geometry, cached on disk).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from .geometry import S_MAX, shift_signals
from .table import TABLE_SIZE, InversePolynomial, InverseTable, polynomial_value

@dataclass(frozen=True)
class QuadrantResponse:
    """Exact response of a quadrant detector with collection radii in units of α."""

    inner: float = 0.0
    outer: float = math.inf

    @classmethod
    def from_calibration(cls, calibration) -> "QuadrantResponse":
        return cls(calibration.inner_over_alpha, calibration.outer_over_alpha)

    @property
    def name(self) -> str:
        return "exact"

    def signals(self, u, v):
        """(dA, dB, S) for shifts (u, v) in units of α along the A and B axes."""
        return shift_signals(u, v, inner=self.inner, outer=self.outer)

    @functools.cached_property
    def linear_slope(self) -> float:
        """d(dA)/du at zero shift: 2√2/π for a full detector, half that with outer = α."""
        h = 1e-5
        plus, _, _ = self.signals(h, 0.0)
        minus, _, _ = self.signals(-h, 0.0)
        return float((plus - minus) / (2 * h))

    def inverse_table(self) -> InverseTable:
        """The lookup table that inverts both signals together (built once per geometry)."""
        return _inverse_table(self.inner, self.outer)

    def inverse_polynomial(self) -> InversePolynomial:
        """The polynomial the kernel evaluates near the centre, closer to the exact inverse than the table
        (within :data:`POLY_TOLERANCE`); fitted once per geometry."""
        return _inverse_polynomial(self.inner, self.outer)

    def invert(self, d_a, d_b):
        """Shifts (u, v) in units of α from difference signals, to full precision (not for images).

        Newton's method started from the inverse table; NaN where the table refuses the
        signals (no shift gives them, or two do).
        """
        d_a, d_b = np.broadcast_arrays(np.asarray(d_a, float), np.asarray(d_b, float))
        table = self.inverse_table()
        u0, v0 = table.lookup(d_a, d_b)
        known = np.isfinite(u0) & np.isfinite(v0)
        u, v = np.full(d_a.shape, np.nan), np.full(d_a.shape, np.nan)
        if known.any():
            u[known], v[known] = _newton_invert(self, d_a[known], d_b[known], start=(u0[known], v0[known]),
                                                radius=fold_radius(self))
        return u, v

def _newton_invert(response, d_a, d_b, *, start=None, iterations=40, tol=1e-12, radius=S_MAX):
    """Solve signals(u, v) = (d_a, d_b) for s ≤ ``radius``; NaN where no such shift exists.

    Damped Newton iterations run on the points that have not converged yet.
    """
    d_a, d_b = np.broadcast_arrays(np.asarray(d_a, float), np.asarray(d_b, float))
    k = response.linear_slope
    u, v = (d_a / k, d_b / k) if start is None else start
    u, v = _project(np.array(u, float), np.array(v, float), 0.9 * radius)
    active = np.ones(d_a.shape, bool)
    with np.errstate(divide="ignore", invalid="ignore"):
        for _ in range(iterations):
            nu, nv, du, dv = _newton_step(response, u[active], v[active], d_a[active], d_b[active], 1e-7, radius)
            u[active], v[active] = nu, nv
            moving = np.abs(du) + np.abs(dv) >= tol
            active[active] = moving
            if not active.any():
                break
    fa, fb, _ = response.signals(u, v)
    miss = ~(np.hypot(fa - d_a, fb - d_b) <= 1e-9)
    return np.where(miss, np.nan, u), np.where(miss, np.nan, v)


def _newton_step(response, u, v, d_a, d_b, h, radius):
    """One damped Newton step on signals(u, v) = (d_a, d_b), Jacobian by forward differences.

    Where the full step would not reduce the residual it is quartered.
    """
    fa, fb, _ = response.signals(u, v)
    ra, rb = fa - d_a, fb - d_b
    ua, ub, _ = response.signals(u + h, v)
    va, vb, _ = response.signals(u, v + h)
    j11, j21 = (ua - fa) / h, (ub - fb) / h
    j12, j22 = (va - fa) / h, (vb - fb) / h
    det = j11 * j22 - j12 * j21
    du = np.nan_to_num((j22 * ra - j12 * rb) / det, nan=0.0, posinf=0.0, neginf=0.0)
    dv = np.nan_to_num((-j21 * ra + j11 * rb) / det, nan=0.0, posinf=0.0, neginf=0.0)
    nu, nv = _project(u - du, v - dv, radius)
    na, nb, _ = response.signals(nu, nv)
    worse = (na - d_a) ** 2 + (nb - d_b) ** 2 > ra**2 + rb**2
    if worse.any():
        du = np.where(worse, 0.25 * du, du)
        dv = np.where(worse, 0.25 * dv, dv)
        nu, nv = _project(u - du, v - dv, radius)
    return nu, nv, du, dv


def _project(u, v, radius):
    s = np.hypot(u, v)
    scale = np.where(s > radius, radius / np.maximum(s, 1e-300), 1.0)
    return u * scale, v * scale


#: Largest error (units of α) of the inverse polynomial against the exact inverse over the shifts
#: it covers: below the table's own interpolation error (10⁻⁵–10⁻⁴ α), 10⁻⁵ mrad at α = 10 mrad.
POLY_TOLERANCE = 1e-6
#: Shift radii (units of α) tried for the polynomial, largest first: the first whose fit keeps
#: within POLY_TOLERANCE is used (the response has a kink where the disc edge meets a collection
#: edge, and a fold near the rim, where no polynomial holds).
POLY_SHIFT_REACHES = (0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1)


@functools.lru_cache(maxsize=8)
def _inverse_polynomial(inner, outer):
    """Fit u = dA·P(dA², dB²) (and v by the A ↔ B symmetry) to the exact response over the largest
    disc of shifts of :data:`POLY_SHIFT_REACHES` where it holds to :data:`POLY_TOLERANCE`."""
    from ..kernels.segments import POLY_TERMS

    response = QuadrantResponse(inner, outer)
    rng = np.random.default_rng(0)
    phi_rim = np.linspace(0, 2 * np.pi, 721)
    # A fold (two shifts, one signal) inside a disc, or a kink, shows as a fit that misses there.
    for reach_s in POLY_SHIFT_REACHES:
        # fit on a polar grid with points on the rim; check on random shifts and a finer rim
        s, p = np.meshgrid(reach_s * np.sqrt(np.linspace(0, 1, 24)), np.linspace(0, 2 * np.pi, 97)[:-1])
        fit_u, fit_v = (s * np.cos(p)).ravel(), (s * np.sin(p)).ravel()
        s_check = reach_s * np.concatenate([np.sqrt(rng.uniform(0, 1, 6000)), np.ones(phi_rim.size)])
        p_check = np.concatenate([rng.uniform(0, 2 * np.pi, 6000), phi_rim])
        check_u, check_v = s_check * np.cos(p_check), s_check * np.sin(p_check)
        d_a, d_b, _ = response.signals(fit_u, fit_v)
        x, y = d_a * d_a, d_b * d_b
        # u alone: the grid is symmetric under A ↔ B, so v = dB·P(dB², dA²) is fitted as well. The
        # normal equations of the scaled columns by einsum: a multithreaded BLAS least-squares call
        # of this size takes 100× longer on a shared machine, and the check below judges the fit.
        design = d_a[:, None] * np.column_stack([(x - y)**k * (x + y)**a * (x * y)**b for k, a, b in POLY_TERMS])
        norm = np.sqrt(np.einsum("ki,ki->i", design, design))
        design /= norm
        coefficients = np.linalg.solve(np.einsum("ki,kj->ij", design, design),
                                       np.einsum("ki,k->i", design, fit_u)) / norm
        c_a, c_b, _ = response.signals(check_u, check_v)
        cx, cy = c_a * c_a, c_b * c_b
        error = float(np.max(np.hypot(c_a * polynomial_value(coefficients, cx, cy) - check_u,
                                      c_b * polynomial_value(coefficients, cy, cx) - check_v)))
        if error <= POLY_TOLERANCE:
            rim_a, rim_b = c_a[-phi_rim.size:], c_b[-phi_rim.size:]
            # every signal inside this radius comes from a shift inside reach_s (the map is one-to-one)
            reach = 0.999 * float(np.min(np.hypot(rim_a, rim_b)))
            return InversePolynomial(coefficients=coefficients, reach=reach, shift_reach=reach_s, max_error=error)
    return InversePolynomial(coefficients=np.zeros(len(POLY_TERMS)), reach=0.0, shift_reach=0.0, max_error=0.0)


#: A shift is in the folding zone when the response's Jacobian determinant there is below
#: this fraction of its largest value: signals from there may have two answers.
FOLD_THRESHOLD = 1e-3


def fold_radius(response, *, radii=None, azimuths=361, h=1e-6):
    """The smallest shift (units of α) where the response folds (Jacobian ≤ 0), or S_MAX if it never does.

    Inside the disc of this radius the response is one-to-one.
    """
    radii = np.linspace(0.01, S_MAX, 98) if radii is None else radii
    phi = np.linspace(0, 2 * np.pi, azimuths)
    s, p = np.meshgrid(radii, phi, indexing="ij")
    u, v = s * np.cos(p), s * np.sin(p)
    a0, b0, _ = response.signals(u, v)
    a1, b1, _ = response.signals(u + h, v)
    a2, b2, _ = response.signals(u, v + h)
    det = ((a1 - a0) * (b2 - b0) - (a2 - a0) * (b1 - b0)) / h**2
    folded = (det <= FOLD_THRESHOLD * np.abs(det).max()).any(axis=1)
    return float(radii[np.argmax(folded)] - (radii[1] - radii[0])) if folded.any() else S_MAX


@functools.lru_cache(maxsize=8)
def _inverse_table(inner, outer, size=TABLE_SIZE):
    """The table for one geometry, from the on-disk cache when it was built before."""
    from ..io.table_cache import cache_path, load_table, store_table

    path = cache_path(inner, outer, size)
    cached = load_table(path)
    if cached is not None:
        u, v, origin, step = cached
        return InverseTable(u=u, v=v, origin=origin, step=step, name="exact")
    table = _build_inverse_table(inner, outer, size)
    store_table(path, table)
    return table


def _build_inverse_table(inner, outer, size):
    from matplotlib.path import Path as Polygon
    from scipy.interpolate import LinearNDInterpolator

    response = QuadrantResponse(inner, outer)
    reach_s = fold_radius(response)
    # Sample the forward map on a polar grid of the one-to-one disc; its rim bounds the table.
    radii = reach_s * np.sqrt(np.linspace(0, 1, 40))
    phi = np.linspace(0, 2 * np.pi, 241)[:-1]
    su = (radii[:, None] * np.cos(phi)).ravel()
    sv = (radii[:, None] * np.sin(phi)).ravel()
    sa, sb, _ = response.signals(su, sv)
    rim = np.column_stack([sa, sb]).reshape(len(radii), len(phi), 2)[-1]
    reach = float(np.max(np.abs(rim)))
    grid = np.linspace(-reach, reach, size)
    step = float(grid[1] - grid[0])
    d_b, d_a = np.meshgrid(grid, grid, indexing="ij")
    inside = Polygon(rim).contains_points(np.column_stack([d_a.ravel(), d_b.ravel()])).reshape(d_a.shape)
    if reach_s < S_MAX:
        inside &= ~_folded_image(response, reach_s, grid[0], step, size)
    guess = LinearNDInterpolator(np.column_stack([sa, sb]), np.column_stack([su, sv]))(d_a[inside], d_b[inside])
    u_in, v_in = _newton_invert(response, d_a[inside], d_b[inside], start=(guess[:, 0], guess[:, 1]), iterations=20,
                                radius=reach_s)
    u = np.full(d_a.shape, np.nan)
    v = np.full(d_a.shape, np.nan)
    u[inside], v[inside] = u_in, v_in
    return InverseTable(u=u, v=v, origin=-reach, step=step, name="exact")


def _folded_image(response, reach_s, origin, step, size):
    """Table cells (and their neighbours) whose signals a shift beyond ``reach_s`` also produces."""
    radii = np.linspace(reach_s, S_MAX, 120)
    phi = np.linspace(0, 2 * np.pi, 2881)
    s, p = np.meshgrid(radii, phi, indexing="ij")
    d_a, d_b, _ = response.signals(s * np.cos(p), s * np.sin(p))
    hit = np.zeros((size, size), bool)
    j = np.clip(np.rint((d_a.ravel() - origin) / step).astype(int), 0, size - 1)
    i = np.clip(np.rint((d_b.ravel() - origin) / step).astype(int), 0, size - 1)
    hit[i, j] = True
    from scipy import ndimage

    return ndimage.binary_dilation(hit)
