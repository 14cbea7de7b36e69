"""The fast segment kernels (float32 arithmetic, branch-free, coefficient records) against
the naive loop oracles of ``tests/naive.py`` (float64, one pixel at a time), and the optional sum."""

import math

import numpy as np
import pytest

from dpcstem.response import QuadrantResponse
from dpcstem.kernels import deflection_linear, deflection_table
from dpcstem.kernels.segments import bilinear_coefficients

import naive
from helpers import assert_equal_to_float32_rounding, segments_with_faults



def naive_deflection(seg, offset, inv_gain, axes, alpha, saturation=math.inf, *, slope=None, table=None):
    """The loop oracle of the linear kernel with ``slope``, else of the table kernel with ``table``."""
    if table is None:
        return naive.deflection_linear(seg, offset, inv_gain, slope, axes, alpha, saturation)
    return naive.deflection_table(seg, offset, inv_gain, table.u, table.v, table.origin, table.step, axes, alpha,
                                  saturation)


def run(kernel, seg, *args, with_total=True):
    ny, nx = seg.shape[1:]
    tx, ty = np.empty((ny, nx), np.float32), np.empty((ny, nx), np.float32)
    total = np.empty((ny, nx), np.float32) if with_total else None
    valid = np.empty((ny, nx), np.uint8)
    kernel(seg, *args[:-1], tx, ty, total, valid, args[-1])
    return tx, ty, total, valid


AXES = np.array([[math.cos(0.6), math.sin(0.6)], [math.sin(0.6), -math.cos(0.6)]])  # rotated and flipped


@pytest.mark.parametrize("dtype", ["uint16", "int32", "float32", "float64"])
@pytest.mark.parametrize("shape", [(3, 5), (17, 70)])
def test_linear_kernel_equals_the_loop_oracle(dtype, shape):
    rng = np.random.default_rng([1, *shape, np.dtype(dtype).num])
    seg = segments_with_faults(rng, shape, dtype)
    offset, inv_gain = rng.uniform(0, 20, 4), 1 / rng.uniform(0.9, 1.1, 4)
    got = run(deflection_linear, seg, offset, inv_gain, 0.85, AXES, 7.5, 65535.0)
    want = naive_deflection(seg, offset, inv_gain, AXES, 7.5, 65535.0, slope=0.85)
    assert_equal_to_float32_rounding(got, want, 7.5)
    assert want[3].sum() > 0 and want[3][0, 0] == 0 and want[3][1, 1] == 0


@pytest.mark.parametrize("dtype", ["uint16", "float32", "float64"])
@pytest.mark.parametrize("geometry", [(0.0, 10.0), (0.2, 2.0), (0.58, 3.0)])
def test_table_kernel_equals_the_loop_oracle(dtype, geometry):
    rng = np.random.default_rng([2, np.dtype(dtype).num, int(100 * geometry[0])])
    shape = (13, 41)
    seg = segments_with_faults(rng, shape, dtype)
    offset, inv_gain = rng.uniform(0, 20, 4), 1 / rng.uniform(0.9, 1.1, 4)
    table = QuadrantResponse(*geometry).inverse_table()
    args = (offset, inv_gain, table.u, table.v, table.origin, table.step, AXES, 4.0, 65535.0)
    got = run(deflection_table, seg, *args)
    want = naive_deflection(seg, offset, inv_gain, AXES, 4.0, 65535.0, table=table)
    assert_equal_to_float32_rounding(got, want, 4.0)
    assert want[3].sum() > 0


