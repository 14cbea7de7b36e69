"""The forward model: each part does what it says, and the whole acquisition has its answer."""

import math

import numpy as np
import pytest
from scipy import integrate, optimize
from skimage.registration import phase_cross_correlation

from dpcstem import Calibration, physics
from dpcstem.options import ReconstructionOptions
from dpcstem.response.geometry import segment_areas, shift_signals
from dpcstem.errors import CalibrationError, DPCError, InputDataError
from dpcstem.reconstruct import reconstruct, reconstruct_deflection
from dpcstem.simulate import (
    Descan,
    GouyChapman,
    MeanInnerPotential,
    MottSchottky,
    StepThickness,
    UniformField,
    UniformThickness,
    WedgeThickness,
    airy_first_zero_nm,
    airy_intensity,
    blurred_segment_areas,
    deflection_from_truth,
    layer_at_bias,
    layer_truth,
    layer_truth_at,
    probe_kernel,
    probe_weighted,
    simulate_acquisition,
    simulate_bias_series,
    simulate_tilt_series,
    simulate_vacuum,
    uniform_field_truth,
)
from dpcstem.simulate.specimen import mip_deflection_mrad

KV, THICKNESS = 200.0, 131.0
GAINS = (1.0, 0.93, 1.06, 0.98)
OFFSETS = (120.0, 95.0, 110.0, 101.0)
DESCAN = Descan(offset_mrad=(0.02, -0.01), linear_mrad=((0.05, 0.02), (0.01, -0.04)),
                quadratic_mrad=((0.01, 0.0, 0.02), (0.0, 0.015, 0.0)))


def calibration(**changes):
    values = dict(kv=KV, alpha_mrad=1.0, step_x_nm=0.5, thickness_nm=THICKNESS)
    values.update(changes)
    return Calibration(**values)


def ms_layer(drop=0.0):
    return MottSchottky(density_per_m3=5e25, eps_r=12, potential_drop_v=drop, sheet_nm=2.0)


# -- counting noise ------------------------------------------------------------------------

@pytest.mark.parametrize("dose", [60.0, 3000.0])
def test_counting_noise_is_poisson_at_the_asked_dose(dose):
    cal = calibration()
    gains = np.array([1.0, 2.0, 0.5, 1.5])
    offsets = np.array([10.0, 0.0, 5.0, 20.0])
    segments, _ = simulate_acquisition(None, cal, (80, 80), probe=False, dose=dose, gains=gains, offsets=offsets,
                                       dtype=np.float64, rng=3)
    electrons = (segments.reshape(4, -1) - offsets[:, None]) / gains[:, None]
    n = electrons.shape[1]
    expected = dose / 4  # an undeflected disc puts a quarter of the dose on each segment
    for k in range(4):
        assert abs(electrons[k].mean() - expected) < 5 * math.sqrt(expected / n)
        assert electrons[k].var(ddof=1) == pytest.approx(expected, rel=6 * math.sqrt(2 / n))
        assert np.allclose(electrons[k], np.round(electrons[k]))  # whole electrons
    assert electrons.sum(axis=0).mean() == pytest.approx(dose, rel=5 / math.sqrt(dose * n))


def test_without_noise_the_counts_are_the_expected_ones():
    segments, _ = simulate_acquisition(None, calibration(), (6, 7), probe=False, dose=4000, noise=False,
                                       gains=GAINS, offsets=OFFSETS, dtype=np.float64)
    expected = 1000 * np.array(GAINS) + np.array(OFFSETS)
    assert np.allclose(segments, expected[:, None, None], rtol=1e-12)


def test_uint16_output_is_rounded_and_overflow_refused():
    segments, _ = simulate_acquisition(None, calibration(), (5, 5), probe=False, dose=4000, noise=False,
                                       offsets=(0.4, 0.6, 0, 0))
    assert segments.dtype == np.uint16
    assert segments[0, 0, 0] == 1000 and segments[1, 0, 0] == 1001
    with pytest.raises(InputDataError, match=r"uint16 range 0\.\.65535: lower the dose"):
        simulate_acquisition(None, calibration(), (5, 5), dose=3e5, rng=0)


# -- drift ------------------------------------------------------------------------------------

DRIFT_SPECIMEN = dict(mip=MeanInnerPotential(18.0, 12.0, width_nm=2.0),
                      thickness=StepThickness(100.0, 140.0, width_nm=2.0, normal_deg=90.0))


