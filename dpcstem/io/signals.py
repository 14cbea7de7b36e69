"""HyperSpy signal types for dpcstem's results, a result file read back as signals, and pyxem.

dpcstem registers these signal types with HyperSpy (``hyperspy_extension.yaml``, as pyxem
registers its own), so that ``hs.load(result, file_format="hspy")``, :func:`load_result`
and ``s.set_signal_type(...)`` give them:

============================  =============================  =========================
class                         ``signal_type``                 data
============================  =============================  =========================
:class:`DeflectionMap`        ``dpc_deflection``              beam deflection, mrad
:class:`FieldMap`             ``electric_field``              projected field, V/m
:class:`ChargeDensityMap`     ``charge_density``              charge density, C/m³
:class:`PotentialMap`         ``electrostatic_potential``     potential, V (or V·nm)
============================  =============================  =========================

All are ``Signal2D`` with signal axes ``x`` and ``y`` in nm. A vector map (deflection,
field) has a navigation axis ``component`` of size 2 (0 is x, 1 is y, scan frame): ``s.inav[0]``
is the x component. A bias series has a navigation axis ``bias`` in V, in increasing order.
The unit of the data is ``s.units`` (``metadata.Signal.units``); the calibration and the
provenance are in ``metadata.DPC`` (see :mod:`dpcstem.io.hyperspy_view`).

pyxem keeps a beam shift map as a ``BeamShift`` (``signal_type: beam_shift``): a
``Signal1D`` of two values [x, y] per scan position, units in ``metadata.VectorMetadata``.
:meth:`DeflectionMap.to_beam_shift` / :meth:`FieldMap.to_beam_shift` and
:func:`from_beam_shift` convert between the two where pyxem is installed (the optional
extra ``dpcstem[pyxem]``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
from hyperspy._signals.lazy import LazySignal
from hyperspy.signals import Signal2D

from ..errors import InputDataError
from ..units import label_of
from .hyperspy_view import FORMAT_ATTRS, plain_tree, signal_layout
from .results import load_result_arrays

__all__ = ["ChargeDensityMap", "DeflectionMap", "FieldMap", "PotentialMap", "from_beam_shift", "load_result",
           "result_to_signals"]

#: Field units pyxem writes (``BeamShift.calibrate_electric_shifts`` gives MV/cm) → factor to V/m.
_FIELD_UNITS = {"V/m": 1.0, "MV/cm": 1e8, "MV/m": 1e6, "V/nm": 1e9}


class _Map(Signal2D):
    """A dpcstem map: a ``Signal2D`` whose data carry a unit."""

    @property
    def units(self) -> str:
        """Unit of the data (``metadata.Signal.units``), e.g. ``"V/m"``."""
        return str(self.metadata.get_item("Signal.units", ""))


class _VectorMap(_Map):
    """Two components (x, y) along the navigation axis ``component``."""

    def _component_axis(self):
        for axis in self.axes_manager.navigation_axes:
            if axis.name == "component":
                return axis
        raise InputDataError(f"{self.metadata.General.title or 'signal'}: a vector map needs a navigation axis "
                             "'component' of size 2 (x, y)")

    def component(self, which):
        """The ``"x"`` or ``"y"`` component as a ``Signal2D`` of the same unit."""
        index = {"x": 0, "y": 1}.get(which)
        if index is None:
            raise InputDataError(f"component must be 'x' or 'y', got {which!r}")
        out = self._slice_component(self._component_axis(), index)
        out.metadata.General.title = f"{self.metadata.General.title}_{which}"
        return out

    def _slice_component(self, axis, index):
        slices = tuple(index if a is axis else slice(None) for a in self.axes_manager.navigation_axes)
        out = self.inav[slices]
        out.set_signal_type("")
        return out

    def magnitude(self):
        """|v| = sqrt(x² + y²) as a ``Signal2D`` (bias axis kept), same unit."""
        axis = self._component_axis()
        x, y = self._slice_component(axis, 0), self._slice_component(axis, 1)
        out = x._deepcopy_with_new_data(np.hypot(x.data, y.data))
        out.metadata.General.title = f"|{self.metadata.General.title}|"
        label = label_of(str(self.metadata.General.title))
        out.metadata.set_item("Signal.quantity", f"|{label}| ({self.units})")
        out.metadata.set_item("Signal.units", self.units)
        return out

    def to_beam_shift(self):
        """This map as a pyxem ``BeamShift`` (needs pyxem: ``pip install dpcstem[pyxem]``).

        The ``BeamShift`` holds the [x, y] components as its one signal axis, the scan
        (``x``, ``y`` in nm, and ``bias`` in V for a series) as navigation, the unit in
        ``metadata.VectorMetadata.units`` and the beam energy in
        ``metadata.Acquisition_instrument.TEM.beam_energy``; dpcstem's metadata and
        original_metadata come along. :func:`from_beam_shift` is the inverse.
        """
        beam_shift = _pyxem_beam_shift()
        axis = self._component_axis()
        moved = self.transpose(signal_axes=[axis.name])
        out = beam_shift(np.ascontiguousarray(moved.data), axes=[a.get_axis_dictionary() for a in moved.axes_manager._axes],
                         metadata=self.metadata.as_dictionary(),
                         original_metadata=self.original_metadata.as_dictionary())
        out.metadata.set_item("Signal.signal_type", "beam_shift")
        out.units = [self.units, self.units]
        return out


class DeflectionMap(_VectorMap):
    """Beam deflection θ in mrad: components x, y (scan frame) along the navigation axis ``component``."""

    _signal_type = "dpc_deflection"


class FieldMap(_VectorMap):
    """Projected in-plane electric field E⊥ = −(pv/e)·θ/t in V/m, components x, y (scan frame)."""

    _signal_type = "electric_field"


class ChargeDensityMap(_Map):
    """Charge density ρ = ε0 ∇·E in C/m³ (total charge the beam sees, or the free charge where named)."""

    _signal_type = "charge_density"


class PotentialMap(_Map):
    """Electrostatic potential: thickness-averaged in V, or projected in V·nm (see ``units``)."""

    _signal_type = "electrostatic_potential"


class LazyDeflectionMap(LazySignal, DeflectionMap):
    pass


class LazyFieldMap(LazySignal, FieldMap):
    pass


class LazyChargeDensityMap(LazySignal, ChargeDensityMap):
    pass


class LazyPotentialMap(LazySignal, PotentialMap):
    pass


def result_to_signals(maps: Mapping, attrs: Mapping) -> dict:
    """Result maps as HyperSpy signals of dpcstem's signal types, with calibrated axes and units.

    Parameters
    ----------
    maps : mapping
        name → (array, unit), as :meth:`dpcstem.result.DPCResult.maps` and
        :func:`dpcstem.io.results.load_result_arrays` give them.
    attrs : mapping
        Root attributes of the result: ``step_x_nm`` and ``step_y_nm`` (nm) scale the
        ``x`` and ``y`` axes; ``bias`` (V, shape (n,)), here or as ``maps["bias"]``,
        labels the series.

    Returns
    -------
    dict
        name → signal, as :func:`dpcstem.io.hyperspy_view.signal_layout` describes:
        ``deflection`` and ``field`` (and ``net_deflection``, ``net_field`` for a series)
        as vector maps from their ``*_x``, ``*_y`` maps; every other image map under its
        own name (``charge_density``, ``potential``, ``valid``, …).
    """
    from hyperspy.signals import BaseSignal

    original = {k: v for k, v in attrs.items() if k not in FORMAT_ATTRS}
    out = {}
    for spec in signal_layout(maps, attrs):
        parts = [np.asarray(maps[src][0]) for src in spec.sources]
        if spec.order is not None:
            parts = [p[list(spec.order)] for p in parts]
        data = parts[0] if len(parts) == 1 else np.stack(parts, axis=-3)
        signal = BaseSignal(data, axes=spec.axes, metadata=spec.metadata)
        signal.original_metadata.add_dictionary(plain_tree(original))
        signal._assign_subclass()
        out[spec.name] = signal
    return out


def load_result(path) -> dict:
    """Read a dpcstem result file back as HyperSpy signals.

    Parameters
    ----------
    path : path-like
        A result file written by :func:`dpcstem.io.results.write_result`.

    Returns
    -------
    dict
        name → signal, as :func:`result_to_signals` makes them (the same signals
        ``hs.load(path, file_format="hspy")`` gives, by name);
        ``metadata.General.original_filename`` is the file's name.

    Raises
    ------
    UnreadableFileError
        The file is missing or not an HDF5 result file.

    Examples
    --------
    >>> signals = load_result("series.h5")  # doctest: +SKIP
    >>> signals["net_field"].axes_manager["bias"].axis  # doctest: +SKIP
    array([0. , 1. , 1.2, 1.4, 1.6, 1.8, 2. , 2.2])
    """
    maps, attrs = load_result_arrays(path)
    signals = result_to_signals(maps, attrs)
    for signal in signals.values():
        signal.metadata.General.original_filename = Path(path).name
    return signals


def from_beam_shift(beam_shift, *, kind=None):
    """A pyxem ``BeamShift`` (or any signal of two values [x, y] per scan position) as a dpcstem map.

    Parameters
    ----------
    beam_shift : pyxem.signals.BeamShift or hyperspy Signal1D
        Signal axis of size 2 ([x, y], scan frame); navigation axes the scan (x, y) and,
        for a series, the bias. Units in ``metadata.VectorMetadata.units`` (pyxem's
        convention) or given by ``kind``.
    kind : {"deflection", "field"}, optional
        What the values are when the signal does not say: deflection in mrad or field in
        V/m. Units pyxem records decide otherwise: ``mrad`` → deflection; ``V/m``,
        ``MV/m``, ``MV/cm``, ``V/nm`` → field (converted to V/m).

    Returns
    -------
    DeflectionMap or FieldMap

    Raises
    ------
    InputDataError
        The signal has no axis of two components, or units that are neither an angle in
        mrad nor a field (shifts in detector pixels: calibrate them first, e.g. pyxem's
        ``pixels_to_calibrated_units``).
    """
    title = str(beam_shift.metadata.get_item("General.title", "") or "beam shift")
    signal_axes = beam_shift.axes_manager.signal_axes
    if len(signal_axes) != 1 or signal_axes[0].size != 2:
        raise InputDataError(f"{title}: a beam shift map needs one signal axis of size 2 ([x, y]), got signal shape "
                             f"{beam_shift.axes_manager.signal_shape}")
    units = beam_shift.metadata.get_item("VectorMetadata.units", None)
    unit = None
    if units is not None and len(set(map(str, units))) == 1 and units[0] is not None:
        unit = str(units[0])
    if unit is None:
        if kind not in ("deflection", "field"):
            raise InputDataError(f"{title}: the beam shifts carry no unit; give kind='deflection' (mrad) or "
                                 "kind='field' (V/m), or calibrate pixel shifts first (pyxem's "
                                 "pixels_to_calibrated_units)")
        unit = "mrad" if kind == "deflection" else "V/m"
    if unit == "mrad":
        cls, factor = DeflectionMap, 1.0
    elif unit in _FIELD_UNITS:
        cls, factor = FieldMap, _FIELD_UNITS[unit]
        unit = "V/m"
    else:
        raise InputDataError(f"{title}: beam shifts in {unit!r} are neither a deflection in mrad nor a field in "
                             f"{', '.join(_FIELD_UNITS)}; calibrate them first (pyxem's pixels_to_calibrated_units)")
    if kind is not None and (kind == "deflection") != (cls is DeflectionMap):
        raise InputDataError(f"{title}: kind={kind!r} but the beam shifts are in {units[0]!r}")
    nav = [a.get_axis_dictionary() for a in beam_shift.axes_manager.navigation_axes[::-1]]
    data = np.moveaxis(np.asarray(beam_shift.data, dtype=float) * factor, -1, -3)
    component = {"name": "component", "size": 2, "scale": 1.0, "offset": 0.0, "units": "", "navigate": True}
    axes = [*nav[:-2], component, *nav[-2:]]
    for a in axes[-2:]:
        a["navigate"] = False
    metadata = beam_shift.metadata.as_dictionary()
    metadata.pop("VectorMetadata", None)
    name = "deflection" if cls is DeflectionMap else "field"
    metadata.setdefault("General", {})["title"] = name
    metadata["Signal"] = {"signal_type": cls._signal_type, "units": unit,
                          "quantity": f"{label_of(name)} ({unit})"}
    out = cls(data.astype(np.float32), axes=axes, metadata=metadata,
              original_metadata=beam_shift.original_metadata.as_dictionary())
    return out


def _pyxem_beam_shift():
    import warnings

    try:
        with warnings.catch_warnings():  # pyxem's import warns about HyperSpy internals it uses
            warnings.simplefilter("ignore")
            from pyxem.signals import BeamShift
    except ImportError:
        raise ImportError("converting to a pyxem BeamShift needs pyxem: pip install 'dpcstem[pyxem]'") from None
    return BeamShift

