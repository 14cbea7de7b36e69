import math

import numpy as np
import pytest

from dpcstem import InputDataError, physics
from dpcstem.interface import Interface, layer_figures, profile_across
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
