"""Physical constants and the relativistic electron: the one place they are written.

Every other module imports what it needs from here. Constants are CODATA 2018
(exact SI values where the SI fixes them).

References
----------
Kirkland, *Advanced Computing in Electron Microscopy*, 3rd ed., Springer (2020),
doi:10.1007/978-3-030-33260-0, §2.2 (wavelength and interaction constant).
"""

from __future__ import annotations

import numpy as np

from .errors import CalibrationError

PLANCK_J_S = 6.62607015e-34
ELEMENTARY_CHARGE_C = 1.602176634e-19
ELECTRON_MASS_KG = 9.1093837015e-31
SPEED_OF_LIGHT_M_S = 299_792_458.0
VACUUM_PERMITTIVITY_F_M = 8.8541878128e-12
BOLTZMANN_J_K = 1.380649e-23
AVOGADRO_PER_MOL = 6.02214076e23

#: Electron rest energy m c^2 / e, in volts (510.999 kV).
ELECTRON_REST_VOLTAGE_V = ELECTRON_MASS_KG * SPEED_OF_LIGHT_M_S**2 / ELEMENTARY_CHARGE_C
#: Electron rest energy in keV.
ELECTRON_REST_ENERGY_KEV = ELECTRON_REST_VOLTAGE_V * 1e-3

# Unit conversions (multiply a value in the first unit to get the second).
MRAD_TO_RAD = 1e-3
NM_TO_M = 1e-9
M_TO_NM = 1e9
KV_TO_V = 1e3
PM_PER_M = 1e12
#: 1 C/m^3 expressed in elementary charges per nm^3 (6.2415e-9).
C_PER_M3_TO_E_PER_NM3 = NM_TO_M**3 / ELEMENTARY_CHARGE_C
#: 1 C/m^2 expressed in elementary charges per nm^2.
C_PER_M2_TO_E_PER_NM2 = NM_TO_M**2 / ELEMENTARY_CHARGE_C


def _volts(kv):
    kv = np.asarray(kv, dtype=float)
    if np.any(~np.isfinite(kv)) or np.any(kv <= 0):
        raise CalibrationError(f"kv must be positive and finite (accelerating voltage in kV), got {kv}")
    return kv * KV_TO_V


def gamma(kv):
    """Lorentz factor γ = 1 + U/U0 of an electron accelerated through `kv` kilovolts."""
    return 1.0 + _volts(kv) / ELECTRON_REST_VOLTAGE_V


def wavelength_m(kv):
    """Relativistic electron wavelength in metres.

    λ = h / sqrt(2 m e U (1 + eU / 2mc²)); 2.5079 pm at 200 kV.
    """
    u = _volts(kv)
    return PLANCK_J_S / np.sqrt(
        2 * ELECTRON_MASS_KG * ELEMENTARY_CHARGE_C * u * (1 + u / (2 * ELECTRON_REST_VOLTAGE_V))
    )


def wavelength_pm(kv):
    """Relativistic electron wavelength in picometres."""
    return wavelength_m(kv) * PM_PER_M


def pv_over_e_v(kv):
    """Momentum times velocity over charge, pv/e, in volts.

    pv/e = U (U + 2 U0) / (U + U0); 343.741 kV at 200 kV. A deflection θ (rad) through
    a thickness t (m) corresponds to the mean in-plane field E = −(pv/e) θ / t (V/m).
    """
    u = _volts(kv)
    u0 = ELECTRON_REST_VOLTAGE_V
    return u * (u + 2 * u0) / (u + u0)


def interaction_constant_rad_per_v_nm(kv):
    """Interaction constant σ = 2π γ m e λ / h² in rad V⁻¹ nm⁻¹ (0.007288 at 200 kV)."""
    sigma_si = 2 * np.pi * gamma(kv) * ELECTRON_MASS_KG * ELEMENTARY_CHARGE_C * wavelength_m(kv) / PLANCK_J_S**2
    return sigma_si * NM_TO_M


def field_v_per_m_from_deflection(theta_mrad, kv, thickness_nm):
    """In-plane projected field E⊥ = −(pv/e)·θ/t in V/m from a deflection in mrad."""
    return -pv_over_e_v(kv) * np.asarray(theta_mrad) * MRAD_TO_RAD / (np.asarray(thickness_nm) * NM_TO_M)


def deflection_mrad_from_field(field_v_per_m, kv, thickness_nm):
    """Deflection θ = −(e t / pv)·E⊥ in mrad from an in-plane field in V/m (inverse of the above)."""
    return -np.asarray(field_v_per_m) * (np.asarray(thickness_nm) * NM_TO_M) / pv_over_e_v(kv) / MRAD_TO_RAD


def deflection_mrad_from_projected_potential_gradient(gradient_v, kv):
    """Deflection θ = (e/pv)·∇V_proj in mrad from the gradient of the projected potential.

    ``gradient_v`` is ∇(V·t), the in-plane gradient of the projected potential (V·nm per
    nm, i.e. volts), one component or an array of them; the deflection points up the
    gradient (electrons are pulled toward higher potential).
    """
    return np.asarray(gradient_v) / pv_over_e_v(kv) / MRAD_TO_RAD