def _deflection_image(segments, cal):
    result = reconstruct(segments, cal)
    return result.deflection_x + result.deflection_y


@pytest.mark.parametrize("drift", [(0.37, -0.61), (2.3, 1.45), (-0.2, 0.1)])
def test_drift_shifts_the_acquisition_by_the_amount_asked(drift):
    # A vertical MIP step and a horizontal thickness terrace: structure in both directions.
    cal = calibration(alpha_mrad=2.0, step_x_nm=1.0)
    options = dict(**DRIFT_SPECIMEN, noise=False, dtype=np.float64)
    still, _ = simulate_acquisition(None, cal, (64, 64), **options)
    moved, truth = simulate_acquisition(None, cal, (64, 64), drift_px=drift, **options)
    shift, _, _ = phase_cross_correlation(_deflection_image(still, cal), _deflection_image(moved, cal),
                                          upsample_factor=100, normalization=None)
    assert shift == pytest.approx(drift, abs=0.03)
    assert truth.figures["drift_px"] == drift


def test_drifted_truth_is_the_analytic_truth_at_the_shifted_positions():
    cal = calibration(step_x_nm=0.5, step_y_nm=0.8)
    layer = ms_layer(0.5)
    _, still = simulate_acquisition(layer, cal, (12, 40), normal_deg=25.0, noise=False, probe=False)
    _, moved = simulate_acquisition(layer, cal, (12, 40), normal_deg=25.0, noise=False, probe=False,
                                    drift_px=(0.3, -0.7))
    n = math.radians(25.0)
    assert np.allclose(moved.distance_nm - still.distance_nm, -0.7 * 0.5 * math.cos(n) + 0.3 * 0.8 * math.sin(n))
    point = (39 * 0.5 / 2, 11 * 0.8 / 2)
    y, x = np.mgrid[0:12, 0:40].astype(float)
    direct = layer_truth_at(layer, (x - 0.7) * 0.5, (y + 0.3) * 0.8, point_nm=point, normal_deg=25.0,
                            resolution_nm=0.5 / 64)
    assert np.allclose(moved.field_x, direct.field_x, rtol=1e-9, atol=1e-9 * abs(direct.field_x).max())


def test_a_series_drifts_a_little_more_with_every_frame():
    cal = calibration(alpha_mrad=2.0, step_x_nm=1.0)
    series = simulate_bias_series(None, cal, (48, 48), biases=(0.0, 1.0, 2.0), drift_px=(0.4, -0.25), vacuum=False,
                                  noise=False, dtype=np.float64, **DRIFT_SPECIMEN)
    assert np.allclose(series.drifts_px, [[0, 0], [0.4, -0.25], [0.8, -0.5]])
    reference = _deflection_image(series.acquisitions[0].segments, cal)
    last = _deflection_image(series.acquisitions[2].segments, cal)
    shift, _, _ = phase_cross_correlation(reference, last, upsample_factor=100, normalization=None)
    assert shift == pytest.approx((0.8, -0.5), abs=0.03)


# -- probe -----------------------------------------------------------------------------------

@pytest.mark.parametrize("kv, alpha", [(80.0, 1.0), (200.0, 0.5), (300.0, 20.0)])
def test_airy_probe_first_zero_is_at_0p61_lambda_over_alpha(kv, alpha):
    wavelength_nm = float(physics.wavelength_m(kv)) * physics.M_TO_NM
    r0 = 0.61 * wavelength_nm / (alpha * 1e-3)
    found = optimize.minimize_scalar(lambda r: airy_intensity(r, kv, alpha), bounds=(0.8 * r0, 1.2 * r0),
                                     method="bounded", options={"xatol": 1e-7 * r0})
    assert found.x == pytest.approx(r0, rel=1e-3)
    assert airy_intensity(found.x, kv, alpha) < 1e-9
    assert airy_first_zero_nm(kv, alpha) == pytest.approx(found.x, rel=1e-5)
    inside = airy_intensity(np.linspace(0, 0.99 * r0, 200), kv, alpha)
    assert inside[0] == 1.0 and np.all(np.diff(inside) < 0)


