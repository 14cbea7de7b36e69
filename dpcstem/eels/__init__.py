"""Specimen thickness from low-loss EELS: the log-ratio method and the inelastic mean free path.

The field is the deflection divided by the thickness (DESIGN.md §3), so the thickness is
measured, pixel by pixel where a spectrum image is at hand:

- t/λ by the log-ratio method, t/λ = ln(I_t / I_0), from a low-loss spectrum or spectrum
  image (:func:`log_ratio`);
- the inelastic mean free path λ in nm from the Malis et al. (1988) formula (mean energy
  loss from a chemical formula or given) or from the Iakoubovskii et al. (2008) formula
  (mass density) (:func:`mean_free_path`);
- both together, t = (t/λ)·λ in nm, as one number or a map (:func:`thickness`).

One module per purpose: :mod:`.formula` (chemical formulas, Z_eff), :mod:`.mean_free_path`
(λ), :mod:`.spectrum` (the spectrum adaptor: arrays, HyperSpy/exspy signals, files through
:func:`dpcstem.io.read_spectrum`), :mod:`.log_ratio` (t/λ) and :mod:`.thickness` (t in nm).

Spectra are plain arrays with an energy axis (offset and step in eV), HyperSpy
``Signal1D``/``EELSSpectrum`` signals (lazy or not), or :class:`Spectrum` objects made by
:func:`dpcstem.io.read_spectrum` from files.

The formulas are given with their references where they are implemented: the mean free
paths in :mod:`.mean_free_path` (Malis et al. 1988; Iakoubovskii et al. 2008), the log-ratio
in :mod:`.log_ratio`; R. F. Egerton, *Electron Energy-Loss Spectroscopy in the Electron
Microscope*, 3rd ed., Springer (2011), §5.1, covers both.
"""

from .formula import effective_atomic_number, parse_formula
from .log_ratio import LogRatioResult, log_ratio
from .mean_free_path import (
    MeanFreePath,
    iakoubovskii_mean_free_path_nm,
    malis_mean_energy_loss_ev,
    malis_mean_free_path_nm,
    mean_free_path,
)
from .spectrum import Spectrum, as_spectrum
from .thickness import ThicknessResult, thickness

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
