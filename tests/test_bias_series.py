"""The in-situ experiment end to end: a simulated series as an instrument records it, reconstructed.

The truth the net maps are held to is the probe-weighted one — what the beam measures: the
Airy probe (about 1 nm here) blurs the layer's kinks, and no reconstruction can undo that.
"""

import numpy as np
import pytest

from dpcstem import Calibration, physics
from dpcstem.bias import interface_table, reconstruct_series
from dpcstem.response import QuadrantResponse
from dpcstem.interface import Interface, layer_figures, profile_across
from dpcstem.reconstruct import reconstruct_deflection
from dpcstem.simulate import Descan, MeanInnerPotential, MottSchottky, StepThickness, simulate_bias_series

STEP = 0.5
SHAPE = (320, 160)
POINT = (30.0, 64.0)
NORMAL = 15.0
GAINS = (1.0, 0.95, 1.05, 1.02)
OFFSETS = (100.0, 90.0, 110.0, 95.0)


def simulate(noise, *, alpha=1.5, drift=(0.35, -0.55), dose=1.5e5, seed=7):
    cal = Calibration(kv=200, alpha_mrad=alpha, step_x_nm=STEP, thickness_nm=131)
    layer = MottSchottky(density_per_m3=1e25, eps_r=12, potential_drop_v=0.3, sheet_nm=1.5)
    return simulate_bias_series(
        layer, cal, SHAPE, share=0.5, point_nm=POINT, normal_deg=NORMAL,
        mip=MeanInnerPotential(18.0, 12.0, width_nm=4.0),
        thickness=StepThickness(131.0, 170.0, width_nm=2.0, point_nm=POINT, normal_deg=NORMAL),
        scattering_mfp_nm=150.0, drift_px=drift, gains=GAINS, offsets=OFFSETS,
        descan=Descan(linear_mrad=((0.002, -0.001), (0.0015, 0.0025))), dose=dose, noise=noise, rng=seed)


def true_net_field(sim, i):
    """The net field the probe sees (V/m), on the reference grid, from the probe-weighted deflection."""
    net = sim.net_truth(i)
    thickness = sim.calibration.thickness_nm
    return (physics.field_v_per_m_from_deflection(net["deflection_x"], sim.calibration.kv, thickness),
            physics.field_v_per_m_from_deflection(net["deflection_y"], sim.calibration.kv, thickness))


INTERFACE = Interface.from_normal(POINT, NORMAL, 100.0)
PROFILE = dict(half_range_nm=20.0, bin_nm=1.0)


@pytest.fixture(scope="module")
def noisy():
    sim = simulate(noise=True)
    series = reconstruct_series([a.segments for a in sim.acquisitions], sim.biases, sim.calibration,
                                vacuum=sim.vacuum, offsets=OFFSETS)
    return sim, series


def test_series_is_the_experiment(noisy):
    sim, series = noisy
    assert list(series.biases_v) == [0.0, 1.0, 1.2, 1.4, 1.6, 1.8, 2.0, 2.2]
    assert series.reference_index == 0


def test_registration_finds_the_drift_across_the_interface(noisy):
    sim, series = noisy
    normal_yx = np.array([np.sin(np.radians(NORMAL)), np.cos(np.radians(NORMAL))])
    for reg, drift in zip(series.registration[1:], sim.drifts_px[1:]):
        assert reg.constrained  # a straight interface: structure across it only
        assert float(normal_yx @ reg.shift_px) == pytest.approx(float(normal_yx @ drift), abs=0.02)
        along = np.array([-normal_yx[1], normal_yx[0]])
        assert abs(float(along @ reg.shift_px)) < 0.02  # none invented along the interface


def test_net_field_profile_within_3_percent_in_the_layer(noisy):
    sim, series = noisy
    for i in range(1, len(sim.biases)):
        net = series.net[i]
        got = profile_across(INTERFACE.normal_component(net.field_x, net.field_y), INTERFACE, STEP,
                             valid=net.valid, **PROFILE)
        want = profile_across(INTERFACE.normal_component(*true_net_field(sim, i)), INTERFACE, STEP, **PROFILE)
        peak = np.nanmax(np.abs(want.mean))
        layer = np.abs(want.mean) > 0.1 * peak
        error = np.abs(got.mean - want.mean)[layer] / peak
        assert error.max() < 0.03, (sim.biases[i], error.max())


def test_net_areal_charge_within_5_percent(noisy):
    sim, series = noisy
    rows = interface_table(series, INTERFACE, **PROFILE)
    assert [r["bias_v"] for r in rows] == list(sim.biases[1:])
    for i, row in enumerate(rows, start=1):
        want = layer_figures(profile_across(INTERFACE.normal_component(*true_net_field(sim, i)), INTERFACE, STEP,
                                            **PROFILE))
        assert row["areal_charge_c_per_m2"] == pytest.approx(want.areal_charge_c_per_m2, rel=0.05)
        assert row["areal_charge_stderr"] < 0.05 * abs(want.areal_charge_c_per_m2)
    # The layer charges up with bias: more negative net charge at every step.
    charges = [r["areal_charge_c_per_m2"] for r in rows]
    assert all(b < a for a, b in zip(charges, charges[1:]))


