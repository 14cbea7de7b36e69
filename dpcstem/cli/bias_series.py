"""``dpcstem bias-series``: acquisitions at several biases → maps and net maps against the reference."""

from __future__ import annotations

from pathlib import Path

from ..workflows import (
    check_reference,
    describe_calibration,
    read_reference,
    region_mask,
    response_from_name,
    segment_offsets,
)
from . import _common
from ._common import (
    LENGTH_NM,
    SCAN_COORDINATE,
    add_output_options,
    calibration_from_args,
    check_output,
)
from .reconstruct import add_reconstruction_options

#: Suffixes of the acquisitions a FOLDER argument contributes.
FOLDER_SUFFIXES = (".h5", ".hdf5", ".emd", ".npy", ".tif", ".tiff", ".dm3", ".dm4")

#: The registration choices named in messages.
OPTION_NAMES = {"shift": "--shift DY DX (once per FILE)", "image": "--registration-image NAME",
                "off": "--no-register"}


def add_parser(subparsers):
    p = subparsers.add_parser(
        "bias-series", help="a bias series → net field and net charge accumulation against the reference bias",
        description="Reconstruct each acquisition, register it to the reference acquisition on a channel that does "
                    "not change with bias (the simultaneous ADF/HAADF image when the files hold one, else the "
                    "segment sum with the interface band left out), subtract in deflection space, and write every "
                    "acquisition's maps and the net field (V/m), net charge density (C/m^3) and net potential (V) "
                    "against the reference. Acquisitions are read one at a time.")
    p.add_argument("files", nargs="+", metavar="FILE",
                   help="the acquisitions (any SEGMENTS format), or a folder: its files that hold segments and "
                        "record a bias")
    p.add_argument("--bias", type=float, nargs="+", metavar="V",
                   help="applied bias of each FILE in V, in the order given (default: the 'bias_v' each file "
                        "records; a bias that differs from a recorded one is refused without --override-bias)")
    p.add_argument("--override-bias", action="store_true",
                   help="let --bias replace the biases the files record (each replacement is warned)")
    p.add_argument("--reference-bias", type=float, default=0.0, metavar="V",
                   help="bias whose map is subtracted, in V (default: 0)")
    p.add_argument("--reference-index", type=int, default=None, metavar="K",
                   help="where the reference bias repeats (a return sweep), the acquisition index (from 0) of the "
                        "reference (default: the first at that bias)")
    reg = p.add_argument_group("registration (drift correction)")
    reg.add_argument("--no-register", action="store_true", help="apply no drift correction")
    reg.add_argument("--shift", type=float, nargs=2, action="append", metavar=("DY", "DX"),
                     help="registration shift of each acquisition in pixels (y, x), given by hand; repeat once per "
                          "acquisition, in acquisition order")
    reg.add_argument("--registration-image", action="append", metavar="NAME|FILE",
                     help="register on this image instead: the name of a 2-D dataset in every (HDF5) FILE, or one "
                          "image file (.npy, .tif) per FILE, repeated in the order of the FILEs")
    reg.add_argument("--registration-exclude", type=float, nargs=4, metavar=("X0", "Y0", "X1", "Y1"),
                     help="a rectangle (nm) the registration leaves out (contrast that changes with bias)")
    p.add_argument("--interface", type=SCAN_COORDINATE, nargs=4, metavar=("X1", "Y1", "X2", "Y2"),
                   help="two points P1, P2 on the interface in nm (scan frame); the normal is P1->P2 turned by +90 "
                        "deg (from +x toward +y): print and store the net layer figures per bias")
    p.add_argument("--half-range", type=LENGTH_NM, default=None, metavar="NM",
                   help="largest distance from the interface in the profiles, nm (default: from the data, where "
                        "the net field returns to noise, times 1.5)")
    p.add_argument("--table", type=Path, metavar="CSV", help="write the net layer figures per bias as CSV")
    add_reconstruction_options(p)
    add_output_options(p)
    p.set_defaults(run=run)


def expand_files(paths):
    """FILE arguments with each folder replaced by its candidate files (sorted), and whether it came from a folder."""
    out = []
    for path in paths:
        p = Path(path)
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in FOLDER_SUFFIXES)
            out += [(f, True) for f in found]
        else:
            out.append((p, False))
    return out


