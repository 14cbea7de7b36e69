"""Uncertainty maps against the scatter of repeated noisy acquisitions, and their formulas
against the operators they describe."""

import numpy as np
import pytest

from dpcstem import Calibration, CalibrationError, InputDataError, physics
from dpcstem.options import ReconstructionOptions
from dpcstem.response import QuadrantResponse
from dpcstem.response.empirical import fit_response
from dpcstem.response.geometry import shift_signals
from dpcstem.fourier import spectral_divergence
from dpcstem.kernels import divergence
from dpcstem.noise import deflection_covariance, uncertainty_from_covariance, uncertainty_maps
from dpcstem.reconstruct import reconstruct
from dpcstem.simulate import segments_from_deflection

REALISATIONS = 200
NAMES = ("deflection_x", "deflection_y", "field_x", "field_y", "charge_density")


def bump_deflection(shape, alpha_mrad, s_max):
    """A smooth deflection reaching s_max·α, with a uniform part (so no pixel sits at zero)."""
    ny, nx = shape
    y, x = np.mgrid[0:ny, 0:nx].astype(float)
    phi = np.exp(-((x - 0.55 * nx) ** 2 / 40 + (y - 0.45 * ny) ** 2 / 30))
    gy, gx = np.gradient(phi)
    scale = 0.6 * s_max * alpha_mrad / np.hypot(gx, gy).max()
    return scale * gx + 0.25 * s_max * alpha_mrad, scale * gy - 0.2 * s_max * alpha_mrad


CASE = dict(kv=200, alpha_mrad=2.0, step_x_nm=0.5, step_y_nm=0.7, thickness_nm=80.0, detector_rotation_deg=30.0,
            flip=True, collection_inner_mrad=0.4, eps_r=10.0)


def scatter(method, cutoff, *, response="exact", seed=0):
    """Standard deviation over repeated acquisitions, and the last acquisition's segments."""
    cal = Calibration(**CASE)
    tx, ty = bump_deflection((14, 17), cal.alpha_mrad, 0.8)
    gains = np.array([1.0, 1.1, 0.9, 1.05])
    counts_per_electron = 3.0
    rng = np.random.default_rng(seed)
    stack = []
    for _ in range(REALISATIONS):
        segments = segments_from_deflection(tx, ty, cal, dose=2e4, rng=rng, gains=gains * counts_per_electron)
        segments[:, 3, 5] = 0.0  # a dead pixel: its neighbours' derivatives are one-sided
        result = reconstruct(segments, cal,
                             options=ReconstructionOptions(gains=gains, charge_method=method, cutoff=cutoff,
                                                           response=response))
        stack.append([getattr(result, name) for name in NAMES])
    return np.std(np.array(stack, dtype=float), axis=0, ddof=1), segments, cal, gains, counts_per_electron


def agreement(empirical, predicted):
    """(mean variance ratio, fraction of pixels whose standard deviations agree within 10 %)."""
    ok = np.isfinite(empirical) & np.isfinite(predicted)
    ratio = empirical[ok] / predicted[ok]
    return float(np.mean(ratio**2)), float(np.mean(np.abs(ratio - 1) < 0.1))


