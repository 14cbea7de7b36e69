"""A simulated series as files: segments as ``dpcstem.io.read_segments`` reads them, and their truth.

This module composes the arrays and attributes; :mod:`dpcstem.io` writes them
(:func:`dpcstem.io.write_segments`, :func:`dpcstem.io.write_arrays`).

Each acquisition is an HDF5 file with the dataset ``segments`` (4, ny, nx) uint16 (A, B, C, D)
and the root attributes :func:`dpcstem.io.read_segments` reads (``kv``, ``alpha_mrad``,
``step_x_nm``, ``step_y_nm``, ``thickness_nm``, ``collection_inner_mrad``,
``collection_outer_mrad``, ``detector_rotation_deg``, ``flip``, ``bias_v``). Beside them:
``vacuum.h5`` (same layout), ``thickness.h5`` (dataset ``thickness`` in nm, when the
thickness is not uniform) and ``truth.h5`` (see :func:`write_truth`).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .. import io
from ..io.output import output_group


def bias_file_name(bias_v, index=None) -> str:
    """File name of the acquisition at ``bias_v``: ``bias_+1.200V.h5`` (``bias_03_+1.200V.h5`` with an index)."""
    return f"bias_{bias_v:+.3f}V.h5" if index is None else f"bias_{index:02d}_{bias_v:+.3f}V.h5"


def write_series(series, out: Path, *, overwrite=False, single=False, seed=None) -> list:
    """Write a :class:`~dpcstem.simulate.SimulatedSeries` as the files described above.

    Parameters
    ----------
    series : SimulatedSeries
    out : Path
        Existing folder.
    overwrite : bool
        Replace files of the same names.
    single : bool
        One acquisition: ``segments.h5`` and a truth without the bias axis.
    seed : int, optional
        Recorded in the truth file.

    Returns
    -------
    list of Path
        The files written, acquisitions first (in the order scanned), then vacuum,
        thickness and truth.
    """

    with output_group():  # all the files, or none of them
        return _write_series(series, out, overwrite=overwrite, single=single, seed=seed)


def _write_series(series, out, *, overwrite, single, seed):
    calibration = series.calibration
    files = []
    repeated = len(set(series.biases.tolist())) < len(series.acquisitions)
    for k, acquisition in enumerate(series.acquisitions):
        name = "segments.h5" if single else bias_file_name(acquisition.bias_v, k if repeated else None)
        title = f"simulated acquisition at {acquisition.bias_v:g} V"
        files.append(write_acquisition(out / name, acquisition.segments, calibration, overwrite=overwrite,
                                       bias_v=acquisition.bias_v, title=title,
                                       acquisition_index=None if single else k, adf=acquisition.adf))
    if series.vacuum is not None:
        files.append(write_acquisition(out / "vacuum.h5", series.vacuum, calibration, overwrite=overwrite,
                                    title="simulated vacuum reference"))
    if np.ndim(calibration.thickness_nm) == 2:
        files.append(_write_thickness(out / "thickness.h5", calibration.thickness_nm, overwrite=overwrite))
    files.append(write_truth(out / "truth.h5", series, [f.name for f in files[: len(series.acquisitions)]],
                             overwrite=overwrite, single=single, seed=seed))
    return files


def write_acquisition(path: Path, segments, calibration, *, overwrite=False, bias_v=None, title=None,
                      acquisition_index=None, adf=None) -> Path:
    """One acquisition: dataset ``segments`` (4, ny, nx) and the calibration as root attributes.

    With ``adf``, the simultaneous dark-field image as dataset ``haadf`` (counts);
    ``acquisition_index`` is recorded as a root attribute.
    """
    attrs = {k: v for k, v in calibration.to_attrs().items() if k != "eps_r"}  # an instrument does not know εr
    attrs.update(bias_v=None if bias_v is None else float(bias_v), title=title or None,
                 acquisition_index=None if acquisition_index is None else int(acquisition_index))
    return io.write_segments(path, segments, attrs, adf=adf, overwrite=overwrite)


def _write_thickness(path: Path, thickness, *, overwrite=False) -> Path:
    return io.write_arrays(path, {"thickness": (np.asarray(thickness), "nm")}, overwrite=overwrite)


#: Truth maps written per frame: Truth attribute → (dataset, unit).
_TRUTH_MAPS = {
    "field_x": ("field_x", "V/m"), "field_y": ("field_y", "V/m"),
    "charge_density": ("charge_density", "C/m^3"), "free_charge_density": ("free_charge_density", "C/m^3"),
    "potential": ("potential", "V"), "deflection_x": ("deflection_x", "mrad"),
    "deflection_y": ("deflection_y", "mrad"),
}

#: Scalar figures per frame: figures key → (dataset, unit).
_FIGURES = {
    "width_nm": ("layer_width", "nm"), "peak_field_v_per_m": ("peak_field", "V/m"),
    "areal_charge_c_per_m2": ("areal_charge", "C/m^2"), "potential_drop_v": ("potential_drop", "V"),
}


def write_truth(path: Path, series, files, *, overwrite=False, single=False, seed=None) -> Path:
    """The answer of a simulated series as HDF5.

    Datasets (each with a ``units`` attribute), for n frames in the order scanned, on the
    grid of the reference frame (the first; for one acquisition, its own grid):

    - ``bias`` (n,) V, ``files`` (n,) the acquisition file names, ``drift_px`` (n, 2)
      pixels (dy, dx), what ``phase_cross_correlation(reference, frame)`` recovers;
    - ``field_x``, ``field_y`` (V/m), ``charge_density``, ``free_charge_density`` (C/m³),
      ``potential`` (V), ``deflection_x``, ``deflection_y`` (mrad, probe-weighted,
      specimen only): (n, ny, nx);
    - ``net_field_x``, ``net_field_y``, ``net_charge_density``, ``net_potential``,
      ``net_deflection_x``, ``net_deflection_y``: each frame minus the reference;
    - ``layer_width`` (nm), ``peak_field`` (V/m), ``areal_charge`` (C/m², free charge of
      the layer side), ``potential_drop`` (V), ``net_areal_charge``: (n,);
    - ``thickness`` (nm), ``mean_inner_potential`` (V, when there is a step),
      ``distance`` (nm from the interface), ``descan_x``, ``descan_y`` (mrad): (ny, nx).

    With ``single`` the leading axis of length 1 is dropped and there are no net maps.
    Root attributes: the calibration, every simulation setting and the seed.
    """

    from .. import __version__

    truths = series.reference_truths
    n = len(truths)
    squeeze = (lambda a: a[0]) if single else (lambda a: a)
    shape = truths[0].field_x.shape
    attrs = {"dpcstem_version": __version__, "frame": "the grid of the reference (first) acquisition"}
    for key, value in {**series.calibration.to_attrs(), **series.settings}.items():
        if not (key == "thickness_nm" and value == "map"):
            attrs[key] = value
    attrs["seed"] = seed
    arrays = {"bias": (squeeze(series.biases), "V"),
              "files": np.array(files if not single else files[0], dtype=object),
              "drift_px": (squeeze(series.drifts_px), "px")}
    for attr, (name, unit) in _TRUTH_MAPS.items():
        arrays[name] = (squeeze(np.stack([getattr(t, attr) for t in truths])), unit)
        if not single and attr != "free_charge_density":
            arrays[f"net_{name}"] = (np.stack([series.net_truth(i)[attr] for i in range(n)]), unit)
    for key, (name, unit) in _FIGURES.items():
        values = np.array([t.figures.get(key, math.nan) for t in truths], dtype=float)
        arrays[name] = (squeeze(values), unit)
        if key == "areal_charge_c_per_m2" and not single:
            arrays["net_areal_charge"] = (values - values[0], unit)
    arrays["thickness"] = (truths[0].thickness_nm, "nm")
    if truths[0].mean_inner_potential is not None:
        arrays["mean_inner_potential"] = (truths[0].mean_inner_potential, "V")
    arrays["distance"] = (truths[0].distance_nm, "nm")
    descan_x, descan_y = series.descan(shape)
    arrays["descan_x"] = (descan_x, "mrad")
    arrays["descan_y"] = (descan_y, "mrad")
    return io.write_arrays(path, arrays, attrs, overwrite=overwrite)