def run(args):
    import warnings

    import numpy as np

    from ..bias import LayerTable, check_biases, registration_warning, resolve_biases, series_attrs, series_axes, \
        series_slices, stream_series
    from ..errors import DPCError, InputDataError
    from ..interface import Interface
    from ..memory import require_memory, series_bytes
    from ..io import SeriesWriter, read_image, read_segments, write_table

    import time

    clock = {"start": time.perf_counter()}
    output = check_output(args.output, args.overwrite, args=args)
    if args.table is not None:
        check_output(args.table, args.overwrite, args=args, suffixes=(".csv",), what="table")
    candidates = expand_files(args.files)
    # First pass: what each file records (the segments are read again, one at a time, later).
    records, skipped = [], []
    for k, (path, from_folder) in enumerate(candidates):
        try:
            acquisition = read_segments(path, dataset=args.dataset)
        except DPCError as exc:
            if from_folder:
                skipped.append(path.name)
                continue
            raise type(exc)(f"bias series file {k + 1} of {len(candidates)}: {exc}") from None
        if from_folder and "bias_v" not in acquisition.metadata and args.bias is None:
            skipped.append(path.name)
            continue
        meta = {k: v for k, v in acquisition.metadata.items() if k != "adf"}
        records.append({"path": path, "calibration": acquisition.calibration_values, "metadata": meta,
                        "paths": acquisition.paths, "shape": acquisition.segments.shape,
                        "dtype": acquisition.segments.dtype,
                        "adf": "adf" in acquisition.metadata})
        del acquisition
    if skipped:
        print(f"skipped (no segments or no recorded bias): {', '.join(skipped)}")
    if not records:
        raise InputDataError(f"no acquisition found in {', '.join(map(str, args.files))}")
    names = [str(r["path"]) for r in records]
    biases, sources = resolve_biases([r["metadata"].get("bias_v") for r in records], args.bias, names,
                                     override=args.override_bias, option="--bias",
                                     override_option="--override-bias")
    # Acquisition order: the index every file records, else the order given.
    indices = [r["metadata"].get("acquisition_index") for r in records]
    if all(i is not None for i in indices):
        if len(set(indices)) != len(indices):
            raise InputDataError(f"two files record the same acquisition_index: {names}")
        order = sorted(range(len(records)), key=lambda k: indices[k])
        records, biases, sources, names = ([seq[k] for k in order] for seq in (records, biases, sources, names))
    try:
        check_biases(biases, len(biases), args.reference_bias, reference_index=args.reference_index)
    except InputDataError as exc:
        message = str(exc).replace("(set reference_bias_v)", "(give --reference-bias)")
        raise InputDataError(message.replace("reference_index", "--reference-index")) from None
    check_same_calibration(args, records)
    calibration = calibration_from_args(args, records[0]["calibration"], source=records[0]["path"])
    calibration.require_thickness()
    shape = records[0]["shape"][1:]
    require_memory(series_bytes(records[0]["shape"], records[0]["dtype"]),
                   f"a bias series of {len(records)} acquisitions of {shape[0]} x {shape[1]}")
    if args.descan_region is not None:
        raise InputDataError("--descan-region: a bias series takes its descan from --reference VACUUM; the net maps "
                             "against the reference bias hold none without it")
    if args.fit_rotation or args.charge_sign_region is not None:
        raise InputDataError("--fit-rotation: fit the rotation on one acquisition with dpcstem reconstruct and give "
                             "--detector-rotation (and --flip or --no-flip) to the series")
    offsets, offsets_source, dark_paths = segment_offsets(args.offsets, args.dark, names=_common.OPTION_NAMES)
    vacuum = None
    if args.reference:
        reference = read_reference(args.reference, _common.OPTION_NAMES)
        check_reference(reference, calibration, shape, names=_common.OPTION_NAMES)
        vacuum = reference.segments

    interface = None
    if args.interface:
        x1, y1, x2, y2 = args.interface
        interface = Interface((x1, y1), (x2, y2))
        try:
            interface.check_inside(shape, (calibration.step_x_nm, calibration.step_y_nm), name="--interface")
        except InputDataError as exc:
            raise InputDataError(str(exc)) from None
        if args.half_range is not None and not args.half_range > 0:
            raise InputDataError(f"--half-range must be a positive distance in nm, got {args.half_range!r}")

    images, channel, exclude = registration_channel(args, records, shape, calibration, interface)
    clock["read"] = time.perf_counter()
    series_names = [str(r["path"]) for r in records]

    def loader(k):
        def load():
            acquisition = read_segments(records[k]["path"], dataset=args.dataset)
            image = images[k]
            if isinstance(image, tuple):  # (path, dataset): read now, not before
                image = read_image(image[0], dataset=image[1])
            elif image == "adf":
                image = acquisition.metadata.get("adf")
                if image is None:
                    raise InputDataError(f"{records[k]['path']}: no ADF/HAADF image; give --registration-image")
            return acquisition.segments, image
        return load

    count = len(records)
    table = LayerTable(interface, calibration, shape) if interface is not None else None
    registrations = [None] * count
    print(f"{count} acquisitions; registration on {channel}")
    with SeriesWriter(output, count, overwrite=args.overwrite) as writer:
        def sink(i, result, registration, net=False):
            writer.put(i, series_slices(result, net=net))
            if net and table is not None:
                table.add(i, result)

        ref, registrations, attrs = stream_series(
            [loader(k) for k in range(count)], biases, calibration, sink, reference_bias_v=args.reference_bias,
            reference_index=args.reference_index, response=response_from_name(args.response), vacuum=vacuum,
            offsets=offsets,
            descan_order=args.descan_order, shifts_px=args.shift, register_maps=not args.no_register,
            registration_exclude=exclude, progress=True, names=series_names,
            charge_method=args.charge_method, cutoff=args.cutoff, potential_method=args.potential_method,
            potential_reference=region_mask(args.potential_reference, shape, calibration, "--potential-reference"))
        clock["series"] = time.perf_counter()
        vectors = series_axes(biases, registrations)
        root = {**calibration.to_attrs(), **series_attrs(biases, ref, registrations), **attrs,
                "bias_source": sources, "registration_channel": channel,
                "descan_source": "vacuum" if vacuum is not None else "none", "offsets_source": offsets_source,
                "gains_source": "vacuum" if vacuum is not None else "default",
                "segment_offsets": np.zeros(4) if offsets is None else np.asarray(offsets, float)}
        rows = []
        if table is not None:
            half, half_source = (args.half_range, "user") if args.half_range is not None else \
                (table.half_range(ref), "default")
            rows = table.rows(biases, ref, half)
            vectors.update(LayerTable.file_maps(rows))
            root.update(interface.attrs())
            root.update({"half_range_nm": half, "half_range_source": half_source})
        writer.finish(vectors, root, inputs=[p for r in records for p in r["paths"]] + dark_paths +
                      ([Path(args.reference)] if args.reference else []))
    clock["written"] = time.perf_counter()
    print(f"reference: acquisition {ref} at {biases[ref]:g} V; {attrs['response']} response")
    for line in describe_calibration(calibration, rotation=True):
        print(line)
    if vacuum is None:
        print("descan: none removed from each bias's maps (no --reference vacuum scan); the net maps against the "
              "reference bias cancel it")
    print(f"segment offsets: {'0 counts assumed (--offsets or --dark sets them)' if offsets is None else ', '.join(f'{o:.4g}' for o in offsets) + ' counts (' + offsets_source + ')'}")
    for i, (bias, reg) in enumerate(zip(biases, registrations)):
        print(f"  [{i}] {bias:+6.2f} V  {describe_registration(reg)}")
    if message := registration_warning(registrations, biases, names=series_names, options=OPTION_NAMES):
        warnings.warn(message, stacklevel=1)
    if table is not None:
        print(interface.describe())
        how = "given" if args.half_range is not None else "from the data, where the net field returns to noise; " \
                                                         "--half-range sets it"
        print(f"half-range {half:.3g} nm ({how})")
        print(format_table(rows))
        if args.table is not None:
            header, lines = LayerTable.csv_rows(rows)
            write_table(args.table, header, lines, overwrite=args.overwrite)
            print(f"wrote {args.table}")
    print(f"wrote {output}")
    print(f"stage times: checking the files {clock['read'] - clock['start']:.2f} s, reconstructing, registering "
          f"and subtracting {clock['series'] - clock['read']:.2f} s, layer figures and writing "
          f"{clock['written'] - clock['series']:.2f} s")
    return 0