@pytest.mark.parametrize("method,cutoff", [("finite-difference", None), ("spectral", None), ("spectral", 0.8)])
def test_uncertainty_maps_agree_with_the_scatter_of_200_realisations(method, cutoff):
    empirical, segments, cal, gains, cpe = scatter(method, cutoff)
    maps = uncertainty_maps(segments, cal, counts_per_electron=cpe,
                            options=ReconstructionOptions(gains=gains, charge_method=method, cutoff=cutoff))
    # A standard deviation from 200 draws scatters by 1/sqrt(2·199) = 5 %: within 10 % at
    # ~95 % of the pixels when the prediction is right; on average within a few per cent.
    for k, name in enumerate(NAMES):
        predicted, unit = maps[f"{name}_uncertainty"]
        assert predicted.dtype == np.float32
        mean_ratio, within = agreement(empirical[k], predicted)
        assert mean_ratio == pytest.approx(1.0, abs=0.04), (name, mean_ratio)
        assert within > 0.88, (name, within)
    assert np.isnan(maps["deflection_x_uncertainty"][0][3, 5])
    np.testing.assert_allclose(maps["free_charge_density_uncertainty"][0], 10 * maps["charge_density_uncertainty"][0],
                               rtol=1e-6)
    units = {name: unit for name, (_, unit) in maps.items()}
    assert units == {"deflection_x_uncertainty": "mrad", "deflection_y_uncertainty": "mrad",
                     "field_x_uncertainty": "V/m", "field_y_uncertainty": "V/m",
                     "charge_density_uncertainty": "C/m^3", "free_charge_density_uncertainty": "C/m^3"}


def test_the_inverse_jacobian_matters_at_large_shifts():
    """The same test fails when the propagation uses the linear slope for an exact inversion."""
    empirical, segments, cal, gains, cpe = scatter("finite-difference", None, seed=1)
    right = uncertainty_maps(segments, cal, counts_per_electron=cpe, options=ReconstructionOptions(gains=gains))
    wrong = uncertainty_maps(segments, cal, counts_per_electron=cpe,
                             options=ReconstructionOptions(gains=gains, response="linear"))
    right_ratio, right_within = agreement(empirical[0], right["deflection_x_uncertainty"][0])
    wrong_ratio, wrong_within = agreement(empirical[0], wrong["deflection_x_uncertainty"][0])
    assert right_ratio == pytest.approx(1.0, abs=0.04) and right_within > 0.88
    assert wrong_ratio > 1.1 and wrong_within < 0.8, (wrong_ratio, wrong_within)


def test_linear_response_uncertainty_agrees_with_its_scatter():
    empirical, segments, cal, gains, cpe = scatter("finite-difference", None, response="linear", seed=2)
    maps = uncertainty_maps(segments, cal, counts_per_electron=cpe,
                            options=ReconstructionOptions(gains=gains, response="linear"))
    for k, name in enumerate(NAMES):
        mean_ratio, within = agreement(empirical[k], maps[f"{name}_uncertainty"][0])
        assert mean_ratio == pytest.approx(1.0, abs=0.04) and within > 0.88, (name, mean_ratio, within)


def test_empirical_response_gives_the_uncertainty_of_the_exact_one():
    cal = Calibration(**CASE)
    g = np.linspace(-0.9, 0.9, 21)
    tu, tv = (a.ravel() for a in np.meshgrid(g, g))
    keep = np.hypot(tu, tv) <= 0.91
    d_a, d_b, _ = shift_signals(tu[keep], tv[keep], inner=cal.inner_over_alpha)
    response = fit_response(tu[keep], tv[keep], d_a, d_b)
    tx, ty = bump_deflection((12, 13), cal.alpha_mrad, 0.8)
    segments = segments_from_deflection(tx, ty, cal, dose=1e4, rng=np.random.default_rng(3))
    exact = uncertainty_maps(segments, cal, dose=1e4)
    fitted = uncertainty_maps(segments, cal, dose=1e4, options=ReconstructionOptions(response=response))
    for name in exact:
        np.testing.assert_allclose(fitted[name][0], exact[name][0], rtol=0.04)
        assert np.median(np.abs(fitted[name][0] / exact[name][0] - 1)) < 0.005


