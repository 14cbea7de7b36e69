"""Specimen thickness t = (t/λ)·λ in nm: the log-ratio and the mean free path together."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .log_ratio import LogRatioResult, log_ratio
from .mean_free_path import MeanFreePath, mean_free_path

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