def describe_registration(reg) -> str:
    """One line: the shift applied and the evidence for it."""
    if reg.source == "reference":
        return "reference"
    if reg.source == "user":
        return f"shift dy {reg.shift_px[0]:+.3f} px, dx {reg.shift_px[1]:+.3f} px (given)"
    if reg.source == "none":
        return "no registration (--no-register)"
    evidence = f"structure SNR {reg.structure_snr:.1f}"
    if reg.source == "rejected":
        return f"no shift applied: {reg.reason}"
    note = " (along the interface normal only: the image has structure across it only)" if reg.constrained else ""
    return (f"shift dy {reg.shift_px[0]:+.3f} px, dx {reg.shift_px[1]:+.3f} px{note}; {evidence}, residual "
            f"{reg.residual_before:.2f} -> {reg.residual_after:.2f} x noise")


def registration_channel(args, records, shape, calibration, interface):
    """Per acquisition what to register on, a description, and the pixels to leave out."""
    import numpy as np

    from ..errors import InputDataError

    count = len(records)
    given = args.registration_image
    if given:
        if len(given) == 1 and not Path(given[0]).is_file():
            return [(r["path"], given[0]) for r in records], f"dataset {given[0]!r} of each file", \
                _user_exclude(args, shape, calibration)
        if len(given) != count:
            raise InputDataError(f"--registration-image: give one dataset name, or one image file per FILE "
                                 f"({count}), got {len(given)}")
        return [(Path(g), None) for g in given], "the --registration-image files", \
            _user_exclude(args, shape, calibration)
    if all(r["adf"] for r in records):
        names = {r["metadata"].get("adf_dataset") for r in records}
        return ["adf"] * count, f"the simultaneous dark-field image ({', '.join(sorted(names))})", \
            _user_exclude(args, shape, calibration)
    exclude = _user_exclude(args, shape, calibration)
    what = "the segment sum"
    if interface is not None:
        step = (calibration.step_x_nm, calibration.step_y_nm)
        distance, _ = interface.coordinates(shape, step)
        extent = float(np.ptp(distance))
        band = args.half_range if args.half_range is not None else extent / 4
        source = "--half-range" if args.half_range is not None else "a quarter of the scan across the normal"
        near = np.abs(distance) <= band
        exclude = near if exclude is None else (exclude | near)
        what += f" without the interface band (|distance| <= {band:.3g} nm: {source})"
    elif exclude is not None:
        what += " without the --registration-exclude rectangle"
    return [None] * count, what, exclude


