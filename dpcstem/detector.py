"""The response of a four-quadrant annular detector to a shifted bright-field disc.

Geometry (DESIGN.md §3): a uniform disc of radius α (the convergence semi-angle) is shifted
by θ = s·α. Four quadrant segments A, B, C, D lie between collection angles β_in and β_out,
centred at azimuths 0°, 90°, 180°, 270° of the *detector frame* (the frame whose first axis
is segment A's; :meth:`dpcstem.Calibration.segment_axes` maps it to the scan frame). The
counts in a segment are the overlap area of the disc with it.

Everything here works in units of α: a shift (u, v) along the A and B axes, collection radii
``inner = β_in/α`` and ``outer = β_out/α``. The normalised difference signals are
``dA = (A − C)/(A + B + C + D)`` and ``dB = (B − D)/(A + B + C + D)``.

The overlap has a closed form while the disc covers the detector centre (s < 1): along
azimuth t from the shift direction the disc edge lies at ρ(t) = s·cos t + sqrt(1 − s² sin² t),
and ½∫ρ² dt = G(t) = ½[t + ½s² sin 2t + w·sqrt(1 − w²) + arcsin w] with w = s·sin t. ρ(t) ≥ r
exactly where |t| ≤ T(r), cos T(r) = (r² + s² − 1)/(2rs), so a segment's area is a sum of
G differences and constant-radius sector terms.

References
----------
Close, Chen, Shibata, Findlay, Ultramicroscopy 159 (2015) 124, doi:10.1016/j.ultramic.2015.09.002
Brown et al., Ultramicroscopy 182 (2017) 169, doi:10.1016/j.ultramic.2017.07.002
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from .errors import InputDataError

#: Largest shift (in units of α) the exact inversion covers; the model needs s < 1.
S_MAX = 0.98

#: Points per axis of the inverse lookup table in difference-signal space.
TABLE_SIZE = 257

_SEGMENT_CENTRES = np.arange(4) * (np.pi / 2)
_HALF_WIDTH = np.pi / 4


def _edge_angle(r, s):
    """T(r): the disc edge lies beyond radius r for |t| ≤ T(r) (t from the shift direction)."""
    if r == 0:
        return np.full_like(s, np.pi)
    if math.isinf(r):
        return np.zeros_like(s)
    c = (r * r + s * s - 1.0) / (2.0 * r * s)
    return np.arccos(np.clip(c, -1.0, 1.0))


def _g(t, s):
    """Antiderivative of ρ(t)²/2."""
    w = s * np.sin(t)
    return 0.5 * (t + 0.5 * s * s * np.sin(2 * t) + w * np.sqrt(np.clip(1 - w * w, 0, None)) + np.arcsin(w))


def _clipped(a, b, big_t, s, *, with_integral=True):
    """Length of [a, b] ∩ [−T, T] and ∫ρ²/2 over it."""
    lo = np.maximum(a, -big_t)
    hi = np.minimum(b, big_t)
    inside = hi > lo
    length = np.where(inside, hi - lo, 0.0)
    if not with_integral:
        return length, None
    integral = np.where(inside, _g(np.where(inside, hi, 0), s) - _g(np.where(inside, lo, 0), s), 0.0)
    return length, integral


def segment_areas(u, v, *, inner=0.0, outer=math.inf):
    """Overlap of a unit disc shifted by (u, v) with the four quadrant segments.

    Parameters
    ----------
    u, v : array_like
        Shift of the disc along the A and B segment axes, in units of α. Must have
        sqrt(u² + v²) < 1 (the disc covers the detector centre).
    inner, outer : float
        Inner and outer collection radii in units of α (``outer`` may be ``inf``).

    Returns
    -------
    ndarray, shape (4, ...)
        Areas of A, B, C, D in units of α²; a centred disc on a full detector gives π/4 each.
    """
    u, v = np.broadcast_arrays(np.asarray(u, dtype=float), np.asarray(v, dtype=float))
    s = np.hypot(u, v)
    if np.any(s >= 1):
        raise InputDataError(f"the exact detector model needs shifts below α (s < 1), got s up to {s.max():.3f}")
    s = np.maximum(s, 1e-12)
    phi_s = np.arctan2(v, u)
    t_in = _edge_angle(inner, s)
    t_out = _edge_angle(outer, s)
    areas = np.empty((4, *s.shape))
    for k, centre in enumerate(_SEGMENT_CENTRES):
        a = np.mod(centre - _HALF_WIDTH - phi_s + np.pi, 2 * np.pi) - np.pi  # in [−π, π)
        b = a + 2 * _HALF_WIDTH
        area = np.zeros_like(s)
        # The segment may wrap past +π: split it into [a, min(b, π)] and [−π, b − 2π].
        for lo, hi in ((a, np.minimum(b, np.pi)), (np.full_like(a, -np.pi), np.maximum(b - 2 * np.pi, -np.pi))):
            len_in, int_in = _clipped(lo, hi, t_in, s)
            area += int_in - 0.5 * inner**2 * len_in
            if not math.isinf(outer):
                len_out, int_out = _clipped(lo, hi, t_out, s)
                area += -(int_out - 0.5 * inner**2 * len_out) + 0.5 * (outer**2 - inner**2) * len_out
        areas[k] = area
    return areas


def difference_signals(u, v, *, inner=0.0, outer=math.inf):
    """Normalised differences (dA, dB) and the total S = A+B+C+D for a shift (u, v) in units of α."""
    a, b, c, d = segment_areas(u, v, inner=inner, outer=outer)
    total = a + b + c + d
    return (a - c) / total, (b - d) / total, total


@dataclass(frozen=True)
class InverseTable:
    """The inverse response on a regular grid of difference signals.

    ``u[i, j]`` and ``v[i, j]`` are the shifts (units of α, detector frame) whose signals are
    ``dA = origin + j·step`` and ``dB = origin + i·step``; NaN where no shift below
    :data:`S_MAX` gives those signals.
    """

    u: np.ndarray
    v: np.ndarray
    origin: float
    step: float
    name: str

    def lookup(self, d_a, d_b):
        """Bilinear interpolation of (u, v) at signals (d_a, d_b), as the kernel does it; NaN outside."""
        n = self.u.shape[0]
        fj = (np.asarray(d_a, float) - self.origin) / self.step
        fi = (np.asarray(d_b, float) - self.origin) / self.step
        outside = ~((fj >= 0) & (fi >= 0) & (fj < n - 1) & (fi < n - 1))
        fj, fi = np.where(outside, 0.0, fj), np.where(outside, 0.0, fi)
        j, i = fj.astype(int), fi.astype(int)
        wx, wy = fj - j, fi - i

        def at(t):
            return (1 - wy) * ((1 - wx) * t[i, j] + wx * t[i, j + 1]) + wy * ((1 - wx) * t[i + 1, j] + wx * t[i + 1, j + 1])

        return np.where(outside, np.nan, at(self.u)), np.where(outside, np.nan, at(self.v))


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
        return difference_signals(u, v, inner=self.inner, outer=self.outer)

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


@dataclass(frozen=True)
class LinearResponse:
    """The first-order response dA = k·u, dB = k·v with the geometric slope k."""

    slope: float

    @property
    def name(self) -> str:
        return "linear"

    @classmethod
    def from_calibration(cls, calibration) -> "LinearResponse":
        return cls(QuadrantResponse.from_calibration(calibration).linear_slope)


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


#: Bumped whenever the way tables are built changes, so cached tables are rebuilt.
TABLE_VERSION = 2


@functools.lru_cache(maxsize=8)
def _inverse_table(inner, outer, size=TABLE_SIZE):
    """The table for one geometry, from the on-disk cache when it was built before."""
    path = _cache_path(inner, outer, size)
    if path is not None and path.is_file():
        try:
            with np.load(path) as f:
                return InverseTable(u=f["u"], v=f["v"], origin=float(f["origin"]), step=float(f["step"]), name="exact")
        except (OSError, ValueError, KeyError):
            pass  # a damaged cache entry is rebuilt
    table = _build_inverse_table(inner, outer, size)
    if path is not None:
        _store(path, table)
    return table


def _cache_path(inner, outer, size):
    """Where a table is cached: ``$DPCSTEM_CACHE``, else the user's cache folder; None if unusable."""
    import os
    from pathlib import Path

    root = os.environ.get("DPCSTEM_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "dpcstem")
    name = f"response_v{TABLE_VERSION}_{size}_{inner!r}_{outer!r}.npz".replace("inf", "infinite")
    return Path(root) / name


def _store(path, table):
    import os
    import tempfile

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".table.", suffix=".npz", dir=path.parent)
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, u=table.u, v=table.v, origin=table.origin, step=table.step)
        os.replace(tmp, path)
    except OSError:
        pass  # no cache: the table is rebuilt next time


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


def gains_from_vacuum(vacuum, *, offsets=None):
    """Per-segment gains from a vacuum reference (no specimen, beam undeflected on average).

    With the beam centred every segment collects the same area, so the mean of each segment
    over the vacuum scan, divided by the mean over segments, is its relative gain.

    Parameters
    ----------
    vacuum : array_like, shape (4, ny, nx) or (4,)
        Vacuum segment images (or their means), order A, B, C, D, in counts.
    offsets : array_like, shape (4,), optional
        Dark offsets to subtract first, in counts.

    Returns
    -------
    ndarray, shape (4,), float64
        Gains normalised to a mean of 1.
    """
    vac = np.asarray(vacuum, dtype=np.float64)
    if vac.ndim not in (1, 3) or vac.shape[0] != 4:
        raise InputDataError(f"a vacuum reference needs 4 segments (4, ny, nx), got shape {vac.shape}")
    means = np.nanmean(vac.reshape(4, -1), axis=1) - (0.0 if offsets is None else np.asarray(offsets, float))
    if not np.all(np.isfinite(means)) or np.any(means <= 0):
        raise InputDataError(f"vacuum reference segment means must be positive after offsets, got {means}")
    return means / means.mean()
