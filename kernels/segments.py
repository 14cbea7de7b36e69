"""Four segment images → beam deflection in the scan frame, in one pass over memory.

Per pixel: subtract offsets and divide by gains, form the normalised differences
dA = (A − C)/S and dB = (B − D)/S with S = A + B + C + D, invert the detector response to a
shift (u, v) along the segment axes (units of α), and rotate it into the scan frame with
``axes`` (row 0: A axis, row 1: B axis, as (x, y) components), times α.

A pixel whose total S is not positive and finite (nor within float32), with a raw segment at
the detector's full scale (``saturation``), with |dA| or |dB| above 1 (no counts of electrons
give that), or whose signals fall outside the response's range, is written as NaN with
``valid = 0``.

The normalisation is float32 arithmetic, 8 pixels a vector instead of 4, ordered so that no large
term cancels (:func:`_normalised32`). Formed from the gain-corrected A and C, A − C in float32 would
carry the rounding of A and C, a few ulps of S: 10⁻⁷ absolute in dA, 10⁻³ of a small deflection
(dA ≈ 10⁻⁴, a 1 µrad beam tilt at α = 10 mrad). Instead the raw difference comes first:
A − C = g_A·((r_A − r_C) − (o_A − o_C)) + (g_A − g_C)·(r_C − o_C) (r raw, o offset, g inverse gain),
where r_A − r_C is exact for integers below 2²⁴ and exact or correctly rounded for float32 input
(wider inputs form the raw terms in float64 and round once), and each offset is subtracted as two
float32 parts, so a detector baseline of 3·10⁴ counts under a signal of 10² costs nothing. With
u = 2⁻²⁴, the error is

    |δdA| ≤ 8u·(|dA| + |g_A − g_C|/g_C · C/S),   |δS| ≤ 4u·S   (likewise dB with B, D)

(measured at most 5.7u and 2.8u over uint16, float32 and float64 inputs, gains 0.5–2, offsets
to 3.3·10⁴, deflections 10⁻⁴–0.3): float32 rounding of dA itself where the opposite segments'
gains are equal (a small deflection keeps its relative precision), and at most 2u·|Δg/g| absolute
otherwise (10⁻⁸ for gains 10 % apart: 10⁻⁴ of a 1 µrad deflection, far below its shot noise).
Both are within the float32 rounding the kernels are held to against their float64 oracles. A
pixel whose S, |dA| or |dB| lies within that error of a limit of validity may be judged on the
other side of it than in float64. The loops have no branches (invalid pixels are selected, not
skipped), so the compiler vectorises them.

The exact response is inverted, where the signals are small enough (in practice nearly every
pixel), by a polynomial u = dA·P(dA², dB²), v = dB·P(dB², dA²) evaluated in float32 in the same
pass (:data:`POLY_TERMS`: symmetric and antisymmetric parts, so both shifts cost one evaluation):
a relative error of a few float32 ulps of the shift, whatever its size. Beyond its reach, and for
a response given only as a table (empirical), a bilinear lookup from float64 signals reads one
32-byte record of interpolation coefficients per pixel (a gather the compiler does not
vectorise, about four times the cost), in a separate pass over each row.
"""

import numba
import numpy as np
from numba import types
from numba.extending import overload

from .config import FASTMATH as _FAST

# The float32 normalisation's error bound rests on the order of its operations (an offset split into
# two float32 parts is subtracted part by part): reassociation would undo it. Nothing here is a reduction.
_ORDERED = _FAST - {"reassoc"}

# The segment sum is stored as float32: a larger one is refused rather than stored as inf.
_FLOAT32_MAX = float(np.finfo(np.float32).max)

# Input types whose every value is a float32 (integers below 2²⁴): differences of two of them are
# formed in float32, exactly for integers, correctly rounded for floats. Wider types go through float64.
_NARROW = (types.uint8, types.int8, types.uint16, types.int16, types.float16, types.float32)


def _centred(r, hi, lo, o):
    """Raw value ``r`` less the offset ``o`` (= hi + lo in float32), as float32."""