def test_probe_kernel_is_normalised_symmetric_and_weights_like_a_plain_convolution(rng):
    kernel = probe_kernel(KV, 1.0, 0.5, 0.7)
    assert kernel.sum() == pytest.approx(1.0, abs=1e-12)
    assert np.allclose(kernel, kernel[::-1, ::-1]) and kernel.argmax() == kernel.size // 2
    ky, kx = kernel.shape[0] // 2, kernel.shape[1] // 2
    tx = rng.normal(size=(2 * ky + 5, 2 * kx + 3))
    ty = rng.normal(size=tx.shape)
    wx, wy = probe_weighted(tx, ty, kernel)
    reference = np.empty((5, 3))
    for i in range(5):
        for j in range(3):
            reference[i, j] = np.sum(tx[i:i + 2 * ky + 1, j:j + 2 * kx + 1] * kernel[::-1, ::-1])
    assert wx.shape == (5, 3) and np.allclose(wx, reference)
    # A linear ramp is unchanged by a symmetric, normalised probe.
    y, x = np.mgrid[0:2 * ky + 4, 0:2 * kx + 4].astype(float)
    ramp_x, _ = probe_weighted(0.3 * x - 0.2 * y, np.zeros_like(x), kernel)
    assert np.allclose(ramp_x, (0.3 * x - 0.2 * y)[ky:-ky, kx:-kx])


def test_the_probe_blurs_a_sharp_deflection_over_its_width():
    cal = calibration(alpha_mrad=0.25, step_x_nm=0.5)
    options = dict(mip=MeanInnerPotential(15.0, 14.9, width_nm=0.5), noise=False, dtype=np.float64)
    _, sharp = simulate_acquisition(None, cal, (2, 320), probe=False, **options)
    _, blurred = simulate_acquisition(None, cal, (2, 320), probe=True, oversample=2, **options)
    profile = blurred.deflection_x[0]
    # The integral across the step is kept (the probe is normalised) ...
    expected = (14.9 - 15.0) * THICKNESS / float(physics.pv_over_e_v(KV)) / 1e-3  # mrad·nm
    assert profile.sum() * 0.5 == pytest.approx(expected, rel=1e-3)
    assert sharp.deflection_x[0].sum() * 0.5 == pytest.approx(expected, rel=1e-3)
    # ... while the peak spreads over about the probe's width.
    width = np.count_nonzero(np.abs(profile) > 0.5 * np.abs(profile).max()) * 0.5
    r0 = airy_first_zero_nm(KV, 0.25)
    assert 0.7 * r0 < width < 0.95 * r0  # the probe's full width at half maximum is 0.84·r0
    assert np.abs(sharp.deflection_x).max() > 3 * np.abs(profile).max()


# -- field, layers, specimen -----------------------------------------------------------------

def test_uniform_field_gives_the_deflection_of_design_section_3():
    # 1 µrad through 100 nm at 200 kV is 3.44e6 V/m (DESIGN.md §3).
    theta_x, theta_y = deflection_from_truth(uniform_field_truth((3, 4), (3.44e6, 0.0)), 200.0, 100.0)
    assert np.allclose(theta_x, -1e-3, rtol=1e-3) and np.all(theta_y == 0)
    cal = calibration(thickness_nm=100.0, alpha_mrad=1.0)
    segments, truth = simulate_acquisition(UniformField(3.44e6, -1.72e6), cal, (8, 9), noise=False, dtype=np.float64)
    assert np.allclose(truth.deflection_x, -1e-3, rtol=1e-3) and np.allclose(truth.deflection_y, 0.5e-3, rtol=1e-3)
    result = reconstruct(segments, cal)
    assert np.allclose(result.field_x, 3.44e6, rtol=1e-4) and np.allclose(result.field_y, -1.72e6, rtol=1e-4)


def test_projected_potential_gradient_and_field_give_one_deflection():
    field = np.array([2e7, -5e6])
    from_field = physics.deflection_mrad_from_field(field, KV, THICKNESS)
    # V(x) = −E·x, so ∇(V·t) = −E·t (V/m × nm → V).
    from_gradient = physics.deflection_mrad_from_projected_potential_gradient(-field * THICKNESS * physics.NM_TO_M, KV)
    assert np.allclose(from_field, from_gradient, rtol=1e-12)


LAYERS = {
    "mott-schottky one-sided": MottSchottky(density_per_m3=5e25, eps_r=12, potential_drop_v=1.3, sheet_nm=1.5),
    "mott-schottky two-sided": MottSchottky(density_per_m3=5e25, eps_r=12, potential_drop_v=-0.8,
                                            counter_density_per_m3=2e25, counter_eps_r=30),
    "gouy-chapman": GouyChapman(ion_density_per_m3=6e25, eps_r=20, potential_drop_v=0.1, sheet_nm=1.0),
}


