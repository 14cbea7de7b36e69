"""HyperSpy interop: result maps as ``Signal2D`` with calibrated axes, and a result file read back.

A result map of shape (ny, nx) becomes a :class:`hyperspy.signals.Signal2D` with signal
axes ``x`` (columns, fast scan) and ``y`` (rows) in nm, scaled by the scan step; a map of
a bias series, shape (n, ny, nx), gets a navigation axis ``bias`` in V. The unit of the
map is written into ``metadata.Signal.quantity`` (HyperSpy's "Name (unit)" form), the
root attributes of the result (calibration, provenance) into ``original_metadata``.

HyperSpy's own ``hs.load`` cannot open a plain HDF5 result file by itself: for ``.h5``
it finds several candidate readers and asks which, and its NeXus reader, when named,
returns the root datasets without calibrated axes. :func:`load_result` is the way to get
a result file back as signals. :func:`write_nexus_view` adds, inside a result file being
written, NeXus ``NXdata`` groups that link (not copy) each map and carry its axes, so that
``hs.load(path, file_format="NeXus", nxdata_only=True)`` gives calibrated signals too.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from ..units import unit_of

#: Readable names of the maps, for ``metadata.Signal.quantity``.
QUANTITIES = {
    "deflection_x": "Deflection x",
    "deflection_y": "Deflection y",
    "field_x": "Field x",
    "field_y": "Field y",
    "charge_density": "Charge density",
    "free_charge_density": "Free charge density",
    "potential": "Potential",
    "projected_potential": "Projected potential",
    "valid": "Valid",
    "intensity": "Intensity",
    "segment_sum": "Segment sum",
    "com_x": "Centre of mass x",
    "com_y": "Centre of mass y",
    "curl": "Curl",
    "net_field_x": "Net field x",
    "net_field_y": "Net field y",
    "net_charge_density": "Net charge density",
}

#: Name of the group holding the NeXus view of a result file.
NEXUS_ENTRY = "hyperspy"


def result_to_signals(maps: Mapping, attrs: Mapping) -> dict:
    """Result maps as HyperSpy signals with calibrated axes and units.

    Parameters
    ----------
    maps : mapping
        name → (array, unit), as :meth:`dpcstem.result.DPCResult.maps` and
        :func:`dpcstem.io.results.load_result_arrays` give them. Maps of shape (ny, nx)
        and, for a bias series, (n, ny, nx) become signals; others (``bias``,
        ``registration_shift``) are axes or bookkeeping and are left out.
    attrs : mapping
        Root attributes of the result: ``step_x_nm`` and ``step_y_nm`` (nm) scale the
        ``x`` and ``y`` axes; ``bias`` (V, shape (n,)), here or as ``maps["bias"]``,
        labels the leading axis of a series.

    Returns
    -------
    dict
        name → :class:`hyperspy.signals.Signal2D`. Signal axes ``x`` (columns) and
        ``y`` (rows) in nm, offset 0 at the first pixel; a leading ``bias`` navigation
        axis in V for stacked maps (non-uniform when the biases are not equally spaced);
        ``metadata.General.title`` is the map's name, ``metadata.Signal.quantity`` is
        "<Name> (<unit>)"; ``original_metadata`` holds the root attributes.
    """
    import hyperspy.api as hs

    images = _images(maps)
    bias = maps["bias"][0] if "bias" in maps else attrs.get("bias")
    step_x = _step(attrs.get("step_x_nm"))
    step_y = _step(attrs.get("step_y_nm", attrs.get("step_x_nm")))
    original = {k: _plain(v) for k, v in attrs.items()}
    if bias is not None:
        original["bias"] = np.asarray(bias, dtype=float)
    out = {}
    for name, (array, unit) in images.items():
        ny, nx = array.shape[-2:]
        axes = []
        if array.ndim == 3:
            axes.append(_bias_axis(bias, array.shape[0]))
        axes.append(_length_axis("y", ny, step_y))
        axes.append(_length_axis("x", nx, step_x))
        signal = hs.signals.Signal2D(array, axes=axes)
        signal.metadata.General.title = name
        unit = unit or unit_of(name)
        label = QUANTITIES.get(name, name)
        signal.metadata.set_item("Signal.quantity", f"{label} ({unit})" if unit not in ("", "1") else label)
        signal.original_metadata.add_dictionary(original)
        out[name] = signal
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
        name → :class:`hyperspy.signals.Signal2D`, as :func:`result_to_signals` makes
        them; ``metadata.General.original_filename`` is the file's name.

    Raises
    ------
    UnreadableFileError
        The file is missing or not an HDF5 result file.
    """
    from pathlib import Path

    from .results import load_result_arrays

    maps, attrs = load_result_arrays(path)
    signals = result_to_signals(maps, attrs)
    for signal in signals.values():
        signal.metadata.General.original_filename = Path(path).name
    return signals