def test_table_kernel_over_the_whole_table_range_and_beyond():
    """Signals spread over and past the table, NaN cells (where no shift, or two, give them) included."""
    table = QuadrantResponse(0.58, 3.0).inverse_table()
    assert np.isnan(table.u).any()
    rng = np.random.default_rng(3)
    shape = (40, 50)
    da, db = rng.uniform(-0.95, 0.95, shape), rng.uniform(-0.95, 0.95, shape)
    total = rng.uniform(100, 5000, shape)
    # A, B, C, D with these differences and sum (non-negative while |dA| + |dB| ≤ 1).
    seg = np.stack([total * (0.25 + da / 2), total * (0.25 + db / 2), total * (0.25 - da / 2),
                    total * (0.25 - db / 2)])
    args = (np.zeros(4), np.ones(4), table.u, table.v, table.origin, table.step, np.eye(2), 1.0, np.inf)
    got = run(deflection_table, seg, *args)
    want = naive_deflection(seg, np.zeros(4), np.ones(4), np.eye(2), 1.0, table=table)
    assert_equal_to_float32_rounding(got, want, 1.0)
    assert 0 < want[3].mean() < 1


@pytest.mark.parametrize("kernel", ["linear", "table"])
def test_without_the_sum_the_deflection_is_the_same(kernel):
    rng = np.random.default_rng(4)
    seg = segments_with_faults(rng, (9, 33), "uint16")
    table = QuadrantResponse().inverse_table()
    if kernel == "linear":
        fn, args = deflection_linear, (np.zeros(4), np.ones(4), 0.9, AXES, 2.0, 65535.0)
    else:
        fn, args = deflection_table, (np.zeros(4), np.ones(4), table.u, table.v, table.origin, table.step, AXES, 2.0,
                                      65535.0)
    full = run(fn, seg, *args)
    bare = run(fn, seg, *args, with_total=False)
    assert bare[2] is None
    for a, b in zip(full[:2] + full[3:], bare[:2] + bare[3:]):
        np.testing.assert_array_equal(a, b)


def test_bilinear_coefficients_give_the_corners_and_the_centre_of_each_cell():
    rng = np.random.default_rng(5)
    u, v = rng.standard_normal((6, 6)), rng.standard_normal((6, 6))
    c = bilinear_coefficients(u, v).reshape(5, 5, 8).astype(np.float64)
    for q, t in enumerate((u, v)):
        c0, cx, cy, cxy = (c[..., 4 * q + r] for r in range(4))
        np.testing.assert_allclose(c0, t[:-1, :-1], rtol=1e-6)
        np.testing.assert_allclose(c0 + cx, t[:-1, 1:], rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(c0 + cy, t[1:, :-1], rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(c0 + cx + cy + cxy, t[1:, 1:], rtol=1e-6, atol=1e-6)
        centre = (t[:-1, :-1] + t[:-1, 1:] + t[1:, :-1] + t[1:, 1:]) / 4
        np.testing.assert_allclose(c0 + (cx + cy) / 2 + cxy / 4, centre, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("kernel", ["linear", "table"])
def test_a_small_deflection_keeps_its_relative_precision(kernel):
    """dA ≈ 10⁻⁴ on 4000 counts a segment (1 µrad at α = 10 mrad): float32 arithmetic of A − C
    would lose 10⁻³ of it; the kernels hold it to float32 rounding of the result."""
    table = QuadrantResponse().inverse_table()
    seg = np.empty((4, 3, 4))
    da = np.array([1e-4, -3e-5, 2e-6])[:, None] * np.ones(4)
    seg[0], seg[2] = 4000 * (1 + da), 4000 * (1 - da)
    seg[1], seg[3] = 4000 * (1 + da / 2), 4000 * (1 - da / 2)
    if kernel == "linear":
        fn, extra = deflection_linear, {"slope": 0.9}
        args = (np.zeros(4), np.ones(4), 0.9, AXES, 10.0, np.inf)
    else:
        fn, extra = deflection_table, {"table": table}
        args = (np.zeros(4), np.ones(4), table.u, table.v, table.origin, table.step, AXES, 10.0, np.inf)
    got = run(fn, seg, *args)
    want = naive_deflection(seg, np.zeros(4), np.ones(4), AXES, 10.0, **extra)
    assert want[3].all()
    for g, w in zip(got[:2], want[:2]):
        np.testing.assert_allclose(g, w, rtol=1e-5)