def _centred_difference(x, y, hi, lo, d):
    """(x − y) − d for raw values x, y and the offset difference d (= hi + lo), as float32."""


def _at_or_above(r, s32, s64):
    """r ≥ s64, with s32 the least float32 at or above s64."""


@overload(_centred, jit_options={"fastmath": _ORDERED}, inline="always")
def _centred_impl(r, hi, lo, o):
    if r in _NARROW:
        return lambda r, hi, lo, o: (np.float32(r) - hi) - lo
    return lambda r, hi, lo, o: np.float32(np.float64(r) - o)


@overload(_centred_difference, jit_options={"fastmath": _ORDERED}, inline="always")
def _centred_difference_impl(x, y, hi, lo, d):
    if x in _NARROW:
        return lambda x, y, hi, lo, d: ((np.float32(x) - np.float32(y)) - hi) - lo
    return lambda x, y, hi, lo, d: np.float32((np.float64(x) - np.float64(y)) - d)


@overload(_at_or_above, jit_options={"fastmath": _ORDERED}, inline="always")
def _at_or_above_impl(r, s32, s64):
    if r in _NARROW:
        return lambda r, s32, s64: np.float32(r) >= s32
    return lambda r, s32, s64: np.float64(r) >= s64


@numba.njit(fastmath=_ORDERED)
def _split(value):
    """(hi, lo): float32 parts with hi + lo = value to about 2⁻⁴⁸ relative."""
    hi = np.float32(value)
    return hi, np.float32(value - np.float64(hi))


@numba.njit(fastmath=_ORDERED)
def _constants(offset, inv_gain, saturation):
    """The constants of :func:`_normalised32`, formed once per call in float64: (float32 tuple,
    float64 tuple), flat (a parallel loop takes no nested tuples)."""
    o = (offset[0], offset[1], offset[2], offset[3])
    g = (inv_gain[0], inv_gain[1], inv_gain[2], inv_gain[3])
    h0, l0 = _split(o[0])
    h1, l1 = _split(o[1])
    h2, l2 = _split(o[2])
    h3, l3 = _split(o[3])
    d_ac, d_bd = o[0] - o[2], o[1] - o[3]
    dh0, dl0 = _split(d_ac)
    dh1, dl1 = _split(d_bd)
    s32 = np.float32(saturation)
    if np.float64(s32) < saturation:
        s32 = np.nextafter(s32, np.float32(np.inf))
    k32 = (h0, h1, h2, h3, l0, l1, l2, l3,
           np.float32(g[0]), np.float32(g[1]), np.float32(g[2]), np.float32(g[3]),
           np.float32(g[0] - g[2]), np.float32(g[1] - g[3]), dh0, dl0, dh1, dl1, s32)
    k64 = (o[0], o[1], o[2], o[3], d_ac, d_bd, np.float64(saturation))
    return k32, k64


@numba.njit(fastmath=_ORDERED)
def _normalised32(segments, iy, ix, k32, k64):
    """(dA, dB, S, ok) of one pixel in float32 (constants from :func:`_constants`);
    ok is False for a pixel no electrons give."""
    ra = segments[0, iy, ix]
    rb = segments[1, iy, ix]
    rc = segments[2, iy, ix]
    rd = segments[3, iy, ix]
    ca = _centred(ra, k32[0], k32[4], k64[0])
    cb = _centred(rb, k32[1], k32[5], k64[1])
    cc = _centred(rc, k32[2], k32[6], k64[2])
    cd = _centred(rd, k32[3], k32[7], k64[3])
    total = (ca * k32[8] + cb * k32[9]) + (cc * k32[10] + cd * k32[11])
    # A − C = g_A·((r_A − r_C) − (o_A − o_C)) + (g_A − g_C)·(r_C − o_C): no large term cancels
    a_c = k32[8] * _centred_difference(ra, rc, k32[14], k32[15], k64[4]) + k32[12] * cc
    b_d = k32[9] * _centred_difference(rb, rd, k32[16], k32[17], k64[5]) + k32[13] * cd
    s32, s64 = k32[18], k64[6]
    saturated = (_at_or_above(ra, s32, s64) | _at_or_above(rb, s32, s64) | _at_or_above(rc, s32, s64)
                 | _at_or_above(rd, s32, s64))
    inv = np.float32(1.0) / total
    da = a_c * inv
    db = b_d * inv
    # Counts of electrons cannot give |A − C| > A + B + C + D: such a pixel is not physical.
    ok = ((total > 0) & (total <= np.float32(_FLOAT32_MAX)) & (~saturated) & (abs(da) <= 1)
          & (abs(db) <= 1))
    return da, db, total, ok


