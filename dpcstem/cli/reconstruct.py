"""``dpcstem reconstruct``: one four-segment acquisition → result file."""

from __future__ import annotations

from pathlib import Path

from ._common import (
    add_calibration_options,
    add_output_options,
    add_positive_option,
    calibration_from_args,
    check_output,
)


def add_reconstruction_options(parser):
    """Options shared by ``reconstruct`` and ``bias-series``."""
    add_calibration_options(parser)
    g = parser.add_argument_group("reconstruction")
    g.add_argument("--dataset", metavar="PATH", help="HDF5 dataset holding the (4, ny, nx) segments")
    g.add_argument("--reference", metavar="VACUUM", help="vacuum reference scan (any SEGMENTS format) for the segment gains")
    g.add_argument("--response", default="exact", metavar="MODEL",
                   help="detector response: 'exact' (geometric, both axes together), 'linear', "
                        "or an empirical response file (.npz) from a tilt series (default: exact)")
    g.add_argument("--charge-method", choices=("finite-difference", "spectral"), default="finite-difference",
                   help="divergence for the charge density (default: finite-difference)")
    add_positive_option(g, "--cutoff", metavar="PER_NM",
                        help="low-pass cutoff of the spectral divergence in cycles/nm")
    g.add_argument("--potential-method", choices=("mirror", "dct"), default="mirror",
                   help="boundary treatment of the iDPC integration (default: mirror)")


def add_parser(subparsers):
    p = subparsers.add_parser(
        "reconstruct", help="four segment images → deflection, field, charge density, potential",
        description="Reconstruct deflection (mrad), field (V/m), charge density (C/m^3) and potential (V) "
                    "from a four-segment acquisition. SEGMENTS: .npy (4, ny, nx); 4-page TIFF; HDF5 with "
                    "dataset 'segments'; Velox .emd with DF4-A..D; or 'A.tif,B.tif,C.tif,D.tif'.")
    p.add_argument("segments", metavar="SEGMENTS", help="the acquisition (see above)")
    add_reconstruction_options(p)
    add_output_options(p)
    p.set_defaults(run=run)


def response_from_args(args):
    """'exact', 'linear' or an empirical response read from its file."""
    if args.response in ("exact", "linear"):
        return args.response
    from ..calibrate import load_response

    return load_response(Path(args.response))


def read_reference(path):
    """The vacuum reference (--reference), checked for usable segment gains; None without one.

    An unusable reference is named as the --reference file, not as the acquisition.
    """
    if path is None:
        return None
    from ..detector import gains_from_vacuum
    from ..errors import DPCError
    from ..io import read_segments

    try:
        reference = read_segments(path)
        gains_from_vacuum(reference.segments)
    except DPCError as exc:
        raise type(exc)(f"--reference {path}: {exc}") from None
    return reference


def reconstruct_acquisition(acquisition, args, calibration, response, vacuum):
    from ..reconstruct import reconstruct

    return reconstruct(acquisition.segments, calibration, response=response, vacuum=vacuum,
                       charge_method=args.charge_method, cutoff=args.cutoff,
                       potential_method=args.potential_method)


def run(args):
    from ..io import read_segments, write_result

    output = check_output(args.output, args.overwrite)
    acquisition = read_segments(args.segments, dataset=args.dataset)
    calibration = calibration_from_args(args, acquisition.calibration_values, source=args.segments)
    calibration.require_thickness()
    response = response_from_args(args)
    reference = read_reference(args.reference)
    vacuum = None if reference is None else reference.segments
    result = reconstruct_acquisition(acquisition, args, calibration, response, vacuum)
    inputs = list(acquisition.paths) + (list(reference.paths) if reference is not None else [])
    write_result(output, result.maps(), {**calibration.to_attrs(), **_plain(result.attrs)}, inputs=inputs,
                 overwrite=args.overwrite)
    print(summary(result, output))
    return 0


def _plain(attrs):
    return {k: v for k, v in attrs.items() if v is not None}


def summary(result, output) -> str:
    """A few lines: what was computed, how many pixels were masked, where it went."""
    import numpy as np

    ny, nx = result.shape
    lines = [f"reconstructed {ny} x {nx} pixels ({result.attrs.get('response', 'exact')} response)"]
    n_bad = result.attrs.get("n_bad_input", 0)
    lines.append(f"masked pixels: {result.n_invalid} of {ny * nx}: {n_bad} with a zero or non-finite segment sum "
                 f"or a signal outside the detector response, {result.n_invalid - n_bad} without a valid neighbour "
                 "for the charge density")
    magnitude = np.hypot(result.deflection_x, result.deflection_y)
    lines.append(f"deflection: median |θ| {np.nanmedian(magnitude):.4g} mrad, max {np.nanmax(magnitude):.4g} mrad")
    if result.field_x is not None:
        field = np.hypot(result.field_x, result.field_y)
        lines.append(f"field: max |E| {np.nanmax(field):.4g} V/m")
        rho = result.charge_density
        lines.append(f"charge density: {np.nanmin(rho):.4g} to {np.nanmax(rho):.4g} C/m^3")
    lines.append(f"wrote {output}")
    return "\n".join(lines)