@pytest.mark.parametrize("name", LAYERS)
@pytest.mark.parametrize("bias", [0.0, 1.7])
def test_layer_truth_integrates_to_zero_net_charge(name, bias):
    # (A diffuse layer is kept near 0.1 V: at a few kT/e and more its charge crowds into a
    # sliver at the wall that no grid resolves, and Gouy–Chapman no longer describes it.)
    layer = layer_at_bias(LAYERS[name], bias, share=0.02 if name == "gouy-chapman" else 0.4)
    width = layer.width_nm
    x = np.linspace(-4 * width - 5, 6 * width + 5, 400_001)
    profile = layer.profile(x)
    rho = profile.charge_c_per_m3
    assert abs(integrate.trapezoid(rho, x)) < 1e-3 * integrate.trapezoid(np.abs(rho), x)
    assert profile.field_v_per_m[0] == 0 and abs(profile.field_v_per_m[-1]) < 1e-6 * abs(layer.peak_field_v_per_m)
    # The same on a map: an oblique interface sampled finely.
    truth = layer_truth(layer, (40, 400), width / 20, normal_deg=20.0)
    assert abs(truth.charge_density.sum()) < 0.02 * np.abs(truth.charge_density).sum()


def test_the_potential_drop_follows_the_bias():
    layer = ms_layer(0.2)
    biased = [layer_at_bias(layer, b, share=0.6) for b in (0.0, 1.0, 2.2)]
    assert [round(lay.potential_drop_v, 12) for lay in biased] == [0.2, 0.8, 1.52]
    widths = np.array([lay.width_nm for lay in biased])
    assert np.allclose(widths / widths[0], np.sqrt([1, 4, 7.6]))  # w ∝ sqrt(ΔV)
    assert layer_at_bias(layer, 1.0, built_in_v=0.0).potential_drop_v == 1.0
    with pytest.raises(CalibrationError, match="bias_v must be a finite number"):
        layer_at_bias(layer, float("nan"))
    with pytest.raises(CalibrationError, match="density_per_m3 must be positive"):
        MottSchottky(density_per_m3=0, eps_r=12, potential_drop_v=1)


def test_thickness_models_and_their_gradients():
    interface = ((10.0, 5.0), 30.0)
    x, y = np.meshgrid(np.linspace(0, 20, 41), np.linspace(0, 10, 21))
    h = 1e-5
    models = (UniformThickness(131.0), WedgeThickness(131.0, 0.4, direction_deg=70.0),
              StepThickness(131.0, 270.0, width_nm=1.5), StepThickness(80.0, 50.0, point_nm=(3, 3), normal_deg=-45))
    for model in models:
        t, gx, gy = model.evaluate(x, y, interface)

        def thickness(xs, ys, model=model):
            return model.evaluate(xs, ys, interface)[0]

        assert np.allclose(gx, (thickness(x + h, y) - thickness(x - h, y)) / (2 * h), atol=1e-6)
        assert np.allclose(gy, (thickness(x, y + h) - thickness(x, y - h)) / (2 * h), atol=1e-6)
    step, _, _ = StepThickness(131.0, 270.0, width_nm=0.5).evaluate(np.array([0.0, 20.0]), np.array([5.0, 5.0]),
                                                                     ((10.0, 5.0), 0.0))
    assert step == pytest.approx([131.0, 270.0])
    with pytest.raises(CalibrationError, match="after_nm \\(thickness\\) must be positive"):
        StepThickness(131.0, -1.0)


def test_mip_step_deflects_by_the_jump_of_the_projected_potential():
    # ∫θ dx across the interface = (e/pv)·(V_after·t_after − V_before·t_before).
    mip = MeanInnerPotential(17.0, 11.0, width_nm=1.0)
    thickness = StepThickness(131.0, 270.0, width_nm=2.0)
    x = np.linspace(-40, 40, 16001)
    theta_x, theta_y = mip_deflection_mrad(mip, thickness, x, np.zeros_like(x), ((0.0, 0.0), 0.0), KV)
    expected = (11.0 * 270.0 - 17.0 * 131.0) / float(physics.pv_over_e_v(KV)) / 1e-3
    assert integrate.trapezoid(theta_x, x) == pytest.approx(expected, rel=1e-6)
    assert np.all(theta_y == 0)


