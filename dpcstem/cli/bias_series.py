"""``dpcstem bias-series``: acquisitions at several biases → maps and net maps against the reference."""

from __future__ import annotations

from pathlib import Path

from ._common import (
    LENGTH_NM,
    OPTION_NAMES,
    SCAN_COORDINATE,
    add_output_options,
    check_output,
    user_calibration,
)
from .reconstruct import add_reconstruction_options


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
    p.add_argument("--bin", type=LENGTH_NM, default=None, metavar="NM",
                   help="bin width of the profiles along the interface normal, nm (default: the finest with no bin "
                        "left empty; wider bins average the noise that biases a noisy profile's peak)")
    p.add_argument("--table", type=Path, metavar="CSV", help="write the net layer figures per bias as CSV")
    p.add_argument("--biased-side", choices=("+", "-"), metavar="{+,-}",
                   help="with --fit-rotation and --interface: the side of the interface whose potential the bias "
                        "raises (+: the side the normal points to, -: the other), which settles the 180° branch of "
                        "the fitted rotation (default: the skew of the reference's charge, warned as a guess)")
    add_reconstruction_options(p)
    add_output_options(p)
    p.set_defaults(run=run)


def workflow_arguments(args) -> dict:
    """The keywords of :func:`dpcstem.workflows.series_acquisitions` for the parsed options (the demo uses it too)."""
    return dict(
        files=args.files, output=args.output, biases=args.bias, override_bias=args.override_bias,
        reference_bias_v=args.reference_bias, reference_index=args.reference_index,
        calibration=user_calibration(args), dataset=args.dataset, reference=args.reference, dark=args.dark,
        offsets=args.offsets, response=args.response, descan_region=args.descan_region,
        descan_order=args.descan_order, fit_rotation=args.fit_rotation, charge_sign_region=args.charge_sign_region,
        biased_side=args.biased_side, charge_method=args.charge_method, cutoff=args.cutoff,
        potential_method=args.potential_method, potential_reference=args.potential_reference,
        register=not args.no_register, shifts_px=args.shift, registration_image=args.registration_image,
        registration_exclude=args.registration_exclude, interface=args.interface, half_range_nm=args.half_range,
        bin_nm=args.bin, table=args.table, overwrite=args.overwrite, names=OPTION_NAMES)


def run(args):
    from ..workflows import series_acquisitions

    check_output(args.output, args.overwrite, args=args)
    if args.table is not None:
        check_output(args.table, args.overwrite, args=args, suffixes=(".csv",), what="table")
    outcome = series_acquisitions(**workflow_arguments(args), progress=True)
    for line in outcome.lines:
        print(line)
    return 0