def test_dose_and_counts_per_electron_give_the_same_maps():
    cal = Calibration(**CASE)  # with a hole: 96 % of a centred disc is collected
    tx, ty = bump_deflection((10, 11), cal.alpha_mrad, 0.5)
    segments = segments_from_deflection(tx, ty, cal, dose=5e3, rng=np.random.default_rng(4))
    by_dose = uncertainty_maps(segments, cal, dose=5e3)
    by_gain = uncertainty_maps(segments, cal, counts_per_electron=1.0)
    for name in by_dose:
        np.testing.assert_allclose(by_dose[name][0], by_gain[name][0], rtol=0.01)
    # A centred beam: var dA = ((A+C)/S)/N = 1/(2N) with N electrons collected, and
    # θ = α·dA/k with k the response's slope at zero (the hole lowers it).
    expected = segments_from_deflection(np.zeros((4, 4)), np.zeros((4, 4)), cal)
    centred = uncertainty_maps(expected, cal, counts_per_electron=1 / 5e3)
    electrons = expected.sum(axis=0)[1, 1] * 5e3
    assert electrons == pytest.approx(0.96 * 5e3)
    slope = QuadrantResponse.from_calibration(cal).linear_slope
    sigma = cal.alpha_mrad * np.sqrt(0.5 / electrons) / slope
    np.testing.assert_allclose(centred["deflection_x_uncertainty"][0], sigma, rtol=2e-3)
    np.testing.assert_allclose(centred["deflection_y_uncertainty"][0], sigma, rtol=2e-3)


def brute_force_variance(operator, shape, var_x, var_y, cov):
    """Σ_q L_pq² σ_q² over unit impulses q: the exact variance of a linear operator's output."""
    ny, nx = shape
    columns_x, columns_y = [], []
    for q in range(ny * nx):
        impulse = np.zeros(ny * nx)
        impulse[q] = 1.0
        impulse = impulse.reshape(shape)
        columns_x.append(operator(impulse, 0 * impulse).ravel())
        columns_y.append(operator(0 * impulse, impulse).ravel())
    lx, ly = np.array(columns_x).T, np.array(columns_y).T
    return (lx**2 @ var_x.ravel() + ly**2 @ var_y.ravel() + 2 * (lx * ly) @ cov.ravel()).reshape(shape)


def variances(shape, seed):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0 : shape[0], 0 : shape[1]]
    var_x = 1 + 0.3 * np.sin(x / 5.0) + 0.2 * y / shape[0] + 0.05 * rng.random(shape)
    var_y = 1.5 + 0.4 * np.cos(y / 4.0)
    cov = 0.4 * np.sin((x + y) / 6.0)
    return var_x, var_y, cov


@pytest.mark.parametrize("shape", [(9, 12), (1, 5), (7, 1)])
def test_finite_difference_variance_is_that_of_the_masked_stencil(shape):
    var_x, var_y, cov = variances(shape, 5)
    valid = np.ones(shape, bool)
    if shape == (9, 12):
        valid[4, 6] = valid[0, 3] = valid[8, 10] = valid[5, 7] = False
    cal = Calibration(kv=200, alpha_mrad=2.0, step_x_nm=0.5, step_y_nm=0.8, thickness_nm=1.0)
    # Variances given for the field itself: divide by (V/m per mrad)² to enter them as deflection.
    per_mrad = abs(physics.field_v_per_m_from_deflection(1.0, cal.kv, 1.0))
    maps = uncertainty_from_covariance(var_x / per_mrad**2, var_y / per_mrad**2, cov / per_mrad**2, cal, valid=valid)

    def operator(fx, fy):
        out = np.empty(shape)
        ok = np.empty(shape, np.uint8)
        divergence(fx, fy, valid.view(np.uint8), 0.5e-9, 0.8e-9, out, ok)
        return np.where(ok == 1, out, 0.0)

    exact = brute_force_variance(operator, shape, np.where(valid, var_x, 0), np.where(valid, var_y, 0),
                                 np.where(valid, cov, 0))
    sigma = maps["charge_density_uncertainty"][0] / physics.VACUUM_PERMITTIVITY_F_M
    defined = np.isfinite(sigma)
    out, ok = np.empty(shape), np.empty(shape, np.uint8)
    divergence(np.zeros(shape), np.zeros(shape), valid.view(np.uint8), 0.5e-9, 0.8e-9, out, ok)
    np.testing.assert_array_equal(defined, ok == 1)  # defined where the reconstruction's charge is
    if shape == (9, 12):
        assert defined.sum() == valid.sum() - 1  # (8, 11): its only x neighbour is masked
    else:
        assert not defined.any()  # one pixel along an axis: no derivative across it
    np.testing.assert_allclose(sigma[defined] ** 2, exact[defined], rtol=1e-5)


