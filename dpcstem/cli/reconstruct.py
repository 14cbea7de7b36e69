"""``dpcstem reconstruct``: one four-segment acquisition → result file."""

from __future__ import annotations

from ..errors import InputDataError
from ._common import (
    LENGTH_NM,
    OPTION_NAMES,
    SCAN_COORDINATE,
    add_calibration_options,
    add_descan_options,
    add_field_options,
    add_output_options,
    check_output,
    number,
    user_calibration,
    write_outcome,
)


def add_reconstruction_options(parser):
    """Options shared by ``reconstruct`` and ``bias-series``."""
    add_calibration_options(parser)
    g = parser.add_argument_group("reconstruction")
    g.add_argument("--dataset", metavar="PATH", help="HDF5 dataset holding the (4, ny, nx) segments")
    g.add_argument("--reference", metavar="VACUUM",
                   help="vacuum reference scan (any SEGMENTS format; same scan, optics and detector): the segment "
                        "gains and the descan")
    g.add_argument("--offsets", type=float, nargs=4, metavar=("A", "B", "C", "D"),
                   help="dark offsets of the segments in counts (default: 0, printed)")
    g.add_argument("--dark", metavar="FILE", help="beam-blanked scan (any SEGMENTS format): its segment means are "
                                                  "the dark offsets")
    g.add_argument("--response", default="exact", metavar="MODEL",
                   help="detector response: 'exact' (geometric, both axes together), 'linear', "
                        "or an empirical response file (.npz) from a tilt series (default: exact)")
    add_field_options(g)
    g.add_argument("--potential-reference", type=float, nargs=4, metavar=("X0", "Y0", "X1", "Y1"),
                   help="rectangle (nm, scan frame) where the potential is zero (default: its mean is zero)")
    add_descan_options(g)


def add_dose_options(parser):
    noise = parser.add_argument_group("uncertainty maps (counting statistics)")
    dose = noise.add_mutually_exclusive_group()
    dose.add_argument("--dose", type=number("electrons per probe position", 1.0, 1e15), metavar="E",
                      help="electrons per probe position in the bright-field disc: add uncertainty maps")
    return dose


def add_parser(subparsers):
    p = subparsers.add_parser(
        "reconstruct", help="four segment images → deflection, field, charge density, potential",
        description="Reconstruct deflection (mrad), field (V/m), charge density (C/m^3) and potential (V) "
                    "from a four-segment acquisition. SEGMENTS: .npy (4, ny, nx); 4-page TIFF; HDF5 with "
                    "dataset 'segments'; Velox .emd with DF4-A..D; or four image files A B C D (or 'A.tif,B.tif,C.tif,D.tif'). "
                    "Every value "
                    "the file does not record and no option gives is printed as assumed (docs/defaults.md).")
    p.add_argument("segments", metavar="SEGMENTS", nargs="+",
                   help="the acquisition (see above): one file, or four image files, one per segment A, B, C, D")
    add_reconstruction_options(p)
    dose = add_dose_options(p)
    dose.add_argument("--counts-per-electron", type=number("detector counts per electron", 1e-6, 1e6), metavar="X",
                      help="detector counts per electron: add uncertainty maps")
    add_interface_options(p)
    add_output_options(p)
    p.set_defaults(run=run)


def add_interface_options(p):
    p.add_argument("--interface", type=SCAN_COORDINATE, nargs=4, metavar=("X1", "Y1", "X2", "Y2"),
                   help="two points on an interface (nm, scan frame): profiles across it and the layer figures")
    p.add_argument("--half-range", type=LENGTH_NM, metavar="NM", help="largest distance from the interface, nm")


def run(args):
    from ..workflows import reconstruct_acquisition

    if len(args.segments) not in (1, 4):
        raise InputDataError(f"SEGMENTS: give one acquisition file, or four image files (segments A, B, C, D), got "
                             f"{len(args.segments)} files")
    args.segments = ",".join(args.segments)
    output = check_output(args.output, args.overwrite, args=args)
    outcome = reconstruct_acquisition(
        args.segments, calibration=user_calibration(args), dataset=args.dataset, reference=args.reference,
        dark=args.dark, offsets=args.offsets, response=args.response, descan_region=args.descan_region,
        descan_order=args.descan_order, fit_rotation=args.fit_rotation, charge_sign_region=args.charge_sign_region,
        charge_method=args.charge_method, cutoff=args.cutoff, potential_method=args.potential_method,
        potential_reference=args.potential_reference, dose=args.dose, counts_per_electron=args.counts_per_electron,
        interface=args.interface, half_range_nm=args.half_range, names=OPTION_NAMES, progress=True)
    return write_outcome(outcome, output, args.overwrite)