@numba.njit(inline="always", fastmath=_FAST)
def _normalised(segments, iy, ix, offset, inv_gain, saturation):
    """(dA, dB, S, ok) of one pixel in float64, for the table lookups."""
    ra = segments[0, iy, ix]
    rb = segments[1, iy, ix]
    rc = segments[2, iy, ix]
    rd = segments[3, iy, ix]
    a = (ra - offset[0]) * inv_gain[0]
    b = (rb - offset[1]) * inv_gain[1]
    c = (rc - offset[2]) * inv_gain[2]
    d = (rd - offset[3]) * inv_gain[3]
    total = a + b + c + d
    saturated = (ra >= saturation) | (rb >= saturation) | (rc >= saturation) | (rd >= saturation)
    inv = 1.0 / total
    da = (a - c) * inv
    db = (b - d) * inv
    ok = (total > 0) & (total <= _FLOAT32_MAX) & (~saturated) & (abs(da) <= 1) & (abs(db) <= 1)
    return da, db, total, ok


@numba.njit(parallel=True, cache=True, fastmath=_ORDERED)
def deflection_linear(segments, offset, inv_gain, slope, axes, alpha, theta_x, theta_y, total_out, valid,
                      saturation=np.inf):
    """Deflection with the linear response dA = slope·u, dB = slope·v.

    Parameters
    ----------
    segments : (4, ny, nx) array, any real dtype
        A, B, C, D.
    offset, inv_gain : (4,) float64
        Subtracted, then multiplied, per segment.
    slope : float
        d(dA)/du at zero shift.
    axes : (2, 2) float64
        Scan-frame (x, y) components of the A axis (row 0) and the B axis (row 1).
    alpha : float
        Scale of a unit shift (the convergence semi-angle, in the output's unit).
    theta_x, theta_y : (ny, nx) float32, written
    total_out : (ny, nx) float32 or None, written
        The gain-corrected segment sum; None when the caller does not need it.
    valid : (ny, nx) uint8, written
    saturation : float
        A raw segment value at or above it (the detector's full scale) makes the pixel invalid.
    """
    ny, nx = segments.shape[1], segments.shape[2]
    k32, k64 = _constants(offset, inv_gain, saturation)
    scale = alpha / slope
    ax, ay = np.float32(scale * axes[0, 0]), np.float32(scale * axes[0, 1])
    bx, by = np.float32(scale * axes[1, 0]), np.float32(scale * axes[1, 1])
    nan = np.float32(np.nan)
    for iy in numba.prange(ny):
        for ix in range(nx):
            da, db, total, ok = _normalised32(segments, iy, ix, k32, k64)
            theta_x[iy, ix] = (da * ax + db * bx) if ok else nan
            theta_y[iy, ix] = (da * ay + db * by) if ok else nan
            if total_out is not None:
                total_out[iy, ix] = total
            valid[iy, ix] = ok


@numba.njit(cache=True, fastmath=_FAST)
def bilinear_coefficients(table_u, table_v):
    """Per table cell (i, j), the eight float32 coefficients of the bilinear interpolants
    u = c0 + c1·wx + c2·wy + c3·wx·wy and v = c4 + … (wx, wy ∈ [0, 1) within the cell).

    Returns an ((n−1)², 8) array, row i·(n−1) + j: one 32-byte record per cell.
    """
    m = table_u.shape[0] - 1
    out = np.empty((m * m, 8), np.float32)
    for i in range(m):
        for j in range(m):
            k = i * m + j
            for q, t in enumerate((table_u, table_v)):
                p00, p01, p10, p11 = t[i, j], t[i, j + 1], t[i + 1, j], t[i + 1, j + 1]
                out[k, 4 * q] = p00
                out[k, 4 * q + 1] = p01 - p00
                out[k, 4 * q + 2] = p10 - p00
                out[k, 4 * q + 3] = p11 - p10 - p01 + p00
    return out


