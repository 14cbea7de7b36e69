"""``dpcstem calibrate-response``: a beam-tilt series → an empirical response file (.npz)."""

from __future__ import annotations

from pathlib import Path


def add_parser(subparsers):
    p = subparsers.add_parser(
        "calibrate-response", help="beam-tilt series → empirical detector response file (.npz) for --response",
        description="Fit the detector response (difference signals against known beam tilt, Brown et al. 2017) "
                    "from a beam-tilt series and write it as a .npz file that 'dpcstem reconstruct --response "
                    "FILE.npz' uses instead of the geometric model, or, from 4D-STEM frames, the centre-of-mass "
                    "response that 'dpcstem com --response FILE.npz' applies. TILTSERIES: HDF5 with datasets "
                    "'segments' (4, n) (A, B, C, D at each tilt) or 'frames' (n, ky, kx) (the pattern at each "
                    "tilt, one at zero tilt: its centre of mass is the undeflected centre), 'tilt_x_mrad' and "
                    "'tilt_y_mrad' (n,) (the beam tilts in mrad, scan frame). Record it through a field-free "
                    "region of the specimen, at the thickness of the acquisition, not in vacuum: a thick specimen "
                    "blurs the disc edge, which changes the response.")
    p.add_argument("tilt_series", type=Path, metavar="TILTSERIES", help="the beam-tilt series (HDF5, see above)")
    g = p.add_argument_group("calibration (values given here override those read from the file)")
    g.add_argument("--kv", type=float, metavar="KV", help="accelerating voltage in kV")
    g.add_argument("--alpha", type=float, metavar="MRAD",
                   help="convergence semi-angle α in mrad (the acquisition must use the same)")
    g.add_argument("--detector-rotation", type=float, metavar="DEG",
                   help="azimuth ψ of segment A in degrees, from scan +x toward +y (default: the file's, else 0)")
    g.add_argument("--flip", action="store_true", default=None,
                   help="the detector's y axis is mirrored against the scan (B at ψ−90°)")
    g.add_argument("--mrad-per-px", type=float, metavar="X",
                   help="frames: angular size of one camera pixel in mrad (default: the file's)")
    g.add_argument("--smoothing", type=float, default=0.0, metavar="X",
                   help="thin-plate-spline smoothing (dimensionless, ≥ 0; default 0: through every tilt)")
    p.add_argument("-o", "--output", required=True, type=Path, metavar="RESPONSE.npz",
                   help="empirical response file to write (.npz)")
    p.add_argument("--overwrite", action="store_true", help="replace the output if it exists")
    p.set_defaults(run=run)


def run(args):
    from ..calibration import Calibration
    from ..errors import CalibrationError
    from ..io.response_file import read_tilt_series, save_response
    from ..io.output import check_destination
    from ..response.empirical import fit_response
    from ..response.geometry import difference_signals

    output = check_destination(args.output, overwrite=args.overwrite, inputs=(args.tilt_series,), suffixes=(".npz",),
                               what="response")
    series = read_tilt_series(args.tilt_series)
    values = dict(series["calibration_values"])
    defaults = []
    for name, option, given in (("kv", "--kv", args.kv), ("alpha_mrad", "--alpha", args.alpha),
                                ("detector_rotation_deg", "--detector-rotation", args.detector_rotation)):
        if given is not None:
            values[name] = given
        elif name not in values:
            if name == "detector_rotation_deg":
                values[name] = 0.0
                defaults.append("detector rotation 0° (default; --detector-rotation sets it)")
            else:
                raise CalibrationError(f"{option} is needed: {args.tilt_series} does not record {name}")
    if args.flip:
        values["flip"] = True
    elif "flip" not in values:
        values["flip"] = False
        defaults.append("no flip (default; --flip sets it)")
    calibration = Calibration(kv=values["kv"], alpha_mrad=values["alpha_mrad"], step_x_nm=1.0,
                              detector_rotation_deg=values["detector_rotation_deg"], flip=values["flip"])
    if series["frames"] is None:
        d_a, d_b, _ = difference_signals(series["segments"])
        response = fit_response(series["tilt_x_mrad"], series["tilt_y_mrad"], d_a, d_b, calibration=calibration,
                                smoothing=args.smoothing)
        command = "reconstruct"
    else:
        response = _com_response(args, series, values, calibration)
        command = "com"
    save_response(output, response, overwrite=args.overwrite)
    for line in defaults:
        print(f"using {line}")
    reach = max(abs(series["tilt_x_mrad"]).max(), abs(series["tilt_y_mrad"]).max())
    print(f"fitted the response to {len(response.tilt_u)} tilts (up to {reach:.3g} mrad) at alpha = "
          f"{calibration.alpha_mrad:g} mrad, "
          f"detector rotation {calibration.detector_rotation_deg:g}°{', flipped' if calibration.flip else ''}; "
          f"wrote {output} (use: dpcstem {command} ... --alpha {calibration.alpha_mrad:g} --response {output})")
    return 0


def _com_response(args, series, values, calibration):
    """The centre-of-mass response of a 4D tilt series: each frame's centre of mass against its tilt,
    from the centre of mass of the frame at zero tilt."""
    import numpy as np

    from ..errors import CalibrationError, InputDataError
    from ..fourd.engine import centre_of_mass
    from ..fourd.response import fit_com_response

    scale = args.mrad_per_px if args.mrad_per_px is not None else values.get("mrad_per_px")
    if scale is None:
        raise CalibrationError(f"--mrad-per-px is needed: {args.tilt_series} does not record mrad_per_px")
    tx, ty = series["tilt_x_mrad"], series["tilt_y_mrad"]
    zero = np.flatnonzero((tx == 0) & (ty == 0))
    if zero.size == 0:
        raise InputDataError(f"{args.tilt_series}: no frame at zero tilt: its centre of mass is the undeflected "
                             "centre the response is measured from")
    frames = series["frames"]
    sums = centre_of_mass(frames[None], mask=None)
    cx, cy = sums.com_x[0], sums.com_y[0]
    if not (np.isfinite(cx).all() and np.isfinite(cy).all()):
        raise InputDataError(f"{args.tilt_series}: a frame holds no counts (its centre of mass is undefined)")
    return fit_com_response(tx, ty, cx, cy, calibration, mrad_per_px=scale,
                            centre_px=(cx[zero[0]], cy[zero[0]]), smoothing=args.smoothing)
