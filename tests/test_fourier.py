"""iDPC: the projected potential of a known phase, with the 2π and the boundaries right."""

import numpy as np
import pytest

from dpcstem import Calibration, physics
from dpcstem.options import ReconstructionOptions
from dpcstem.fourier import integrate_gradient
from dpcstem.reconstruct import reconstruct_deflection

KV, THICKNESS = 300, 50.0


def gaussian_potential(shape, step, centre, sigma_nm, peak_v_nm):
    y, x = np.mgrid[0 : shape[0], 0 : shape[1]].astype(float)
    x, y = x * step[0], y * step[1]
    r2 = (x - centre[0]) ** 2 + (y - centre[1]) ** 2
    v = peak_v_nm * np.exp(-r2 / (2 * sigma_nm**2))
    # Exact gradient (V·nm per nm) → deflection θ = (e/pv)∇V_proj, in mrad.
    gx = -v * (x - centre[0]) / sigma_nm**2
    gy = -v * (y - centre[1]) / sigma_nm**2
    to_mrad = 1 / physics.pv_over_e_v(KV) / physics.MRAD_TO_RAD
    return v, gx * to_mrad, gy * to_mrad


def rms_error(got, want):
    got = got - got.mean()
    want = want - want.mean()
    return np.sqrt(np.mean((got - want) ** 2)) / np.sqrt(np.mean(want**2))


# A Gaussian cut by the scan's edge: its gradient does not vanish at the boundary.
CASE = dict(shape=(96, 128), step=(0.4, 0.5), centre=(8.0, 30.0), sigma_nm=6.0, peak_v_nm=400.0)


@pytest.mark.parametrize("method", ["mirror", "dct"])
def test_potential_of_a_known_gaussian_within_1_percent(method):
    v, tx, ty = gaussian_potential(**CASE)
    cal = Calibration(kv=KV, alpha_mrad=10, step_x_nm=CASE["step"][0], step_y_nm=CASE["step"][1],
                      thickness_nm=THICKNESS)
    result = reconstruct_deflection(tx, ty, cal, options=ReconstructionOptions(potential_method=method))
    projected = result.extra["projected_potential"][0]
    assert rms_error(projected, v) < 0.01
    # The thickness-averaged potential is the projected one over t, in volts.
    np.testing.assert_allclose(result.potential, projected / THICKNESS, rtol=1e-5)


def test_bare_periodic_fft_fails_the_same_test():
    v, tx, ty = gaussian_potential(**CASE)
    f = integrate_gradient(tx, ty, step_x=CASE["step"][0], step_y=CASE["step"][1], method="periodic")
    projected = f * physics.pv_over_e_v(KV) * physics.MRAD_TO_RAD
    assert rms_error(projected, v) > 0.05


def test_two_pi_is_right_for_a_centred_phase():
    """A wrong factor of 2π scales the result by 2π; the amplitude must match exactly."""
    case = dict(CASE, centre=(25.6, 24.0))
    v, tx, ty = gaussian_potential(**case)
    f = integrate_gradient(tx, ty, step_x=case["step"][0], step_y=case["step"][1], method="mirror")
    projected = f * physics.pv_over_e_v(KV) * physics.MRAD_TO_RAD
    assert np.ptp(projected) == pytest.approx(np.ptp(v), rel=5e-3)


def test_reference_region_sets_the_zero():
    v, tx, ty = gaussian_potential(**CASE)
    cal = Calibration(kv=KV, alpha_mrad=10, step_x_nm=0.4, step_y_nm=0.5, thickness_nm=THICKNESS)
    region = np.zeros(v.shape, bool)
    region[-10:, -10:] = True
    result = reconstruct_deflection(tx, ty, cal, options=ReconstructionOptions(potential_reference=region))
    assert abs(np.mean(result.potential[region])) < 1e-6
    assert result.potential[int(30 / 0.5), int(8 / 0.4)] == pytest.approx(400 / THICKNESS, rel=0.02)


def test_spectral_divergence_has_no_false_charge_at_the_edges():
    """A smooth field whose components do not vanish at the edges: ∇·E = 2a + 2b·(x + y)."""
    from dpcstem.fourier import spectral_divergence

    y, x = np.mgrid[0:64, 0:80].astype(float)
    sx, sy = 0.5, 0.25
    xs, ys = x * sx, y * sy
    fx = 3.0 * xs + 0.02 * xs**2 + 1.0
    fy = 3.0 * ys + 0.02 * ys**2 - 2.0
    want = 6.0 + 0.04 * (xs + ys)
    got = spectral_divergence(fx, fy, step_x=sx, step_y=sy)
    error = np.abs(got - want) / want.max()
    assert error[3:-3, 3:-3].max() < 0.02
    assert error.max() < 0.35  # the edge pixels: a kink's ringing, no line of false charge


def test_lowpass_window_removes_what_lies_above_its_cutoff():
    from dpcstem.fourier import lowpass_window, spectral_divergence

    np.testing.assert_allclose(lowpass_window(np.array([0.0, 0.25, 0.375, 0.5, 0.6]), 0.5), [1, 1, 0.5, 0, 0])
    x = np.arange(128) * 0.5
    slow = np.sin(2 * np.pi * x / 32.0)  # 1/32 per nm
    fast = 0.5 * np.sin(2 * np.pi * x / 1.5)  # 0.67 per nm
    fx = np.tile(slow + fast, (8, 1))
    div = spectral_divergence(fx, np.zeros_like(fx), step_x=0.5, step_y=0.5, cutoff=0.2)
    want = np.tile(2 * np.pi / 32.0 * np.cos(2 * np.pi * x / 32.0), (8, 1))
    np.testing.assert_allclose(div[:, 32:-32], want[:, 32:-32], atol=0.03 * np.abs(want).max())
    assert np.abs(fast).max() > 2 * np.abs(want).max()  # what was removed was not small
