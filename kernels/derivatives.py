"""Finite-difference divergence and curl of a 2-D vector map with masked pixels.

A derivative at a pixel uses the central difference where both neighbours are valid, the
one-sided difference toward the one valid neighbour otherwise (and at the edges), and is
undefined (NaN, invalid) when the pixel or both its neighbours along that axis are invalid.
An invalid pixel thus never enters a neighbour's derivative.
"""

import numba
import numpy as np

from .config import FASTMATH


@numba.njit(inline="always", fastmath=FASTMATH)
def _d_dx(f, valid, iy, ix, step):
    nx = f.shape[1]
    left = ix > 0 and valid[iy, ix - 1] != 0
    right = ix < nx - 1 and valid[iy, ix + 1] != 0
    if left and right:
        return (f[iy, ix + 1] - f[iy, ix - 1]) / (2.0 * step), True
    if right:
        return (f[iy, ix + 1] - f[iy, ix]) / step, True
    if left:
        return (f[iy, ix] - f[iy, ix - 1]) / step, True
    return 0.0, False


@numba.njit(inline="always", fastmath=FASTMATH)
def _d_dy(f, valid, iy, ix, step):
    ny = f.shape[0]
    up = iy > 0 and valid[iy - 1, ix] != 0
    down = iy < ny - 1 and valid[iy + 1, ix] != 0
    if up and down:
        return (f[iy + 1, ix] - f[iy - 1, ix]) / (2.0 * step), True
    if down:
        return (f[iy + 1, ix] - f[iy, ix]) / step, True
    if up:
        return (f[iy, ix] - f[iy - 1, ix]) / step, True
    return 0.0, False


@numba.njit(parallel=True, cache=True, fastmath=FASTMATH)
def _x_plus_y(a, b, sign, valid, step_x, step_y, out, out_valid):
    """∂a/∂x + sign·∂b/∂y into ``out`` (NaN where undefined), with ``out_valid``: divergence and curl both."""
    ny, nx = a.shape
    for iy in numba.prange(ny):
        for ix in range(nx):
            if valid[iy, ix] == 0:
                out[iy, ix] = np.nan
                out_valid[iy, ix] = 0
                continue
            da, oka = _d_dx(a, valid, iy, ix, step_x)
            db, okb = _d_dy(b, valid, iy, ix, step_y)
            if oka and okb:
                out[iy, ix] = da + sign * db
                out_valid[iy, ix] = 1
            else:
                out[iy, ix] = np.nan
                out_valid[iy, ix] = 0


def divergence(fx, fy, valid, step_x, step_y, out, out_valid):
    """∂fx/∂x + ∂fy/∂y into ``out`` (NaN where undefined), with ``out_valid`` (uint8).

    ``fx``, ``fy`` are (ny, nx) maps indexed [y, x]; ``valid`` is (ny, nx) uint8;
    ``step_x``, ``step_y`` the pixel spacings along x (columns) and y (rows).
    """
    _x_plus_y(fx, fy, 1.0, valid, step_x, step_y, out, out_valid)


def curl(fx, fy, valid, step_x, step_y, out, out_valid):
    """∂fy/∂x − ∂fx/∂y (the z component of the curl); arguments as in :func:`divergence`."""
    _x_plus_y(fy, fx, -1.0, valid, step_x, step_y, out, out_valid)
