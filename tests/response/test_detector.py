import math

import numpy as np
import pytest

from dpcstem.calibration.gains import gains_from_vacuum
from dpcstem.response import LinearResponse, QuadrantResponse
from dpcstem.response.exact import fold_radius
from dpcstem.response.geometry import S_MAX, segment_areas
from dpcstem.response.geometry import shift_signals
from dpcstem.errors import InputDataError


def brute_force_areas(u, v, inner, outer, n=1600):
    """Count grid points of the shifted disc on each quadrant: an independent estimate."""
    xs = (np.arange(n) + 0.5) / n * 6 - 3
    x, y = np.meshgrid(xs, xs)
    r = np.hypot(x, y)
    azimuth = np.arctan2(y, x)
    inside = ((x - u) ** 2 + (y - v) ** 2 < 1) & (r >= inner) & (r < outer)
    cell = (6 / n) ** 2
    out = []
    for centre in np.arange(4) * np.pi / 2:
        off = np.mod(azimuth - centre + np.pi, 2 * np.pi) - np.pi
        out.append(np.count_nonzero(inside & (np.abs(off) < np.pi / 4)) * cell)
    return np.array(out)


def test_centred_disc_fills_each_quadrant_equally():
    np.testing.assert_allclose(segment_areas(0.0, 0.0), np.full(4, np.pi / 4), atol=1e-10)


@pytest.mark.parametrize("s", [0.05, 0.34, 0.5, 0.76, 0.9])
def test_matches_closed_form_for_full_quadrants(s):
    d_a, d_b, total = shift_signals(s, 0.0)
    x = s / math.sqrt(2)
    expected = 2 / math.pi * (x * math.sqrt(1 - x * x) + math.asin(x))
    assert d_a == pytest.approx(expected, abs=1e-13)
    assert d_b == pytest.approx(0.0, abs=1e-13)
    assert total == pytest.approx(math.pi, rel=1e-13)


@pytest.mark.parametrize("u,v,inner,outer", [
    (0.3, 0.2, 0.2, 1.5), (0.6, -0.5, 0.4, 1.0), (-0.7, 0.1, 0.0, 1.2), (0.05, 0.9, 0.3, math.inf),
    (-0.4, -0.45, 0.6, 1.3),
])
def test_matches_brute_force_with_hole_and_outer_edge(u, v, inner, outer):
    np.testing.assert_allclose(segment_areas(u, v, inner=inner, outer=outer), brute_force_areas(u, v, inner, outer),
                               atol=6e-3)


def test_linear_slope_and_its_halving_with_outer_edge_at_alpha():
    assert QuadrantResponse().linear_slope == pytest.approx(2 * math.sqrt(2) / math.pi, rel=1e-8)
    assert QuadrantResponse(outer=1.0).linear_slope == pytest.approx(math.sqrt(2) / math.pi, rel=1e-5)


@pytest.mark.parametrize("s,departure", [(0.34, 0.01), (0.76, 0.05)])
def test_linear_response_departs_as_the_geometry_says(s, departure):
    exact, _, _ = shift_signals(s, 0.0)
    linear = QuadrantResponse().linear_slope * s
    assert (linear - exact) / linear == pytest.approx(departure, abs=0.001)


def test_shifts_along_a_diagonal_couple_both_signals():
    d_a, d_b, _ = shift_signals(0.5, 0.5)
    one_axis, _, _ = shift_signals(0.5, 0.0)
    assert d_a == pytest.approx(d_b)
    assert d_a < one_axis  # the second axis takes signal away: axes couple at large shifts


GEOMETRIES = [(0.0, math.inf), (0.0, 1.0), (0.3, 1.2), (0.2, 3.0)]


def table_lookup(table, d_a, d_b):
    """Bilinear lookup as the kernel does it; NaN outside the table."""
    n = table.u.shape[0]
    fj = (d_a - table.origin) / table.step
    fi = (d_b - table.origin) / table.step
    outside = (fj < 0) | (fi < 0) | (fj >= n - 1) | (fi >= n - 1)
    fj, fi = np.where(outside, 0.0, fj), np.where(outside, 0.0, fi)
    j, i = fj.astype(int), fi.astype(int)
    wx, wy = fj - j, fi - i

    def lookup(t):
        return (1 - wy) * ((1 - wx) * t[i, j] + wx * t[i, j + 1]) + wy * ((1 - wx) * t[i + 1, j] + wx * t[i + 1, j + 1])

    return np.where(outside, np.nan, lookup(table.u)), np.where(outside, np.nan, lookup(table.v))


