"""iDPC: the projected potential of a known phase, with the 2π and the boundaries right."""

import numpy as np
import pytest

from dpcstem import Calibration, physics
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
    result = reconstruct_deflection(tx, ty, cal, potential_method=method)
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
    result = reconstruct_deflection(tx, ty, cal, potential_reference=region)
    assert abs(np.mean(result.potential[region])) < 1e-6
    assert result.potential[int(30 / 0.5), int(8 / 0.4)] == pytest.approx(400 / THICKNESS, rel=0.02)