#: Terms (k, a, b) of the inverse polynomial P: (x − y)^k·(x + y)^a·(x·y)^b, in the order of its
#: coefficients. The 16 symmetric terms (k = 0, a + 2b ≤ 6) and the 12 antisymmetric ones (k = 1,
#: a + 2b ≤ 5) span the polynomials of total degree ≤ 6 in x and y, and P(y, x) is the symmetric
#: part less the antisymmetric one: both shifts from one evaluation of each part, 28 multiply-adds
#: a pixel where two Horner evaluations of the monomials x^i·y^j take 54.
POLY_TERMS = (tuple((0, a, b) for b in range(4) for a in range(7 - 2 * b))
              + tuple((1, a, b) for b in range(3) for a in range(6 - 2 * b)))


@numba.njit(inline="always", fastmath=_FAST)
def _inverse_polynomial(c, x, y):
    """(P(x, y), P(y, x)) over :data:`POLY_TERMS`, each part by Horner's rule in x + y for each power
    of x·y, then in x·y (float32)."""
    e1 = x + y
    e2 = x * y
    r0 = c[0] + e1 * (c[1] + e1 * (c[2] + e1 * (c[3] + e1 * (c[4] + e1 * (c[5] + e1 * c[6])))))
    r1 = c[7] + e1 * (c[8] + e1 * (c[9] + e1 * (c[10] + e1 * c[11])))
    r2 = c[12] + e1 * (c[13] + e1 * c[14])
    symmetric = r0 + e2 * (r1 + e2 * (r2 + e2 * c[15]))
    t0 = c[16] + e1 * (c[17] + e1 * (c[18] + e1 * (c[19] + e1 * (c[20] + e1 * c[21]))))
    t1 = c[22] + e1 * (c[23] + e1 * (c[24] + e1 * c[25]))
    t2 = c[26] + e1 * c[27]
    antisymmetric = (x - y) * (t0 + e2 * (t1 + e2 * t2))
    return symmetric + antisymmetric, symmetric - antisymmetric


