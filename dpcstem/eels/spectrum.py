"""A low-loss spectrum or spectrum image with its energy axis, from arrays, HyperSpy/exspy signals or files."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from ..errors import InputDataError

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


def is_dask(array) -> bool:
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
    counts = spectrum if (is_dask(spectrum) or isinstance(spectrum, np.ndarray)) else np.asarray(spectrum)
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
