import math

import numpy as np
import pytest

from dpcstem import InputDataError, physics
from dpcstem.interface import Interface, default_half_range, layer_figures, profile_across
from dpcstem.simulate import MottSchottky, layer_truth


def test_interface_geometry():
    iface = Interface((0.0, 0.0), (0.0, 10.0))  # along +y: the normal is −x
    np.testing.assert_allclose(iface.normal, [-1.0, 0.0], atol=1e-15)
    back = Interface.from_normal((5.0, 5.0), 30.0, 8.0)
    assert back.normal_deg == pytest.approx(30.0)
    assert back.length_nm == pytest.approx(8.0)
    with pytest.raises(InputDataError, match="coincide"):
        Interface((1.0, 1.0), (1.0, 1.0))


def test_profile_of_a_linear_map_is_exact_and_band_limited():
    step = (0.5, 0.25)
    y, x = np.mgrid[0:40, 0:60].astype(float)
    ramp = 3.0 * x * step[0]  # grows along x, the normal of a vertical interface
    iface = Interface((15.0, 2.0), (15.0, 8.0))  # vertical line at x = 15 nm from y = 2 to 8 nm
    profile = profile_across(ramp, iface, step, bin_nm=0.5)
    # Normal = (−1, 0): distance = 15 − x; the mean of 3x in the bin is 3(15 − d).
    np.testing.assert_allclose(profile.mean, 3 * (15 - (profile.distance_nm - 0.25)), rtol=1e-12)
    # Only rows between y = 2 and 8 nm (25 rows at 0.25 nm) contribute.
    assert profile.count.max() == 25


def test_standard_errors_match_the_noise(rng):
    noise = rng.normal(0, 2.0, size=(400, 80))
    iface = Interface((20.0, 0.0), (20.0, 200.0))
    profile = profile_across(noise, iface, 0.5)
    inner = profile.count > 100
    np.testing.assert_allclose(profile.stderr[inner], 2.0 / np.sqrt(profile.count[inner]), rtol=0.1)


def test_layer_figures_of_an_exact_mott_schottky_layer():
    layer = MottSchottky(density_per_m3=5e25, eps_r=12, potential_drop_v=1.0, sheet_nm=1.0)
    step = 0.05
    truth = layer_truth(layer, (20, 600), step, point_nm=(10.025, 0.5), normal_deg=0.0)  # between pixels
    iface = Interface.from_normal((10.025, 0.5), 0.0, 0.9)
    fp = profile_across(iface.normal_component(truth.field_x, truth.field_y), iface, step)
    cp = profile_across(truth.charge_density, iface, step)
    fig = layer_figures(fp)
    assert fig.side == 1
    assert fig.peak_field_v_per_m == pytest.approx(layer.peak_field_v_per_m, rel=0.02)
    assert fig.width_nm == pytest.approx(layer.width_nm, rel=0.02)
    # Charge the beam sees on the layer side: ε0 times the field's fall, −ε0·E_peak …
    assert fig.areal_charge_c_per_m2 == pytest.approx(-physics.VACUUM_PERMITTIVITY_F_M * layer.peak_field_v_per_m,
                                                     rel=0.03)
    # … which is what the charge-density profile integrates to over that side.
    integrated = np.nansum(cp.mean[cp.distance_nm > 0]) * step * 1e-9
    assert fig.areal_charge_c_per_m2 == pytest.approx(integrated, rel=0.03)
    # The drop across layer and counter slab: ΔV + E_peak·sheet/2.
    expected = layer.potential_drop_v + layer.peak_field_v_per_m * 1e-9 / 2
    assert fig.potential_drop_v == pytest.approx(expected, rel=0.02)
    assert math.isfinite(fig.width_stderr)


def test_empty_band_is_an_error():
    with pytest.raises(InputDataError, match="holds no valid pixel"):
        profile_across(np.ones((5, 5)), Interface((100.0, 100.0), (100.0, 110.0)), 1.0, half_range_nm=1)