@numba.njit(parallel=True, cache=True, fastmath=_ORDERED)
def deflection_table(segments, offset, inv_gain, table_u, table_v, origin, step, axes, alpha,
                     theta_x, theta_y, total_out, valid, saturation=np.inf, poly=None, poly_reach=0.0):
    """Deflection with an inverse response given as a lookup table (bilinear interpolation), or
    as a polynomial near the centre with the table beyond.

    ``table_u[i, j]``, ``table_v[i, j]`` hold the shift for dA = origin + j·step and
    dB = origin + i·step; NaN entries mark signals no shift produces. Other parameters as in
    :func:`deflection_linear` (``total_out`` may be None).

    poly : tuple of 28 float32, optional
        Coefficients of P over :data:`POLY_TERMS` (a tuple: the compiler keeps them in
        registers). Where dA² + dB² < ``poly_reach``², the shift is u = dA·P(dA², dB²),
        v = dB·P(dB², dA²) (a response symmetric under A ↔ C and A ↔ B), evaluated in float32
        from the float32 signals (relative error a few float32 ulps); the table elsewhere.
        Without it, the table everywhere.
    poly_reach : float
        Radius in (dA, dB) inside which the polynomial is used.
    """
    ny, nx = segments.shape[1], segments.shape[2]
    m = table_u.shape[0] - 1
    coef = bilinear_coefficients(table_u, table_v)
    inv_step = 1.0 / step
    last = float(m)
    ax, ay = alpha * axes[0, 0], alpha * axes[0, 1]
    bx, by = alpha * axes[1, 0], alpha * axes[1, 1]
    ax32, ay32, bx32, by32 = np.float32(ax), np.float32(ay), np.float32(bx), np.float32(by)
    reach2_32 = np.float32(poly_reach * poly_reach)
    k32, k64 = _constants(offset, inv_gain, saturation)
    words = (nx + 7) // 8
    nan = np.nan
    nan32 = np.float32(np.nan)
    zero = 0.0
    for iy in numba.prange(ny):
        if poly is None:
            # Pass 1 (vectorised): signals → fractional table coordinates, or (0, 0) where refused.
            col = np.empty(nx)
            row = np.empty(nx)
            inside = np.empty(nx, np.bool_)
            for ix in range(nx):
                da, db, total, ok = _normalised(segments, iy, ix, offset, inv_gain, saturation)
                fj = (da - origin) * inv_step
                fi = (db - origin) * inv_step
                ok &= (fj >= 0) & (fi >= 0) & (fj < last) & (fi < last)
                col[ix] = fj if ok else zero
                row[ix] = fi if ok else zero
                inside[ix] = ok
                if total_out is not None:
                    total_out[iy, ix] = total
            # Pass 2: one coefficient record per pixel, then the rotation into the scan frame.
            for ix in range(nx):
                u, v = _bilinear(coef, m, col[ix], row[ix])
                ok = inside[ix] & (u == u) & (v == v)
                theta_x[iy, ix] = (u * ax + v * bx) if ok else nan
                theta_y[iy, ix] = (u * ay + v * by) if ok else nan
                valid[iy, ix] = ok
        else:
            # One vectorised float32 pass: the polynomial where the signals lie inside its reach
            # (NaN elsewhere), and which valid pixels lie beyond it ("rim").
            rim = np.zeros(words * 8, np.uint8)  # padded to whole 8-byte words, read a word at a time below
            for ix in range(nx):
                da, db, total, ok = _normalised32(segments, iy, ix, k32, k64)
                x = da * da
                y = db * db
                near = ok & (x + y < reach2_32)
                p_xy, p_yx = _inverse_polynomial(poly, x, y)
                u = da * p_xy
                v = db * p_yx
                theta_x[iy, ix] = (u * ax32 + v * bx32) if near else nan32
                theta_y[iy, ix] = (u * ay32 + v * by32) if near else nan32
                valid[iy, ix] = near
                rim[ix] = ok & ~near
                if total_out is not None:
                    total_out[iy, ix] = total
            # The few pixels beyond the reach, through the table: eight flags a test, so a row
            # without them costs an eighth of a scan.
            flags = rim.view(np.uint64)
            for w in range(words):
                if flags[w] == 0:
                    continue
                for ix in range(8 * w, min(8 * w + 8, nx)):
                    if rim[ix]:
                        da, db, total, ok = _normalised(segments, iy, ix, offset, inv_gain, saturation)
                        fj = (da - origin) * inv_step
                        fi = (db - origin) * inv_step
                        ok &= (fj >= 0) & (fi >= 0) & (fj < last) & (fi < last)
                        u, v = _bilinear(coef, m, fj if ok else zero, fi if ok else zero)
                        ok &= (u == u) & (v == v)
                        theta_x[iy, ix] = (u * ax + v * bx) if ok else nan
                        theta_y[iy, ix] = (u * ay + v * by) if ok else nan
                        valid[iy, ix] = ok


@numba.njit(inline="always", fastmath=_FAST)
def _bilinear(coef, m, fj, fi):
    """(u, v) at fractional table column ``fj`` and row ``fi`` from the coefficient records."""
    i = np.int32(fi)
    j = np.int32(fj)
    wx = fj - j
    wy = fi - i
    wxy = wx * wy
    k = i * m + j
    u = coef[k, 0] + coef[k, 1] * wx + coef[k, 2] * wy + coef[k, 3] * wxy
    v = coef[k, 4] + coef[k, 5] * wx + coef[k, 6] * wy + coef[k, 7] * wxy
    return u, v