def write_nexus_view(h5file, maps: Mapping, attrs: Mapping, *, entry=NEXUS_ENTRY):
    """Add a NeXus view of the root-level maps to an open, writable result file.

    Each image map at the file's root (shape (ny, nx) or (n, ny, nx)) gets an ``NXdata``
    group ``/<entry>/<name>`` holding a hard link to the map (no copy), the axes ``y``
    and ``x`` in nm (pixel centres from 0 by the scan step) and, for stacks, ``bias`` in
    V. ``hs.load(path, file_format="NeXus", nxdata_only=True)`` then returns one signal
    per map with those axes.

    Parameters
    ----------
    h5file : h5py.File
        The result file, open for writing, with the maps already written at its root.
    maps : mapping
        name → (array, unit), the maps written (only their names and shapes are used).
    attrs : mapping
        Root attributes with ``step_x_nm``, ``step_y_nm`` and, for a series, ``bias``.
    entry : str
        Name of the ``NXentry`` group.
    """
    bias = maps["bias"][0] if "bias" in maps else attrs.get("bias")
    step_x = _step(attrs.get("step_x_nm"))
    step_y = _step(attrs.get("step_y_nm", attrs.get("step_x_nm")))
    group = h5file.require_group(entry)
    group.attrs["NX_class"] = "NXentry"
    h5file.attrs["NX_class"] = "NXroot"
    for name, (array, _) in _images(maps).items():
        if name not in h5file:
            continue
        shp = array.shape
        data = group.create_group(name)
        data.attrs["NX_class"] = "NXdata"
        data.attrs["signal"] = name
        data[name] = h5file[name]  # hard link: the same dataset, not a copy
        ny, nx = shp[-2:]
        for axis, n, step in (("y", ny, step_y), ("x", nx, step_x)):
            data[axis] = np.arange(n) * (step or 1.0)
            data[axis].attrs["units"] = "nm" if step else "px"
        names = ["y", "x"]
        if len(shp) == 3:
            values = np.arange(shp[0], dtype=float) if bias is None else np.asarray(bias, dtype=float)
            data["bias"] = values
            data["bias"].attrs["units"] = "V" if bias is not None else ""
            names = ["bias", *names]
        data.attrs["axes"] = names


# -- helpers ------------------------------------------------------------------------------

def _images(maps):
    """The maps that are images of the scan: 2-D or 3-D, with the (ny, nx) most maps share.

    Leaves out axes and bookkeeping such as ``bias`` (n,) and ``registration_shift`` (n, 2).
    """
    arrays = {name: (np.asarray(array), _text(unit)) for name, (array, unit) in maps.items()
              if np.ndim(array) in (2, 3)}
    counts = {}
    for array, _ in arrays.values():
        counts[array.shape[-2:]] = counts.get(array.shape[-2:], 0) + 1
    if not counts:
        return {}
    shape = max(counts, key=counts.get)
    return {name: item for name, item in arrays.items() if item[0].shape[-2:] == shape}


def _step(value):
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) and value > 0 else None


def _length_axis(name, size, step):
    if step is None:
        return {"name": name, "size": size, "scale": 1.0, "offset": 0.0, "units": "px", "navigate": False}
    return {"name": name, "size": size, "scale": step, "offset": 0.0, "units": "nm", "navigate": False}


def _bias_axis(bias, size):
    if bias is None or np.size(bias) != size:
        return {"name": "index", "size": size, "scale": 1.0, "offset": 0.0, "units": "", "navigate": True}
    values = np.asarray(bias, dtype=float).ravel()
    if size > 1:
        steps = np.diff(values)
        if np.all(steps != 0) and np.allclose(steps, steps[0], rtol=1e-9, atol=0):
            return {"name": "bias", "size": size, "scale": float(steps[0]), "offset": float(values[0]),
                    "units": "V", "navigate": True}
        if np.all(steps > 0) or np.all(steps < 0):
            return {"name": "bias", "axis": values, "units": "V", "navigate": True}
        return {"name": "index", "size": size, "scale": 1.0, "offset": 0.0, "units": "", "navigate": True}
    return {"name": "bias", "size": 1, "scale": 1.0, "offset": float(values[0]), "units": "V", "navigate": True}


def _text(value):
    return value.decode() if isinstance(value, bytes) else str(value)


def _plain(value):
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, np.generic):
        return value.item()
    return value
