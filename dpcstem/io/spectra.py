"""Reading low-loss EELS spectra and spectrum images from files.

Any file that RosettaSciIO reads through HyperSpy (Gatan DM3/DM4, Velox ``.emd``, EMSA
``.msa``, HyperSpy ``.hspy``, …), or a ``.npy`` array with its energy axis given. The result
is a :class:`dpcstem.eels.Spectrum`: intensities with the energy axis last, the energy
calibration in eV and, where the file records them, the beam energy and the collection and
convergence semi-angles.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

from ..eels import Spectrum, as_spectrum
from ..errors import InputDataError, MissingMetadataError, UnreadableFileError
from .npy import load_npy

__all__ = ["read_spectrum"]


def read_spectrum(path, *, energy_axis=None, lazy=False) -> Spectrum:
    """Read a low-loss spectrum or spectrum image.

    Parameters
    ----------
    path : path-like
        A file RosettaSciIO reads (DM3/DM4, Velox EMD, EMSA, HSPY, …), opened read-only, or
        a ``.npy`` array of shape (..., n_energy) with the energy axis last (memory-mapped).
    energy_axis : (float, float), optional
        (offset_ev, step_ev): energy loss of channel 0 and channel width in eV. Required for
        ``.npy`` and for files without an energy calibration; otherwise it replaces the
        calibration the file records.
    lazy : bool
        Read the intensities as a dask array, chunk by chunk (large spectrum images).

    Returns
    -------
    Spectrum
        Intensities (..., n_energy) (a spectrum image as (ny, nx, n_energy)), the energy
        axis in eV, and ``kv``, ``beta_mrad``, ``alpha_mrad`` where the file has them.

    Raises
    ------
    UnreadableFileError
        The file is missing, of a kind no reader knows, or corrupt.
    MissingMetadataError
        The file holds no spectrum (no signal with one energy axis), or several and none
        marked as EELS.
    InputDataError
        No energy calibration and none given, or an unusable array.
    """
    path = Path(path)
    if not path.is_file():
        raise UnreadableFileError(f"{path}: spectrum file not found")
    if path.suffix.lower() == ".npy":
        return _read_npy(path, energy_axis)
    signal = _load_signal(path, lazy)
    spectrum = as_spectrum(signal, energy_axis=energy_axis)
    return Spectrum(spectrum.counts, spectrum.energy_offset_ev, spectrum.energy_step_ev, kv=spectrum.kv,
                    beta_mrad=spectrum.beta_mrad, alpha_mrad=spectrum.alpha_mrad, source=str(path))


def _read_npy(path, energy_axis):
    if energy_axis is None:
        raise InputDataError(
            f"{path}: a .npy array has no energy axis; give --energy-axis OFFSET_EV STEP_EV "
            "(energy_axis=(offset_ev, step_ev)): the energy loss of channel 0 and the channel width in eV")
    try:
        counts = load_npy(path, mmap_mode="r")
    except UnreadableFileError:
        raise
    except (OSError, ValueError, EOFError) as exc:
        raise UnreadableFileError(f"{path}: cannot read the .npy array ({exc})") from None
    if counts.ndim < 1:
        raise InputDataError(f"{path}: a spectrum needs an energy axis (last), got a 0-d array")
    spectrum = as_spectrum(counts, energy_axis=energy_axis)
    return Spectrum(spectrum.counts, spectrum.energy_offset_ev, spectrum.energy_step_ev, source=str(path))


def _load_signal(path, lazy):
    import hyperspy.api as hs
    import rsciio

    suffix = path.suffix.lower().lstrip(".")
    known = {ext.lower() for plugin in rsciio.IO_PLUGINS for ext in plugin["file_extensions"]}
    if suffix not in known:
        raise UnreadableFileError(
            f"{path}: {path.suffix or 'no extension'} is not a format RosettaSciIO reads; give a DM3/DM4, "
            "Velox .emd, EMSA .msa or HyperSpy .hspy file, or a .npy array with --energy-axis")
    # A failing reader also logs an error through HyperSpy; the exception below says it once.
    logger = logging.getLogger("hyperspy.io")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        with warnings.catch_warnings():
            # exspy, imported for an EELS file, warns about HyperSpy names it uses: not the user's concern
            warnings.filterwarnings("ignore", message=r"Importing `\w+` from `hyperspy\.")
            try:
                loaded = hs.load(path, lazy=lazy)  # every reader opens the file read-only
            except Exception:
                if not lazy:
                    raise
                loaded = hs.load(path, lazy=False)  # a reader without lazy loading (EMSA, …)
    except Exception as exc:  # any reader failure is a file the user gave that cannot be read
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UnreadableFileError(f"{path}: cannot read it as a spectrum ({message})") from None
    finally:
        logger.setLevel(level)
    signals = loaded if isinstance(loaded, list) else [loaded]
    spectra = [s for s in signals if len(s.axes_manager.signal_axes) == 1]
    if not spectra:
        found = ", ".join(f"{_title(s)!r} {s.axes_manager.signal_shape}" for s in signals)
        raise MissingMetadataError(f"{path}: holds no spectrum (a signal with one energy axis); found {found}")
    if len(spectra) == 1:
        return spectra[0]
    eels = [s for s in spectra if str(s.metadata.get_item("Signal.signal_type", "")).upper().startswith("EELS")]
    if len(eels) == 1:
        return eels[0]
    titles = ", ".join(repr(_title(s)) for s in (eels or spectra))
    raise MissingMetadataError(
        f"{path}: holds several spectra ({titles}) and not exactly one marked as EELS; save the low-loss "
        "spectrum on its own")


def _title(signal):
    return str(signal.metadata.get_item("General.title", "") or "untitled")