@pytest.mark.parametrize("inner,outer,covered", [(0.0, math.inf, 0.9), (0.0, 1.0, 0.9), (0.3, 1.2, 0.85),
                                                 (0.2, 3.0, 0.85)])
def test_table_inverts_both_axes_together(inner, outer, covered, rng):
    """Every shift up to ``covered`` inverts (0.9 α where the response never folds), to 2e-3 of the shift."""
    response = QuadrantResponse(inner, outer)
    table = response.inverse_table()
    s = covered * np.sqrt(rng.random(5000))
    phi = rng.random(5000) * 2 * np.pi
    u, v = s * np.cos(phi), s * np.sin(phi)
    back_u, back_v = table_lookup(table, *response.signals(u, v)[:2])
    error = np.hypot(back_u - u, back_v - v)
    assert np.all(np.isfinite(error))
    assert np.max(error / np.maximum(s, 0.05)) < 2e-3


@pytest.mark.parametrize("inner,outer", [(0.576, 3.21), (0.5, 1.0), (0.75, math.inf)])
def test_table_refuses_signals_that_two_shifts_give(inner, outer):
    """With a large inner hole the response folds: signals from beyond the fold are refused, not misread."""

    response = QuadrantResponse(inner, outer)
    fold = fold_radius(response)
    assert fold < 0.9
    table = response.inverse_table()
    phi = np.linspace(0, 2 * np.pi, 720)
    for s in np.linspace(fold + 0.02, S_MAX, 5):
        u, v = s * np.cos(phi), s * np.sin(phi)
        back_u, back_v = table_lookup(table, *response.signals(u, v)[:2])
        wrong = np.isfinite(back_u) & (np.hypot(back_u - u, back_v - v) > 1e-2)
        assert not wrong.any()
    u, v = 0.9 * fold * np.cos(phi), 0.9 * fold * np.sin(phi)  # inside the fold: answered
    back_u, back_v = table_lookup(table, *response.signals(u, v)[:2])
    assert np.isfinite(back_u).mean() > 0.5  # except where signals from beyond the fold overlap


@pytest.mark.parametrize("inner,outer,covered", [(0.0, math.inf, 0.9), (0.0, 1.0, 0.9), (0.3, 1.2, 0.85),
                                                 (0.2, 3.0, 0.85), (0.576, 3.21, 0.6)])
def test_newton_inversion_is_the_identity(inner, outer, covered, rng):
    response = QuadrantResponse(inner, outer)
    s = covered * np.sqrt(rng.random(300))
    phi = rng.random(300) * 2 * np.pi
    u, v = s * np.cos(phi), s * np.sin(phi)
    back_u, back_v = response.invert(*response.signals(u, v)[:2])
    np.testing.assert_allclose(back_u, u, atol=1e-8)
    np.testing.assert_allclose(back_v, v, atol=1e-8)


def test_unreachable_signals_invert_to_nan():
    u, v = QuadrantResponse().invert(np.array([0.95]), np.array([0.95]))
    assert np.isnan(u[0]) and np.isnan(v[0])


def test_model_refuses_shifts_beyond_alpha():
    with pytest.raises(InputDataError, match="s < 1"):
        segment_areas(1.2, 0.0)
    assert S_MAX < 1


def test_linear_response_from_calibration():
    from dpcstem import Calibration

    cal = Calibration(kv=200, alpha_mrad=10, step_x_nm=1, collection_outer_mrad=10)
    assert LinearResponse.from_calibration(cal).slope == pytest.approx(math.sqrt(2) / math.pi, rel=1e-5)


def test_gains_from_vacuum_recover_unequal_gains(rng):
    gains = np.array([1.1, 0.9, 1.05, 0.95])
    vacuum = rng.poisson(1e5, size=(4, 32, 32)) * gains[:, None, None] + 50
    np.testing.assert_allclose(gains_from_vacuum(vacuum, offsets=np.full(4, 50.0)), gains / gains.mean(), rtol=1e-3)
    with pytest.raises(InputDataError, match="4 segments"):
        gains_from_vacuum(vacuum[:3])
