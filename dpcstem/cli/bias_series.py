"""``dpcstem bias-series``: acquisitions at several biases → maps and net maps against the reference."""

from __future__ import annotations

import sys

from ._common import LENGTH_NM, SCAN_COORDINATE, add_output_options, calibration_from_args, check_output
from .reconstruct import add_reconstruction_options, region_mask, response_from_args


def add_parser(subparsers):
    p = subparsers.add_parser(
        "bias-series", help="a bias series → net field and net charge accumulation against the reference bias",
        description="Reconstruct each acquisition, register it to the reference bias's acquisition (from the "
                    "segment-sum images), subtract in deflection space, and write every bias's maps and the net "
                    "field (V/m) and net charge density (C/m^3) against the reference.")
    p.add_argument("files", nargs="+", metavar="FILE", help="the acquisitions (any SEGMENTS format)")
    p.add_argument("--bias", type=float, nargs="+", metavar="V",
                   help="applied bias of each FILE in V (default: the 'bias_v' each file records)")
    p.add_argument("--reference-bias", type=float, default=0.0, metavar="V",
                   help="bias whose map is subtracted, in V (default: 0)")
    reg = p.add_argument_group("registration")
    reg.add_argument("--no-register", action="store_true", help="apply no drift correction")
    reg.add_argument("--shift", type=float, nargs=2, action="append", metavar=("DY", "DX"),
                     help="registration shift of each FILE in pixels (y, x), given by hand; repeat once per FILE")
    p.add_argument("--interface", type=SCAN_COORDINATE, nargs=4, metavar=("X1", "Y1", "X2", "Y2"),
                   help="two points on the interface in nm (scan frame): print the net layer figures per bias")
    p.add_argument("--half-range", type=LENGTH_NM, default=None, metavar="NM",
                   help="largest distance from the interface in the profiles, nm")
    add_reconstruction_options(p)
    add_output_options(p)
    p.set_defaults(run=run)


def run(args):
    from ..bias import interface_table, reconstruct_series
    from ..errors import DPCError, InputDataError
    from ..interface import Interface
    from ..io import read_segments, write_result
    from ..memory import require_memory, series_bytes

    output = check_output(args.output, args.overwrite, args=args)
    acquisitions = []
    for path in args.files:
        try:
            acquisitions.append(read_segments(path, dataset=args.dataset))
        except DPCError as exc:
            raise type(exc)(f"bias series file {len(acquisitions) + 1} of {len(args.files)}: {exc}") from None
        if len(acquisitions) == 1:  # the whole series, before the other files are read
            first = acquisitions[0].segments
            require_memory(series_bytes(len(args.files), first.shape, first.dtype),
                           f"a bias series of {len(args.files)} acquisitions of {first.shape[1]} x {first.shape[2]}")
    if args.bias is not None:
        biases = args.bias
    else:
        missing = [str(p) for p, a in zip(args.files, acquisitions) if "bias_v" not in a.metadata]
        if missing:
            raise InputDataError(f"no bias recorded in {', '.join(missing)}: give --bias V... (one per FILE)")
        biases = [float(a.metadata["bias_v"]) for a in acquisitions]
    check_same_calibration(args, acquisitions)
    calibration = calibration_from_args(args, acquisitions[0].calibration_values)
    calibration.require_thickness()
    vacuum = read_segments(args.reference).segments if args.reference else None
    shape = acquisitions[0].segments.shape[1:]
    series = reconstruct_series(
        [a.segments for a in acquisitions], biases, calibration, reference_bias_v=args.reference_bias,
        response=response_from_args(args), vacuum=vacuum, descan_order=args.descan_order, shifts_px=args.shift,
        register_maps=not args.no_register, progress=sys.stderr.isatty(), names=[str(f) for f in args.files],
        charge_method=args.charge_method, cutoff=args.cutoff,
        potential_method=args.potential_method,
        potential_reference=region_mask(args.potential_reference, shape, calibration, "--potential-reference"))
    maps = series.file_maps()
    inputs = [p for a in acquisitions for p in a.paths]
    write_result(output, maps, series.file_attrs(), inputs=inputs, overwrite=args.overwrite)
    print(f"{len(biases)} acquisitions, reference {series.reference_bias_v:g} V, {series.attrs['response']} response")
    for bias, reg in zip(series.biases_v, series.registration):
        note = " (along the interface normal only)" if reg.constrained else ""
        print(f"  {bias:+6.2f} V  registration shift dy {reg.shift_px[0]:+.2f} px, dx {reg.shift_px[1]:+.2f} px{note}")
    if args.interface:
        x1, y1, x2, y2 = args.interface
        rows = interface_table(series, Interface((x1, y1), (x2, y2)), half_range_nm=args.half_range)
        print(format_table(rows))
    print(f"wrote {output}")
    return 0


#: Calibration fields and the options that override them.
_OPTIONS = {"kv": "kv", "alpha_mrad": "alpha", "step_x_nm": "step", "step_y_nm": "step", "thickness_nm": "thickness",
            "collection_inner_mrad": "collection", "collection_outer_mrad": "collection",
            "detector_rotation_deg": "detector_rotation", "flip": "flip"}


def check_same_calibration(args, acquisitions):
    """Every file must record the calibration the first records, unless an option sets that value."""
    import numpy as np

    from ..errors import CalibrationError

    first = acquisitions[0].calibration_values
    for path, acquisition in zip(args.files[1:], acquisitions[1:]):
        for name, value in acquisition.calibration_values.items():
            option = _OPTIONS.get(name)
            if option is None or getattr(args, option, None) not in (None, False) or name not in first:
                continue
            if not np.allclose(np.asarray(value, float), np.asarray(first[name], float), rtol=1e-6, atol=0):
                raise CalibrationError(
                    f"{path} records {name} {value!r} but {args.files[0]} records {first[name]!r}: a bias series "
                    f"needs one calibration; give --{option.replace('_', '-')} to set it")


def format_table(rows) -> str:
    """The net layer figures against bias as a text table."""
    lines = [f"{'bias (V)':>8} {'peak net E (MV/m)':>20} {'width (nm)':>14} {'ΔV (V)':>14} {'net σ (mC/m²)':>18}"]
    for r in rows:
        lines.append(
            f"{r['bias_v']:8.2f} {r['peak_field_v_per_m'] / 1e6:11.1f} ± {r['peak_field_stderr'] / 1e6:5.1f}"
            f" {r['width_nm']:7.2f} ± {r['width_stderr']:4.2f} {r['potential_drop_v']:7.3f} ± {r['potential_drop_stderr']:4.3f}"
            f" {r['areal_charge_c_per_m2'] * 1e3:9.3f} ± {r['areal_charge_stderr'] * 1e3:5.3f}")
    return "\n".join(lines)
