"""Plain-loop oracles for every kernel of :mod:`dpcstem.kernels`.

Each function does what its kernel's docstring says, one pixel (or frame pixel) at a time,
in float64 Python arithmetic, with no vectorisation and no shared helper: obviously correct
and slow. The kernel tests compare the compiled kernels with these on seeded random data.
"""

import math

import numpy as np

FLOAT32_MAX = float(np.finfo(np.float32).max)


def _normalised(segments, iy, ix, offset, inv_gain, saturation):
    raw = [float(segments[k, iy, ix]) for k in range(4)]
    a, b, c, d = ((raw[k] - float(offset[k])) * float(inv_gain[k]) for k in range(4))
    total = a + b + c + d
    saturated = any(r >= saturation for r in raw)
    if not (total > 0.0 and total <= FLOAT32_MAX) or saturated:
        return None, None, total
    da, db = (a - c) / total, (b - d) / total
    if abs(da) > 1.0 or abs(db) > 1.0:
        return None, None, total
    return da, db, total


def _to_scan(u, v, axes, alpha):
    """``axes`` rows are the A and B axes in scan (x, y): θ = α (u·A + v·B)."""
    return alpha * (u * axes[0][0] + v * axes[1][0]), alpha * (u * axes[0][1] + v * axes[1][1])


def _segment_loop(segments, shift, axes, alpha):
    ny, nx = segments.shape[1:]
    theta_x = np.full((ny, nx), np.nan)
    theta_y = np.full((ny, nx), np.nan)
    total_out = np.zeros((ny, nx))
    valid = np.zeros((ny, nx), bool)
    for iy in range(ny):
        for ix in range(nx):
            uv, total = shift(iy, ix)
            total_out[iy, ix] = total
            if uv is not None:
                theta_x[iy, ix], theta_y[iy, ix] = _to_scan(uv[0], uv[1], axes, alpha)
                valid[iy, ix] = True
    return theta_x, theta_y, total_out, valid


def deflection_linear(segments, offset, inv_gain, slope, axes, alpha, saturation=math.inf):
    """Oracle of :func:`dpcstem.kernels.deflection_linear`: (θx, θy, total, valid), NaN where invalid."""
    def shift(iy, ix):
        da, db, total = _normalised(segments, iy, ix, offset, inv_gain, saturation)
        return (None if da is None else (da / slope, db / slope)), total

    return _segment_loop(segments, shift, axes, alpha)


def bilinear(table, fi, fj):
    """Table value at fractional row ``fi``, column ``fj`` (both inside the grid)."""
    i, j = int(fi), int(fj)
    wy, wx = fi - i, fj - j
    return ((1 - wy) * ((1 - wx) * table[i][j] + wx * table[i][j + 1])
            + wy * ((1 - wx) * table[i + 1][j] + wx * table[i + 1][j + 1]))


def table_shift(da, db, table_u, table_v, origin, step):
    """(u, v) for signals (dA, dB), or None outside the table or where a cell corner is NaN."""
    n = len(table_u)
    fj, fi = (da - origin) / step, (db - origin) / step
    if not (0 <= fj < n - 1 and 0 <= fi < n - 1):
        return None
    u, v = bilinear(table_u, fi, fj), bilinear(table_v, fi, fj)
    return None if (math.isnan(u) or math.isnan(v)) else (u, v)


def polynomial(coefficients, x, y):
    """Σ c_k (x − y)^k (x + y)^a (x·y)^b over the kernel's 28 terms (k, a, b): symmetric ones
    (k = 0, a + 2b ≤ 6, b outer) then antisymmetric ones (k = 1, a + 2b ≤ 5, b outer)."""
    terms = ([(0, a, b) for b in range(4) for a in range(7 - 2 * b)]
             + [(1, a, b) for b in range(3) for a in range(6 - 2 * b)])
    total = 0.0
    for c, (k, a, b) in zip(coefficients, terms):
        total += float(c) * (x - y) ** k * (x + y) ** a * (x * y) ** b
    return total