def test_truth_carries_the_thickness_map_and_the_mean_inner_potential():
    cal = calibration(alpha_mrad=4.0)
    _, truth = simulate_acquisition(ms_layer(1.0), cal, (6, 60), mip=MeanInnerPotential(18.0, 12.0, width_nm=0.3),
                                    thickness=StepThickness(131.0, 270.0, width_nm=0.3), noise=False, probe=False,
                                    dtype=np.float64)
    assert truth.thickness_nm[:, 0] == pytest.approx(131.0) and truth.thickness_nm[:, -1] == pytest.approx(270.0)
    assert truth.mean_inner_potential[:, 0] == pytest.approx(18.0)
    assert truth.mean_inner_potential[:, -1] == pytest.approx(12.0)
    # Away from the steps the deflection is the layer's, through the local thickness.
    deep = truth.distance_nm > 1.6
    layer_only = physics.deflection_mrad_from_field(truth.field_x, KV, truth.thickness_nm)
    assert np.count_nonzero(layer_only[deep]) > 12
    assert np.allclose(truth.deflection_x[deep], layer_only[deep], rtol=1e-4, atol=1e-9)


# -- whole acquisitions ----------------------------------------------------------------------

def test_reconstructed_noise_free_acquisition_reproduces_the_truth():
    cal = calibration(detector_rotation_deg=20.0, flip=True, collection_inner_mrad=0.1, collection_outer_mrad=3.0)
    layer = MottSchottky(density_per_m3=5e25, eps_r=12, potential_drop_v=0.2, counter_density_per_m3=3e25,
                         counter_eps_r=15)
    shape = (24, 96)
    segments, truth = simulate_acquisition(layer, cal, shape, bias_v=1.0, normal_deg=0.0, probe=False, gains=GAINS,
                                           offsets=OFFSETS, descan=DESCAN, noise=False, dose=4e4)
    result = reconstruct(segments, cal, options=ReconstructionOptions(gains=GAINS, offsets=OFFSETS))
    descan_x, descan_y = DESCAN(shape)
    theta_x, theta_y = result.deflection_x - descan_x, result.deflection_y - descan_y
    peak_theta = np.abs(truth.deflection_x).max()
    assert np.abs(theta_x - truth.deflection_x).max() < 2e-3 * peak_theta
    assert np.abs(theta_y - truth.deflection_y).max() < 2e-3 * peak_theta
    recovered = reconstruct_deflection(theta_x, theta_y, cal)
    peak = abs(truth.figures["peak_field_v_per_m"])
    assert np.abs(recovered.field_x - truth.field_x).max() < 2e-3 * peak
    assert np.abs(recovered.field_y).max() < 2e-3 * peak
    # Inside each depleted side the total charge is the dopant charge over that side's εr.
    w1, w2 = layer.widths_nm()
    d = truth.distance_nm
    for inside, density, eps_r in (((d > 1) & (d < w2 - 1), -5e25, 12), ((d < -1) & (d > -w1 + 1), 3e25, 15)):
        expected = density * physics.ELEMENTARY_CHARGE_C / eps_r
        assert np.allclose(truth.charge_density[inside], expected, rtol=1e-9)
        assert np.allclose(recovered.charge_density[inside], expected, rtol=0.01)
    potential = np.nanmean(recovered.potential, axis=0)
    assert potential[-1] - potential[0] == pytest.approx(-truth.figures["potential_drop_v"], rel=0.01)


def test_probe_and_mip_reach_the_segments_as_the_truth_says():
    cal = calibration(alpha_mrad=2.0, step_x_nm=0.5)
    shape = (8, 80)
    segments, truth = simulate_acquisition(ms_layer(0.3), cal, shape, bias_v=1.0, normal_deg=10.0, mip=(18.0, 12.0),
                                           thickness=StepThickness(131.0, 160.0, width_nm=1.0),
                                           gains=GAINS, offsets=OFFSETS, descan=DESCAN, noise=False, oversample=2)
    result = reconstruct(segments, cal, options=ReconstructionOptions(gains=GAINS, offsets=OFFSETS))
    descan_x, descan_y = DESCAN(shape)
    peak = np.abs(truth.deflection_x).max()
    assert np.abs(result.deflection_x - descan_x - truth.deflection_x).max() < 2e-3 * peak
    assert np.abs(result.deflection_y - descan_y - truth.deflection_y).max() < 2e-3 * peak


