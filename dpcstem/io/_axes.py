"""Calibration of 4D-STEM files from their axes: scan steps in nm, detector pixels in mrad.

Axes come as HyperSpy-style dicts (``index_in_array``, ``scale``, ``units``) in array
order: scan y, scan x, detector ky, detector kx.

Prismatic (up to its 2020 releases) writes its lengths in Å but labels them ``[n_m]``,
and reciprocal lengths in 1/Å labelled ``[n_m^-1]``; no other writer uses those labels.
Read as nm, the scan step would come out 10× too large: :func:`prismatic_units` reads
them as what they are, and the reader that meets them says so in one warning.
"""

from __future__ import annotations

from .. import physics

_NM_PER = {"nm": 1.0, "µm": 1e3, "um": 1e3, "μm": 1e3, "å": 0.1, "a": 0.1, "angstrom": 0.1, "pm": 1e-3, "m": 1e9}
_PER_NM_PER = {"1/nm": 1.0, "nm^-1": 1.0, "nm-1": 1.0, "1/å": 10.0, "å^-1": 10.0, "1/a": 10.0, "a^-1": 10.0}

#: Prismatic's mislabelled units → what the numbers are.
PRISMATIC_UNITS = {"[n_m]": "Å", "[n_m^-1]": "1/Å"}


def prismatic_units(units) -> str | None:
    """The true unit behind one of Prismatic's labels (``[n_m]`` → Å), or None for any other label."""
    return PRISMATIC_UNITS.get(str(units).strip())


def _clean(units) -> str:
    return str(units).strip().lower().strip("[]")


def nm_per(units):
    """Nanometres per unit of length ``units``, or None when not a length."""
    return _NM_PER.get(_clean(units))


def mrad_per_px_from(scale, units, kv):
    """A detector axis scale in mrad per pixel (from mrad, rad, or reciprocal length and the beam energy)."""
    units = _clean(units)
    if units == "mrad":
        return float(scale)
    if units == "rad":
        return float(scale) / physics.MRAD_TO_RAD
    if units in _PER_NM_PER and kv is not None:
        wavelength_nm = float(physics.wavelength_m(kv)) * physics.M_TO_NM
        return float(scale) * _PER_NM_PER[units] * wavelength_nm / physics.MRAD_TO_RAD
    return None


def from_axes(axes, kv):
    """Calibration (``kv``, ``step_y_nm``, ``step_x_nm``) and mrad per detector pixel from four axes."""
    calibration = {} if kv is None else {"kv": kv}
    axes = sorted(axes, key=lambda a: a.get("index_in_array", 0))
    if len(axes) == 4:
        for name, axis in (("step_y_nm", axes[0]), ("step_x_nm", axes[1])):
            factor = nm_per(axis.get("units", ""))
            scale = float(axis.get("scale", 1.0))
            if factor is not None and scale > 0:
                calibration[name] = scale * factor
    mrad = None
    if len(axes) >= 2:
        signal = axes[-1]
        mrad = mrad_per_px_from(signal.get("scale", 1.0), signal.get("units", ""), kv)
    return calibration, mrad


def beam_kv(metadata):
    """The beam energy (keV, i.e. the accelerating voltage in kV) from HyperSpy metadata, or None."""
    try:
        kev = metadata["Acquisition_instrument"]["TEM"]["beam_energy"]
    except (KeyError, TypeError):
        return None
    try:
        return float(kev) if float(kev) > 0 else None
    except (TypeError, ValueError):
        return None
