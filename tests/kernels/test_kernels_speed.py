"""The fast segment kernels (branch-free, coefficient records, the float32 inverse polynomial)
against the naive loop oracles of ``tests/naive.py`` (float64, one pixel at a time), the optional
sum, and the polynomial against the exact inverse."""

import math

import numpy as np
import pytest

from dpcstem.response import QuadrantResponse
from dpcstem.response.exact import POLY_TOLERANCE
from dpcstem.kernels import deflection_linear, deflection_table
from dpcstem.kernels.segments import bilinear_coefficients

import naive
from helpers import assert_equal_to_float32_rounding, segments_with_faults



def naive_deflection(seg, offset, inv_gain, axes, alpha, saturation=math.inf, *, slope=None, table=None,
                     poly=None):
    """The loop oracle of the linear kernel with ``slope``, else of the table kernel with ``table``
    (and the inverse polynomial ``poly``)."""
    if table is None:
        return naive.deflection_linear(seg, offset, inv_gain, slope, axes, alpha, saturation)
    near = () if poly is None else (poly.coefficients, poly.reach)
    return naive.deflection_table(seg, offset, inv_gain, table.u, table.v, table.origin, table.step, axes, alpha,
                                  saturation, *near)


def poly_args(poly):
    """The kernel's trailing arguments for the inverse polynomial."""
    return (poly.kernel_coefficients(), poly.reach)


def run(kernel, seg, *args, with_total=True, poly=()):
    """The kernel with ``args`` (the last one the saturation) and the polynomial's arguments ``poly``."""
    ny, nx = seg.shape[1:]
    tx, ty = np.empty((ny, nx), np.float32), np.empty((ny, nx), np.float32)
    total = np.empty((ny, nx), np.float32) if with_total else None
    valid = np.empty((ny, nx), np.uint8)
    kernel(seg, *args[:-1], tx, ty, total, valid, args[-1], *poly)
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


@pytest.mark.parametrize("dtype", ["uint16", "float32", "float64"])
@pytest.mark.parametrize("geometry", [(0.0, 10.0), (0.2, 2.0), (0.58, 3.0), (0.0, 1.5)])
def test_polynomial_kernel_equals_the_loop_oracle(dtype, geometry):
    """The float32 polynomial inside its reach and the table beyond, both to float32 rounding."""
    rng = np.random.default_rng([6, np.dtype(dtype).num, int(100 * geometry[0]), int(10 * geometry[1])])
    shape = (23, 41)
    # signals spread over the polynomial's reach and beyond (|dA|, |dB| ≤ 0.5), then the faults
    da, db = rng.uniform(-0.5, 0.5, shape), rng.uniform(-0.5, 0.5, shape)
    total = rng.uniform(400, 4000, shape)
    seg = np.stack([total * (0.25 + da / 2), total * (0.25 + db / 2), total * (0.25 - da / 2), total * (0.25 - db / 2)])
    seg = (np.rint(seg) if np.dtype(dtype).kind == "u" else seg).astype(dtype)
    faults = segments_with_faults(rng, shape, dtype)
    for iy, ix in ((0, 0), (-1, -1), (0, 1), (1, 0), (1, 1)):
        seg[:, iy, ix] = faults[:, iy, ix]
    offset, inv_gain = rng.uniform(0, 20, 4), 1 / rng.uniform(0.9, 1.1, 4)
    response = QuadrantResponse(*geometry)
    table, poly = response.inverse_table(), response.inverse_polynomial()
    args = (offset, inv_gain, table.u, table.v, table.origin, table.step, AXES, 4.0, 65535.0)
    got = run(deflection_table, seg, *args, poly=poly_args(poly))
    want = naive_deflection(seg, offset, inv_gain, AXES, 4.0, 65535.0, table=table, poly=poly)
    assert_equal_to_float32_rounding(got, want, 4.0)
    # both ways were taken: pixels inside the polynomial's reach and valid pixels beyond it
    a, b, c, d = ((seg[k].astype(float) - offset[k]) * inv_gain[k] for k in range(4))
    with np.errstate(invalid="ignore"):  # the faulty pixels
        radius = np.hypot(a - c, b - d) / (a + b + c + d)
    valid = want[3].astype(bool)
    assert poly.reach > 0.1
    assert (valid & (radius < 0.9 * poly.reach)).sum() > 50 and (valid & (radius > 1.1 * poly.reach)).sum() > 5