def test_vacuum_reference_holds_the_descan_and_the_gains():
    cal = calibration()
    shape = (16, 20)
    vacuum = simulate_vacuum(cal, shape, descan=DESCAN, gains=GAINS, offsets=OFFSETS, noise=False, dose=4e4,
                             dtype=np.float64)
    result = reconstruct(vacuum, cal, options=ReconstructionOptions(gains=GAINS, offsets=OFFSETS))
    descan_x, descan_y = DESCAN(shape)
    assert np.allclose(result.deflection_x, descan_x, atol=1e-6)
    assert np.allclose(result.deflection_y, descan_y, atol=1e-6)
    still = simulate_vacuum(cal, shape, gains=GAINS, offsets=OFFSETS, noise=False, dose=4e4, dtype=np.float64)
    assert np.allclose(still, (1e4 * np.array(GAINS) + np.array(OFFSETS))[:, None, None])


def test_scattering_outside_the_disc_shows_the_thickness_in_the_segment_sum():
    cal = calibration(alpha_mrad=3.0)
    segments, truth = simulate_acquisition(ms_layer(1.0), cal, (4, 60), thickness=(131.0, 270.0), mip=(18.0, 12.0),
                                           scattering_mfp_nm=150.0, noise=False, dtype=np.float64)
    total = segments.sum(axis=0)
    assert np.allclose(total, 4e4 * np.exp(-truth.thickness_nm / 150.0), rtol=1e-12)
    assert total[0, 0] / total[0, -1] == pytest.approx(np.exp((270.0 - 131.0) / 150.0), rel=1e-6)
    result = reconstruct(segments, cal)  # normalised differences: the deflection is untouched
    assert np.allclose(result.deflection_x, truth.deflection_x, atol=2e-3 * np.abs(truth.deflection_x).max())
    with pytest.raises(CalibrationError, match="scattering_mfp_nm must be positive"):
        simulate_acquisition(None, cal, (4, 4), scattering_mfp_nm=0.0)
    with pytest.raises(InputDataError, match=r"a dose map must have the scan's shape \(4, 4\)"):
        simulate_vacuum(cal, (4, 4), dose=np.ones((3, 3)))


def test_descan_maps():
    descan = Descan(offset_mrad=(1.0, -2.0), linear_mrad=((0.4, 0.0), (0.0, 0.6)),
                    quadratic_mrad=((0.8, 0, 0), (0, 0, 0)))
    tx, ty = descan((3, 5))
    assert tx[1, 2] == 1.0 and ty[1, 2] == -2.0  # the scan centre
    assert tx[0, -1] - tx[0, 0] == pytest.approx(0.4)  # the quadratic term is even
    assert ty[-1, 0] - ty[0, 0] == pytest.approx(0.6)
    assert tx[1, 0] == pytest.approx(1.0 - 0.2 + 0.8 * 0.25)
    with pytest.raises(InputDataError, match="linear_mrad must be finite numbers of shape \\(2, 2\\)"):
        Descan(linear_mrad=(0.1, 0.2))


def test_same_seed_gives_the_same_acquisition_bit_for_bit():
    cal = calibration()
    options = dict(biases=(0.0, 1.0, 2.0), drift_px=(0.3, 0.2), mip=(18.0, 12.0), gains=GAINS, offsets=OFFSETS,
                   descan=DESCAN)
    first = simulate_bias_series(ms_layer(), cal, (16, 24), rng=11, **options)
    again = simulate_bias_series(ms_layer(), cal, (16, 24), rng=11, **options)
    other = simulate_bias_series(ms_layer(), cal, (16, 24), rng=12, **options)
    for a, b, c in zip(first.acquisitions, again.acquisitions, other.acquisitions):
        assert a.segments.dtype == np.uint16
        assert a.segments.tobytes() == b.segments.tobytes()
        assert a.segments.tobytes() != c.segments.tobytes()
    assert first.vacuum.tobytes() == again.vacuum.tobytes() != other.vacuum.tobytes()
    single = simulate_acquisition(ms_layer(), cal, (16, 24), rng=np.random.default_rng(5))[0]
    assert single.tobytes() == simulate_acquisition(ms_layer(), cal, (16, 24), rng=5)[0].tobytes()