def deflection_table(segments, offset, inv_gain, table_u, table_v, origin, step, axes, alpha,
                     saturation=math.inf, poly=None, poly_reach=0.0):
    """Oracle of :func:`dpcstem.kernels.deflection_table`: (θx, θy, total, valid), NaN where invalid.

    With ``poly``: u = dA·P(dA², dB²), v = dB·P(dB², dA²) where dA² + dB² < ``poly_reach``²
    (and the signals lie on the table's grid), the table elsewhere.
    """
    n = len(table_u)

    def shift(iy, ix):
        da, db, total = _normalised(segments, iy, ix, offset, inv_gain, saturation)
        if da is None:
            return None, total
        on_grid = 0 <= (da - origin) / step < n - 1 and 0 <= (db - origin) / step < n - 1
        if poly is not None and on_grid and da * da + db * db < poly_reach**2:
            return (da * polynomial(poly, da * da, db * db), db * polynomial(poly, db * db, da * da)), total
        return table_shift(da, db, table_u, table_v, origin, step), total

    return _segment_loop(segments, shift, axes, alpha)


def _derivative(f, valid, iy, ix, step, along_x):
    """Central difference with both neighbours valid, one-sided with one, None with none."""
    ny, nx = f.shape
    if along_x:
        before = ix > 0 and valid[iy][ix - 1]
        after = ix < nx - 1 and valid[iy][ix + 1]
        at = lambda k: f[iy][ix + k]  # noqa: E731
    else:
        before = iy > 0 and valid[iy - 1][ix]
        after = iy < ny - 1 and valid[iy + 1][ix]
        at = lambda k: f[iy + k][ix]  # noqa: E731
    if before and after:
        return (at(1) - at(-1)) / (2 * step)
    if after:
        return (at(1) - at(0)) / step
    if before:
        return (at(0) - at(-1)) / step
    return None


def _vector_derivative(fx, fy, valid, step_x, step_y, curl):
    ny, nx = fx.shape
    out = np.full((ny, nx), np.nan)
    ok = np.zeros((ny, nx), bool)
    for iy in range(ny):
        for ix in range(nx):
            if not valid[iy][ix]:
                continue
            along_x, along_y = (fy, fx) if curl else (fx, fy)
            first = _derivative(along_x, valid, iy, ix, step_x, True)
            second = _derivative(along_y, valid, iy, ix, step_y, False)
            if first is not None and second is not None:
                out[iy, ix] = first - second if curl else first + second
                ok[iy, ix] = True
    return out, ok


def divergence(fx, fy, valid, step_x, step_y):
    """Oracle of :func:`dpcstem.kernels.divergence`: (∂fx/∂x + ∂fy/∂y, defined)."""
    return _vector_derivative(fx, fy, valid, step_x, step_y, curl=False)


def curl(fx, fy, valid, step_x, step_y):
    """Oracle of :func:`dpcstem.kernels.curl`: (∂fy/∂x − ∂fx/∂y, defined)."""
    return _vector_derivative(fx, fy, valid, step_x, step_y, curl=True)


def reduce_frames(frames, mask, labels, n_seg):
    """Oracle of :func:`dpcstem.kernels.com.reduce_frames`: moments (n, 3) and segment sums (n, n_seg).

    Per frame Σ I, Σ kx·I, Σ ky·I over the mask (a NaN pixel inside makes them NaN, one
    outside is ignored) and each labelled segment's sum, in float64.
    """
    n, ky, kx = frames.shape
    moments = np.zeros((n, 3))
    segments = np.zeros((n, n_seg))
    for i in range(n):
        for r in range(ky):
            for c in range(kx):
                value = float(frames[i, r, c])
                if mask[r, c]:
                    moments[i, 0] += value
                    moments[i, 1] += c * value
                    moments[i, 2] += r * value
                if labels[r, c]:
                    segments[i, labels[r, c] - 1] += value
    return moments, segments
