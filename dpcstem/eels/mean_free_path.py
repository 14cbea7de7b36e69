"""The inelastic mean free path λ: Malis et al. (1988) and Iakoubovskii et al. (2008).

References
----------
T. Malis, S. C. Cheng, R. F. Egerton, "EELS log-ratio technique for specimen-thickness
measurement in the TEM", J. Electron Microsc. Tech. 8 (1988) 193–200,
doi:10.1002/jemt.1060080206.

K. Iakoubovskii, K. Mitsuishi, Y. Nakayama, K. Furuya, "Thickness measurements with
electron energy loss spectroscopy", Microsc. Res. Tech. 71 (2008) 626–631,
doi:10.1002/jemt.20597.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .. import _validate
from ..errors import CalibrationError
from ..physics import ELECTRON_REST_ENERGY_KEV
from .formula import effective_atomic_number

# Coefficients of the two published fits (not physical constants: parameters of the
# empirical formulas, kept beside the formulas they belong to).
_MALIS_LAMBDA_NM = 106.0  # Malis et al. (1988), eq. 6: λ ≈ 106 F E0 / (E_m ln(2βE0/E_m))
_MALIS_EM_EV = 7.6  # Malis et al. (1988), eq. 8: E_m ≈ 7.6 Z_eff^0.36 eV
_MALIS_EM_EXPONENT = 0.36
_IAK_INV_LAMBDA = 11.0 / 200.0  # Iakoubovskii et al. (2008): 1/λ = 11 ρ^0.3 / (200 F E0) ln(...)
_IAK_THETA_E_MRAD = 5.5  # θ_E = 5.5 ρ^0.3 / (F E0) mrad
_IAK_THETA_C_MRAD = 20.0  # cut-off angle θ_C = 20 mrad
_IAK_DENSITY_EXPONENT = 0.3


def malis_mean_energy_loss_ev(composition) -> float:
    """Mean energy loss E_m ≈ 7.6·Z_eff^0.36 eV of Malis et al. (1988) for a compound.

    Parameters
    ----------
    composition : str or mapping
        Chemical formula or element → atoms (see :func:`effective_atomic_number`).

    Returns
    -------
    float
        E_m in eV (19.5 eV for LiCoO2).
    """
    return _MALIS_EM_EV * effective_atomic_number(composition) ** _MALIS_EM_EXPONENT


def _relativistic_f(kv: float) -> float:
    """F = (1 + E0/2mc²)/(1 + E0/mc²)², the relativistic factor of both formulas (E0 in keV)."""
    e_rest = ELECTRON_REST_ENERGY_KEV
    return (1.0 + kv / (2.0 * e_rest)) / (1.0 + kv / e_rest) ** 2


def malis_mean_free_path_nm(kv, beta_mrad, mean_energy_loss_ev) -> float:
    """Inelastic mean free path by the Malis et al. (1988) formula, in nm.

    Parameters
    ----------
    kv : float
        Incident energy E0 in keV (the accelerating voltage in kV).
    beta_mrad : float
        Spectrometer collection semi-angle β in mrad.
    mean_energy_loss_ev : float
        Mean energy loss E_m in eV (see :func:`malis_mean_energy_loss_ev`).

    Returns
    -------
    float
        λ in nm.

    Notes
    -----
    λ ≈ 106·F·E0 / (E_m·ln(2βE0/E_m)) nm, F = (1 + E0/1022)/(1 + E0/511)² (E0 in keV,
    E_m in eV, β in mrad; 1022 and 511 are 2mc² and mc² in keV). The formula was fitted for
    parallel or weakly convergent illumination (α ≪ β) and β up to about 15 mrad; for a
    convergent probe Egerton (2011, §5.1) replaces β by an effective angle.

    Examples
    --------
    >>> round(malis_mean_free_path_nm(200, 15, malis_mean_energy_loss_ev("LiCoO2")), 1)
    117.3
    """
    kv = _validate.positive("kv", kv, what="in kV")
    beta = _validate.positive("beta_mrad", beta_mrad, what="in mrad")
    em = _validate.positive("mean_energy_loss_ev", mean_energy_loss_ev, what="in eV")
    argument = 2.0 * beta * kv / em
    if argument <= 1.0:
        raise CalibrationError(
            f"Malis formula needs 2·β·E0/E_m > 1, got 2·{beta}·{kv}/{em} = {argument:.3g}; "
            "the collection angle beta_mrad is too small for this mean energy loss")
    return _MALIS_LAMBDA_NM * _relativistic_f(kv) * kv / (em * math.log(argument))


def iakoubovskii_mean_free_path_nm(kv, density_g_cm3, *, beta_mrad, alpha_mrad=0.0) -> float:
    """Inelastic mean free path by the Iakoubovskii et al. (2008) formula, in nm.

    Parameters
    ----------
    kv : float
        Incident energy E0 in keV.
    density_g_cm3 : float
        Mass density ρ of the specimen in g/cm³.
    beta_mrad : float
        Spectrometer collection semi-angle β in mrad.
    alpha_mrad : float
        Convergence semi-angle α of the probe in mrad (0 for parallel illumination).

    Returns
    -------
    float
        λ in nm.

    Notes
    -----
    As published (Iakoubovskii et al. 2008, eqs. 8–9; Egerton 2011, eq. 5.2):

    1/λ = 11ρ^0.3 / (200 F E0) · ln{ (α² + β² + 2θ_E² + |α² − β²|) θ_C²
    / [(α² + β² + 2θ_C² + |α² − β²|) θ_E²] },

    with θ_C = 20 mrad, θ_E = 5.5 ρ^0.3 / (F E0) mrad and F as in
    :func:`malis_mean_free_path_nm` (E0 in keV, ρ in g/cm³, λ in nm, angles in mrad).
    For β ≫ θ_C the logarithm tends to ln(θ_C²/θ_E²), independent of the angles.
    """
    kv = _validate.positive("kv", kv, what="in kV")
    rho = _validate.positive("density_g_cm3", density_g_cm3, what="in g/cm³")
    beta = _validate.positive("beta_mrad", beta_mrad, what="in mrad")
    alpha = _validate.non_negative("alpha_mrad", alpha_mrad, what="in mrad")
    f = _relativistic_f(kv)
    rho_term = rho**_IAK_DENSITY_EXPONENT
    theta_e2 = (_IAK_THETA_E_MRAD * rho_term / (f * kv)) ** 2
    theta_c2 = _IAK_THETA_C_MRAD**2
    a2, b2 = alpha**2, beta**2
    numerator = (a2 + b2 + 2.0 * theta_e2 + abs(a2 - b2)) * theta_c2
    denominator = (a2 + b2 + 2.0 * theta_c2 + abs(a2 - b2)) * theta_e2
    inverse = _IAK_INV_LAMBDA * rho_term / (f * kv) * math.log(numerator / denominator)
    return 1.0 / inverse


@dataclass(frozen=True)
class MeanFreePath:
    """An inelastic mean free path and how it was obtained.

    Attributes
    ----------
    mean_free_path_nm : float
        λ in nm.
    formula : str
        ``"Malis 1988"`` or ``"Iakoubovskii 2008"``.
    kv, beta_mrad : float
        Incident energy (keV) and collection semi-angle (mrad) used.
    alpha_mrad : float or None
        Convergence semi-angle (mrad) used (Iakoubovskii only).
    composition : str or None
        The chemical formula given (Malis, from a composition).
    z_eff : float or None
        Effective atomic number (Malis, from a composition).
    mean_energy_loss_ev : float or None
        E_m in eV (Malis).
    density_g_cm3 : float or None
        Mass density in g/cm³ (Iakoubovskii).
    """

    mean_free_path_nm: float
    formula: str
    kv: float
    beta_mrad: float
    alpha_mrad: float | None = None
    composition: str | None = None
    z_eff: float | None = None
    mean_energy_loss_ev: float | None = None
    density_g_cm3: float | None = None

    def describe(self) -> str:
        """One line: λ, the formula and its inputs."""
        if self.formula.startswith("Malis"):
            what = f"E_m = {self.mean_energy_loss_ev:.2f} eV"
            if self.composition is not None:
                what = f"{self.composition}, Z_eff = {self.z_eff:.2f}, " + what
        else:
            what = f"ρ = {self.density_g_cm3:g} g/cm³, α = {self.alpha_mrad:g} mrad"
        return (f"λ = {self.mean_free_path_nm:.1f} nm ({self.formula}; {what}; "
                f"E0 = {self.kv:g} keV, β = {self.beta_mrad:g} mrad)")


def mean_free_path(*, kv, beta_mrad, composition=None, mean_energy_loss_ev=None, density_g_cm3=None,
                   alpha_mrad=None) -> MeanFreePath:
    """The inelastic mean free path from exactly one description of the specimen.

    Parameters
    ----------
    kv : float
        Incident energy E0 in keV.
    beta_mrad : float
        Collection semi-angle β in mrad.
    composition : str, optional
        Chemical formula → Malis formula with E_m from Z_eff.
    mean_energy_loss_ev : float, optional
        E_m in eV → Malis formula.
    density_g_cm3 : float, optional
        Mass density in g/cm³ → Iakoubovskii formula.
    alpha_mrad : float, optional
        Convergence semi-angle in mrad, used by the Iakoubovskii formula only (default 0).

    Returns
    -------
    MeanFreePath
    """
    given = [name for name, value in (("composition", composition), ("mean_energy_loss_ev", mean_energy_loss_ev),
                                      ("density_g_cm3", density_g_cm3)) if value is not None]
    if len(given) != 1:
        raise CalibrationError(
            "give exactly one of composition (chemical formula), mean_energy_loss_ev (eV) or density_g_cm3 "
            f"(g/cm³) for the mean free path, got {', '.join(given) or 'none'}")
    if density_g_cm3 is not None:
        alpha = 0.0 if alpha_mrad is None else alpha_mrad
        lam = iakoubovskii_mean_free_path_nm(kv, density_g_cm3, beta_mrad=beta_mrad, alpha_mrad=alpha)
        return MeanFreePath(lam, "Iakoubovskii 2008", float(kv), float(beta_mrad), alpha_mrad=float(alpha),
                            density_g_cm3=float(density_g_cm3))
    if alpha_mrad is not None:
        raise CalibrationError(
            "alpha_mrad is used by the Iakoubovskii formula (density_g_cm3) only; the Malis formula takes β alone")
    z_eff = None
    if composition is not None:
        z_eff = effective_atomic_number(composition)
        mean_energy_loss_ev = _MALIS_EM_EV * z_eff**_MALIS_EM_EXPONENT
    lam = malis_mean_free_path_nm(kv, beta_mrad, mean_energy_loss_ev)
    return MeanFreePath(lam, "Malis 1988", float(kv), float(beta_mrad),
                        composition=composition if isinstance(composition, str) else None,
                        z_eff=z_eff, mean_energy_loss_ev=float(mean_energy_loss_ev))