def _user_exclude(args, shape, calibration):
    if args.registration_exclude is None:
        return None
    return region_mask(args.registration_exclude, shape, calibration, "--registration-exclude")


#: Calibration fields and the options that override them.
_OPTIONS = {"kv": "kv", "alpha_mrad": "alpha", "step_x_nm": "step", "step_y_nm": "step", "thickness_nm": "thickness",
            "collection_inner_mrad": "collection", "collection_outer_mrad": "collection",
            "detector_rotation_deg": "detector_rotation", "flip": "flip", "eps_r": "eps_r"}


def check_same_calibration(args, records):
    """Every file must record the calibration the first records, unless an option sets that value."""
    import numpy as np

    from ..errors import CalibrationError

    first = records[0]["calibration"]
    for record in records[1:]:
        for name, value in record["calibration"].items():
            option = _OPTIONS.get(name)
            if option is None or getattr(args, option, None) is not None or name not in first:
                continue
            if not np.allclose(np.asarray(value, float), np.asarray(first[name], float), rtol=1e-6, atol=0):
                raise CalibrationError(
                    f"{record['path']} records {name} {value!r} but {records[0]['path']} records {first[name]!r}: "
                    f"a bias series needs one calibration; give --{option.replace('_', '-')} to set it")
    shapes = {r["shape"] for r in records}
    if len(shapes) > 1:
        from ..errors import InputDataError

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