@pytest.mark.parametrize("cutoff", [None, 0.8, 0.4])
def test_spectral_variance_is_exact_for_uniform_noise_and_close_otherwise(cutoff):
    shape = (14, 17)
    cal = Calibration(kv=200, alpha_mrad=2.0, step_x_nm=0.5, step_y_nm=0.7, thickness_nm=1.0)
    per_mrad = abs(physics.field_v_per_m_from_deflection(1.0, cal.kv, 1.0))
    cutoff_per_m = None if cutoff is None else cutoff * 1e9

    def operator(fx, fy):
        return spectral_divergence(fx, fy, step_x=0.5e-9, step_y=0.7e-9, cutoff=cutoff_per_m)

    uniform = (np.ones(shape), np.full(shape, 2.0), np.full(shape, 0.5))
    for (var_x, var_y, cov), tolerance in ((uniform, 1e-9), (variances(shape, 6), 0.15)):
        maps = uncertainty_from_covariance(var_x / per_mrad**2, var_y / per_mrad**2, cov / per_mrad**2, cal,
                                           options=ReconstructionOptions(charge_method="spectral", cutoff=cutoff))
        sigma = maps["charge_density_uncertainty"][0].astype(float) / physics.VACUUM_PERMITTIVITY_F_M
        exact = brute_force_variance(operator, shape, var_x, var_y, cov)
        np.testing.assert_allclose(sigma**2, exact, rtol=max(tolerance, 2e-6))


def test_without_a_thickness_only_the_deflection_uncertainty():
    cal = Calibration(kv=200, alpha_mrad=2.0, step_x_nm=1.0)
    segments = segments_from_deflection(np.zeros((5, 6)), np.zeros((5, 6)), cal, dose=1e3,
                                        rng=np.random.default_rng(7))
    maps = uncertainty_maps(segments, cal, dose=1e3)
    assert sorted(maps) == ["deflection_x_uncertainty", "deflection_y_uncertainty"]


def test_uncertainty_refuses_missing_or_bad_counting_statistics():
    cal = Calibration(kv=200, alpha_mrad=2.0, step_x_nm=1.0, thickness_nm=50.0)
    segments = segments_from_deflection(np.zeros((5, 6)), np.zeros((5, 6)), cal, dose=1e3,
                                        rng=np.random.default_rng(8))
    with pytest.raises(CalibrationError, match="either the dose .* or the detector's counts_per_electron"):
        uncertainty_maps(segments, cal)
    with pytest.raises(CalibrationError, match="either the dose"):
        uncertainty_maps(segments, cal, dose=1e3, counts_per_electron=1.0)
    with pytest.raises(CalibrationError, match="dose must be positive and finite .*got -5"):
        uncertainty_maps(segments, cal, dose=-5)
    with pytest.raises(CalibrationError, match="charge_method must be one of"):
        uncertainty_maps(segments, cal, dose=1e3, options=ReconstructionOptions(charge_method="wavelet"))
    with pytest.raises(InputDataError, match=r"shape \(4, ny, nx\)"):
        uncertainty_maps(segments[:3], cal, dose=1e3)
    with pytest.raises(InputDataError, match="variance maps must be 2-D of one shape"):
        uncertainty_from_covariance(np.ones((3, 3)), np.ones((3, 4)), np.ones((3, 3)), cal)
    var_x, var_y, cov, valid = deflection_covariance(segments, cal, dose=1e3)
    assert valid.all() and np.all(var_x > 0) and np.all(np.abs(cov) <= np.sqrt(var_x * var_y))