def test_bias_series_has_the_reference_first_and_its_truth_per_bias():
    cal = calibration()
    series = simulate_bias_series(ms_layer(0.1), cal, (10, 40), biases=(1.0, 2.0, 0.5), reference_bias_v=0.0,
                                  share=0.5, drift_px=(0.2, 0.5), thickness=(131.0, 270.0), noise=False)
    assert series.biases.tolist() == [0.0, 1.0, 2.0, 0.5]
    drops = [a.truth.figures["potential_drop_v"] for a in series.acquisitions]
    assert drops == pytest.approx([0.1, 0.6, 1.1, 0.35])
    assert np.all(series.net_truth(0)["field_x"] == 0)
    # Each reference truth is the frame's truth on the undrifted grid.
    _, direct = simulate_acquisition(ms_layer(0.1), cal, (10, 40), bias_v=2.0, share=0.5, thickness=(131.0, 270.0),
                                     noise=False)
    assert np.allclose(series.reference_truths[2].field_x, direct.field_x)
    assert np.allclose(series.reference_truths[2].deflection_x, direct.deflection_x)
    assert not np.allclose(series.acquisitions[2].truth.field_x, direct.field_x)
    net = series.net_truth(2)
    assert np.allclose(net["field_x"], direct.field_x - series.reference_truths[0].field_x)
    assert np.ndim(series.calibration.thickness_nm) == 2  # two materials: a thickness map
    assert series.vacuum.shape == (4, 10, 40)
    assert series.settings["layer_model"] == "MottSchottky" and series.settings["bias_share"] == 0.5


@pytest.mark.parametrize("kwargs, message", [
    (dict(mip=(60.0, 10.0)), "beyond alpha = 1 mrad"),
    (dict(drift_px=(0.1,)), "drift_px must be two numbers"),
    (dict(oversample=0), "oversample must be a whole number of at least 1"),
    (dict(gains=(1, 1, 1)), "gains must be 4 finite numbers"),
    (dict(dose=-5), "dose must be positive"),
    (dict(mip=(1.0, 2.0, 3.0)), "mip must be a pair"),
    (dict(thickness="thick"), "thickness_nm must be a number"),
])
def test_bad_simulation_options_are_named(kwargs, message):
    with pytest.raises(DPCError, match=message):
        simulate_acquisition(ms_layer(1.0), calibration(), (6, 8), rng=0, **kwargs)


def test_missing_thickness_and_bad_shape_are_named():
    with pytest.raises(InputDataError, match="give thickness="):
        simulate_acquisition(ms_layer(), calibration(thickness_nm=None), (4, 4))
    with pytest.raises(InputDataError, match="shape must be two positive integers"):
        simulate_acquisition(ms_layer(), calibration(), (0, 4))
    with pytest.raises(InputDataError, match="biases must be finite numbers"):
        simulate_bias_series(ms_layer(), calibration(), (4, 4), biases=(1.0, float("nan")))


# -- tilt series and the blurred disc --------------------------------------------------------

def test_tilt_series_gives_the_exact_response_signals_without_blur():
    cal = calibration(alpha_mrad=2.0, detector_rotation_deg=30.0, flip=True, collection_inner_mrad=0.3,
                      collection_outer_mrad=5.0)
    rng = np.random.default_rng(2)
    tilts = rng.uniform(-1.3, 1.3, size=(40, 2))
    series = simulate_tilt_series(cal, tilts, gains=GAINS, offsets=OFFSETS)
    d_a, d_b, total = series.difference_signals(gains=series.gains, offsets=series.offsets)
    u, v = (w / 2.0 for w in cal.to_detector_frame(tilts[:, 0], tilts[:, 1]))
    exact_a, exact_b, exact_total = shift_signals(u, v, inner=0.15, outer=2.5)
    assert np.allclose(d_a, exact_a, atol=1e-12) and np.allclose(d_b, exact_b, atol=1e-12)
    assert np.allclose(total, exact_total / np.pi * 4e4, rtol=1e-12)
    raw_a, _, _ = series.difference_signals()
    assert not np.allclose(raw_a, exact_a, atol=1e-3)  # the gains and offsets are in the raw counts


@pytest.mark.parametrize("inner, outer, tol", [(0.0, math.inf, 2e-5), (0.2, 2.0, 1e-4), (0.3, 1.0, 5e-4)])
def test_numerical_disc_without_blur_matches_the_exact_areas(inner, outer, tol):
    rng = np.random.default_rng(4)
    s = 0.97 * np.sqrt(rng.random(300))
    phi = rng.uniform(0, 2 * np.pi, 300)
    u, v = s * np.cos(phi), s * np.sin(phi)
    numerical = blurred_segment_areas(u, v, inner=inner, outer=outer, blur=0.0)
    assert np.abs(numerical - segment_areas(u, v, inner=inner, outer=outer)).max() < tol * np.pi


