"""Specimen thickness from low-loss EELS: the log-ratio method and the inelastic mean free path.

The field is the deflection divided by the thickness (DESIGN.md §3), so the thickness is
measured, pixel by pixel where a spectrum image is at hand:

- t/λ by the log-ratio method, t/λ = ln(I_t / I_0), from a low-loss spectrum or spectrum
  image (:func:`log_ratio`);
- the inelastic mean free path λ in nm from the Malis et al. (1988) formula (mean energy
  loss from a chemical formula or given) or from the Iakoubovskii et al. (2008) formula
  (mass density) (:func:`mean_free_path`);
- both together, t = (t/λ)·λ in nm, as one number or a map (:func:`thickness`).

Spectra are plain arrays with an energy axis (offset and step in eV), HyperSpy
``Signal1D``/``EELSSpectrum`` signals (lazy or not), or :class:`Spectrum` objects made by
:func:`dpcstem.io.read_spectrum` from files.

References
----------
T. Malis, S. C. Cheng, R. F. Egerton, "EELS log-ratio technique for specimen-thickness
measurement in the TEM", J. Electron Microsc. Tech. 8 (1988) 193–200,
doi:10.1002/jemt.1060080206.

K. Iakoubovskii, K. Mitsuishi, Y. Nakayama, K. Furuya, "Thickness measurements with
electron energy loss spectroscopy", Microsc. Res. Tech. 71 (2008) 626–631,
doi:10.1002/jemt.20597.

R. F. Egerton, *Electron Energy-Loss Spectroscopy in the Electron Microscope*, 3rd ed.,
Springer (2011), doi:10.1007/978-1-4419-9583-4, §5.1.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace

import numpy as np

from .errors import CalibrationError, InputDataError
from .physics import ELECTRON_REST_ENERGY_KEV

__all__ = [
    "LogRatioResult",
    "MeanFreePath",
    "Spectrum",
    "ThicknessResult",
    "as_spectrum",
    "effective_atomic_number",
    "iakoubovskii_mean_free_path_nm",
    "log_ratio",
    "malis_mean_energy_loss_ev",
    "malis_mean_free_path_nm",
    "mean_free_path",
    "parse_formula",
    "thickness",
]

# Coefficients of the two published fits (not physical constants: parameters of the
# empirical formulas, kept beside the formulas they belong to).
_MALIS_LAMBDA_NM = 106.0  # Malis et al. (1988), eq. 6: λ ≈ 106 F E0 / (E_m ln(2βE0/E_m))
_MALIS_EM_EV = 7.6  # Malis et al. (1988), eq. 8: E_m ≈ 7.6 Z_eff^0.36 eV
_MALIS_EM_EXPONENT = 0.36
_IAK_INV_LAMBDA = 11.0 / 200.0  # Iakoubovskii et al. (2008): 1/λ = 11 ρ^0.3 / (200 F E0) ln(...)
_IAK_THETA_E_MRAD = 5.5  # θ_E = 5.5 ρ^0.3 / (F E0) mrad
_IAK_THETA_C_MRAD = 20.0  # cut-off angle θ_C = 20 mrad
_IAK_DENSITY_EXPONENT = 0.3

#: Element symbols in order of atomic number (Z = index + 1).
_ELEMENTS = (
    "H He Li Be B C N O F Ne Na Mg Al Si P S Cl Ar K Ca Sc Ti V Cr Mn Fe Co Ni Cu Zn Ga Ge As Se "
    "Br Kr Rb Sr Y Zr Nb Mo Tc Ru Rh Pd Ag Cd In Sn Sb Te I Xe Cs Ba La Ce Pr Nd Pm Sm Eu Gd Tb "
    "Dy Ho Er Tm Yb Lu Hf Ta W Re Os Ir Pt Au Hg Tl Pb Bi Po At Rn Fr Ra Ac Th Pa U Np Pu Am Cm "
    "Bk Cf Es Fm Md No Lr Rf Db Sg Bh Hs Mt Ds Rg Cn Nh Fl Mc Lv Ts Og"
).split()
_ATOMIC_NUMBER = {symbol: z for z, symbol in enumerate(_ELEMENTS, start=1)}

_FORMULA_HELP = "give a chemical formula such as 'LiCoO2', 'Li6PS5Cl' or 'LiNi0.8Mn0.1Co0.1O2'"
_TOKEN = re.compile(r"([A-Z][a-z]?)|(\d+\.?\d*|\.\d+)|([()\[\]])")


# --------------------------------------------------------------------------------------
# Composition and mean free path
# --------------------------------------------------------------------------------------

def parse_formula(formula: str) -> dict[str, float]:
    """Atoms of each element in a chemical formula.

    Parameters
    ----------
    formula : str
        A chemical formula: element symbols each followed by an optional count (integer
        or decimal), with parentheses or brackets for groups, e.g. ``"LiCoO2"``,
        ``"Li6PS5Cl"``, ``"Ca(OH)2"``, ``"LiNi0.8Mn0.1Co0.1O2"``. Spaces are ignored.

    Returns
    -------
    dict
        element symbol → number of atoms in the formula unit (float), in order of first
        appearance.

    Raises
    ------
    CalibrationError
        For an empty formula, an unknown element symbol, unbalanced brackets, a zero count
        or any other character.

    Examples
    --------
    >>> parse_formula("Li6PS5Cl")
    {'Li': 6.0, 'P': 1.0, 'S': 5.0, 'Cl': 1.0}
    """
    if not isinstance(formula, str):
        raise CalibrationError(f"composition must be a chemical formula (text), got {formula!r}; {_FORMULA_HELP}")
    text = "".join(formula.split())
    if not text:
        raise CalibrationError(f"composition {formula!r} is empty; {_FORMULA_HELP}")
    tokens = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise CalibrationError(
                f"composition {formula!r}: unexpected character {text[pos]!r} at position {pos}; {_FORMULA_HELP}")
        tokens.append((m.lastindex, m.group(), pos))
        pos = m.end()

    stack: list[dict[str, float]] = [{}]
    closers: list[str] = []
    i = 0
    while i < len(tokens):
        kind, value, at = tokens[i]
        i += 1
        count = 1.0
        if i < len(tokens) and tokens[i][0] == 2:
            count = float(tokens[i][1])
            i += 1
            if count <= 0:
                raise CalibrationError(
                    f"composition {formula!r}: the count after {value!r} must be positive, got 0; {_FORMULA_HELP}")
        if kind == 1:
            if value not in _ATOMIC_NUMBER:
                raise CalibrationError(
                    f"composition {formula!r}: unknown element symbol {value!r} at position {at}; {_FORMULA_HELP}")
            stack[-1][value] = stack[-1].get(value, 0.0) + count
        elif kind == 2:
            raise CalibrationError(
                f"composition {formula!r}: a number at position {at} follows no element or group; {_FORMULA_HELP}")
        elif value in "([":
            if count != 1.0:
                raise CalibrationError(
                    f"composition {formula!r}: a number at position {at + 1} follows an opening bracket; {_FORMULA_HELP}")
            stack.append({})
            closers.append(")" if value == "(" else "]")
        else:
            if not closers or closers.pop() != value:
                raise CalibrationError(
                    f"composition {formula!r}: unbalanced {value!r} at position {at}; {_FORMULA_HELP}")
            group = stack.pop()
            if not group:
                raise CalibrationError(f"composition {formula!r}: empty group before position {at}; {_FORMULA_HELP}")
            for symbol, n in group.items():
                stack[-1][symbol] = stack[-1].get(symbol, 0.0) + n * count
    if closers:
        raise CalibrationError(f"composition {formula!r}: a bracket is not closed; {_FORMULA_HELP}")
    if not stack[0]:
        raise CalibrationError(f"composition {formula!r} names no element; {_FORMULA_HELP}")
    return stack[0]


def effective_atomic_number(composition) -> float:
    """Effective atomic number Z_eff of a compound, weighted as Malis et al. (1988).

    Parameters
    ----------
    composition : str or mapping
        A chemical formula (see :func:`parse_formula`) or a mapping element symbol →
        number of atoms (any normalisation).

    Returns
    -------
    float
        Z_eff = Σ f_i Z_i^1.3 / Σ f_i Z_i^0.3 with f_i the atomic fractions (13.65 for LiCoO2).
    """
    atoms = parse_formula(composition) if isinstance(composition, str) else dict(composition)
    if not atoms:
        raise CalibrationError(f"composition {composition!r} names no element; {_FORMULA_HELP}")
    z = []
    n = []
    for symbol, count in atoms.items():
        if symbol not in _ATOMIC_NUMBER:
            raise CalibrationError(f"composition: unknown element symbol {symbol!r}; {_FORMULA_HELP}")
        count = float(count)
        if not math.isfinite(count) or count <= 0:
            raise CalibrationError(f"composition: the number of {symbol} atoms must be positive, got {count!r}")
        z.append(_ATOMIC_NUMBER[symbol])
        n.append(count)
    z = np.asarray(z, dtype=float)
    f = np.asarray(n) / np.sum(n)
    return float(np.sum(f * z**1.3) / np.sum(f * z**0.3))


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


def _check_positive(name, value, unit):
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise CalibrationError(f"{name} must be a number in {unit}, got {value!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise CalibrationError(f"{name} must be positive and finite (in {unit}), got {value!r}")
    return value


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
    kv = _check_positive("kv", kv, "kV")
    beta = _check_positive("beta_mrad", beta_mrad, "mrad")
    em = _check_positive("mean_energy_loss_ev", mean_energy_loss_ev, "eV")
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
    kv = _check_positive("kv", kv, "kV")
    rho = _check_positive("density_g_cm3", density_g_cm3, "g/cm³")
    beta = _check_positive("beta_mrad", beta_mrad, "mrad")
    try:
        alpha = float(alpha_mrad)
    except (TypeError, ValueError):
        alpha = math.nan
    if not math.isfinite(alpha) or alpha < 0:
        raise CalibrationError(f"alpha_mrad must be zero or positive (in mrad), got {alpha_mrad!r}")
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


# --------------------------------------------------------------------------------------
# Spectra
# --------------------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class Spectrum:
    """A low-loss spectrum or spectrum image with its energy axis.

    Attributes
    ----------
    counts : ndarray or dask array
        Intensities, shape (..., n_energy): the energy axis last, navigation axes (for a
        spectrum image (ny, nx)) first. Counts per channel, dark reference removed.
    energy_offset_ev : float
        Energy loss of channel 0 in eV.
    energy_step_ev : float
        Energy width of a channel in eV (the dispersion), positive.
    kv, beta_mrad, alpha_mrad : float or None
        Incident energy (keV), collection and convergence semi-angles (mrad), where the
        source records them.
    source : str
        Where the spectrum came from (a file name), for messages.
    """

    counts: object
    energy_offset_ev: float
    energy_step_ev: float
    kv: float | None = None
    beta_mrad: float | None = None
    alpha_mrad: float | None = None
    source: str = ""

    @property
    def n_energy(self) -> int:
        return int(self.counts.shape[-1])

    @property
    def navigation_shape(self) -> tuple:
        """Shape of the navigation axes: () for one spectrum, (ny, nx) for a spectrum image."""
        return tuple(self.counts.shape[:-1])

    @property
    def energy_ev(self) -> np.ndarray:
        """Energy loss at the centre of each channel in eV, shape (n_energy,)."""
        return self.energy_offset_ev + self.energy_step_ev * np.arange(self.n_energy)


_ENERGY_UNITS = {"ev": 1.0, "kev": 1e3, "mev": 1e-3}


def _energy_axis(energy_axis, where):
    try:
        offset, step = (float(v) for v in energy_axis)
    except (TypeError, ValueError):
        raise InputDataError(
            f"{where}: the energy axis must be two numbers (offset in eV, step in eV), got {energy_axis!r}") from None
    if not math.isfinite(offset) or not math.isfinite(step) or step <= 0:
        raise InputDataError(
            f"{where}: the energy axis needs a finite offset and a positive step in eV, got ({offset}, {step})")
    return offset, step


def _is_dask(array) -> bool:
    return type(array).__module__.startswith("dask.")


def as_spectrum(spectrum, *, energy_axis=None) -> Spectrum:
    """A :class:`Spectrum` from an array, a HyperSpy signal or a :class:`Spectrum`.

    Parameters
    ----------
    spectrum : array_like, dask array, HyperSpy Signal1D/EELSSpectrum or Spectrum
        Intensities with the energy axis last, shape (..., n_energy). A HyperSpy signal
        (lazy or not) must have one signal axis, uniform, in eV (or keV, meV); its
        navigation axes come first in ``.data`` order. Metadata of the beam energy and the
        collection and convergence angles are kept.
    energy_axis : (float, float), optional
        (offset_ev, step_ev): energy of channel 0 and channel width in eV. Needed for plain
        arrays; for a signal or a :class:`Spectrum` it replaces the recorded calibration.

    Returns
    -------
    Spectrum
    """
    if isinstance(spectrum, Spectrum):
        if energy_axis is None:
            return spectrum
        offset, step = _energy_axis(energy_axis, spectrum.source or "spectrum")
        return replace(spectrum, energy_offset_ev=offset, energy_step_ev=step)
    if hasattr(spectrum, "axes_manager"):
        return _from_signal(spectrum, energy_axis)
    if energy_axis is None:
        raise InputDataError(
            "a plain array has no energy axis: give energy_axis=(offset_ev, step_ev), the energy loss of "
            "channel 0 and the channel width in eV")
    offset, step = _energy_axis(energy_axis, "spectrum")
    counts = spectrum if (_is_dask(spectrum) or isinstance(spectrum, np.ndarray)) else np.asarray(spectrum)
    return Spectrum(counts, offset, step)


def _from_signal(signal, energy_axis):
    title = str(signal.metadata.get_item("General.title", "") or "signal")
    axes = signal.axes_manager.signal_axes
    if len(axes) != 1:
        raise InputDataError(
            f"{title}: a spectrum needs exactly one signal axis (energy), this signal has {len(axes)}; "
            "use a Signal1D (s.as_signal1D(-1) puts the last axis as energy)")
    axis = axes[0]
    if energy_axis is not None:
        offset, step = _energy_axis(energy_axis, title)
    else:
        if not getattr(axis, "is_uniform", True):
            raise InputDataError(f"{title}: the energy axis is not uniform; give energy_axis=(offset_ev, step_ev)")
        unit = str(axis.units or "").strip().lower()
        if unit not in _ENERGY_UNITS:
            raise InputDataError(
                f"{title}: the signal axis has units {axis.units!r}, not an energy; calibrate it in eV or give "
                "energy_axis=(offset_ev, step_ev)")
        offset, step = axis.offset * _ENERGY_UNITS[unit], axis.scale * _ENERGY_UNITS[unit]
        if not (step > 0):
            raise InputDataError(
                f"{title}: the energy axis runs backwards or is flat (step {step} eV); give energy_axis=(offset_ev, "
                "step_ev) with a positive step")
    md = signal.metadata

    def number(path):
        value = md.get_item(path, None)
        try:
            value = float(value)
        except (TypeError, ValueError):
            return None
        return value if math.isfinite(value) and value > 0 else None

    return Spectrum(signal.data, float(offset), float(step),
                    kv=number("Acquisition_instrument.TEM.beam_energy"),
                    beta_mrad=number("Acquisition_instrument.TEM.Detector.EELS.collection_angle"),
                    alpha_mrad=number("Acquisition_instrument.TEM.convergence_angle"),
                    source=title)


# --------------------------------------------------------------------------------------
# Log-ratio
# --------------------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class LogRatioResult:
    """t/λ by the log-ratio method, with the integration windows used.

    For one spectrum every field is a number (the windows of shape (2,)); for a spectrum
    image each is a map of the navigation shape (windows (..., 2)). Pixels where no
    zero-loss peak could be integrated (NaN data, no positive intensity) are NaN.

    Attributes
    ----------
    t_over_lambda : float or ndarray
        ln(I_t / I_0), dimensionless.
    zero_loss_counts : float or ndarray
        I_0, the counts in the zero-loss window.
    total_counts : float or ndarray
        I_t, the counts in the total window.
    zlp_window_ev : ndarray, shape (..., 2)
        Low and high energy (eV) of the zero-loss window: outer edges of the first and last
        channels summed. Each edge is the first minimum of the spectrum below half the peak
        on that side of the zero-loss maximum (the spectrum's end where there is none); see
        :func:`log_ratio`.
    total_window_ev : ndarray, shape (..., 2)
        Low and high energy (eV) of the total window: from the zero-loss window's low edge
        to the end of the spectrum (or ``energy_max_ev``).
    zlp_position_ev : float or ndarray
        Energy of the zero-loss maximum in eV (channel centre).
    zlp_fwhm_ev : float or ndarray
        Full width at half maximum of the zero-loss peak in eV (linear interpolation).
    """

    t_over_lambda: object
    zero_loss_counts: object
    total_counts: object
    zlp_window_ev: np.ndarray
    total_window_ev: np.ndarray
    zlp_position_ev: object
    zlp_fwhm_ev: object

    @property
    def valid(self):
        """True where t/λ could be computed (a bool, or a map of the navigation shape)."""
        return np.isfinite(self.t_over_lambda)


_SMOOTH_PER_FWHM = 0.25  # Gaussian σ of the smoothing, in zero-loss FWHMs
_N_OUT = 8  # t/λ, I0, It, zlp low, zlp high, total high, position, fwhm


def _half_max_crossings(values, peak, half):
    """Half-maximum crossings (fractional channels) left and right of ``peak`` in each row, NaN if none."""
    m, n = values.shape
    rows = np.arange(m)
    idx = np.arange(n)
    under = values < half[:, None]
    right = under & (idx > peak[:, None])
    left = under & (idx < peak[:, None])
    jr = np.where(right.any(axis=1), right.argmax(axis=1), n - 1)
    jl = np.where(left.any(axis=1), n - 1 - left[:, ::-1].argmax(axis=1), 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        xr = jr - 1 + (values[rows, jr - 1] - half) / (values[rows, jr - 1] - values[rows, jr])
        xl = jl + (half - values[rows, jl]) / (values[rows, jl + 1] - values[rows, jl])
    return np.where(left.any(axis=1), xl, np.nan), np.where(right.any(axis=1), xr, np.nan)


def _zlp_peak(smooth, lo_search, hi_search):
    segment = smooth[:, lo_search:hi_search + 1]
    peak = lo_search + np.where(np.isfinite(segment), segment, -np.inf).argmax(axis=1)
    return peak, smooth[np.arange(smooth.shape[0]), peak]


def _log_ratio_rows(counts, offset, step, lo_search, hi_search, end):
    """The log-ratio of each row of ``counts`` (m, n); returns (m, _N_OUT) float64. No validation."""
    from scipy.ndimage import gaussian_filter1d

    data = np.asarray(counts, dtype=np.float64)
    m, n = data.shape
    out = np.full((m, _N_OUT), np.nan)
    if m == 0:
        return out
    rows = np.arange(m)
    idx = np.arange(n)
    bad = ~np.isfinite(data[:, :end]).all(axis=1)
    # The zero-loss width, from the spectrum smoothed over one channel, sets the smoothing
    # under which the minima are looked for: wide enough that counting noise makes no false
    # minimum on the peak's flanks, narrow beside the plasmon valley.
    light = gaussian_filter1d(data, 1.0, axis=-1, mode="nearest")
    peak, height = _zlp_peak(light, lo_search, hi_search)
    xl, xr = _half_max_crossings(light, peak, height / 2.0)
    widths = (xr - xl)[~bad & np.isfinite(xr - xl)]
    sigma = max(1.0, _SMOOTH_PER_FWHM * float(np.median(widths))) if widths.size else 1.0
    smooth = gaussian_filter1d(data, sigma, axis=-1, mode="nearest")
    peak, height = _zlp_peak(smooth, lo_search, hi_search)
    bad |= ~(height > 0)
    below = smooth < (height / 2.0)[:, None]
    # Right edge: first channel past the peak, below half maximum, after which the spectrum rises.
    rises = np.zeros_like(below)
    rises[:, :-1] = smooth[:, 1:] > smooth[:, :-1]
    right = below & rises & (idx > peak[:, None]) & (idx < end)
    hi = np.where(right.any(axis=1), right.argmax(axis=1), end - 1)
    # Left edge: last channel before the peak, below half maximum, before which the spectrum falls.
    falls = np.zeros_like(below)
    falls[:, 1:] = smooth[:, :-1] > smooth[:, 1:]
    left = below & falls & (idx < peak[:, None])
    lo = np.where(left.any(axis=1), n - 1 - left[:, ::-1].argmax(axis=1), 0)
    # The smoothing moves a minimum by up to about σ: take the lowest lightly smoothed channel
    # within 2σ of each edge, on the same side of the peak.
    reach = np.arange(-math.ceil(2 * sigma), math.ceil(2 * sigma) + 1)
    near = np.clip(hi[:, None] + reach, np.minimum(peak + 1, end - 1)[:, None], end - 1)
    hi = np.where(right.any(axis=1), near[rows, light[rows[:, None], near].argmin(axis=1)], hi)
    near = np.clip(lo[:, None] + reach, 0, np.maximum(peak - 1, 0)[:, None])
    lo = np.where(left.any(axis=1), near[rows, light[rows[:, None], near].argmin(axis=1)], lo)

    cumulative = np.zeros((m, n + 1))
    np.cumsum(np.nan_to_num(data), axis=1, out=cumulative[:, 1:])
    i0 = cumulative[rows, hi + 1] - cumulative[rows, lo]
    it = cumulative[rows, end] - cumulative[rows, lo]
    bad |= ~(i0 > 0) | ~(it > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        t_over_lambda = np.log(it / i0)
    # FWHM reported from the counts themselves (half-maximum crossings interpolated linearly).
    raw_xl, raw_xr = _half_max_crossings(data, peak, data[rows, peak] / 2.0)

    out[:, 0] = t_over_lambda
    out[:, 1] = i0
    out[:, 2] = it
    out[:, 3] = offset + (lo - 0.5) * step
    out[:, 4] = offset + (hi + 0.5) * step
    out[:, 5] = offset + (end - 0.5) * step
    out[:, 6] = offset + peak * step
    out[:, 7] = (raw_xr - raw_xl) * step
    out[bad] = np.nan
    return out


def log_ratio(spectrum, *, energy_axis=None, zlp_search_ev=5.0, energy_max_ev=None) -> LogRatioResult:
    """Relative thickness t/λ = ln(I_t / I_0) of a low-loss spectrum or spectrum image.

    Parameters
    ----------
    spectrum : array_like, dask array, HyperSpy signal or Spectrum
        Low-loss intensities, energy axis last, shape (..., n_energy), with the zero-loss
        peak inside. Counts per channel with the dark reference removed; NaN pixels give
        NaN. See :func:`as_spectrum`.
    energy_axis : (float, float), optional
        (offset_ev, step_ev), needed for plain arrays.
    zlp_search_ev : float
        The zero-loss peak is the maximum within ±``zlp_search_ev`` eV of 0 eV.
    energy_max_ev : float, optional
        Highest energy loss (eV) counted in I_t; the end of the spectrum by default. Set it
        below the first core-loss edge when the spectrum reaches one.

    Returns
    -------
    LogRatioResult
        Numbers for one spectrum; maps of the navigation shape for a spectrum image.

    Raises
    ------
    InputDataError
        When the energy axis does not reach 0 eV within the search range, the spectrum is
        too short, or (for one spectrum) no positive zero-loss intensity can be found.

    Notes
    -----
    I_0 is the sum of the counts between the first minima either side of the zero-loss
    maximum, I_t the sum from the same low edge to the end. The minima are looked for below
    half the peak height on the spectrum smoothed by a Gaussian of σ = FWHM/4 (the zero-loss
    width measured on the spectrum smoothed over one channel), so that counting noise on the
    peak's flanks makes no false minimum, then placed at the lowest channel of the spectrum
    smoothed over one channel within 2σ. The method assumes Poisson statistics of
    the inelastic events (Egerton 2011, §5.1.1); the spectrum should extend to several plasmon
    energies beyond the last significant multiple-scattering peak (for t/λ ≈ 3, beyond
    about 10 plasmon energies) or I_t is short.

    Examples
    --------
    >>> e = -5 + 0.1 * np.arange(1000)
    >>> zlp = np.exp(-0.5 * (e / 0.4) ** 2)
    >>> plasmon = np.where(e > 3, np.exp(-0.5 * ((e - 20) / 4) ** 2), 0.0)
    >>> s = 1e5 * (zlp / zlp.sum() + 0.5 * plasmon / plasmon.sum())
    >>> round(log_ratio(s, energy_axis=(-5, 0.1)).t_over_lambda, 3)  # ln(1.5)
    0.405
    """
    spec = as_spectrum(spectrum, energy_axis=energy_axis)
    where = spec.source or "spectrum"
    shape = tuple(spec.counts.shape)
    if len(shape) < 1 or shape[-1] < 3:
        raise InputDataError(f"{where}: a spectrum needs at least 3 energy channels, got shape {shape}")
    n = shape[-1]
    if spec.counts.dtype.kind not in "uif":
        raise InputDataError(f"{where}: spectrum intensities must be numbers, got dtype {spec.counts.dtype}")
    search = _check_positive("zlp_search_ev", zlp_search_ev, "eV")
    offset, step = spec.energy_offset_ev, spec.energy_step_ev
    e_last = offset + (n - 1) * step
    lo_search = max(0, math.ceil((-search - offset) / step))
    hi_search = min(n - 1, math.floor((search - offset) / step))
    if lo_search > hi_search:
        raise InputDataError(
            f"{where}: the energy axis runs from {offset:g} to {e_last:g} eV and has no channel within "
            f"±{search:g} eV of 0 eV, where the zero-loss peak is looked for; calibrate the energy axis "
            "(offset and step in eV) so that the zero-loss peak sits at 0 eV")
    end = n
    if energy_max_ev is not None:
        emax = float(energy_max_ev)
        if not math.isfinite(emax) or emax <= search:
            raise InputDataError(
                f"{where}: energy_max_ev must exceed the zero-loss search range ({search:g} eV), got {energy_max_ev!r}")
        end = min(n, math.floor((emax - offset) / step) + 1)
    if end <= hi_search + 1:
        raise InputDataError(f"{where}: the spectrum ends at {e_last:g} eV, inside the zero-loss peak search range")

    nav = shape[:-1]
    args = (offset, step, lo_search, hi_search, end)

    def rows_of(block):  # spectra in slabs of about a million channels: small temporaries
        flat = np.asarray(block).reshape(-1, n)
        rows = max(1, (1 << 20) // n)
        out = [_log_ratio_rows(flat[i:i + rows], *args) for i in range(0, flat.shape[0], rows)]
        return (np.concatenate(out) if out else np.empty((0, _N_OUT))).reshape(*block.shape[:-1], _N_OUT)

    if _is_dask(spec.counts):
        counts = spec.counts.rechunk({len(shape) - 1: -1})
        out = counts.map_blocks(rows_of, dtype=np.float64, chunks=counts.chunks[:-1] + ((_N_OUT,),)).compute()
    else:
        out = rows_of(spec.counts)

    if not nav:
        if not np.isfinite(out[0]):
            raise InputDataError(
                f"{where}: no positive zero-loss intensity found within ±{search:g} eV of 0 eV (or the spectrum "
                "holds NaN); the log-ratio needs a spectrum whose zero-loss peak is inside the energy range")
        scalar = [float(v) for v in out]
        return LogRatioResult(scalar[0], scalar[1], scalar[2], np.array(scalar[3:5]), np.array([scalar[3], scalar[5]]),
                              scalar[6], scalar[7])
    return LogRatioResult(out[..., 0], out[..., 1], out[..., 2], out[..., 3:5].copy(),
                          np.stack([out[..., 3], out[..., 5]], axis=-1), out[..., 6], out[..., 7])


# --------------------------------------------------------------------------------------
# Thickness
# --------------------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class ThicknessResult:
    """Specimen thickness from a low-loss spectrum or spectrum image.

    Attributes
    ----------
    thickness_nm : float or ndarray
        t = (t/λ)·λ in nm: a number, or a map of the navigation shape (NaN where invalid).
    t_over_lambda : float or ndarray
        Relative thickness (dimensionless).
    mean_free_path : MeanFreePath
        λ and how it was obtained.
    log_ratio : LogRatioResult
        The log-ratio result with its integration windows.
    """

    thickness_nm: object
    t_over_lambda: object
    mean_free_path: MeanFreePath
    log_ratio: LogRatioResult

    @property
    def mean_free_path_nm(self) -> float:
        return self.mean_free_path.mean_free_path_nm


def thickness(spectrum, *, kv, beta_mrad, composition=None, mean_energy_loss_ev=None, density_g_cm3=None,
              alpha_mrad=None, energy_axis=None, zlp_search_ev=5.0, energy_max_ev=None) -> ThicknessResult:
    """Specimen thickness in nm from a low-loss spectrum or spectrum image.

    Parameters
    ----------
    spectrum : array_like, dask array, HyperSpy signal or Spectrum
        Low-loss intensities, energy axis last (see :func:`log_ratio`).
    kv : float
        Incident energy E0 in keV.
    beta_mrad : float
        Spectrometer collection semi-angle β in mrad.
    composition, mean_energy_loss_ev, density_g_cm3, alpha_mrad :
        The specimen, for the mean free path: exactly one of a chemical formula, E_m in eV
        (both Malis) or the density in g/cm³ (Iakoubovskii, with α in mrad). See
        :func:`mean_free_path`.
    energy_axis, zlp_search_ev, energy_max_ev :
        As in :func:`log_ratio`.

    Returns
    -------
    ThicknessResult
        Thickness in nm (number or map), t/λ, λ and the log-ratio windows.
    """
    mfp = mean_free_path(kv=kv, beta_mrad=beta_mrad, composition=composition,
                         mean_energy_loss_ev=mean_energy_loss_ev, density_g_cm3=density_g_cm3,
                         alpha_mrad=alpha_mrad)
    ratio = log_ratio(spectrum, energy_axis=energy_axis, zlp_search_ev=zlp_search_ev, energy_max_ev=energy_max_ev)
    t = ratio.t_over_lambda * mfp.mean_free_path_nm
    return ThicknessResult(float(t) if np.ndim(t) == 0 else t, ratio.t_over_lambda, mfp, ratio)
