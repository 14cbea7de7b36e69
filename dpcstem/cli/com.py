"""``dpcstem com``: a pixelated 4D-STEM acquisition → centre of mass → deflection, field, charge."""

from __future__ import annotations

from pathlib import Path

from ._common import (
    OPTION_NAMES,
    add_calibration_options,
    add_descan_options,
    add_field_options,
    add_output_options,
    check_output,
    number,
    user_calibration,
    write_outcome,
)
from .reconstruct import add_interface_options


def add_parser(subparsers):
    p = subparsers.add_parser(
        "com", help="4D-STEM frames → centre of mass → deflection, field, charge density, potential",
        description="Reduce every diffraction frame of a 4D-STEM acquisition to its centre of mass (optionally "
                    "inside a disc), turn it into the beam deflection (mrad) with the detector's angular pixel "
                    "size, remove the descan, and reconstruct the field (V/m), charge density (C/m^3) and "
                    "potential (V). DATA: Merlin .mib, blockfile .blo, HyperSpy .hspy/.zspy, HDF5 (.h5, .emd; "
                    "--dataset PATH), .npy, or raw binary (--raw-shape, --raw-dtype). The file is read chunk by "
                    "chunk, never whole.")
    p.add_argument("data", metavar="DATA", type=Path, help="the 4D-STEM file")
    add_calibration_options(p, detector=False)
    g = p.add_argument_group("detector")
    g.add_argument("--mrad-per-px", type=float, metavar="X", help="angular size of one detector pixel in mrad")
    g.add_argument("--camera-length", type=float, metavar="MM", help="camera length in mm (with --detector-pixel-um)")
    g.add_argument("--detector-pixel-um", type=float, metavar="UM", help="detector pixel pitch in µm")
    g.add_argument("--mask-radius", type=number("a radius in detector pixels", 0.0, 1e6, above=True), metavar="PX",
                   help="centre of mass inside a disc of this radius in pixels around the bright-field disc "
                        "(default: the whole frame)")
    r = p.add_argument_group("reading")
    r.add_argument("--dataset", metavar="PATH", help="HDF5: path of the 4-D dataset in the file")
    r.add_argument("--scan-shape", type=int, nargs=2, metavar=("NY", "NX"),
                   help="scan rows and columns, for files that store a flat list of frames")
    r.add_argument("--raw-shape", type=int, nargs=4, metavar=("NY", "NX", "KY", "KX"),
                   help="raw binary: scan rows, scan columns, detector rows, detector columns")
    r.add_argument("--raw-dtype", metavar="DTYPE", help="raw binary: stored type, e.g. <u2 or >u2 or f4")
    r.add_argument("--raw-offset", type=int, default=0, metavar="BYTES", help="raw binary: header bytes to skip")
    c = p.add_argument_group("computation")
    where = c.add_mutually_exclusive_group()
    where.add_argument("--scheduler", metavar="ADDRESS", help="address of a running dask.distributed scheduler, "
                                                             "e.g. tcp://10.0.0.5:8786")
    where.add_argument("--workers", type=int, metavar="N", help="start a local Dask cluster of N worker processes")
    c.add_argument("--reference", type=Path, metavar="VACUUM",
                   help="4D-STEM vacuum scan of the same scan and frame shape: its centre of mass is the descan "
                        "(default: no descan; the median centre of mass is the undeflected centre, printed)")
    c.add_argument("--response", type=Path, metavar="FILE",
                   help="empirical centre-of-mass response (.npz) that 'dpcstem calibrate-response' makes from a 4D "
                        "beam-tilt series through the specimen: corrects a camera that cuts a blurred pattern's "
                        "halo (the centre of mass then reads low); default: the centre of mass as measured")
    add_field_options(c)
    c.add_argument("--potential-reference", type=float, nargs=4, metavar=("X0", "Y0", "X1", "Y1"),
                   help="rectangle (nm, scan frame) where the potential is zero (default: its mean is zero)")
    add_descan_options(c)
    c.add_argument("--dose", type=number("electrons per frame", 1.0, 1e15), metavar="E",
                   help="electrons per frame: uncertainty maps from the counting noise of a centre of mass of E "
                        "electrons in the bright-field disc, σθ = α/(2√E)")
    add_interface_options(p)
    add_output_options(p)
    p.set_defaults(run=run)


def run(args):
    from ..workflows import com_acquisition

    output = check_output(args.output, args.overwrite, args=args)
    raw = {}
    if args.raw_shape is not None or args.raw_dtype is not None:
        raw = {"shape": args.raw_shape, "dtype": args.raw_dtype, "offset": args.raw_offset}
    outcome = com_acquisition(
        args.data, calibration=user_calibration(args), mrad_per_px=args.mrad_per_px,
        camera_length_mm=args.camera_length, detector_pixel_um=args.detector_pixel_um,
        mask_radius_px=args.mask_radius, dataset=args.dataset, scan_shape=args.scan_shape, raw=raw,
        scheduler=args.scheduler, workers=args.workers, reference=args.reference, descan_region=args.descan_region,
        descan_order=args.descan_order, fit_rotation=args.fit_rotation, charge_sign_region=args.charge_sign_region,
        charge_method=args.charge_method, cutoff=args.cutoff, potential_method=args.potential_method,
        potential_reference=args.potential_reference, dose=args.dose, interface=args.interface,
        half_range_nm=args.half_range, response=args.response, names=OPTION_NAMES)
    return write_outcome(outcome, output, args.overwrite)