@pytest.mark.parametrize("blur", [0.05, 0.2])
def test_blurred_disc_slope_and_conservation(blur):
    # For a full detector the small-shift slope of (A−C)/S is (2√2/π)·E[sqrt(1 − Y²)], Y ~ N(0, σ²)
    # on |Y| < 1: the flux of the blurred disc across the quadrant boundaries.
    chord, _ = integrate.quad(lambda y: math.sqrt(1 - y * y) * math.exp(-0.5 * (y / blur) ** 2)
                              / (math.sqrt(2 * math.pi) * blur), -1, 1)
    h = 1e-3
    plus = blurred_segment_areas(h, 0.0, blur=blur)
    minus = blurred_segment_areas(-h, 0.0, blur=blur)
    slope = ((plus[0] - plus[2]) - (minus[0] - minus[2])) / (2 * h) / np.pi
    assert slope == pytest.approx(2 * math.sqrt(2) / math.pi * chord, rel=1e-3)
    # Nothing is lost on a full detector, even beyond α; the response is odd.
    far = blurred_segment_areas(np.array([1.3, -0.4]), np.array([0.2, -1.1]), blur=blur)
    assert far.sum(axis=0) == pytest.approx([np.pi, np.pi], rel=2e-5)
    mirrored = blurred_segment_areas(np.array([-1.3, 0.4]), np.array([-0.2, 1.1]), blur=blur)
    assert np.allclose(far[0] - far[2], -(mirrored[0] - mirrored[2]), atol=1e-9)


def test_blurred_edge_lowers_the_signal_an_exact_inversion_reads():
    cal = calibration(alpha_mrad=1.0)
    blur = 0.15
    segments, truth = simulate_acquisition(UniformField(-3e7, 0.0), cal, (4, 4), edge_blur=blur, noise=False,
                                           dtype=np.float64)
    chord, _ = integrate.quad(lambda y: math.sqrt(1 - y * y) * math.exp(-0.5 * (y / blur) ** 2)
                              / (math.sqrt(2 * math.pi) * blur), -1, 1)
    ratio = reconstruct(segments, cal).deflection_x / truth.deflection_x
    assert np.allclose(ratio, chord, rtol=5e-3)
    tilts = simulate_tilt_series(cal, [[1.4, 0.0], [0.0, -0.5]], edge_blur=blur)  # beyond α is allowed
    d_a, d_b, _ = tilts.difference_signals()
    assert d_a[0] > 0.5 and d_b[1] < 0


def test_sharp_disc_beyond_alpha_is_refused_in_a_tilt_series():
    with pytest.raises(InputDataError, match="beyond alpha"):
        simulate_tilt_series(calibration(), [[1.2, 0.0]])
    with pytest.raises(InputDataError, match="tilts_mrad must be finite pairs"):
        simulate_tilt_series(calibration(), [1.0, 2.0, 3.0])


def _imports(path, package):
    """Modules of ``package`` that the module at ``path`` imports (anywhere in it, functions too)."""
    import ast

    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            target = (node.module or "").split(".")
            base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
            name = ".".join(base + [t for t in target if t])
            found.add(name)
            found.update(f"{name}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def test_simulate_modules_import_in_one_direction_and_io_never_imports_simulate():
    from pathlib import Path

    import dpcstem

    root = Path(dpcstem.__file__).parent
    modules = {f"dpcstem.simulate.{p.stem}": p for p in (root / "simulate").glob("*.py") if p.stem != "__init__"}
    graph = {name: {m for m in _imports(path, "dpcstem.simulate") if m in modules and m != name}
             for name, path in modules.items()}
    state = {}

    def visit(name, trail):
        if state.get(name) == "open":
            raise AssertionError(f"import cycle: {' -> '.join(trail + [name])}")
        if state.get(name) != "done":
            state[name] = "open"
            for other in graph[name]:
                visit(other, trail + [name])
            state[name] = "done"

    for name in graph:
        visit(name, [])
    for path in (root / "io").glob("*.py"):
        assert not any(m.startswith("dpcstem.simulate") for m in _imports(path, "dpcstem.io")), path.name
