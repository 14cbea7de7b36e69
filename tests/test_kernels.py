"""The Numba kernels against plain NumPy references written here."""

import numpy as np
import pytest

from dpcstem.calibration.core import frame_matrix
from dpcstem.response import QuadrantResponse
from dpcstem.kernels import curl, deflection_linear, deflection_table, divergence


def reference_normalised(segments, offset, inv_gain):
    s = (segments.astype(np.float64) - offset[:, None, None]) * inv_gain[:, None, None]
    total = s.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        ok = (total > 0) & (total <= np.finfo(np.float32).max)
        d_a, d_b = (s[0] - s[2]) / total, (s[1] - s[3]) / total
        ok &= (np.abs(d_a) <= 1) & (np.abs(d_b) <= 1)
        return d_a, d_b, total, ok


def reference_to_scan(u, v, axes, alpha):
    return alpha * (u * axes[0, 0] + v * axes[1, 0]), alpha * (u * axes[0, 1] + v * axes[1, 1])


def reference_linear(segments, offset, inv_gain, slope, axes, alpha):
    d_a, d_b, total, ok = reference_normalised(segments, offset, inv_gain)
    tx, ty = reference_to_scan(d_a / slope, d_b / slope, axes, alpha)
    return np.where(ok, tx, np.nan), np.where(ok, ty, np.nan), total, ok


def reference_table(segments, offset, inv_gain, table, axes, alpha):
    d_a, d_b, total, ok = reference_normalised(segments, offset, inv_gain)
    n = table.u.shape[0]
    fj = np.where(ok, (d_a - table.origin) / table.step, -1.0)
    fi = np.where(ok, (d_b - table.origin) / table.step, -1.0)
    ok = ok & (fj >= 0) & (fi >= 0) & (fj < n - 1) & (fi < n - 1)
    j = np.where(ok, np.floor(fj), 0).astype(int)
    i = np.where(ok, np.floor(fi), 0).astype(int)
    wx, wy = fj - j, fi - i

    def lookup(t):
        return ((1 - wy) * (1 - wx) * t[i, j] + (1 - wy) * wx * t[i, j + 1] + wy * (1 - wx) * t[i + 1, j]
                + wy * wx * t[i + 1, j + 1])

    u, v = lookup(table.u), lookup(table.v)
    ok = ok & np.isfinite(u) & np.isfinite(v)
    tx, ty = reference_to_scan(u, v, axes, alpha)
    return np.where(ok, tx, np.nan), np.where(ok, ty, np.nan), total, ok


def random_segments(rng, shape, dtype):
    base = rng.uniform(200, 3000, size=(4, *shape))
    seg = base.astype(dtype)
    if np.dtype(dtype).kind == "f" and seg.size > 8:
        seg[0, 0, 0] = np.nan  # a dead pixel
        seg[:, -1, -1] = 0  # no intensity
    return seg


def run_kernel(kernel, segments, *args):
    ny, nx = segments.shape[1:]
    tx, ty, total = (np.empty((ny, nx), np.float32) for _ in range(3))
    valid = np.empty((ny, nx), np.uint8)
    kernel(segments, *args, tx, ty, total, valid)
    return tx, ty, total, valid.astype(bool)


CASES = [(np.uint16, (37, 53)), (np.float32, (37, 53)), (np.float32, (1, 1)), (np.uint16, (1, 7)),
         (np.float64, (16, 16)), (np.uint8, (5, 3))]


def axes_for(deg, flip):
    """The kernel's ``axes``: rows are the A and B axes in scan (x, y), the frame matrix's columns."""
    return np.ascontiguousarray(frame_matrix(deg, flip).T)


@pytest.mark.parametrize("dtype,shape", CASES)
def test_linear_kernel_equals_reference(dtype, shape, rng):
    seg = random_segments(rng, shape, dtype)
    offset = rng.uniform(0, 50, 4)
    inv_gain = 1 / rng.uniform(0.9, 1.1, 4)
    axes = axes_for(37.0, True)
    got = run_kernel(deflection_linear, seg, offset, inv_gain, 0.9, axes, 2.5)
    want = reference_linear(seg, offset, inv_gain, 0.9, axes, 2.5)
    np.testing.assert_array_equal(got[3], want[3])
    for g, w in zip(got[:3], want[:3]):
        np.testing.assert_allclose(g[want[3]], w[want[3]], rtol=2e-6, atol=1e-6)
    assert np.all(np.isnan(got[0][~want[3]]))


@pytest.mark.parametrize("dtype,shape", CASES)
def test_table_kernel_equals_reference(dtype, shape, rng):
    seg = random_segments(rng, shape, dtype)
    offset = rng.uniform(0, 50, 4)
    inv_gain = 1 / rng.uniform(0.9, 1.1, 4)
    table = QuadrantResponse(0.1, 2.0).inverse_table()
    axes = axes_for(-20.0, False)
    args = (offset, inv_gain, table.u, table.v, table.origin, table.step, axes, 2.5)
    got = run_kernel(deflection_table, seg, *args)
    want = reference_table(seg, *args[:2], table, axes, 2.5)
    np.testing.assert_array_equal(got[3], want[3])
    for g, w in zip(got[:2], want[:2]):
        np.testing.assert_allclose(g[want[3]], w[want[3]], rtol=2e-6, atol=2e-6)


