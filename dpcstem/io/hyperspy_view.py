"""How a result file's maps become HyperSpy signals, and the HyperSpy view written inside it.

One description serves both ways back to signals: :func:`signal_layout` says which signal
each map (or pair of maps) becomes — its signal type, axes and metadata — from the map
names, shapes and units and the result's root attributes alone. :func:`write_hyperspy_view`
writes that description into a result file being written, as the groups of HyperSpy's own
HDF5 format (``/Experiments/<name>`` with ``data``, ``axis-i``, ``metadata``,
``original_metadata``) whose ``data`` are links to the maps (a hard link for a map as it
is; an HDF5 virtual dataset, no copy, for the two components of a vector map stacked or a
series put in order of bias). So ``hs.load(path, file_format="hspy")`` gives the signals
that :func:`dpcstem.io.load_result` gives, with dpcstem's signal types where dpcstem is
installed (its HyperSpy extension registers them), and plain ``Signal2D`` elsewhere.
``lazy=True`` works for the maps linked as they are; HyperSpy's lazy reader cannot wrap a
virtual dataset (it has no chunks), so a vector map or a series given out of bias order
loads eagerly only.

The signals (DESIGN.md §2, §4):

- a vector map (``deflection``, ``field``, ``net_deflection``, ``net_field``, from the
  ``*_x`` and ``*_y`` maps) has a navigation axis ``component`` of size 2 (index 0 is x,
  1 is y, in the scan frame); scalar maps have none;
- a bias series has a navigation axis ``bias`` in V, in increasing order of bias (the
  file keeps the order the acquisitions were given; the view and the signals are sorted),
  uniform where the biases are equally spaced and non-uniform (the real values) otherwise;
- the signal axes are ``x`` (columns, fast scan) and ``y`` (rows) in nm, scaled by the scan
  step, 0 at the first pixel;
- ``metadata.Signal.quantity`` is "Name (unit)" (HyperSpy's convention, shown on plots),
  ``metadata.Signal.units`` the unit alone; ``metadata.Acquisition_instrument.TEM`` has
  ``beam_energy`` (keV) and ``convergence_angle`` (mrad); ``metadata.DPC.calibration``
  every calibration input with its source, ``metadata.DPC.provenance`` the rest of the
  root attributes (version, inputs and their SHA-256, processing choices);
  ``original_metadata`` all root attributes as the file holds them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import h5py
import numpy as np

from ..calibration import SCALAR_FIELDS
from ..units import label_of, unit_of

#: Signal type of each map family (dpcstem's HyperSpy extension registers these).
SIGNAL_TYPES = {
    "deflection": "dpc_deflection",
    "field": "electric_field",
    "charge_density": "charge_density",
    "potential": "electrostatic_potential",
}

#: Vector maps made of ``<name>_x`` and ``<name>_y``: name → family.
VECTOR_MAPS = {"deflection": "deflection", "field": "field", "net_deflection": "deflection",
               "net_field": "field"}

#: Scalar maps with a signal type: name → family.
SCALAR_TYPES = {"charge_density": "charge_density", "free_charge_density": "charge_density",
                "net_charge_density": "charge_density", "net_free_charge_density": "charge_density",
                "potential": "potential", "projected_potential": "potential"}

#: Root attributes that belong to HyperSpy's file format, not to the result.
FORMAT_ATTRS = ("file_format", "file_format_version")

#: Name of the group HyperSpy's format keeps its signals in.
EXPERIMENTS = "Experiments"


@dataclass
class SignalSpec:
    """One signal of a result: where its data come from, its axes and metadata.

    ``sources`` are the map names stacked along the component axis (one for a scalar map,
    ``*_x`` and ``*_y`` for a vector map); ``order`` the bias indices in increasing order
    of bias (None when the file's order is already increasing or there is no bias axis).
    ``axes`` are HyperSpy axis dictionaries in array order.
    """

    name: str
    sources: tuple
    order: tuple | None
    axes: list
    metadata: dict
    shape: tuple = field(default=())


def signal_layout(maps: Mapping, attrs: Mapping) -> list:
    """The signals a result's maps become (see the module docstring).

    Parameters
    ----------
    maps : mapping
        name → (array or anything with ``.shape``, unit), as a result file holds them.
        Images of the scan are the maps of shape (ny, nx) or, for a series, (n, ny, nx)
        with the (ny, nx) most maps share; ``bias`` (n,) labels the series; others are
        left out.
    attrs : mapping
        Root attributes: ``step_x_nm``, ``step_y_nm`` (nm), ``bias`` where ``maps`` has none.

    Returns
    -------
    list of SignalSpec
    """
    images = _images(maps)
    bias = maps["bias"][0] if "bias" in maps else attrs.get("bias")
    step_x = _step(attrs.get("step_x_nm"))
    step_y = _step(attrs.get("step_y_nm", attrs.get("step_x_nm")))
    metadata_common = _common_metadata(attrs)
    specs = []
    used = set()
    for name in VECTOR_MAPS:
        x, y = f"{name}_x", f"{name}_y"
        if x in images and y in images and images[x][0] == images[y][0]:
            specs.append((name, (x, y), images[x][0], images[x][1] or unit_of(x), SIGNAL_TYPES[VECTOR_MAPS[name]]))
            used.update((x, y))
    for name, (shape, unit) in images.items():
        if name not in used:
            family = SCALAR_TYPES.get(name)
            specs.append((name, (name,), shape, unit or unit_of(name), SIGNAL_TYPES[family] if family else ""))
    out = []
    for name, sources, shape, unit, signal_type in specs:
        axes = []
        order = None
        if len(shape) == 3:
            axis, order = bias_axis(bias, shape[0])
            axes.append(axis)
        if len(sources) == 2:
            axes.append({"name": "component", "size": 2, "scale": 1.0, "offset": 0.0, "units": "",
                         "navigate": True})
        axes.append(_length_axis("y", shape[-2], step_y))
        axes.append(_length_axis("x", shape[-1], step_x))
        label = label_of(name)
        metadata = {
            "General": {"title": name},
            "Signal": {"signal_type": signal_type,
                       "quantity": f"{label} ({unit})" if unit not in ("", "1") else label,
                       "units": unit},
            **metadata_common,
        }
        full_shape = tuple(a["size"] if "size" in a else len(a["axis"]) for a in axes)
        out.append(SignalSpec(name, sources, order, axes, metadata, full_shape))
    return out


def bias_axis(bias, size):
    """The ``bias`` navigation axis (V) of a series and the order that makes it increase.

    Returns (axis dictionary, order): order is None when the biases already increase,
    else the indices that sort them. Equally spaced biases give a uniform axis, others a
    non-uniform axis of the real values. Without biases of the right length the axis is
    named ``acquisition`` (no unit), in file order.
    """
    if bias is None or np.size(bias) != size:
        return {"name": "acquisition", "size": size, "scale": 1.0, "offset": 0.0, "units": "", "navigate": True}, None
    values = np.asarray(bias, dtype=float).ravel()
    order = np.argsort(values, kind="stable")
    if np.array_equal(order, np.arange(size)):
        order = None
    else:
        values = values[order]
        order = tuple(int(i) for i in order)
    if size == 1:
        return {"name": "bias", "size": 1, "scale": 1.0, "offset": float(values[0]), "units": "V",
                "navigate": True}, order
    steps = np.diff(values)
    if np.all(steps > 0) and np.allclose(steps, steps[0], rtol=1e-9, atol=0):
        return {"name": "bias", "size": size, "scale": float(steps[0]), "offset": float(values[0]), "units": "V",
                "navigate": True}, order
    return {"name": "bias", "axis": values, "units": "V", "navigate": True}, order


def write_hyperspy_view(h5file, maps: Mapping):
    """Add the HyperSpy view of the root-level maps to an open, writable result file.

    Parameters
    ----------
    h5file : h5py.File
        The result file, open for writing, with the maps already written at its root.
    maps : mapping
        name → (array, unit), the maps written (their names, shapes and units are used).
        The metadata come from the root attributes the file holds (calibration,
        provenance, ``bias``), so they are written first.

    Each signal of :func:`signal_layout` becomes ``/Experiments/<name>``; its ``data`` is
    a hard link to the map, or a virtual dataset over the maps in the same file (named
    ``"."``, so the view survives the file being renamed or moved).
    """
    from .. import __version__

    attrs = {_text(k): v for k, v in h5file.attrs.items()}
    h5file.attrs["file_format"] = "HyperSpy"
    h5file.attrs["file_format_version"] = "3.3"
    experiments = h5file.require_group(EXPERIMENTS)
    original = {k: v for k, v in attrs.items() if k not in FORMAT_ATTRS}
    for spec in signal_layout(maps, attrs):
        if not all(src in h5file for src in spec.sources):
            continue
        group = experiments.create_group(spec.name)
        group.attrs["package"] = "dpcstem"
        group.attrs["package_version"] = __version__
        if len(spec.sources) == 1 and spec.order is None:
            group["data"] = h5file[spec.sources[0]]  # hard link: the same dataset, not a copy
        else:
            group.create_virtual_dataset("data", _virtual_layout(h5file, spec))
        for i, axis in enumerate(spec.axes):
            _write_axis(group.create_group(f"axis-{i}"), axis)
        _write_tree(group.create_group("metadata"), spec.metadata)
        _write_tree(group.create_group("original_metadata"), plain_tree(original))


def _virtual_layout(h5file, spec):
    """A virtual dataset stacking the sources along the component axis, biases in order."""
    first = h5file[spec.sources[0]]
    layout = h5py.VirtualLayout(shape=spec.shape, dtype=first.dtype)
    vector = len(spec.sources) == 2
    for c, src in enumerate(spec.sources):
        ds = h5file[src]
        source = h5py.VirtualSource(".", src, shape=ds.shape, dtype=ds.dtype)
        if ds.ndim == 2:
            layout[c] = source
            continue
        if spec.order is None:  # one mapping for the whole stack
            layout[(slice(None), c) if vector else slice(None)] = source
            continue
        for k, i in enumerate(spec.order):
            layout[(k, c) if vector else k] = source[i]
    return layout


def _write_axis(group, axis):
    group.attrs["name"] = axis["name"]
    group.attrs["units"] = axis["units"]
    group.attrs["navigate"] = bool(axis["navigate"])
    group.attrs["is_binned"] = False
    if "axis" in axis:
        group.attrs["_type"] = "DataAxis"
        group["axis"] = np.asarray(axis["axis"], dtype=float)
    else:
        group.attrs["_type"] = "UniformDataAxis"
        group.attrs["size"] = int(axis["size"])
        group.attrs["scale"] = float(axis["scale"])
        group.attrs["offset"] = float(axis["offset"])


def _write_tree(group, tree):
    """A nested dict as HyperSpy's format stores metadata: groups, attributes, ``_list_`` datasets.

    Arrays go into attributes, not datasets: HyperSpy's lazy reader wraps every dataset of
    the metadata in dask by its chunks, which a small contiguous dataset has not.
    """
    for key, value in tree.items():
        if isinstance(value, Mapping):
            _write_tree(group.create_group(key), value)
        elif isinstance(value, (list, tuple)):
            group.create_dataset(f"_list_{key}", data=np.asarray([str(v) for v in value], dtype=object),
                                 dtype=h5py.string_dtype())
        elif value is None:
            group.attrs[key] = "_None_"
        else:
            group.attrs[key] = value


# -- metadata ---------------------------------------------------------------------------

def _common_metadata(attrs):
    """Metadata every signal of a result shares: instrument, calibration, provenance."""
    plain = plain_tree({k: v for k, v in attrs.items() if k not in FORMAT_ATTRS})
    calibration_keys = set(SCALAR_FIELDS) | {f"{k}_source" for k in SCALAR_FIELDS}
    calibration = {k: v for k, v in plain.items() if k in calibration_keys}
    provenance = {k: v for k, v in plain.items() if k not in calibration_keys and not k.startswith("sha256:")}
    digests = {k.split(":", 1)[1]: v for k, v in plain.items() if k.startswith("sha256:")}
    if digests:
        provenance["sha256"] = digests
    out = {"DPC": {"calibration": calibration, "provenance": provenance}}
    tem = {}
    if _number(attrs.get("kv")) is not None:
        tem["beam_energy"] = _number(attrs["kv"])
    if _number(attrs.get("alpha_mrad")) is not None:
        tem["convergence_angle"] = _number(attrs["alpha_mrad"])
    if tem:
        out["Acquisition_instrument"] = {"TEM": tem}
    return out


def plain_tree(attrs):
    """Root attributes as plain Python values (text decoded, NumPy scalars as numbers)."""
    return {_text(k): _plain(v) for k, v in attrs.items()}


def _plain(value):
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray) and value.dtype.kind in "SOU":
        return [_plain(v) for v in value.tolist()]
    return value


def _number(value):
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


# -- helpers ------------------------------------------------------------------------------

def _images(maps):
    """name → (shape, unit) of the maps that are images of the scan.

    2-D or 3-D, with the (ny, nx) most maps share; leaves out axes and bookkeeping such as
    ``bias`` (n,) and ``registration_shift`` (n, 2).
    """
    shapes = {name: (tuple(np.shape(array)), _text(unit)) for name, (array, unit) in maps.items()
              if np.ndim(array) in (2, 3)}
    counts = {}
    for shape, _ in shapes.values():
        counts[shape[-2:]] = counts.get(shape[-2:], 0) + 1
    if not counts:
        return {}
    common = max(counts, key=counts.get)
    return {name: item for name, item in shapes.items() if item[0][-2:] == common}


def _step(value):
    value = _number(value)
    return value if value is not None and value > 0 else None


def _length_axis(name, size, step):
    if step is None:
        return {"name": name, "size": size, "scale": 1.0, "offset": 0.0, "units": "px", "navigate": False}
    return {"name": name, "size": size, "scale": step, "offset": 0.0, "units": "nm", "navigate": False}


def _text(value):
    return value.decode() if isinstance(value, bytes) else str(value)
