"""``dpcstem com``: a pixelated 4D-STEM acquisition → centre of mass → deflection, field, charge."""

from __future__ import annotations

from pathlib import Path

from ._common import (
    add_calibration_options,
    add_field_options,
    add_output_options,
    calibration_from_args,
    check_output,
    number,
)


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
    g.add_argument("--detector-rotation", type=float, metavar="DEG",
                   help="azimuth of the detector's +kx (column) axis in degrees, from scan +x toward scan +y")
    g.add_argument("--flip", action="store_true", default=None,
                   help="the detector's ky (row) axis is mirrored against the scan (+ky at rotation − 90°)")
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
                   help="4D-STEM vacuum scan of the same scan shape: its centre of mass is the descan "
                        "(default: a plane fitted to the centre of mass over the whole scan)")
    add_field_options(c)
    add_output_options(p)
    p.set_defaults(run=run)


def _open(path, args):
    from ..io.pixelated import open_pixelated

    raw = {}
    if args.raw_shape is not None or args.raw_dtype is not None:
        raw = {"shape": args.raw_shape, "dtype": args.raw_dtype, "offset": args.raw_offset}
    return open_pixelated(path, dataset=args.dataset, scan_shape=args.scan_shape, **raw)


def _angular_pixel(args, file_value):
    import warnings

    from ..errors import CalibrationError
    from ..fourd import mrad_per_px

    given = args.mrad_per_px is not None or args.camera_length is not None or args.detector_pixel_um is not None
    if not given:
        if file_value is None:
            raise CalibrationError("the detector's angular pixel size is needed: give --mrad-per-px X, or "
                                   "--camera-length MM with --detector-pixel-um UM")
        return file_value, "file"
    try:
        value = mrad_per_px(camera_length_mm=args.camera_length, detector_pixel_um=args.detector_pixel_um,
                            mrad_per_px=args.mrad_per_px)
    except CalibrationError as exc:
        options = {"mrad_per_px": "--mrad-per-px", "camera_length_mm": "--camera-length",
                   "detector_pixel_um": "--detector-pixel-um"}
        named = [option for name, option in options.items() if name in str(exc)]
        raise CalibrationError(f"{' and '.join(named)}: {exc}" if named else str(exc)) from None
    if file_value is not None and abs(file_value - value) > 1e-9 * value:
        warnings.warn(f"mrad_per_px: the file says {file_value!r}, using the given {value!r}", stacklevel=2)
    return value, "user"


def run(args):
    import numpy as np

    from ..errors import InputDataError
    from ..fourd import bright_field_disc, centre_of_mass, reconstruct_com
    from ..options import ReconstructionOptions
    from ..io import write_result

    output = check_output(args.output, args.overwrite, args=args)
    data = _open(args.data, args)
    scale, scale_source = _angular_pixel(args, data.mrad_per_px)
    centre, radius = bright_field_disc(data)
    calibration = calibration_from_args(args, data.calibration, alpha_default=radius * scale, source=args.data)
    calibration.require_thickness()
    engine = {"scheduler": args.scheduler, "workers": args.workers}
    reference = None
    inputs = [args.data]
    if args.reference is not None:
        vacuum = _open(args.reference, args)
        if vacuum.scan_shape != data.scan_shape or vacuum.frame_shape != data.frame_shape:
            raise InputDataError(f"--reference {args.reference}: shape {vacuum.shape} differs from DATA {data.shape}")
        mask = None
        if args.mask_radius is not None:
            from ..fourd import disc_mask

            mask = disc_mask(data.frame_shape, centre, args.mask_radius)
        sums = centre_of_mass(vacuum, mask=mask, **engine)
        reference = (sums.com_x, sums.com_y)
        inputs.append(args.reference)
    result = reconstruct_com(data, calibration, mrad_per_px=scale, mask_radius_px=args.mask_radius,
                             mask_centre_yx=centre if args.mask_radius is not None else None, reference=reference,
                             options=ReconstructionOptions(charge_method=args.charge_method, cutoff=args.cutoff,
                                                           potential_method=args.potential_method), **engine)
    attrs = {**calibration.to_attrs(), "mrad_per_px_source": scale_source,
             **{k: v for k, v in result.attrs.items() if v is not None}}
    if calibration.sources.get("alpha_mrad") != "user":
        attrs["alpha_mrad_source"] = "measured (bright-field disc radius)"
    write_result(output, result.maps(), attrs, inputs=inputs, overwrite=args.overwrite)
    ny, nx = result.shape
    magnitude = np.hypot(result.deflection_x, result.deflection_y)
    print(f"reduced {ny} x {nx} frames of {data.frame_shape[0]} x {data.frame_shape[1]} px "
          f"({scale:.4g} mrad/px, bright-field disc radius {radius:.1f} px)")
    print(f"masked pixels: {result.n_invalid} of {ny * nx}")
    if np.isfinite(magnitude).any():
        print(f"deflection: median |θ| {np.nanmedian(magnitude):.4g} mrad, max {np.nanmax(magnitude):.4g} mrad")
    print(f"wrote {output}")
    return 0
