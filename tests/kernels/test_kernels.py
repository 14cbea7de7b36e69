"""The segment and derivative kernels held to the loop oracles of ``tests/naive.py``."""

import numpy as np
import pytest

from dpcstem.calibration.core import frame_matrix
from dpcstem.response import QuadrantResponse
from dpcstem.kernels import curl, deflection_linear, deflection_table, divergence

import naive


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
         (np.float64, (16, 16)), (np.uint8, (5, 3)), (np.int32, (3, 8)), (np.float64, (1, 1))]


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
    want = naive.deflection_linear(seg, offset, inv_gain, 0.9, axes, 2.5)
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
    want = naive.deflection_table(seg, *args)
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


@pytest.mark.parametrize("shape", [(23, 31), (1, 5), (6, 1), (2, 2)])
@pytest.mark.parametrize("mask_fraction", [0.0, 0.2])
def test_divergence_and_curl_equal_reference(shape, mask_fraction, rng):
    fx, fy = rng.normal(size=(2, *shape))
    valid = rng.random(shape) >= mask_fraction
    sx, sy = 0.7, 1.3
    for kernel, oracle in ((divergence, naive.divergence), (curl, naive.curl)):
        want, ok = oracle(fx, fy, valid, sx, sy)
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


def test_numpy_lookup_and_the_kernel_lookup_agree(rng):
    """The inverse table's NumPy lookup (noise propagation, Newton start) and the kernel's are one rule.

    Identity axes and α = 1 make the kernel return the looked-up shift itself; signals are drawn
    over the whole table and beyond it, so cells with NaN corners and points outside are hit.
    """
    table = QuadrantResponse(0.5, 3.0).inverse_table()  # a hole: the table has a NaN edge inside its square
    n = 60
    d_a = rng.uniform(table.origin - 0.05, -table.origin + 0.05, n)
    d_b = rng.uniform(table.origin - 0.05, -table.origin + 0.05, n)
    # segments with exactly these signals: A − C = dA·S, B − D = dB·S with S = 4
    seg = np.array([1 + 2 * d_a, 1 + 2 * d_b, 1 - 2 * d_a, 1 - 2 * d_b]).reshape(4, 1, n)
    tx, ty, _, valid = run_kernel(deflection_table, seg, np.zeros(4), np.ones(4), table.u, table.v, table.origin,
                                  table.step, np.eye(2), 1.0)
    u, v = table.lookup(d_a, d_b)
    np.testing.assert_array_equal(valid[0], np.isfinite(u) & np.isfinite(v))
    assert 0 < valid.sum() < n  # both answers occur
    np.testing.assert_allclose(tx[0][valid[0]], u[valid[0]], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ty[0][valid[0]], v[valid[0]], rtol=1e-5, atol=1e-6)
    for k in range(n):  # and the loop oracle's lookup says the same, point by point
        shift = naive.table_shift(d_a[k], d_b[k], table.u, table.v, table.origin, table.step)
        assert (shift is None) == (not np.isfinite(u[k]))


def test_the_table_jacobian_is_the_derivative_of_its_lookup():
    table = QuadrantResponse(0.1, 2.0).inverse_table()
    d_a, d_b, h = np.array([0.05, -0.2, 0.31]), np.array([0.1, 0.02, -0.15]), 1e-7
    jac = table.jacobian(d_a, d_b)
    u0, v0 = table.lookup(d_a, d_b)
    ua, va = table.lookup(d_a + h, d_b)
    ub, vb = table.lookup(d_a, d_b + h)
    numeric = np.array([[(ua - u0) / h, (ub - u0) / h], [(va - v0) / h, (vb - v0) / h]])
    # within a cell the lookup is bilinear and the Jacobian interpolates central differences of the grid
    np.testing.assert_allclose(jac, numeric, rtol=0.05, atol=0.02)
