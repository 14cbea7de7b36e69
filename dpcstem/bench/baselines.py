"""Plain NumPy/SciPy versions of what the kernels compute: the baselines each case is timed
against, written as a user would write them (whole-array float64 arithmetic, a vectorised
bilinear lookup, :func:`numpy.gradient`, :mod:`numpy.fft`, BLAS for the 4D sums). The tests
hold each to the kernel's naive loop oracle."""

from __future__ import annotations

import numpy as np


def _rotate(u, v, ok, total, axes, alpha):
    """(u, v) along the segment axes → α·(θx, θy) in the scan frame, by the (2, 2) matrix ``axes``
    (:meth:`dpcstem.calibration.Calibration.frame_matrix`)."""
    theta_x = alpha * (u * axes[0, 0] + v * axes[1, 0])
    theta_y = alpha * (u * axes[0, 1] + v * axes[1, 1])
    theta_x[~ok] = np.nan
    theta_y[~ok] = np.nan
    return theta_x.astype(np.float32), theta_y.astype(np.float32), total.astype(np.float32), ok.astype(np.uint8)


def _normalised(segments, offset, inv_gain, saturation):
    x = (segments - offset[:, None, None]) * inv_gain[:, None, None]
    total = x[0] + x[1] + x[2] + x[3]
    ok = (total > 0) & (total <= np.finfo(np.float32).max) & ~(segments >= saturation).any(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        d_a = (x[0] - x[2]) / total
        d_b = (x[1] - x[3]) / total
    ok &= (np.abs(d_a) <= 1) & (np.abs(d_b) <= 1)
    return d_a, d_b, total, ok


def numpy_deflection_linear(segments, offset, inv_gain, slope, axes, alpha, saturation=np.inf):
    """NumPy version of :func:`dpcstem.kernels.deflection_linear`.

    Returns ``(theta_x, theta_y, total, valid)`` as the kernel writes them: float32 ×3 and
    uint8, shape (ny, nx); NaN deflection where ``valid`` is 0 (a sum not positive and
    within float32, a raw segment at or above ``saturation``, |dA| or |dB| above 1).
    """
    d_a, d_b, total, ok = _normalised(segments, offset, inv_gain, saturation)
    return _rotate(d_a / slope, d_b / slope, ok, total, axes, alpha)


def numpy_deflection_table(segments, offset, inv_gain, table_u, table_v, origin, step, axes, alpha,
                           saturation=np.inf, poly=None, poly_reach=0.0):
    """NumPy version of :func:`dpcstem.kernels.deflection_table`: a vectorised bilinear lookup, and
    with ``poly`` (the coefficients) the inverse polynomial inside ``poly_reach``."""
    d_a, d_b, total, ok = _normalised(segments, offset, inv_gain, saturation)
    n = table_u.shape[0]
    with np.errstate(invalid="ignore"):
        fj = (d_a - origin) / step
        fi = (d_b - origin) / step
        inside = ok & (fj >= 0) & (fi >= 0) & (fj < n - 1) & (fi < n - 1)
    fj = np.where(inside, fj, 0.0)
    fi = np.where(inside, fi, 0.0)
    j = fj.astype(np.intp)
    i = fi.astype(np.intp)
    wx = fj - j
    wy = fi - i
    k = i * n + j

    def lookup(table):
        flat = table.ravel()
        return ((1 - wy) * ((1 - wx) * flat[k] + wx * flat[k + 1])
                + wy * ((1 - wx) * flat[k + n] + wx * flat[k + n + 1]))

    u = lookup(table_u)
    v = lookup(table_v)
    if poly is not None:
        from ..response.table import polynomial_value

        x, y = d_a * d_a, d_b * d_b
        near = inside & (x + y < poly_reach**2)
        u = np.where(near, d_a * polynomial_value(poly, x, y), u)
        v = np.where(near, d_b * polynomial_value(poly, y, x), v)
    ok = inside & ~np.isnan(u) & ~np.isnan(v)
    return _rotate(u, v, ok, total, axes, alpha)


def numpy_divergence(fx, fy, step_x, step_y):
    """∂fx/∂x + ∂fy/∂y by :func:`numpy.gradient` (central inside, one-sided at the edges)."""
    return np.gradient(fx, step_x, axis=1) + np.gradient(fy, step_y, axis=0)


def numpy_curl(fx, fy, step_x, step_y):
    """∂fy/∂x − ∂fx/∂y by :func:`numpy.gradient`."""
    return np.gradient(fy, step_x, axis=1) - np.gradient(fx, step_y, axis=0)


def _mirror(f, odd_x, odd_y):
    sx = -1.0 if odd_x else 1.0
    sy = -1.0 if odd_y else 1.0
    top = np.concatenate([f, sx * f[:, ::-1]], axis=1)
    return np.concatenate([top, sy * top[::-1, :]], axis=0)


def numpy_spectral_divergence(fx, fy, step_x, step_y, cutoff):
    """Fourier divergence of the evenly extended maps with a raised-cosine window, by :mod:`numpy.fft`."""
    ny, nx = fx.shape
    ex = _mirror(fx, False, False)
    ey = _mirror(fy, False, False)
    ky = np.fft.fftfreq(2 * ny, step_y)[:, None]
    kx = np.fft.fftfreq(2 * nx, step_x)[None, :]
    k = np.sqrt(kx**2 + ky**2)
    window = 0.5 * (1 + np.cos(np.pi * np.clip((k - cutoff / 2) / (cutoff / 2), 0, 1)))
    spectrum = 2j * np.pi * (kx * np.fft.fft2(ex) + ky * np.fft.fft2(ey)) * window
    return np.fft.ifft2(spectrum).real[:ny, :nx]


def numpy_integrate_mirror(gx, gy, step_x, step_y):
    """f with ∇f = (gx, gy) by a periodic Fourier solve of the mirror-extended gradient (:mod:`numpy.fft`)."""
    ny, nx = gx.shape
    ex = _mirror(gx, True, False)
    ey = _mirror(gy, False, True)
    ky = np.fft.fftfreq(2 * ny, step_y)[:, None]
    kx = np.fft.fftfreq(2 * nx, step_x)[None, :]
    k2 = kx**2 + ky**2
    k2[0, 0] = 1.0
    spectrum = (kx * np.fft.fft2(ex) + ky * np.fft.fft2(ey)) / (2j * np.pi * k2)
    spectrum[0, 0] = 0.0
    f = np.fft.ifft2(spectrum).real[:ny, :nx]
    return f - f.mean()


def numpy_integrate_dct(gx, gy, step_x, step_y):
    """The discrete Neumann Poisson solve of ``method="dct"``, by an even extension and :mod:`numpy.fft`."""
    from ..fourier import flux_divergence  # the same source; what is timed is the solve

    ny, nx = gx.shape
    rhs = flux_divergence(gx, gy, step_x, step_y)
    lam_y = (2 * np.cos(np.pi * np.arange(2 * ny) / ny) - 2) / step_y**2
    lam_x = (2 * np.cos(np.pi * np.arange(2 * nx) / nx) - 2) / step_x**2
    lam = lam_y[:, None] + lam_x[None, :]
    lam[0, 0] = 1.0
    spectrum = np.fft.fft2(_mirror(rhs, False, False)) / lam
    spectrum[0, 0] = 0.0
    f = np.fft.ifft2(spectrum).real[:ny, :nx]
    return f - f.mean()


def numpy_frame_sums(frames, weights, chunk=1024):
    """Weighted sums of each frame, ``frames (n, ky, kx) @ weights (m, ky, kx)`` → (n, m) float64.

    The frames are converted to float64 ``chunk`` at a time and multiplied by the weight
    matrix (BLAS), the way a NumPy user (or LiberTEM's masks) computes masked sums.
    """
    n = frames.shape[0]
    w = weights.reshape(len(weights), -1).T
    out = np.empty((n, w.shape[1]))
    for start in range(0, n, chunk):
        block = frames[start:start + chunk].reshape(-1, w.shape[0]).astype(np.float64)
        out[start:start + chunk] = block @ w
    return out


def numpy_centre_of_mass(frames):
    """Centre of mass (column, row; detector pixels) of each whole frame, by :func:`numpy_frame_sums`."""
    ky, kx = frames.shape[1:]
    rows, cols = np.indices((ky, kx), dtype=np.float64)
    sums = numpy_frame_sums(frames, np.stack([np.ones((ky, kx)), cols, rows]))
    with np.errstate(divide="ignore", invalid="ignore"):
        return sums[:, 1] / sums[:, 0], sums[:, 2] / sums[:, 0]


def numpy_reconstruct(segments, calibration, table):
    """Deflection, charge density and potential of a segment stack: :func:`dpcstem.reconstruct.reconstruct`
    written in NumPy (exact response by bilinear lookup, :func:`numpy.gradient`, mirror integration).

    Valid for maps whose every pixel is valid (no masked neighbours). Returns float32
    ``(theta_x, theta_y, charge_density, potential)``.
    """
    from .. import physics

    axes = np.ascontiguousarray(calibration.frame_matrix.T)
    full = float(np.iinfo(segments.dtype).max) if segments.dtype.kind in "ui" else np.inf
    tx, ty, _, valid = numpy_deflection_table(segments, np.zeros(4), np.ones(4), table.u, table.v, table.origin,
                                              table.step, axes, calibration.alpha_mrad, full)
    kv, t = calibration.kv, calibration.thickness_nm
    ex = physics.field_v_per_m_from_deflection(tx.astype(np.float64), kv, t)
    ey = physics.field_v_per_m_from_deflection(ty.astype(np.float64), kv, t)
    step_x = calibration.step_x_nm * physics.NM_TO_M
    step_y = calibration.step_y_nm * physics.NM_TO_M
    rho = physics.VACUUM_PERMITTIVITY_F_M * numpy_divergence(ex, ey, step_x, step_y)
    projected = calibration.pv_over_e_v * physics.MRAD_TO_RAD * numpy_integrate_mirror(
        tx.astype(np.float64), ty.astype(np.float64), calibration.step_x_nm, calibration.step_y_nm)
    return tx, ty, rho.astype(np.float32), (projected / t).astype(np.float32)