@pytest.mark.parametrize("normal_deg", [90.0, 0.0, 30.0])
def test_unequal_steps_leave_no_bin_empty(normal_deg):
    step = (0.25, 0.5)  # y twice as coarse as x
    ny, nx = 80, 160
    iface = Interface.from_normal((20.0, 20.0), normal_deg, 10.0)
    profile = profile_across(np.ones((ny, nx)), iface, step)
    assert profile.count.min() > 0
    assert profile.bin_nm == pytest.approx(max(0.25 * abs(iface.normal[0]), 0.5 * abs(iface.normal[1])))


def test_layer_figures_do_not_depend_on_unequal_steps():
    layer = MottSchottky(density_per_m3=5e25, eps_r=12, potential_drop_v=1.0, sheet_nm=1.0)
    figures = []
    for step in ((0.05, 0.05), (0.05, 0.1)):
        truth = layer_truth(layer, (400, 40), step, point_nm=(1.0, 10.0), normal_deg=90.0)
        iface = Interface.from_normal((1.0, 10.0), 90.0, 1.5)
        fp = profile_across(iface.normal_component(truth.field_x, truth.field_y), iface, step, half_range_nm=9.0)
        figures.append(layer_figures(fp))
    assert figures[1].width_nm == pytest.approx(figures[0].width_nm, rel=0.03)
    assert figures[1].potential_drop_v == pytest.approx(figures[0].potential_drop_v, rel=0.03)


def test_the_normal_rule_is_stated_and_stored():
    iface = Interface((4.0, 145.0), (30.0, 48.0))
    np.testing.assert_allclose(iface.normal, np.array([97.0, 26.0]) / np.hypot(97, 26))
    assert iface.describe().startswith("normal points toward (+0.966, +0.259) = 15.0 deg")
    attrs = iface.attrs()
    np.testing.assert_allclose(attrs["interface_points_nm"], [4.0, 145.0, 30.0, 48.0])
    np.testing.assert_allclose(attrs["interface_normal"], iface.normal)


def test_an_interface_outside_the_scan_is_refused():
    iface = Interface((1.0, 1.0), (1.0, 30.0))
    iface.check_inside((61, 11), 0.5)  # x 0..5, y 0..30 nm: inside
    with pytest.raises(InputDataError, match=r"point \(1, 30\) nm lies outside the scan"):
        iface.check_inside((40, 11), 0.5)


def test_default_half_range_is_where_the_field_returns_to_noise(rng):
    layer = MottSchottky(density_per_m3=5e25, eps_r=12, potential_drop_v=1.0, sheet_nm=1.0)
    step = 0.1
    truth = layer_truth(layer, (200, 600), step, point_nm=(20.0, 10.0), normal_deg=0.0)
    iface = Interface.from_normal((20.0, 10.0), 0.0, 18.0)
    noisy = iface.normal_component(truth.field_x, truth.field_y) + rng.normal(0, 0.05 * layer.peak_field_v_per_m,
                                                                              (200, 600))
    profile = profile_across(noisy, iface, step)
    half = default_half_range([profile])
    # the layer (plus the counter sheet) reaches layer.width_nm; the default covers it with a margin,
    # far short of the 40 nm the scan spans
    assert layer.width_nm < half < 2 * layer.width_nm + 1.0


def test_a_profile_prints_as_one_line_not_its_arrays():
    """A table of rows holding profiles (interface_table) prints one short line per profile."""
    from dpcstem.interface import Profile

    n = 4001
    profile = Profile(np.linspace(-200, 200, n), np.zeros(n), np.zeros(n), np.ones(n, int), "V/m", 0.1)
    text = repr([{"bias_v": 1.0, "field_profile": profile}])
    assert "4001 bins of 0.1 nm from -200 to 200 nm, V/m" in text
    assert len(text) < 120
