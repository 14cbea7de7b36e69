"""Four segment images → beam deflection in the scan frame, in one pass over memory.

Per pixel: subtract offsets and divide by gains, form the normalised differences
dA = (A − C)/S and dB = (B − D)/S with S = A + B + C + D, invert the detector response to a
shift (u, v) along the segment axes (units of α), and rotate it into the scan frame with
``axes`` (row 0: A axis, row 1: B axis, as (x, y) components), times α.

A pixel whose total S is not positive and finite (nor within float32), with a raw segment at
the detector's full scale (``saturation``), with |dA| or |dB| above 1 (no counts of electrons
give that), or whose signals fall outside the response's range, is written as NaN with
``valid = 0``.

The arithmetic is float64; only the outputs and the interpolation coefficients are
float32. float32 arithmetic does not hold the precision: the rounding of A and C is a few
ulps of the sum S, so dA = (A − C)/S carries an error of about 10⁻⁷ absolute, which is
10⁻³ of a small deflection (dA ≈ 10⁻⁴, a 1 µrad beam tilt at α = 10 mrad), and the table
coordinate of such a signal loses as much. The loops have no branches (invalid pixels are
selected, not skipped), so the compiler vectorises the normalisation; the exact response's
bilinear lookup reads one 32-byte record of interpolation coefficients per pixel (a gather
the compiler does not vectorise), in a second pass over each row.
"""

import numba
import numpy as np

from .config import FASTMATH as _FAST

# The segment sum is stored as float32: a larger one is refused rather than stored as inf.
_FLOAT32_MAX = float(np.finfo(np.float32).max)


@numba.njit(inline="always", fastmath=_FAST)
def _normalised(segments, iy, ix, offset, inv_gain, saturation):
    """(dA, dB, S, ok) of one pixel; ok is False for a pixel no electrons give."""
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
    # Counts of electrons cannot give |A − C| > A + B + C + D: such a pixel is not physical.
    ok = (total > 0) & (total <= _FLOAT32_MAX) & (~saturated) & (abs(da) <= 1) & (abs(db) <= 1)
    return da, db, total, ok


@numba.njit(parallel=True, cache=True, fastmath=_FAST)
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
    scale = alpha / slope
    ax, ay = scale * axes[0, 0], scale * axes[0, 1]
    bx, by = scale * axes[1, 0], scale * axes[1, 1]
    nan = np.nan
    for iy in numba.prange(ny):
        for ix in range(nx):
            da, db, total, ok = _normalised(segments, iy, ix, offset, inv_gain, saturation)
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


@numba.njit(parallel=True, cache=True, fastmath=_FAST)
def deflection_table(segments, offset, inv_gain, table_u, table_v, origin, step, axes, alpha,
                     theta_x, theta_y, total_out, valid, saturation=np.inf):
    """Deflection with an inverse response given as a lookup table (bilinear interpolation).

    ``table_u[i, j]``, ``table_v[i, j]`` hold the shift for dA = origin + j·step and
    dB = origin + i·step; NaN entries mark signals no shift produces. Other parameters as in
    :func:`deflection_linear` (``total_out`` may be None).
    """
    ny, nx = segments.shape[1], segments.shape[2]
    m = table_u.shape[0] - 1
    coef = bilinear_coefficients(table_u, table_v)
    inv_step = 1.0 / step
    last = float(m)
    ax, ay = alpha * axes[0, 0], alpha * axes[0, 1]
    bx, by = alpha * axes[1, 0], alpha * axes[1, 1]
    nan = np.nan
    zero = 0.0
    for iy in numba.prange(ny):
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
            fj = col[ix]
            fi = row[ix]
            i = np.int32(fi)
            j = np.int32(fj)
            wx = fj - j
            wy = fi - i
            wxy = wx * wy
            k = i * m + j
            u = coef[k, 0] + coef[k, 1] * wx + coef[k, 2] * wy + coef[k, 3] * wxy
            v = coef[k, 4] + coef[k, 5] * wx + coef[k, 6] * wy + coef[k, 7] * wxy
            ok = inside[ix] & (u == u) & (v == v)
            theta_x[iy, ix] = (u * ax + v * bx) if ok else nan
            theta_y[iy, ix] = (u * ay + v * by) if ok else nan
            valid[iy, ix] = ok