@pytest.mark.parametrize("geometry", [(0.0, math.inf), (0.0, 2.0), (0.2, 2.0), (0.58, 3.0), (0.0, 1.5), (0.3, 1.2)])
def test_the_inverse_polynomial_is_closer_to_the_exact_inverse_than_the_table(geometry):
    """Over every shift inside its reach, the polynomial is within POLY_TOLERANCE of the exact
    inverse (Newton's method on the closed form), and no farther than the table it replaces."""
    response = QuadrantResponse(*geometry)
    poly, table = response.inverse_polynomial(), response.inverse_table()
    rng = np.random.default_rng(7)
    s = poly.shift_reach * np.sqrt(rng.uniform(0, 1, 4000))
    phi = rng.uniform(0, 2 * np.pi, 4000)
    d_a, d_b, _ = response.signals(s * np.cos(phi), s * np.sin(phi))
    inside = np.hypot(d_a, d_b) < poly.reach
    assert inside.mean() > 0.5
    exact_u, exact_v = response.invert(d_a[inside], d_b[inside])
    poly_u, poly_v = poly.evaluate(d_a[inside], d_b[inside])
    table_u, table_v = table.lookup(d_a[inside], d_b[inside])
    poly_error = np.hypot(poly_u - exact_u, poly_v - exact_v)
    table_error = np.hypot(table_u - exact_u, table_v - exact_v)
    assert poly_error.max() <= POLY_TOLERANCE
    assert poly_error.max() <= table_error.max()


def test_a_detector_edge_at_the_disc_edge_has_no_polynomial():
    """With the outer edge at α the response has a kink at zero shift: no polynomial holds, the table does it all."""
    assert QuadrantResponse(0.0, 1.0).inverse_polynomial().reach == 0


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


@pytest.mark.parametrize("kernel", ["linear", "table", "polynomial"])
def test_without_the_sum_the_deflection_is_the_same(kernel):
    rng = np.random.default_rng(4)
    seg = segments_with_faults(rng, (9, 33), "uint16")
    table = QuadrantResponse().inverse_table()
    if kernel == "linear":
        fn, args = deflection_linear, (np.zeros(4), np.ones(4), 0.9, AXES, 2.0, 65535.0)
    else:
        fn, args = deflection_table, (np.zeros(4), np.ones(4), table.u, table.v, table.origin, table.step, AXES, 2.0,
                                      65535.0)
    poly = poly_args(QuadrantResponse().inverse_polynomial()) if kernel == "polynomial" else ()
    full = run(fn, seg, *args, poly=poly)
    bare = run(fn, seg, *args, with_total=False, poly=poly)
    assert bare[2] is None
    for a, b in zip(full[:2] + full[3:], bare[:2] + bare[3:]):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("response", ["linear", "exact"])
def test_segment_deflection_without_the_sum_is_the_same(response):
    """A caller that does not use the segment sum (the vacuum reference) gets the same maps without it."""
    from dpcstem.calibration import Calibration
    from dpcstem.options import ReconstructionOptions
    from dpcstem.reconstruct import segment_deflection

    seg = segments_with_faults(np.random.default_rng(10), (12, 20), "uint16")
    cal = Calibration(kv=200, alpha_mrad=10, step_x_nm=1)
    options = ReconstructionOptions(response=response, gains=[1.0, 1.02, 0.98, 1.01], offsets=[3.0, 1.0, 2.0, 0.5])
    full = segment_deflection(seg, cal, options=options)
    bare = segment_deflection(seg, cal, options=options, with_total=False)
    assert bare[2] is None and full[2] is not None
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


@pytest.mark.parametrize("kernel", ["linear", "table", "polynomial"])
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
    tail = ()
    if kernel == "polynomial":
        poly = QuadrantResponse().inverse_polynomial()
        tail, extra = poly_args(poly), {"table": table, "poly": poly}
    got = run(fn, seg, *args, poly=tail)
    want = naive_deflection(seg, np.zeros(4), np.ones(4), AXES, 10.0, **extra)
    assert want[3].all()
    for g, w in zip(got[:2], want[:2]):
        np.testing.assert_allclose(g, w, rtol=1e-5)


def signal_segments(rng, shape, dtype, *, gains, offsets, spread=0.3, counts=(400, 4000)):
    """Raw segments of signals |dA|, |dB| ≤ ``spread`` and sums ``counts`` through ``gains`` and
    above ``offsets`` (rounded for integer types), then the faulty pixels of :func:`segments_with_faults`."""
    da, db = rng.uniform(-spread, spread, (2, *shape))
    total = rng.uniform(*counts, shape)
    true = np.stack([total * (0.25 + da / 2), total * (0.25 + db / 2), total * (0.25 - da / 2),
                     total * (0.25 - db / 2)])
    raw = true * np.asarray(gains)[:, None, None] + np.asarray(offsets)[:, None, None]
    seg = (np.rint(raw) if np.dtype(dtype).kind in "iu" else raw).astype(dtype)
    faults = segments_with_faults(rng, shape, dtype)
    for iy, ix in ((0, 0), (-1, -1), (0, 1), (1, 0), (1, 1)):
        seg[:, iy, ix] = faults[:, iy, ix]
    return seg


