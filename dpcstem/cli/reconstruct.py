"""``dpcstem reconstruct``: one four-segment acquisition → result file."""

from __future__ import annotations

from pathlib import Path

from ._common import (
    LENGTH_NM,
    SCAN_COORDINATE,
    add_calibration_options,
    add_field_options,
    add_output_options,
    calibration_from_args,
    check_output,
    number,
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
    add_field_options(g)
    g.add_argument("--potential-reference", type=float, nargs=4, metavar=("X0", "Y0", "X1", "Y1"),
                   help="rectangle (nm, scan frame) where the potential is zero (default: its mean is zero)")
    g.add_argument("--descan-order", type=int, choices=(1, 2), default=2,
                   help="plane (1) or quadratic (2) descan fitted to the --reference vacuum scan or the "
                        "--descan-region (default: 2)")


def add_parser(subparsers):
    p = subparsers.add_parser(
        "reconstruct", help="four segment images → deflection, field, charge density, potential",
        description="Reconstruct deflection (mrad), field (V/m), charge density (C/m^3) and potential (V) "
                    "from a four-segment acquisition. SEGMENTS: .npy (4, ny, nx); 4-page TIFF; HDF5 with "
                    "dataset 'segments'; Velox .emd with DF4-A..D; or 'A.tif,B.tif,C.tif,D.tif'.")
    p.add_argument("segments", metavar="SEGMENTS", help="the acquisition (see above)")
    add_reconstruction_options(p)
    cal = p.add_argument_group("calibration from the data")
    cal.add_argument("--descan-region", type=float, nargs=4, metavar=("X0", "Y0", "X1", "Y1"),
                     help="field-free rectangle (nm, scan frame) to which a descan surface is fitted and removed")
    cal.add_argument("--fit-rotation", action="store_true",
                     help="find the detector rotation (deg) and flip that make the deflection curl-free "
                          "(--flip then fixes the flip; the 180° choice follows the skew of the charge)")
    noise = p.add_argument_group("uncertainty maps (counting statistics)")
    dose = noise.add_mutually_exclusive_group()
    dose.add_argument("--dose", type=number("electrons per probe position", 1.0, 1e15), metavar="E",
                      help="electrons per probe position in the bright-field disc: add uncertainty maps")
    dose.add_argument("--counts-per-electron", type=number("detector counts per electron", 1e-6, 1e6), metavar="X",
                      help="detector counts per electron: add uncertainty maps")
    p.add_argument("--interface", type=SCAN_COORDINATE, nargs=4, metavar=("X1", "Y1", "X2", "Y2"),
                   help="two points on an interface (nm, scan frame): profiles across it and the layer figures")
    p.add_argument("--half-range", type=LENGTH_NM, metavar="NM", help="largest distance from the interface, nm")
    add_output_options(p)
    p.set_defaults(run=run)


def response_from_args(args):
    """'exact', 'linear' or an empirical response read from its file."""
    if args.response in ("exact", "linear"):
        return args.response
    from ..io.response_file import load_response

    return load_response(Path(args.response))


def read_reference(path):
    """The vacuum reference (--reference), checked for usable segment gains; None without one.

    An unusable reference is named as the --reference file, not as the acquisition.
    """
    if path is None:
        return None
    from ..calibration.gains import gains_from_vacuum
    from ..errors import DPCError
    from ..io import read_segments

    try:
        reference = read_segments(path)
        gains_from_vacuum(reference.segments)
    except DPCError as exc:
        raise type(exc)(f"--reference {path}: {exc}") from None
    return reference


def region_mask(rectangle, shape, calibration, option):
    """Boolean mask of a rectangle (x0, y0, x1, y1) in nm on the scan grid."""
    import numpy as np

    from ..errors import InputDataError

    if rectangle is None:
        return None
    x0, y0, x1, y1 = rectangle
    y, x = np.mgrid[0 : shape[0], 0 : shape[1]]
    x = x * calibration.step_x_nm
    y = y * calibration.step_y_nm
    mask = (x >= min(x0, x1)) & (x <= max(x0, x1)) & (y >= min(y0, y1)) & (y <= max(y0, y1))
    if not mask.any():
        raise InputDataError(f"{option} {x0:g} {y0:g} {x1:g} {y1:g} nm holds no pixel of the "
                             f"{shape[1] * calibration.step_x_nm:g} x {shape[0] * calibration.step_y_nm:g} nm scan")
    return mask


def run(args):
    from ..io import read_segments, write_result
    from ..options import ReconstructionOptions
    from ..reconstruct import reconstruct, reconstruct_deflection, segment_deflection

    output = check_output(args.output, args.overwrite, args=args)
    acquisition = read_segments(args.segments, dataset=args.dataset)
    calibration = calibration_from_args(args, acquisition.calibration_values, source=args.segments)
    calibration.require_thickness()
    response = response_from_args(args)
    if hasattr(response, "check"):
        response.check(calibration)
    reference = read_reference(args.reference)
    vacuum = reference.segments if reference else None
    shape = acquisition.segments.shape[1:]
    attrs = {}
    options = ReconstructionOptions(
        response=response, descan_order=args.descan_order, charge_method=args.charge_method, cutoff=args.cutoff,
        potential_method=args.potential_method,
        potential_reference=region_mask(args.potential_reference, shape, calibration, "--potential-reference"))
    if args.fit_rotation:
        from ..calibration.rotation import find_rotation

        raw = calibration.replace(detector_rotation_deg=0.0, flip=False)
        tx, ty, _, ok = segment_deflection(acquisition.segments, raw, options=options)
        fit = find_rotation(tx, ty, raw, valid=ok, flip=True if args.flip else None)
        calibration = fit.calibration(calibration)
        attrs.update(fit.attrs())
        print(f"fitted detector rotation {fit.rotation_deg:.2f}°, flip {fit.flip}: rms curl / rms div "
              f"{fit.curl_ratio:.3f} (other flip {fit.curl_ratio_other_flip:.3f})")
    result = reconstruct(acquisition.segments, calibration, options=options, vacuum=vacuum)
    if args.descan_region is not None:
        from ..calibration.descan import fit_descan

        mask = region_mask(args.descan_region, shape, calibration, "--descan-region")
        fit = fit_descan(result.deflection_x, result.deflection_y, mask=mask & result.valid, order=args.descan_order)
        corrected = reconstruct_deflection(*fit.subtract(result.deflection_x, result.deflection_y), calibration,
                                           valid=result.valid, options=options)
        corrected.extra.update(result.extra)
        corrected.attrs.update(result.attrs)
        corrected.attrs.update(fit.attrs())
        result = corrected
    if args.dose is not None or args.counts_per_electron is not None:
        from ..noise import uncertainty_maps

        result.extra.update(uncertainty_maps(
            acquisition.segments, calibration, options=options, dose=args.dose,
            counts_per_electron=args.counts_per_electron, vacuum=vacuum))
    if hasattr(response, "attrs"):
        attrs.update(response.attrs())
    lines = []
    if args.interface is not None:
        lines, profile_maps = interface_summary(result, args.interface, args.half_range)
        result.extra.update(profile_maps)
    inputs = list(acquisition.paths) + (list(reference.paths) if reference else [])
    write_result(output, result.maps(), {**calibration.to_attrs(), **_plain(result.attrs), **attrs}, inputs=inputs,
                 overwrite=args.overwrite)
    print(summary(result, output))
    for line in lines:
        print(line)
    return 0


def interface_summary(result, points, half_range_nm):
    """Profiles across the interface (written as 1-D datasets) and the layer figures as text lines."""
    from ..interface import Interface, layer_figures, profile_across

    cal = result.calibration
    x1, y1, x2, y2 = points
    interface = Interface((x1, y1), (x2, y2))
    step = (cal.step_x_nm, cal.step_y_nm)
    fp = profile_across(interface.normal_component(result.field_x, result.field_y), interface, step,
                        half_range_nm=half_range_nm, valid=result.valid, units="V/m")
    cp = profile_across(result.charge_density, interface, step, half_range_nm=half_range_nm, valid=result.valid,
                        units="C/m^3")
    f = layer_figures(fp)
    lines = [f"interface from ({x1:g}, {y1:g}) to ({x2:g}, {y2:g}) nm, normal at {interface.normal_deg:.1f}°:",
             f"  peak field {f.peak_field_v_per_m:.4g} ± {f.peak_field_stderr:.2g} V/m at {f.peak_position_nm:.2f} nm",
             f"  layer width {f.width_nm:.3g} ± {f.width_stderr:.2g} nm",
             f"  potential drop {f.potential_drop_v:.4g} ± {f.potential_drop_stderr:.2g} V",
             f"  areal charge {f.areal_charge_c_per_m2:.4g} ± {f.areal_charge_stderr:.2g} C/m^2"]
    maps = {"profile_distance": (fp.distance_nm, "nm"), "profile_field": (fp.mean, "V/m"),
            "profile_field_stderr": (fp.stderr, "V/m"), "profile_charge_density": (cp.mean, "C/m^3"),
            "profile_charge_density_stderr": (cp.stderr, "C/m^3")}
    return lines, maps


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