def test_subtracting_raw_difference_signals_is_measurably_worse():
    """The reason for subtracting in deflection space: the response is nonlinear where the MIP step deflects."""
    sim = simulate(noise=False, alpha=0.6, drift=(0.0, 0.0))
    cal = sim.calibration
    series = reconstruct_series([a.segments for a in sim.acquisitions], sim.biases, cal, vacuum=sim.vacuum,
                                offsets=OFFSETS, register_maps=False)
    gains = np.asarray(GAINS) / np.mean(GAINS)

    def signals(segments):
        s = (segments.astype(float) - np.asarray(OFFSETS)[:, None, None]) / gains[:, None, None]
        total = s.sum(axis=0)
        return (s[0] - s[2]) / total, (s[1] - s[3]) / total

    slope = QuadrantResponse().linear_slope
    ref_a, ref_b = signals(sim.acquisitions[0].segments)
    i = len(sim.biases) - 1
    d_a, d_b = signals(sim.acquisitions[i].segments)
    u, v = (d_a - ref_a) / slope, (d_b - ref_b) / slope
    raw = reconstruct_deflection(*cal.to_scan_frame(cal.alpha_mrad * u, cal.alpha_mrad * v), cal)
    ex, ey = true_net_field(sim, i)
    want = INTERFACE.normal_component(ex, ey)
    near = np.abs(sim.reference_truths[0].distance_nm) < 3.0  # where the MIP step deflects most
    peak = np.abs(want).max()
    error_raw = np.nanmax(np.abs(INTERFACE.normal_component(raw.field_x, raw.field_y) - want)[near]) / peak
    net = series.net[i]
    error_exact = np.nanmax(np.abs(INTERFACE.normal_component(net.field_x, net.field_y) - want)[near]) / peak
    assert error_exact < 0.01
    assert error_raw > 10 * error_exact and error_raw > 0.01


def test_simulated_dark_field_shows_the_particles_and_not_the_bias():
    cal = Calibration(kv=200, alpha_mrad=1.0, step_x_nm=STEP, thickness_nm=131)
    layer = MottSchottky(density_per_m3=1e25, eps_r=12, potential_drop_v=0.3, sheet_nm=1.5)
    sim = simulate_bias_series(layer, cal, (48, 64), biases=(0.0, 2.0, 0.0), particles=12, adf=True, noise=False,
                               vacuum=False, point_nm=(16.0, 12.0))
    assert sim.biases.tolist() == [0.0, 2.0, 0.0]  # a return sweep keeps every acquisition
    adf = [a.adf for a in sim.acquisitions]
    assert np.ptp(adf[0]) > 0.05 * 0.5 * 4e4  # particles scatter a share of the dose outside the disc
    np.testing.assert_array_equal(adf[1], adf[0])  # no drift: the bias leaves the dark field unchanged
    sum0, sum1 = (a.segments.astype(float).sum(axis=0) for a in sim.acquisitions[:2])
    np.testing.assert_allclose(sum1, sum0, rtol=1e-3)  # nor the segment sum (disc inside the detector)
    assert np.corrcoef(sum0.ravel(), adf[0].ravel())[0, 1] < -0.9  # particles darken the sum, brighten the ADF


def test_a_net_map_over_the_same_pixels_takes_its_potential_from_the_two_maps(monkeypatch):
    """Integration is linear: without drift (the same valid pixels) the net potential is the map's
    minus the reference's, integrated once per map, and equals integrating the net deflection to
    float32 rounding; with drift (other valid pixels) each net deflection is integrated itself."""
    import dpcstem.reconstruct as rec

    calls = []
    integrate = rec.integrate_gradient
    monkeypatch.setattr(rec, "integrate_gradient", lambda *a, **k: calls.append(1) or integrate(*a, **k))
    for drift, integrations in (((0.0, 0.0), 8), ((0.35, -0.55), 15)):
        sim = simulate(noise=False, drift=drift)
        calls.clear()
        series = reconstruct_series([a.segments for a in sim.acquisitions], sim.biases, sim.calibration,
                                    vacuum=sim.vacuum, offsets=OFFSETS, warn=False)
        assert len(calls) == integrations, drift
    sim = simulate(noise=False, drift=(0.0, 0.0))
    series = reconstruct_series([a.segments for a in sim.acquisitions], sim.biases, sim.calibration,
                                vacuum=sim.vacuum, offsets=OFFSETS, warn=False)
    ref = series.maps[0]
    for i in range(1, len(series.maps)):
        net, m = series.net[i], series.maps[i]
        assert np.array_equal(net.valid, ref.valid) and np.array_equal(m.valid, ref.valid)
        direct = reconstruct_deflection(m.deflection_x - ref.deflection_x, m.deflection_y - ref.deflection_y,
                                        series.calibration, valid=net.valid)
        scale = np.nanmax(np.abs(direct.potential))
        assert scale > 0
        assert np.nanmax(np.abs(net.potential - direct.potential)) <= 1e-5 * scale
        np.testing.assert_allclose(net.field_x, direct.field_x, rtol=0, atol=1e-5 * np.nanmax(np.abs(direct.field_x)))


def test_nothing_handed_to_the_sink_changes_after_it_returns():
    """The result file writes a map while the next is computed: the series must not reuse it."""
    from dpcstem.bias import stream_series

    sim = simulate(noise=False)
    kept = []

    def sink(i, result, registration, net=False):
        arrays = [result.valid, *(getattr(result, name) for name in
                                  ("deflection_x", "deflection_y", "field_x", "field_y", "charge_density"))]
        kept.extend((array, array.copy()) for array in arrays if array is not None)

    stream_series([a.segments for a in sim.acquisitions], sim.biases, sim.calibration, sink,
                  vacuum=sim.vacuum, offsets=OFFSETS)
    assert len(kept) == 2 * len(sim.acquisitions) * 6
    assert all(np.array_equal(array, copy, equal_nan=True) for array, copy in kept)
