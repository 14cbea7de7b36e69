"""Specimen thickness from low-loss EELS: mean free paths, log-ratio, spectrum files."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dpcstem import eels
from dpcstem.errors import CalibrationError, InputDataError, MissingMetadataError, UnreadableFileError
from dpcstem.io import read_spectrum

from conftest import SHARED_DATA as SHARED
from lowloss import synthetic_low_loss, write_dm3


# --------------------------------------------------------------------------------------
# Composition and mean free path (numbers computed by hand from the published formulas)
# --------------------------------------------------------------------------------------


def test_malis_licoo2_at_200kv_is_117nm():
    lam = eels.mean_free_path(kv=200, beta_mrad=15, composition="LiCoO2")
    assert lam.formula == "Malis 1988"
    assert abs(lam.mean_free_path_nm / 117.0 - 1) < 0.02
    # F = (1 + 200/1022)/(1 + 200/511)^2 = 1.195695/1.935867 = 0.617622;
    # E_m = 7.6·13.64858^0.36 = 19.47355 eV; ln(2·15·200/19.47355) = ln(308.110) = 5.730457;
    # λ = 106·0.617622·200/(19.47355·5.730457) = 13093.59/111.5913 = 117.334 nm
    assert lam.mean_free_path_nm == pytest.approx(117.334, rel=1e-4)
    assert "117.3 nm" in lam.describe() and "Z_eff = 13.65" in lam.describe()


@pytest.mark.parametrize("formula, z_eff", [
    ("LiCoO2", 13.64858),  # (¼·3^1.3 + ¼·27^1.3 + ½·8^1.3)/(¼·3^0.3 + ¼·27^0.3 + ½·8^0.3)
    ("Si", 14.0),
    ("BaTiO3", 25.08342),
    ("SrTiO3", 19.23292),
    ("Li6PS5Cl", 11.56289),
])
def test_effective_atomic_number_malis_weighting(formula, z_eff):
    assert eels.effective_atomic_number(formula) == pytest.approx(z_eff, rel=1e-6)


def test_effective_atomic_number_uses_atomic_fractions_not_counts():
    assert eels.effective_atomic_number({"Li": 2, "Co": 2, "O": 4}) == pytest.approx(
        eels.effective_atomic_number("LiCoO2"), rel=1e-12)
    assert eels.malis_mean_energy_loss_ev("LiCoO2") == pytest.approx(19.47355, rel=1e-6)


@pytest.mark.parametrize("kv, beta, formula, em, lam_nm", [
    # F(80) = (1 + 80/1022)/(1 + 80/511)^2 = 1.078278/1.337605 = 0.806116
    # Si: E_m = 7.6·14^0.36 = 19.65259; ln(2·10·80/19.65259) = ln(81.41423) = 4.399550;
    # λ = 106·0.806116·80/(19.65259·4.399550) = 6835.86/86.4632 = 79.0616 nm
    (80, 10, "Si", 19.65259, 79.0616),
    # LiCoO2: ln(2·15·80/19.47355) = ln(123.2441) = 4.814167; λ = 6835.86/93.7484 = 72.9167 nm
    (80, 15, "LiCoO2", 19.47355, 72.9167),
    # F(300) = (1 + 300/1022)/(1 + 300/511)^2 = 1.293542/2.518860 = 0.513548
    # BaTiO3: E_m = 7.6·25.08342^0.36 = 24.24336; ln(2·20·300/24.24336) = ln(494.9809) = 6.204519;
    # λ = 106·0.513548·300/(24.24336·6.204519) = 16330.83/150.4184 = 108.569 nm
    (300, 20, "BaTiO3", 24.24336, 108.569),
    # LiCoO2: ln(2·15·300/19.47355) = ln(462.1653) = 6.135923; λ = 16330.83/119.4881 = 136.673 nm
    (300, 15, "LiCoO2", 19.47355, 136.673),
])
def test_malis_at_other_voltages_matches_hand_computation(kv, beta, formula, em, lam_nm):
    got = eels.mean_free_path(kv=kv, beta_mrad=beta, composition=formula)
    assert got.mean_energy_loss_ev == pytest.approx(em, rel=1e-6)
    assert got.mean_free_path_nm == pytest.approx(lam_nm, rel=1e-4)
    # the same with E_m given instead of a composition
    assert eels.malis_mean_free_path_nm(kv, beta, em) == pytest.approx(lam_nm, rel=1e-4)
    given = eels.mean_free_path(kv=kv, beta_mrad=beta, mean_energy_loss_ev=em)
    assert given.composition is None and given.z_eff is None
    assert given.mean_free_path_nm == pytest.approx(lam_nm, rel=1e-4)


@pytest.mark.parametrize("kv, rho, alpha, beta, lam_nm", [
    # F(200) = 0.617622; ρ^0.3 = 5.06^0.3 = 1.626685; θ_E = 5.5·1.626685/(0.617622·200) = 0.072430 mrad;
    # α = 0: ln[(2β² + 2θ_E²)·θ_C²/((2θ_C²)·θ_E²)] = ln(1 + β²/θ_E²) = ln(42890.4) = 10.66643;
    # 1/λ = 11·1.626685/(200·0.617622·200)·10.66643 = 7.40153e-3 nm⁻¹ → λ = 135.107 nm
    (200, 5.06, 0.0, 15.0, 135.107),
    # 300 kV, α = 10, β = 20 mrad: θ_E = 5.5·1.626685/(0.513548·300) = 0.058073 mrad;
    # ln[(100 + 400 + 2θ_E² + 300)·400/((100 + 400 + 800 + 300)·θ_E²)] = ln(59295.7) = 10.99027 → λ = 156.699 nm
    (300, 5.06, 10.0, 20.0, 156.699),
    # Si, 80 kV, α = 0, β = 10 mrad: ρ^0.3 = 2.33^0.3 = 1.288807; θ_E = 5.5·1.288807/(0.806116·80) = 0.109917;
    # ln(1 + 100/0.0120818) = ln(8277.9) = 9.021345 → λ = 103.402 nm
    (80, 2.33, 0.0, 10.0, 103.402),
])
def test_iakoubovskii_matches_hand_computation(kv, rho, alpha, beta, lam_nm):
    got = eels.iakoubovskii_mean_free_path_nm(kv, rho, beta_mrad=beta, alpha_mrad=alpha)
    assert got == pytest.approx(lam_nm, rel=1e-4)
    result = eels.mean_free_path(kv=kv, beta_mrad=beta, density_g_cm3=rho, alpha_mrad=alpha)
    assert result.formula == "Iakoubovskii 2008" and result.mean_free_path_nm == pytest.approx(lam_nm, rel=1e-4)


def test_iakoubovskii_is_symmetric_in_alpha_and_beta_and_saturates():
    a = eels.iakoubovskii_mean_free_path_nm(200, 5.06, beta_mrad=15, alpha_mrad=5)
    b = eels.iakoubovskii_mean_free_path_nm(200, 5.06, beta_mrad=5, alpha_mrad=15)
    assert a == pytest.approx(b, rel=1e-12)
    # far beyond θ_C = 20 mrad the collection angle no longer matters: ln(θ_C²/θ_E²) = ln(400/0.072430²)
    wide = eels.iakoubovskii_mean_free_path_nm(200, 5.06, beta_mrad=2000)
    assert wide == pytest.approx(1 / (11 * 1.626685 / (200 * 0.617622 * 200) * math.log(400 / 0.072430**2)), rel=1e-3)
    assert wide < eels.iakoubovskii_mean_free_path_nm(200, 5.06, beta_mrad=15)


@pytest.mark.parametrize("formula, atoms", [
    ("LiCoO2", {"Li": 1, "Co": 1, "O": 2}),
    ("Li6PS5Cl", {"Li": 6, "P": 1, "S": 5, "Cl": 1}),
    ("BaTiO3", {"Ba": 1, "Ti": 1, "O": 3}),
    ("SrTiO3", {"Sr": 1, "Ti": 1, "O": 3}),
    ("Ca(OH)2", {"Ca": 1, "O": 2, "H": 2}),
    ("LiNi0.8Mn0.1Co0.1O2", {"Li": 1, "Ni": 0.8, "Mn": 0.1, "Co": 0.1, "O": 2}),
    ("[Co(NH3)6]Cl3", {"Co": 1, "N": 6, "H": 18, "Cl": 3}),
    (" Li Co O2 ", {"Li": 1, "Co": 1, "O": 2}),
])
def test_parse_formula(formula, atoms):
    assert eels.parse_formula(formula) == pytest.approx(atoms)


@pytest.mark.parametrize("formula, message", [
    ("LiXyO2", "unknown element symbol 'Xy'"),
    ("licoo2", "unexpected character 'l'"),
    ("Li-CoO2", "unexpected character '-'"),
    ("", "is empty"),
    ("Li(CoO2", "not closed"),
    ("LiCo)O2", "unbalanced"),
    ("LiCo0O2", "must be positive"),
    ("2LiO", "follows no element"),
    ("Li()O", "empty group"),
])
def test_parse_formula_rejects(formula, message):
    with pytest.raises(CalibrationError, match=message):
        eels.parse_formula(formula)


def test_mean_free_path_rejects_bad_inputs():
    with pytest.raises(CalibrationError, match="exactly one of composition"):
        eels.mean_free_path(kv=200, beta_mrad=15)
    with pytest.raises(CalibrationError, match="got composition, density_g_cm3"):
        eels.mean_free_path(kv=200, beta_mrad=15, composition="LiCoO2", density_g_cm3=5.06)
    with pytest.raises(CalibrationError, match="alpha_mrad is used by the Iakoubovskii formula"):
        eels.mean_free_path(kv=200, beta_mrad=15, composition="LiCoO2", alpha_mrad=10)
    with pytest.raises(CalibrationError, match="beta_mrad must be positive"):
        eels.malis_mean_free_path_nm(200, -1, 19.5)
    with pytest.raises(CalibrationError, match=r"2·β·E0/E_m > 1"):
        eels.malis_mean_free_path_nm(200, 0.01, 19.5)
    with pytest.raises(CalibrationError, match="kv must be a number"):
        eels.malis_mean_free_path_nm("fast", 15, 19.5)
    with pytest.raises(CalibrationError, match="alpha_mrad must be zero or positive"):
        eels.iakoubovskii_mean_free_path_nm(200, 5.06, beta_mrad=15, alpha_mrad=-2)
    with pytest.raises(CalibrationError, match="density_g_cm3 must be positive"):
        eels.iakoubovskii_mean_free_path_nm(200, 0, beta_mrad=15)


# --------------------------------------------------------------------------------------
# Log-ratio
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("t_over_lambda", [0.2, 0.5, 1.0, 2.0, 3.0])
@pytest.mark.parametrize("seed", [0, 1])
def test_log_ratio_recovers_known_t_over_lambda(t_over_lambda, seed):
    rng = np.random.default_rng(seed)
    counts, expected = synthetic_low_loss(t_over_lambda, rng=rng)
    result = eels.log_ratio(counts, energy_axis=(-10.0, 0.15))
    assert abs(result.t_over_lambda / t_over_lambda - 1) < 0.02
    low, high = result.zlp_window_ev
    assert -5 < low < -1 and 1 < high < 5  # between the peak's tails and the plasmon rise
    assert result.total_window_ev[0] == low and result.total_window_ev[1] == pytest.approx(-10 + 2047.5 * 0.15)
    assert result.zlp_position_ev == pytest.approx(0.07, abs=0.15)
    assert result.zlp_fwhm_ev == pytest.approx(0.9, rel=0.05)
    assert result.total_counts == pytest.approx(counts[round((low + 10) / 0.15 + 0.5):].sum())
    assert result.valid


def test_log_ratio_noiseless_spectrum_is_accurate_to_a_few_per_mille():
    for t_over_lambda in (0.2, 1.0, 3.0):
        counts, _ = synthetic_low_loss(t_over_lambda, rng=None, noise=False)
        got = eels.log_ratio(counts, energy_axis=(-10.0, 0.15)).t_over_lambda
        assert abs(got / t_over_lambda - 1) < 0.004


@pytest.mark.parametrize("kwargs", [
    dict(step_ev=0.5, n=700, offset_ev=-20.0),  # coarse dispersion
    dict(zlp_ev=1.3),  # zero-loss peak drifted off 0 eV
    dict(zlp_fwhm_ev=1.5),  # Schottky-like width
    dict(plasmon_ev=15.0, damping_ev=1.0),  # sharp, free-electron-like plasmon
])
def test_log_ratio_is_robust_to_acquisition_conditions(kwargs):
    rng = np.random.default_rng(7)
    for t_over_lambda in (0.3, 2.5):
        counts, _ = synthetic_low_loss(t_over_lambda, rng=rng, **kwargs)
        axis = (kwargs.get("offset_ev", -10.0), kwargs.get("step_ev", 0.15))
        got = eels.log_ratio(counts, energy_axis=axis).t_over_lambda
        assert abs(got / t_over_lambda - 1) < 0.02


def test_low_count_fine_dispersion_spectra_are_unbiased():
    # 5000 counts spread over 0.05 eV channels: the zero-loss peak of a thick area holds a few
    # hundred counts, so its flanks are noisy; minima must not be taken from that noise.
    errors = []
    for seed in range(10):
        counts, _ = synthetic_low_loss(3.0, rng=np.random.default_rng(seed), total_counts=5e3, step_ev=0.05, n=6144)
        errors.append(eels.log_ratio(counts, energy_axis=(-10.0, 0.05)).t_over_lambda / 3.0 - 1)
    assert abs(np.mean(errors)) < 0.04


def test_zero_loss_window_runs_between_first_minima():
    e = -10 + 0.1 * np.arange(600)
    zlp = 1e5 * np.exp(-0.5 * (e / 0.5) ** 2)
    plasmon = 2e3 * np.exp(-0.5 * ((e - 15) / 3) ** 2)
    gain_artefact = 50 * np.exp(-0.5 * ((e + 7) / 0.5) ** 2)  # a bump on the energy-gain side
    spectrum = zlp + plasmon + gain_artefact
    result = eels.log_ratio(spectrum, energy_axis=(-10, 0.1))
    right = np.argmin(np.where((e > 0) & (e < 15), spectrum, np.inf))
    left = np.argmin(np.where((e > -7) & (e < 0), spectrum, np.inf))
    assert result.zlp_window_ev[1] == pytest.approx(e[right] + 0.05, abs=0.101)
    assert result.zlp_window_ev[0] == pytest.approx(e[left] - 0.05, abs=0.101)
    inside = (e > result.zlp_window_ev[0]) & (e < result.zlp_window_ev[1])
    assert result.zero_loss_counts == pytest.approx(spectrum[inside].sum())
    assert result.total_counts == pytest.approx(spectrum[e > result.zlp_window_ev[0]].sum())
    # energy_max_ev limits I_t
    cut = eels.log_ratio(spectrum, energy_axis=(-10, 0.1), energy_max_ev=20.0)
    assert cut.total_window_ev[1] == pytest.approx(20.05)
    assert cut.total_counts == pytest.approx(spectrum[(e > result.zlp_window_ev[0]) & (e < 20.05)].sum())


def test_vacuum_spectrum_gives_zero():
    rng = np.random.default_rng(3)
    e = -10 + 0.15 * np.arange(1000)
    counts = rng.poisson(1e5 * np.exp(-0.5 * (e / 0.38) ** 2)).astype(float)
    result = eels.log_ratio(counts, energy_axis=(-10, 0.15))
    assert abs(result.t_over_lambda) < 1e-3


def _image(t_map, rng, **kwargs):
    return np.stack([synthetic_low_loss(t, rng=rng, total_counts=2e5, n=1024, step_ev=0.3, **kwargs)[0]
                     for t in t_map.ravel()]).reshape(*t_map.shape, 1024)


def test_spectrum_image_gives_a_map_from_arrays_dask_and_hyperspy_signals():
    import dask.array as da
    import hyperspy.api as hs

    rng = np.random.default_rng(11)
    truth = np.linspace(0.2, 3.0, 15).reshape(3, 5)
    cube = _image(truth, rng).astype(np.float32)
    cube[1, 2] = np.nan  # a dead pixel
    result = eels.log_ratio(cube, energy_axis=(-10, 0.3))
    assert result.t_over_lambda.shape == (3, 5) and result.zlp_window_ev.shape == (3, 5, 2)
    assert result.total_window_ev.shape == (3, 5, 2)
    assert np.isnan(result.t_over_lambda[1, 2]) and not result.valid[1, 2]
    good = np.ones((3, 5), bool)
    good[1, 2] = False
    assert result.valid[good].all()
    assert np.max(np.abs(result.t_over_lambda[good] / truth[good] - 1)) < 0.02

    lazy = eels.log_ratio(da.from_array(cube, chunks=(2, 2, 256)), energy_axis=(-10, 0.3))
    np.testing.assert_allclose(lazy.t_over_lambda, result.t_over_lambda, rtol=1e-12, equal_nan=True)
    np.testing.assert_allclose(lazy.zlp_window_ev, result.zlp_window_ev, equal_nan=True)

    signal = hs.signals.Signal1D(cube)
    axis = signal.axes_manager.signal_axes[0]
    axis.offset, axis.scale, axis.units = -10.0, 0.3, "eV"
    for s in (signal, signal.as_lazy()):
        got = eels.log_ratio(s)
        np.testing.assert_allclose(got.t_over_lambda, result.t_over_lambda, rtol=1e-12, equal_nan=True)

    thick = eels.thickness(cube, kv=200, beta_mrad=15, composition="LiCoO2", energy_axis=(-10, 0.3))
    lam = thick.mean_free_path_nm
    np.testing.assert_allclose(thick.thickness_nm, result.t_over_lambda * lam, equal_nan=True)
    assert np.max(np.abs(thick.thickness_nm[good] / (truth[good] * lam) - 1)) < 0.02


def test_thickness_of_one_spectrum_in_nm():
    counts, _ = synthetic_low_loss(1.2, rng=np.random.default_rng(5))
    result = eels.thickness(counts, kv=200, beta_mrad=15, composition="LiCoO2", energy_axis=(-10, 0.15))
    assert isinstance(result.thickness_nm, float)
    assert result.thickness_nm == pytest.approx(1.2 * 117.334, rel=0.02)
    assert result.t_over_lambda == result.log_ratio.t_over_lambda
    by_density = eels.thickness(counts, kv=200, beta_mrad=15, density_g_cm3=5.06, energy_axis=(-10, 0.15))
    assert by_density.thickness_nm == pytest.approx(result.t_over_lambda * 135.107, rel=1e-4)


def test_signal_energy_units_are_converted():
    import hyperspy.api as hs

    counts, _ = synthetic_low_loss(0.8, rng=np.random.default_rng(2))
    reference = eels.log_ratio(counts, energy_axis=(-10, 0.15))
    signal = hs.signals.Signal1D(counts)
    axis = signal.axes_manager.signal_axes[0]
    axis.offset, axis.scale, axis.units = -0.010, 0.00015, "keV"
    got = eels.log_ratio(signal)
    assert got.t_over_lambda == pytest.approx(reference.t_over_lambda, rel=1e-9)
    np.testing.assert_allclose(got.zlp_window_ev, reference.zlp_window_ev)
    signal.metadata.set_item("Acquisition_instrument.TEM.beam_energy", 300.0)
    signal.metadata.set_item("Acquisition_instrument.TEM.Detector.EELS.collection_angle", 12.0)
    spectrum = eels.as_spectrum(signal)
    assert (spectrum.kv, spectrum.beta_mrad, spectrum.alpha_mrad) == (300.0, 12.0, None)


def test_log_ratio_rejects_unusable_spectra():
    import hyperspy.api as hs

    counts, _ = synthetic_low_loss(1.0, rng=np.random.default_rng(0))
    with pytest.raises(InputDataError, match=r"no energy axis: give energy_axis=\(offset_ev, step_ev\)"):
        eels.log_ratio(counts)
    with pytest.raises(InputDataError, match=r"runs from 10 to 317.05 eV and has no channel within ±5 eV of 0 eV"):
        eels.log_ratio(counts, energy_axis=(10, 0.15))
    with pytest.raises(InputDataError, match="positive step"):
        eels.log_ratio(counts, energy_axis=(-10, 0))
    with pytest.raises(InputDataError, match="at least 3 energy channels"):
        eels.log_ratio(counts[:2], energy_axis=(-0.1, 0.1))
    with pytest.raises(InputDataError, match="no positive zero-loss intensity"):
        eels.log_ratio(np.full(200, np.nan), energy_axis=(-5, 0.1))
    with pytest.raises(InputDataError, match="no positive zero-loss intensity"):
        eels.log_ratio(np.zeros(200), energy_axis=(-5, 0.1))
    with pytest.raises(InputDataError, match="ends at 4.9 eV, inside the zero-loss peak search range"):
        eels.log_ratio(np.ones(100), energy_axis=(-5, 0.1))
    with pytest.raises(InputDataError, match="must be numbers"):
        eels.log_ratio(np.array(["a", "b", "c"]), energy_axis=(-0.1, 0.1))
    with pytest.raises(InputDataError, match="energy_max_ev must exceed"):
        eels.log_ratio(counts, energy_axis=(-10, 0.15), energy_max_ev=2)
    with pytest.raises(CalibrationError, match="zlp_search_ev must be positive"):
        eels.log_ratio(counts, energy_axis=(-10, 0.15), zlp_search_ev=0)
    image = hs.signals.Signal2D(np.ones((4, 4)))
    with pytest.raises(InputDataError, match="exactly one signal axis"):
        eels.log_ratio(image)
    spatial = hs.signals.Signal1D(counts)
    spatial.axes_manager.signal_axes[0].units = "nm"
    with pytest.raises(InputDataError, match="units 'nm', not an energy"):
        eels.log_ratio(spatial)


# --------------------------------------------------------------------------------------
# Reading spectra from files
# --------------------------------------------------------------------------------------


def test_read_dm3_spectrum_with_its_metadata(tmp_path):
    counts, _ = synthetic_low_loss(0.9, rng=np.random.default_rng(4))
    path = tmp_path / "low_loss.dm3"
    write_dm3(path, counts, offset_ev=-10.0, step_ev=0.15, kv=200, beta_mrad=15, alpha_mrad=10)
    spectrum = read_spectrum(path)
    assert (spectrum.kv, spectrum.beta_mrad, spectrum.alpha_mrad) == (200.0, 15.0, 10.0)
    assert spectrum.energy_offset_ev == pytest.approx(-10.0, abs=1e-4)
    assert spectrum.energy_step_ev == pytest.approx(0.15, rel=1e-6)
    np.testing.assert_array_equal(spectrum.counts, counts.astype(np.float32))
    assert spectrum.source == str(path) and spectrum.navigation_shape == ()
    result = eels.log_ratio(spectrum)
    assert result.t_over_lambda == pytest.approx(0.9, rel=0.02)
    moved = read_spectrum(path, energy_axis=(-12.0, 0.15))  # a given axis replaces the file's
    assert moved.energy_offset_ev == -12.0 and moved.kv == 200.0


def test_read_dm3_spectrum_image_eager_and_lazy(tmp_path):
    rng = np.random.default_rng(9)
    truth = np.array([[0.4, 1.1, 2.7], [0.25, 1.8, 3.0]])
    cube = _image(truth, rng)
    path = tmp_path / "si.dm3"
    write_dm3(path, cube, offset_ev=-10.0, step_ev=0.3, kv=300, beta_mrad=20)
    eager = read_spectrum(path)
    lazy = read_spectrum(path, lazy=True)
    assert eager.navigation_shape == (2, 3) and type(lazy.counts).__module__.startswith("dask")
    np.testing.assert_array_equal(eager.counts, cube.astype(np.float32))
    a, b = eels.log_ratio(eager), eels.log_ratio(lazy)
    np.testing.assert_allclose(b.t_over_lambda, a.t_over_lambda, rtol=1e-12)
    assert np.max(np.abs(a.t_over_lambda / truth - 1)) < 0.02


def test_read_msa_hspy_and_npy(tmp_path):
    import hyperspy.api as hs

    counts, _ = synthetic_low_loss(1.5, rng=np.random.default_rng(6))
    signal = hs.signals.Signal1D(counts)
    axis = signal.axes_manager.signal_axes[0]
    axis.offset, axis.scale, axis.units = -10.0, 0.15, "eV"
    signal.metadata.set_item("Acquisition_instrument.TEM.beam_energy", 200.0)
    signal.save(tmp_path / "s.msa")
    signal.save(tmp_path / "s.hspy")
    np.save(tmp_path / "s.npy", counts)
    reference = eels.log_ratio(counts, energy_axis=(-10, 0.15)).t_over_lambda
    for name, axis_given in (("s.msa", None), ("s.hspy", None), ("s.npy", (-10, 0.15))):
        spectrum = read_spectrum(tmp_path / name, energy_axis=axis_given)
        assert eels.log_ratio(spectrum).t_over_lambda == pytest.approx(reference, rel=1e-6), name
    assert read_spectrum(tmp_path / "s.msa").kv == 200.0
    assert isinstance(read_spectrum(tmp_path / "s.npy", energy_axis=(-10, 0.15)).counts, np.memmap)


def test_read_spectrum_errors(tmp_path):
    import hyperspy.api as hs

    with pytest.raises(UnreadableFileError, match="spectrum file not found"):
        read_spectrum(tmp_path / "absent.dm3")
    bad = tmp_path / "corrupt.dm3"
    bad.write_bytes(b"this is not a Gatan file")
    with pytest.raises(UnreadableFileError, match="corrupt.dm3: cannot read it as a spectrum"):
        read_spectrum(bad)
    other = tmp_path / "notes.xyz"
    other.write_text("1 2 3")
    with pytest.raises(UnreadableFileError, match=r"\.xyz is not a format RosettaSciIO reads"):
        read_spectrum(other)
    np.save(tmp_path / "s.npy", np.ones(10))
    with pytest.raises(InputDataError, match="has no energy axis; give --energy-axis"):
        read_spectrum(tmp_path / "s.npy")
    (tmp_path / "broken.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(UnreadableFileError, match="cannot read the .npy array"):
        read_spectrum(tmp_path / "broken.npy", energy_axis=(0, 1))
    hs.signals.Signal2D(np.ones((4, 4))).save(tmp_path / "image.hspy")
    with pytest.raises(MissingMetadataError, match="holds no spectrum"):
        read_spectrum(tmp_path / "image.hspy")
    uncalibrated = hs.signals.Signal1D(np.ones(50))
    uncalibrated.save(tmp_path / "uncalibrated.hspy")
    with pytest.raises(InputDataError, match="not an energy"):
        read_spectrum(tmp_path / "uncalibrated.hspy")
    assert read_spectrum(tmp_path / "uncalibrated.hspy", energy_axis=(-1, 0.1)).energy_step_ev == 0.1


def test_read_spectrum_says_a_velox_image_file_holds_no_spectrum():
    path = SHARED / "velox" / "fei_example_dpc_titles.emd"
    if not path.is_file():
        pytest.skip(f"reference data absent: {path}")
    with pytest.raises(MissingMetadataError, match=r"holds no spectrum .* found .*'DF4-A' \(2, 2\)"):
        read_spectrum(path)


# --------------------------------------------------------------------------------------
# Against exspy, the EELS package of the HyperSpy project
# --------------------------------------------------------------------------------------


def _exspy():
    import warnings

    with warnings.catch_warnings():  # exspy's import warns about HyperSpy names it uses
        warnings.simplefilter("ignore")
        return pytest.importorskip("exspy", reason="exspy is not installed (optional extra dpcstem[exspy])")


def test_t_over_lambda_matches_exspy_estimate_thickness(tmp_path):
    """exspy's ``estimate_thickness`` on the same spectrum image and the same zero-loss windows.

    exspy's log-ratio takes I_0 from the spectrum's start to a threshold and I_t over the
    whole spectrum; dpcstem's zero-loss window runs from the first minimum below the peak.
    Below that minimum the spectrum holds only read noise, so with exspy's threshold at the
    channel after dpcstem's window the two are the same definition.
    """
    import subprocess
    import sys

    import h5py
    import hyperspy.api as hs

    exspy = _exspy()
    rng = np.random.default_rng(12)
    truth = np.array([[0.3, 0.8, 1.5, 2.4], [2.0, 1.1, 0.6, 3.0]])
    step = 0.3
    spectrum = exspy.signals.EELSSpectrum(_image(truth, rng))
    axis = spectrum.axes_manager.signal_axes[0]
    axis.offset, axis.scale, axis.units, axis.is_binned = -10.0, step, "eV", True
    spectrum.set_microscope_parameters(beam_energy=200, collection_angle=15, convergence_angle=20)

    ours = eels.log_ratio(spectrum)
    threshold = hs.signals.BaseSignal(ours.zlp_window_ev[..., 1] + step / 2).T  # centre of the next channel
    theirs = spectrum.estimate_thickness(threshold=threshold).data
    np.testing.assert_allclose(ours.t_over_lambda, theirs, rtol=0.01)
    assert np.max(np.abs(ours.t_over_lambda / truth - 1)) < 0.03

    # The command line reads the exspy spectrum image saved as HyperSpy's file, with its metadata.
    path = tmp_path / "low_loss.hspy"
    spectrum.save(path)
    out = tmp_path / "thickness.h5"
    run = subprocess.run([sys.executable, "-m", "dpcstem", "thickness", str(path), "--composition", "LiCoO2",
                          "-o", str(out)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "2 x 4 spectrum image" in run.stdout and "E0 = 200 keV, β = 15 mrad" in run.stdout
    with h5py.File(out) as f:
        np.testing.assert_allclose(f["t_over_lambda"][()], theirs, rtol=0.01)
        lam = f.attrs["mean_free_path_nm"]
        np.testing.assert_allclose(f["thickness"][()], theirs * lam, rtol=0.01)