# Gains 0.5-2 and baselines: a detector's ADC offset of 3·10⁴ counts under a signal of a few hundred.
REGIMES = {"unequal gains": ((0.5, 2.0), (0.0, 20.0), (400, 4000)),
           "baseline": ((0.9, 1.1), (30000.0, 33000.0), (200, 1200))}


@pytest.mark.parametrize("dtype", ["uint16", "float32", "float64"])
@pytest.mark.parametrize("regime", sorted(REGIMES))
@pytest.mark.parametrize("kernel", ["linear", "polynomial"])
def test_float32_kernels_equal_the_oracle_with_unequal_gains_and_a_baseline(kernel, regime, dtype):
    """The float32 normalisation (raw differences first, offsets in two parts) against the float64
    loop oracles where a naive float32 one would not hold: unequal gains, a large baseline,
    saturation at the full scale and the faulty pixels."""
    gain_range, offset_range, counts = REGIMES[regime]
    rng = np.random.default_rng([8, np.dtype(dtype).num, len(regime), len(kernel)])
    gains, offsets = rng.uniform(*gain_range, 4), rng.uniform(*offset_range, 4)
    seg = signal_segments(rng, (19, 37), dtype, gains=gains, offsets=offsets, counts=counts)
    seg[3, 5, 7] = 65535  # saturated (the fault pixel's C is too)
    inv_gain = 1 / gains
    if kernel == "linear":
        got = run(deflection_linear, seg, offsets, inv_gain, 0.85, AXES, 7.5, 65535.0)
        want = naive_deflection(seg, offsets, inv_gain, AXES, 7.5, 65535.0, slope=0.85)
    else:
        response = QuadrantResponse(0.1, 3.0)
        table, poly = response.inverse_table(), response.inverse_polynomial()
        args = (offsets, inv_gain, table.u, table.v, table.origin, table.step, AXES, 7.5, 65535.0)
        got = run(deflection_table, seg, *args, poly=poly_args(poly))
        want = naive_deflection(seg, offsets, inv_gain, AXES, 7.5, 65535.0, table=table, poly=poly)
    assert_equal_to_float32_rounding(got, want, 7.5)
    assert want[3].sum() > 600 and not want[3][5, 7] and not want[3][1, 1]


@pytest.mark.parametrize("dtype", ["uint16", "float32", "float64"])
@pytest.mark.parametrize("spread", [1e-4, 0.3])
@pytest.mark.parametrize("regime", ["equal gains", *sorted(REGIMES)])
def test_the_float32_normalisation_keeps_its_stated_error_bound(regime, spread, dtype):
    """|δdA| ≤ 8u(|dA| + |g_A − g_C|/g_C · C/S) and |δS| ≤ 4u·S (u = 2⁻²⁴), the bound of the module
    docstring, against float64: with equal gains a deflection of 10⁻⁴ keeps float32 relative precision."""
    gain_range, offset_range, counts = REGIMES.get(regime, ((1.0, 1.0), (0.0, 20.0), (400, 4000)))
    rng = np.random.default_rng([9, np.dtype(dtype).num, len(regime), int(spread * 1e4)])
    gains, offsets = rng.uniform(*gain_range, 4), rng.uniform(*offset_range, 4)
    seg = signal_segments(rng, (40, 60), dtype, gains=gains, offsets=offsets, spread=spread, counts=counts)
    inv_gain = 1 / gains
    # slope 1, α 1 and identity axes: θ = (dA, dB)
    d_a, d_b, total, valid = run(deflection_linear, seg, offsets, inv_gain, 1.0, np.eye(2), 1.0, np.inf)
    a, b, c, d = ((seg[k].astype(float) - offsets[k]) * inv_gain[k] for k in range(4))
    ok = valid.astype(bool)
    assert ok.sum() > 2000
    s = (a + b + c + d)[ok]
    u = 2.0**-24
    for got_x, first, second, g_first, g_second in ((d_a, a, c, inv_gain[0], inv_gain[2]),
                                                    (d_b, b, d, inv_gain[1], inv_gain[3])):
        want_x = (first - second)[ok] / s
        bound = 8 * u * (np.abs(want_x) + abs(g_first - g_second) / g_second * second[ok] / s)
        assert np.all(np.abs(got_x[ok] - want_x) <= bound)
        if regime == "equal gains":
            np.testing.assert_allclose(got_x[ok], want_x, rtol=8 * u, atol=0)
    assert np.all(np.abs(total[ok] - s) <= 4 * u * s)
