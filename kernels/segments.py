"""Four segment images → beam deflection in the scan frame, in one pass over memory.

Per pixel: subtract offsets and divide by gains, form the normalised differences
dA = (A − C)/S and dB = (B − D)/S with S = A + B + C + D, invert the detector response to a
shift (u, v) along the segment axes (units of α), and rotate it into the scan frame with
``axes`` (row 0: A axis, row 1: B axis, as (x, y) components), times α.

A pixel whose total S is not positive and finite (nor within float32), with a raw segment at
the detector's full scale (``saturation``), with |dA| or |dB| above 1 (no counts of electrons
give that), or whose signals fall outside the response's range, is written as NaN with
``valid = 0``.
"""

import math

import numba
import numpy as np

from .config import FASTMATH as _FAST

# The segment sum is stored as float32: a larger one is refused rather than stored as inf.
_FLOAT32_MAX = float(np.finfo(np.float32).max)


@numba.njit(inline="always", fastmath=_FAST)
def _normalised(segments, iy, ix, offset, inv_gain, saturation):
    ra = segments[0, iy, ix]
    rb = segments[1, iy, ix]
    rc = segments[2, iy, ix]
    rd = segments[3, iy, ix]
    a = (ra - offset[0]) * inv_gain[0]
    b = (rb - offset[1]) * inv_gain[1]
    c = (rc - offset[2]) * inv_gain[2]
    d = (rd - offset[3]) * inv_gain[3]
    total = a + b + c + d
    saturated = ra >= saturation or rb >= saturation or rc >= saturation or rd >= saturation
    ok = total > 0.0 and total <= _FLOAT32_MAX and not saturated
    if not ok:
        return 0.0, 0.0, total, False
    inv = 1.0 / total
    da = (a - c) * inv
    db = (b - d) * inv
    # Counts of electrons cannot give |A − C| > A + B + C + D: such a pixel is not physical.
    return da, db, total, abs(da) <= 1.0 and abs(db) <= 1.0


@numba.njit(inline="always", fastmath=_FAST)
def _store(iy, ix, u, v, total, axes, alpha, theta_x, theta_y, total_out, valid):
    theta_x[iy, ix] = alpha * (u * axes[0, 0] + v * axes[1, 0])
    theta_y[iy, ix] = alpha * (u * axes[0, 1] + v * axes[1, 1])
    total_out[iy, ix] = total
    valid[iy, ix] = 1


@numba.njit(inline="always")
def _reject(iy, ix, total, theta_x, theta_y, total_out, valid):
    theta_x[iy, ix] = np.nan
    theta_y[iy, ix] = np.nan
    total_out[iy, ix] = total
    valid[iy, ix] = 0


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
    theta_x, theta_y, total_out : (ny, nx) float32, written
    valid : (ny, nx) uint8, written
    saturation : float
        A raw segment value at or above it (the detector's full scale) makes the pixel invalid.
    """
    ny, nx = segments.shape[1], segments.shape[2]
    inv_slope = 1.0 / slope
    for iy in numba.prange(ny):
        for ix in range(nx):
            da, db, total, ok = _normalised(segments, iy, ix, offset, inv_gain, saturation)
            if ok:
                _store(iy, ix, da * inv_slope, db * inv_slope, total, axes, alpha, theta_x, theta_y, total_out, valid)
            else:
                _reject(iy, ix, total, theta_x, theta_y, total_out, valid)


@numba.njit(inline="always", fastmath=_FAST)
def _bilinear(table, fi, fj):
    i = int(fi)
    j = int(fj)
    wy = fi - i
    wx = fj - j
    return ((1.0 - wy) * ((1.0 - wx) * table[i, j] + wx * table[i, j + 1])
            + wy * ((1.0 - wx) * table[i + 1, j] + wx * table[i + 1, j + 1]))


@numba.njit(inline="always", fastmath=_FAST)
def _table_shift(da, db, table_u, table_v, origin, inv_step):
    """Shift (u, v) for signals (da, db) by bilinear lookup; ok is False outside the table."""
    n = table_u.shape[0]
    fj = (da - origin) * inv_step
    fi = (db - origin) * inv_step
    if not (fj >= 0.0 and fi >= 0.0 and fj < n - 1 and fi < n - 1):
        return 0.0, 0.0, False
    u = _bilinear(table_u, fi, fj)
    v = _bilinear(table_v, fi, fj)
    return u, v, not (math.isnan(u) or math.isnan(v))


@numba.njit(parallel=True, cache=True, fastmath=_FAST)
def deflection_table(segments, offset, inv_gain, table_u, table_v, origin, step, axes, alpha,
                     theta_x, theta_y, total_out, valid, saturation=np.inf):
    """Deflection with an inverse response given as a lookup table (bilinear interpolation).

    ``table_u[i, j]``, ``table_v[i, j]`` hold the shift for dA = origin + j·step and
    dB = origin + i·step; NaN entries mark signals no shift produces. Other parameters as in
    :func:`deflection_linear`.
    """
    ny, nx = segments.shape[1], segments.shape[2]
    inv_step = 1.0 / step
    for iy in numba.prange(ny):
        for ix in range(nx):
            da, db, total, ok = _normalised(segments, iy, ix, offset, inv_gain, saturation)
            u, v, inside = _table_shift(da, db, table_u, table_v, origin, inv_step)
            if ok and inside:
                _store(iy, ix, u, v, total, axes, alpha, theta_x, theta_y, total_out, valid)
            else:
                _reject(iy, ix, total, theta_x, theta_y, total_out, valid)