def test_table_kernel_flags_signals_outside_the_response(rng):
    seg = np.zeros((4, 1, 2), np.float32)
    seg[:, 0, 0] = [1000, 0, 0, 0]  # all in A: no shift below α does this
    seg[:, 0, 1] = [260, 250, 240, 250]
    table = QuadrantResponse().inverse_table()
    got = run_kernel(deflection_table, seg, np.zeros(4), np.ones(4), table.u, table.v, table.origin, table.step,
                     np.eye(2), 1.0)
    assert list(got[3][0]) == [False, True]


def reference_derivative(f, valid, step, axis):
    """Loop reference: central where both neighbours are valid, else one-sided, else undefined."""
    f = np.moveaxis(f, axis, -1)
    valid = np.moveaxis(valid, axis, -1)
    out = np.full(f.shape, np.nan)
    ok = np.zeros(f.shape, bool)
    for r in range(f.shape[0]):
        n = f.shape[1]
        for c in range(n):
            left = c > 0 and valid[r, c - 1]
            right = c < n - 1 and valid[r, c + 1]
            if left and right:
                out[r, c] = (f[r, c + 1] - f[r, c - 1]) / (2 * step)
            elif right:
                out[r, c] = (f[r, c + 1] - f[r, c]) / step
            elif left:
                out[r, c] = (f[r, c] - f[r, c - 1]) / step
            ok[r, c] = left or right
    return np.moveaxis(out, -1, axis), np.moveaxis(ok, -1, axis)


@pytest.mark.parametrize("shape", [(23, 31), (1, 5), (6, 1), (2, 2)])
@pytest.mark.parametrize("mask_fraction", [0.0, 0.2])
def test_divergence_and_curl_equal_reference(shape, mask_fraction, rng):
    fx, fy = rng.normal(size=(2, *shape))
    valid = rng.random(shape) >= mask_fraction
    sx, sy = 0.7, 1.3
    dfx_dx, okx = reference_derivative(fx, valid, sx, 1)
    dfy_dy, oky = reference_derivative(fy, valid, sy, 0)
    dfy_dx, okyx = reference_derivative(fy, valid, sx, 1)
    dfx_dy, okxy = reference_derivative(fx, valid, sy, 0)
    for kernel, want, ok in ((divergence, dfx_dx + dfy_dy, okx & oky), (curl, dfy_dx - dfx_dy, okyx & okxy)):
        ok = ok & valid
        out = np.empty(shape)
        out_valid = np.empty(shape, np.uint8)
        kernel(fx, fy, valid.astype(np.uint8), sx, sy, out, out_valid)
        np.testing.assert_array_equal(out_valid.astype(bool), ok)
        np.testing.assert_allclose(out[ok], want[ok], rtol=1e-12)
        assert np.all(np.isnan(out[~ok]))


def test_divergence_without_mask_matches_numpy_gradient(rng):
    fx, fy = rng.normal(size=(2, 20, 30))
    out = np.empty((20, 30))
    ok = np.empty((20, 30), np.uint8)
    divergence(fx, fy, np.ones((20, 30), np.uint8), 0.5, 2.0, out, ok)
    np.testing.assert_allclose(out, np.gradient(fx, 0.5, axis=1) + np.gradient(fy, 2.0, axis=0), rtol=1e-12)


def test_masked_pixel_stays_out_of_neighbours_derivative():
    fx = np.zeros((5, 5))
    fx[2, 2] = 1e9  # a wild value in an invalid pixel
    valid = np.ones((5, 5), np.uint8)
    valid[2, 2] = 0
    out = np.empty((5, 5))
    ok = np.empty((5, 5), np.uint8)
    divergence(fx, np.zeros((5, 5)), valid, 1.0, 1.0, out, ok)
    assert np.nanmax(np.abs(out)) == 0.0
    assert ok.sum() == 24


@pytest.mark.parametrize("kernel", ["linear", "table"])
def test_saturated_segments_are_flagged(kernel, rng):
    """With a full scale, exactly the pixels holding a segment at or above it are added to the invalid ones."""
    seg = random_segments(rng, (9, 11), np.uint16)
    full_scale = 2900.0
    table = QuadrantResponse().inverse_table()
    args = ((np.zeros(4), np.ones(4), 0.9, np.eye(2), 1.0) if kernel == "linear" else
            (np.zeros(4), np.ones(4), table.u, table.v, table.origin, table.step, np.eye(2), 1.0))
    fn = deflection_linear if kernel == "linear" else deflection_table
    without = run_kernel(fn, seg, *args)[3]
    ny, nx = seg.shape[1:]
    tx, ty, total = (np.empty((ny, nx), np.float32) for _ in range(3))
    valid = np.empty((ny, nx), np.uint8)
    fn(seg, *args, tx, ty, total, valid, full_scale)
    saturated = (seg >= full_scale).any(axis=0)
    assert saturated.sum() >= 3
    np.testing.assert_array_equal(valid.astype(bool), without & ~saturated)
