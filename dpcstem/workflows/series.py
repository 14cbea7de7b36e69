"""``dpcstem bias-series``: acquisitions at several biases → each one's maps and the net maps, as one call.

The acquisitions are checked first (what each file records: bias, calibration, shape; the
segments are not kept), then streamed one at a time through :func:`dpcstem.bias.stream_series`
into the result file: each passes through the segment kernel once, and memory holds a few
maps whatever the length of the series.

Where the frame and the descan come from in a series:

- the descan is one surface for the whole series: from the ``reference`` vacuum scan, and/or
  fitted over ``descan_region`` on the **reference** acquisition (field-free at the reference
  bias), removed from every acquisition before registration. The scan coils do not change
  along a series; a region field-free at 0 V may hold field at 2 V, so it is fitted once.
  The net maps cancel any descan the acquisitions share, so it changes only each bias's own maps.
- a fitted rotation (``fit_rotation``) is fitted once, on the reference acquisition, and
  applied to every acquisition. Its 180° branch is settled by ``charge_sign_region`` (on the
  reference), or by the polarity of the bias: which side of the interface the bias raises
  (``biased_side``) is not in the data (it depends on which electrode is biased, and a net
  charge map is a dipole whose sign follows that wiring), so it is the user's to state; with
  it, the potential of that side rises with the bias, so the mean net deflection along the
  interface normal has the sign of the bias change. Without either, the skew of the
  reference's charge is a guess, warned as such.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np

from .. import _validate
from ..errors import CalibrationError, DPCError, InputDataError
from ..progress import Stages
from .common import (
    FIELD_KEYS,
    Outcome,
    PYTHON_NAMES,
    _fit_rotation,
    _rotation_lines,
    check_reference,
    checked_response,
    describe_calibration,
    read_reference,
    region_mask,
    scan_regions,
    segment_calibration,
    segment_offsets,
)

#: Suffixes of the acquisitions a folder contributes.
FOLDER_SUFFIXES = (".h5", ".hdf5", ".emd", ".npy", ".tif", ".tiff", ".dm3", ".dm4")

#: Significance (mean over its standard error) below which the bias polarity does not settle the branch.
POLARITY_SIGNIFICANCE = 3.0


def expand_files(paths):
    """Each path, a folder replaced by its candidate files (sorted), with whether it came from a folder."""
    out = []
    for path in [paths] if isinstance(paths, (str, Path)) else paths:
        p = Path(path)
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in FOLDER_SUFFIXES)
            out += [(f, True) for f in found]
        else:
            out.append((p, False))
    return out


def series_acquisitions(files, *, output, biases=None, override_bias=False, reference_bias_v=0.0,
                        reference_index=None, calibration=None, dataset=None, reference=None, dark=None, offsets=None,
                        response="exact", descan_region=None, descan_order=2, fit_rotation=False,
                        charge_sign_region=None, biased_side=None, charge_method="finite-difference", cutoff=None,
                        potential_method="mirror", potential_reference=None, register=True, shifts_px=None,
                        registration_image=None, registration_exclude=None, interface=None, half_range_nm=None,
                        bin_nm=None, table=None, overwrite=False, progress=False, names=None) -> Outcome:
    """``dpcstem bias-series``: a bias series → every acquisition's maps and the net maps, written to ``output``.

    Parameters
    ----------
    files : path-like or sequence of path-like
        The acquisitions (any format :func:`dpcstem.io.read_segments` takes), or folders: their
        files that hold segments and record a bias.
    output : path-like
        The result file (HDF5), written as the series streams.
    biases : sequence of float, optional
        Bias of each acquisition in V (default: what each file records; a different recorded
        one is refused unless ``override_bias``).
    reference_bias_v, reference_index
        The reference acquisition (:func:`dpcstem.bias.check_biases`).
    calibration, dataset, reference, dark, offsets, response, descan_order, charge_method, cutoff,
    potential_method, potential_reference
        As for :func:`reconstruct_acquisition`; the calibration is that of the first file, and
        every file must record the same (unless ``calibration`` sets the value).
    descan_region : (x0, y0, x1, y1), optional
        Field-free rectangle (nm) of the reference acquisition: one descan for the series.
    fit_rotation : bool
        Fit the detector rotation (and the flip, unless ``calibration['flip']`` fixes it) on
        the reference acquisition; applied to all.
    charge_sign_region : (x0, y0, x1, y1, sign), optional
        Settles the 180° branch from the sign of the reference's charge in a rectangle.
    biased_side : '+' or '-', optional
        With ``fit_rotation`` and ``interface``: the side of the interface whose potential the
        bias raises, '+' the side the normal points to, '-' the other; settles the branch.
    register, shifts_px, registration_image, registration_exclude
        Drift correction: measured (default, on the simultaneous ADF image when every file
        holds one, else the segment sum without the interface band), given by hand
        (``shifts_px``, one (dy, dx) per acquisition), on a named dataset or one image file per
        acquisition (``registration_image``), leaving out a rectangle (nm).
    interface : (x1, y1, x2, y2), optional
        Two points (nm) on the interface: the net layer figures per bias.
    half_range_nm : float, optional
        Largest distance from the interface in the profiles (default: from the data).
    bin_nm : float, optional
        Bin width of the profiles along the normal, nm (default: the finest with no bin
        left empty, :meth:`dpcstem.interface.Interface.default_bin_nm`); wider bins average
        the noise that biases a noisy profile's peak.
    table : path-like, optional
        A CSV of the net layer figures.
    progress : bool
        Report each stage as it runs.
    names : dict, optional
        Spelling of each input in messages (the CLI gives its option names).

    Returns
    -------
    Outcome
        ``result`` is the path written; ``rows`` the layer figures per bias (with ``interface``).
    """
    from ..bias import LayerTable, check_biases, registration_warning, resolve_biases, series_attrs, series_axes, \
        series_slices, stream_series
    from ..interface import Interface
    from ..io import SeriesWriter, read_image, read_segments, write_table
    from ..memory import require_memory, series_bytes

    names = {**PYTHON_NAMES, **(names or {})}
    candidates = expand_files(files)
    records, skipped = [], []
    stages = Stages("bias series", progress)
    stages.stage("checking the files", len(candidates), unit="file")
    for k, (path, from_folder) in enumerate(candidates):
        try:
            acquisition = read_segments(path, dataset=dataset)
        except DPCError as exc:
            if from_folder:
                skipped.append(path.name)
                continue
            raise type(exc)(f"bias series file {k + 1} of {len(candidates)}: {exc}") from None
        if from_folder and "bias_v" not in acquisition.metadata and biases is None:
            skipped.append(path.name)
            continue
        meta = {key: v for key, v in acquisition.metadata.items() if key != "adf"}
        records.append({"path": path, "calibration": acquisition.calibration_values, "metadata": meta,
                        "paths": acquisition.paths, "shape": acquisition.segments.shape,
                        "dtype": acquisition.segments.dtype, "adf": "adf" in acquisition.metadata})
        del acquisition
    lines = []
    if skipped:
        lines.append(f"skipped (no segments or no recorded bias): {', '.join(skipped)}")
    if not records:
        shown = [files] if isinstance(files, (str, Path)) else files
        raise InputDataError(f"no acquisition found in {', '.join(map(str, shown))}")
    labels = [str(r["path"]) for r in records]
    bias_values, bias_sources = resolve_biases([r["metadata"].get("bias_v") for r in records], biases, labels,
                                               override=override_bias, option=names["bias"],
                                               override_option=names["override_bias"])
    # Acquisition order: the index every file records, else the order given.
    indices = [r["metadata"].get("acquisition_index") for r in records]
    if all(i is not None for i in indices):
        if len(set(indices)) != len(indices):
            raise InputDataError(f"two files record the same acquisition_index: {labels}")
        order = sorted(range(len(records)), key=lambda k: indices[k])
        records, bias_values, bias_sources, labels = ([seq[k] for k in order]
                                                      for seq in (records, bias_values, bias_sources, labels))
    try:
        check_biases(bias_values, len(bias_values), reference_bias_v, reference_index=reference_index)
    except InputDataError as exc:
        message = str(exc).replace("(set reference_bias_v)", f"(give {names['reference_bias']})")
        raise InputDataError(message.replace("reference_index", names["reference_index"])) from None
    user = dict(calibration or {})
    check_same_calibration(records, user, names)
    shape = records[0]["shape"][1:]
    cal = segment_calibration(records[0]["calibration"], user, shape, source=records[0]["path"], names=names)
    require_memory(series_bytes(records[0]["shape"], records[0]["dtype"]),
                   f"a bias series of {len(records)} acquisitions of {shape[0]} x {shape[1]}")
    response = checked_response(response, cal)
    offsets, offsets_source, dark_paths = segment_offsets(offsets, dark, names=names)
    potential_mask, descan_mask, sign_region = scan_regions(
        shape, cal, names, descan_region=descan_region, charge_sign_region=charge_sign_region,
        potential_reference=potential_reference, fit_rotation=fit_rotation)
    side = _biased_side(biased_side, names)
    if side is not None and not (fit_rotation and interface is not None):
        raise InputDataError(f"{names['biased_side']} settles the 180° branch of {names['fit_rotation']} from the "
                             f"polarity of the bias across the {names['interface']}: give all three")
    if side is not None and sign_region[0] is not None:
        raise InputDataError(f"give {names['charge_sign_region']} or {names['biased_side']}, not both")
    vacuum = None
    inputs = [p for r in records for p in r["paths"]] + dark_paths
    if reference is not None:
        vac = read_reference(reference, names)
        check_reference(vac, cal, shape, names=names)
        vacuum = vac.segments
        inputs += list(vac.paths)
    layer_interface = None
    if interface is not None:
        x1, y1, x2, y2 = (float(v) for v in interface)
        layer_interface = Interface((x1, y1), (x2, y2))
        layer_interface.check_inside(shape, (cal.step_x_nm, cal.step_y_nm), name=names["interface"])
        for key, value in (("half_range", half_range_nm), ("bin", bin_nm)):
            _validate.positive(names[key], value, what="a distance in nm", allow_none=True)
    images, channel, exclude = registration_channel(records, shape, cal, layer_interface, registration_image,
                                                    registration_exclude, half_range_nm, names)
    count = len(records)

    def loader(k):
        def load():
            acquisition = read_segments(records[k]["path"], dataset=dataset)
            image = images[k]
            if isinstance(image, tuple):  # (path, dataset): read now, not before
                image = read_image(image[0], dataset=image[1])
            elif image == "adf":
                image = acquisition.metadata.get("adf")
                if image is None:
                    raise InputDataError(f"{records[k]['path']}: no ADF/HAADF image; give "
                                         f"{names['registration_image']}")
            return acquisition.segments, image
        return load

    settled = {}  # what the rotation fit and the branch leave: lines, attributes

    def settle_frame(u, v, valid):
        return _settle_frame(u, v, valid, cal, user.get("flip"), sign_region, side, names, settled)

    def settle_branch(u, v, valid, change_v, frame):
        return _settle_branch(u, v, valid, change_v, frame, layer_interface, side, names, settled)

    def on_reference(tx, ty, valid, frame):  # an assumed rotation, judged by the curl it leaves on the reference
        rotation_lines, rotation_attrs = _rotation_lines(tx, ty, frame, valid, names=names)
        settled.setdefault("lines", []).extend(rotation_lines)
        settled.setdefault("attrs", {}).update(rotation_attrs)

    table_sink = LayerTable(layer_interface, cal, shape, bin_nm=bin_nm) if layer_interface is not None else None
    lines.append(f"{count} acquisitions; registration on {channel}")
    with SeriesWriter(output, count, overwrite=overwrite) as writer:
        def sink(i, result, registration, net=False):
            writer.put(i, series_slices(result, net=net))
            if net and table_sink is not None:
                table_sink.add(i, result)

        ref, registrations, attrs = stream_series(
            [loader(k) for k in range(count)], bias_values, cal, sink, reference_bias_v=reference_bias_v,
            reference_index=reference_index, response=response, vacuum=vacuum, offsets=offsets,
            descan_order=descan_order, descan_region=descan_mask,
            settle_frame=settle_frame if fit_rotation else None,
            settle_branch=settle_branch if side is not None else None,
            on_reference=None if fit_rotation else on_reference, shifts_px=shifts_px,
            register_maps=register, registration_exclude=exclude, progress=stages, names=labels,
            charge_method=charge_method, cutoff=cutoff, potential_method=potential_method,
            potential_reference=potential_mask)
        if side is not None and settled.get("attrs", {}).get("rotation_fit_polarity") != "bias":
            warnings.warn(f"detector rotation: every acquisition is at the reference bias, so "
                          f"{names['biased_side']} cannot settle the 180° branch: it is a guess from the skew of the "
                          f"charge; if wrong, field and charge are inverted; give {names['charge_sign_region']}",
                          stacklevel=2)
        stages.stage("layer figures and writing")
        cal = attrs.pop("calibration")
        vectors = series_axes(bias_values, registrations)
        descan_source = {(False, False): "none", (True, False): "vacuum", (False, True): "region",
                         (True, True): "vacuum and region"}[(vacuum is not None, descan_mask is not None)]
        root = {**cal.to_attrs(), **series_attrs(bias_values, ref, registrations), **attrs, **settled.get("attrs", {}),
                "bias_source": bias_sources, "registration_channel": channel, "descan_source": descan_source,
                "offsets_source": offsets_source, "gains_source": "vacuum" if vacuum is not None else "default",
                "segment_offsets": np.zeros(4) if offsets is None else np.asarray(offsets, float)}
        rows, half = [], None
        if table_sink is not None:
            half, half_source = (half_range_nm, "user") if half_range_nm is not None else \
                (table_sink.half_range(ref), "default")
            rows = table_sink.rows(bias_values, ref, half)
            vectors.update(LayerTable.file_maps(rows))
            root.update(layer_interface.attrs())
            root.update({"half_range_nm": half, "half_range_source": half_source,
                         "profile_bin_nm": math.nan if bin_nm is None else float(bin_nm),
                         "profile_bin_source": "default" if bin_nm is None else "user"})
        writer.finish(vectors, root, inputs=inputs)
    stages.close()
    lines.append(f"reference: acquisition {ref} at {bias_values[ref]:g} V; {attrs['response']} response")
    lines += settled.get("lines", [])
    lines += describe_calibration(cal)
    lines.append(_series_descan_line(descan_source, names))
    lines.append("segment offsets: " + (f"0 counts assumed ({names['offsets']} or {names['dark']} sets them)"
                                        if offsets is None else
                                        f"{', '.join(f'{o:.4g}' for o in offsets)} counts ({offsets_source})"))
    for i, (bias, reg) in enumerate(zip(bias_values, registrations)):
        lines.append(f"  [{i}] {bias:+6.2f} V  {describe_registration(reg, names)}")
    if message := registration_warning(registrations, bias_values, names=labels, options=names):
        warnings.warn(message, stacklevel=2)
    if table_sink is not None:
        lines.append(layer_interface.describe())
        how = "given" if half_range_nm is not None else \
            f"from the data, where the net field returns to noise; {names['half_range']} sets it"
        lines.append(f"half-range {half:.3g} nm ({how}); profile bins "
                     + ("the finest with none empty" if bin_nm is None else f"{bin_nm:g} nm (given)"))
        lines.append(format_table(rows))
        if table is not None:
            header, csv_rows = LayerTable.csv_rows(rows)
            write_table(table, header, csv_rows, overwrite=overwrite)
            lines.append(f"wrote {table}")
    lines.append(f"wrote {output}")
    lines.append(stages.summary())
    return Outcome(result=Path(output), attrs=root, lines=lines, inputs=inputs, rows=rows)


def _biased_side(side, names):
    """'+' → +1, '-' → −1, None → None; anything else refused."""
    if side is None:
        return None
    signs = {"+": 1, "-": -1, "+1": 1, "-1": -1, 1: 1, -1: -1}
    if isinstance(side, bool) or side not in signs:
        raise InputDataError(f"{names['biased_side']}: the side of the interface the bias raises is + (the side the "
                             f"normal points to) or - (the other), got {side!r}")
    return signs[side]


def _settle_frame(u, v, valid, cal, flip, sign_region, side, names, settled):
    """The rotation fitted on the reference (detector frame); with ``side`` its branch waits for the bias."""
    raw = cal.replace(detector_rotation_deg=0.0, flip=False)
    if side is not None:
        from ..calibration.rotation import find_rotation

        fit = find_rotation(u, v, raw, valid=valid, flip=flip, warn_polarity=False)
        fit_lines = [f"fitted detector rotation {fit.rotation_deg:.2f}° (mod 180°), flip {fit.flip} on the reference: "
                     f"rms curl / rms div {fit.curl_ratio:.3f} (other flip {fit.curl_ratio_other_flip:.3f})"]
    else:
        fit, fit_lines = _fit_rotation(u, v, raw, valid, flip=flip, sign_region=sign_region, names=names)
        fit_lines = [fit_lines[0] + " (fitted on the reference acquisition, applied to all)"]
    sources = {**cal.sources, "detector_rotation_deg": "fitted"}
    if flip is None:
        sources["flip"] = "fitted"
    settled["lines"] = fit_lines
    settled["attrs"] = fit.attrs()
    return fit.calibration(cal).replace(sources=sources)


def _settle_branch(u, v, valid, change_v, frame, interface, side, names, settled):
    """The 180° branch from the polarity of the bias: the net deflection along the normal has the sign of
    ``side`` × the bias change (the biased side's potential rises, and electrons bend toward higher potential)."""
    x, y = frame.to_scan_frame(u, v)
    along = np.asarray(interface.normal_component(x, y), float)[valid]
    along = along[np.isfinite(along)]
    mean = float(np.mean(along)) if along.size else math.nan
    stderr = float(np.std(along) / math.sqrt(along.size)) if along.size > 1 else math.nan
    significance = abs(mean) / stderr if stderr > 0 else math.inf if mean else 0.0
    expected = side * np.sign(change_v)
    turn = bool(np.sign(mean) == -expected)
    if turn:
        frame = frame.replace(detector_rotation_deg=(frame.detector_rotation_deg + 180.0) % 360.0)
    settled.setdefault("attrs", {}).update(rotation_fit_polarity="bias", rotation_bias_significance=significance,
                                           rotation_biased_side="+" if side > 0 else "-")
    settled.setdefault("lines", []).append(
        f"180° branch from the polarity of the bias: the net deflection along the normal at {change_v:+g} V is "
        f"{mean:+.3g} mrad ({significance:.1f} x its noise) with the {'+' if side > 0 else '-'} side biased: "
        f"rotation {frame.detector_rotation_deg:.2f}°")
    if not significance >= POLARITY_SIGNIFICANCE:
        warnings.warn(f"detector rotation: the net deflection along the normal is {significance:.1f} x its noise, too "
                      f"weak to settle the 180° branch ({frame.detector_rotation_deg:.1f}° is a guess): if wrong, "
                      f"field and charge are inverted; give {names['charge_sign_region']} or "
                      f"{names['detector_rotation']}", stacklevel=4)
    return frame


def _series_descan_line(source, names):
    if source == "none":
        return (f"descan: none removed from each bias's maps (no {names['reference']} vacuum scan or "
                f"{names['descan_region']}); the net maps against the reference bias cancel it")
    what = {"vacuum": "the vacuum reference", "region": "fitted over the descan region of the reference acquisition",
            "vacuum and region": "the vacuum reference and a fit over the descan region of the reference acquisition"}
    return f"descan: {what[source]} removed from every acquisition"


def describe_registration(reg, names=None) -> str:
    """One line: the shift applied and the evidence for it."""
    names = {**PYTHON_NAMES, **(names or {})}
    if reg.source == "reference":
        return "reference"
    if reg.source == "user":
        return f"shift dy {reg.shift_px[0]:+.3f} px, dx {reg.shift_px[1]:+.3f} px (given)"
    if reg.source == "none":
        return f"no registration ({names['no_register']})"
    evidence = f"structure SNR {reg.structure_snr:.1f}"
    if reg.source == "rejected":
        return f"no shift applied: {reg.reason}"
    note = " (along the interface normal only: the image has structure across it only)" if reg.constrained else ""
    error = "" if math.isnan(reg.shift_stderr_px) else f" ± {reg.shift_stderr_px:.3f}"
    return (f"shift dy {reg.shift_px[0]:+.3f} px, dx {reg.shift_px[1]:+.3f} px{error}{note}; {evidence}, residual "
            f"{reg.residual_before:.2f} -> {reg.residual_after:.2f} x noise")


def registration_channel(records, shape, calibration, interface, given, exclude_rectangle, half_range_nm, names):
    """Per acquisition what to register on, a description, and the pixels to leave out."""
    count = len(records)
    exclude = None if exclude_rectangle is None else region_mask(exclude_rectangle, shape, calibration,
                                                                 names["registration_exclude"])
    if isinstance(given, (str, Path)):
        given = [given]
    if given:
        if len(given) == 1 and not Path(given[0]).is_file():
            return [(r["path"], given[0]) for r in records], f"dataset {given[0]!r} of each file", exclude
        if len(given) != count:
            raise InputDataError(f"{names['registration_image']}: give one dataset name, or one image file per FILE "
                                 f"({count}), got {len(given)}")
        return [(Path(g), None) for g in given], "the registration image files", exclude
    if all(r["adf"] for r in records):
        adf = {r["metadata"].get("adf_dataset") for r in records}
        return ["adf"] * count, f"the simultaneous dark-field image ({', '.join(sorted(adf))})", exclude
    what = "the segment sum"
    if interface is not None and not sum_sees_deflection(calibration):
        what += (" (whole: with no hole and no outer edge within 2 alpha the detector collects the whole disc at any "
                 "deflection it can invert, so its sum does not change with bias)")
    elif interface is not None:
        step = (calibration.step_x_nm, calibration.step_y_nm)
        distance, _ = interface.coordinates(shape, step)
        extent = float(np.ptp(distance))
        band = half_range_nm if half_range_nm is not None else extent / 4
        source = names["half_range"] if half_range_nm is not None else "a quarter of the scan across the normal"
        near = np.abs(distance) <= band
        exclude = near if exclude is None else (exclude | near)
        what += f" without the interface band (|distance| <= {band:.3g} nm: {source})"
    elif exclude is not None:
        what += f" without the {names['registration_exclude']} rectangle"
    return [None] * count, what, exclude


def sum_sees_deflection(calibration) -> bool:
    """Whether the segment sum changes with the deflection: an inner hole, or an outer edge the disc can reach.

    A disc of semi-angle α shifted by up to α (s ≤ 1, beyond which four segments cannot
    invert it) stays clear of an outer edge at 2α or beyond and covers no hole.
    """
    outer = calibration.collection_outer_mrad
    return calibration.collection_inner_mrad > 0 or (outer is not None and outer < 2 * calibration.alpha_mrad)


def check_same_calibration(records, user, names):
    """Every file must record the calibration the first records, unless the user sets that value."""
    first = records[0]["calibration"]
    for record in records[1:]:
        for name, value in record["calibration"].items():
            key = FIELD_KEYS.get(name)
            if key is None or name in user or name not in first:
                continue
            if not np.allclose(np.asarray(value, float), np.asarray(first[name], float), rtol=1e-6, atol=0):
                raise CalibrationError(
                    f"{record['path']} records {name} {value!r} but {records[0]['path']} records {first[name]!r}: "
                    f"a bias series needs one calibration; give {names[key]} to set it")
    shapes = {r["shape"] for r in records}
    if len(shapes) > 1:
        raise InputDataError(f"the acquisitions of a bias series have different shapes: {sorted(shapes)}")


def format_table(rows) -> str:
    """The net layer figures against bias as a text table."""
    lines = [f"{'index':>5} {'bias (V)':>8} {'peak net E (MV/m)':>20} {'width (nm)':>14} {'ΔV (V)':>16} "
             f"{'net σ (mC/m²)':>18}"]
    for r in rows:
        lines.append(
            f"{r['index']:5d} {r['bias_v']:8.2f} {r['peak_field_v_per_m'] / 1e6:11.2f} ± "
            f"{r['peak_field_stderr'] / 1e6:5.2f} {r['width_nm']:7.2f} ± {r['width_stderr']:4.2f} "
            f"{r['potential_drop_v']:8.4f} ± {r['potential_drop_stderr']:6.4f} "
            f"{r['areal_charge_c_per_m2'] * 1e3:9.4f} ± {r['areal_charge_stderr'] * 1e3:6.4f}")
    return "\n".join(lines)
