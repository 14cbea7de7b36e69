import math

import numpy as np
import pytest

from dpcstem import physics

# DESIGN.md §3 reference values.
PV_OVER_E_KV = {60: 113.695, 80: 149.171, 200: 343.741, 300: 489.026}
WAVELENGTH_PM = {200: 2.5079, 300: 1.9687}


@pytest.mark.parametrize("kv", [60, 80, 200, 300])
def test_pv_over_e_matches_reference(kv):
    assert physics.pv_over_e_v(kv) / 1e3 == pytest.approx(PV_OVER_E_KV[kv], rel=1e-5)


@pytest.mark.parametrize("kv", [200, 300])
def test_wavelength_matches_reference(kv):
    # The reference is given to four decimals.
    assert round(float(physics.wavelength_pm(kv)), 4) == WAVELENGTH_PM[kv]


@pytest.mark.parametrize("kv", [60, 80, 200, 300])
def test_constants_are_mutually_consistent(kv):
    # λσ/2π = e/(pv), and γ = 1 + U/U0, at any voltage.
    lam_nm = physics.wavelength_m(kv) * 1e9
    sigma = physics.interaction_constant_rad_per_v_nm(kv)
    assert lam_nm * sigma / (2 * math.pi) == pytest.approx(1 / physics.pv_over_e_v(kv), rel=1e-10)
    assert physics.gamma(kv) == pytest.approx(1 + kv / 510.99895, rel=1e-8)


def test_interaction_constant_at_200kv():
    assert round(float(physics.interaction_constant_rad_per_v_nm(200)), 6) == 0.007288


def test_field_example_from_design():
    # 1 µrad through 100 nm at 200 kV is 3.44e6 V/m (toward lower potential: negative sign).
    field = physics.field_v_per_m_from_deflection(1e-3, 200, 100)
    assert field == pytest.approx(-3.437e6, rel=1e-3)
    back = physics.deflection_mrad_from_field(field, 200, 100)
    assert back == pytest.approx(1e-3, rel=1e-12)


def test_charge_unit_conversion():
    assert physics.C_PER_M3_TO_E_PER_NM3 == pytest.approx(6.2415e-9, rel=1e-4)


@pytest.mark.parametrize("kv", [0, -5, np.nan])
def test_nonpositive_voltage_is_refused(kv):
    with pytest.raises(ValueError, match="accelerating voltage"):
        physics.wavelength_m(kv)
