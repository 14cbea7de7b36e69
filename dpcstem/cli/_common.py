"""Options and checks shared by the subcommands."""

from __future__ import annotations

import argparse
import math
import re
import warnings
from pathlib import Path

from ..calibration import Calibration
from ..errors import CalibrationError


def add_output_options(parser: argparse.ArgumentParser, *, required=True, help="result file (HDF5) to write"):
    parser.add_argument("-o", "--output", required=required, type=Path, metavar="OUT.h5", help=help)
    parser.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")


def check_output(path: Path, overwrite: bool, *, args=None, suffixes=None, what="result") -> Path:
    """Everything about the output that can be known before any work (:func:`dpcstem.io.check_destination`).

    With ``args``, every input the command was given (:func:`input_arguments`) is one the
    output may not be. ``suffixes`` are those of the format written (default: HDF5's).
    """
    from ..io.output import HDF5_SUFFIXES, check_destination

    inputs = input_arguments(args) if args is not None else ()
    return check_destination(path, overwrite=overwrite, inputs=inputs, suffixes=suffixes or HDF5_SUFFIXES,
                             what=what)


#: The arguments of the subcommands that name input files.
INPUT_ARGUMENTS = ("segments", "files", "data", "spectrum", "reference", "thickness_map", "response")


def input_arguments(args) -> list:
    """The files a command reads, from its parsed arguments (``--response exact`` names none)."""
    found = []
    for name in INPUT_ARGUMENTS:
        value = getattr(args, name, None)
        if value is None or (name == "response" and value in ("exact", "linear")):
            continue
        found += list(value) if isinstance(value, list) else [value]
    return found


def number(what, low, high, *, above=False):
    """An argparse type: a finite number from ``low`` (excluded with ``above``) to ``high``.

    A value outside is refused by the parser (one line, exit 2) before any work, naming what
    the option means: a NaN map, an overflow or a day-long loop is never the answer.
    """
    def parse(text):
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not (math.isfinite(value) and (value > low if above else value >= low) and value <= high):
            bound = f"above {low:g}" if above else f"at least {low:g}"
            raise argparse.ArgumentTypeError(f"expected {what}, {bound} and at most {high:g}, got {text}")
        return value
    return parse


#: Interface points, half-ranges (nm): within a millimetre of the scan origin, far beyond any scan.
SCAN_COORDINATE = number("a position in nm", -1e6, 1e6)
LENGTH_NM = number("a length in nm", 0.0, 1e6, above=True)


def add_calibration_options(parser: argparse.ArgumentParser, *, detector=True):
    """The calibration options of DESIGN.md §4 (every one with its unit)."""
    g = parser.add_argument_group("calibration (values given here override those read from the file)")
    g.add_argument("--kv", type=float, metavar="KV", help="accelerating voltage in kV")
    g.add_argument("--alpha", type=float, metavar="MRAD", help="convergence semi-angle α in mrad")
    g.add_argument("--step", type=float, nargs="+", metavar="NM",
                   help="scan step in nm along x, then along y when it differs")
    g.add_argument("--thickness", type=float, metavar="NM", help="specimen thickness in nm")
    g.add_argument("--thickness-map", type=Path, metavar="FILE",
                   help="specimen thickness map in nm (.npy, .tif or HDF5 dataset 'thickness'), shape (ny, nx)")
    g.add_argument("--eps-r", type=float, metavar="X",
                   help="relative permittivity εr (dimensionless); adds the free charge ε0·εr·∇·E")
    if detector:
        g.add_argument("--collection", type=float, nargs=2, metavar=("INNER", "OUTER"),
                       help="detector inner and outer collection semi-angles in mrad")
        g.add_argument("--detector-rotation", type=float, metavar="DEG",
                       help="azimuth ψ of segment A in degrees, from scan +x toward +y")
        g.add_argument("--flip", action="store_true", default=None,
                       help="the detector's y axis is mirrored against the scan (B at ψ−90°)")


#: The option that sets each calibration field, for messages.
FIELD_OPTIONS = {
    "kv": "--kv",
    "alpha_mrad": "--alpha",
    "step_x_nm": "--step",
    "step_y_nm": "--step",
    "thickness_nm": "--thickness",
    "eps_r": "--eps-r",
    "collection_inner_mrad": "--collection",
    "collection_outer_mrad": "--collection",
    "detector_rotation_deg": "--detector-rotation",
    "flip": "--flip",
}


def calibration_from_args(args, file_values: dict | None = None, *, alpha_default=None, source=None) -> Calibration:
    """Merge what the file says with what the user gave; the user's value wins, with a warning.

    A value the calibration refuses is named with the option that gave it, or with the file
    (``source``) that recorded it and the option that overrides it.
    """
    from ..io import read_thickness_map

    file_values = dict(file_values or {})
    _check_cutoff(args)
    user = {}
    if args.kv is not None:
        user["kv"] = args.kv
    if getattr(args, "alpha", None) is not None:
        user["alpha_mrad"] = args.alpha
    if args.step is not None:
        if len(args.step) > 2:
            raise CalibrationError(f"--step takes one or two values (x then y) in nm, got {len(args.step)}")
        user["step_x_nm"] = args.step[0]
        user["step_y_nm"] = args.step[-1]
    if args.thickness is not None and args.thickness_map is not None:
        raise CalibrationError("give --thickness or --thickness-map, not both")
    if args.thickness is not None:
        user["thickness_nm"] = args.thickness
    if args.thickness_map is not None:
        user["thickness_nm"] = read_thickness_map(args.thickness_map)
    if args.eps_r is not None:
        user["eps_r"] = args.eps_r
    if getattr(args, "collection", None) is not None:
        user["collection_inner_mrad"], user["collection_outer_mrad"] = args.collection
    if getattr(args, "detector_rotation", None) is not None:
        user["detector_rotation_deg"] = args.detector_rotation
    if getattr(args, "flip", None):
        user["flip"] = True
    for name, value in user.items():
        if name in file_values and file_values[name] is not None and not _same(file_values[name], value):
            warnings.warn(f"{name}: the file says {_shown(file_values[name])}, using the given {_shown(value)}",
                          stacklevel=2)
    values = {**file_values, **user}
    if alpha_default is not None:
        values.setdefault("alpha_mrad", alpha_default)
    sources = {k: ("user" if k in user else "file") for k in values}
    for name, option in (("kv", "--kv"), ("alpha_mrad", "--alpha"), ("step_x_nm", "--step")):
        if values.get(name) is None:
            raise CalibrationError(f"{option} is needed: the input file does not record {name}")
    try:
        return Calibration(**values, sources=sources)
    except CalibrationError as exc:
        raise CalibrationError(_where(str(exc), user, file_values, alpha_default, source)) from None


def _check_cutoff(args):
    """--cutoff of the commands that reconstruct: checked here, where each of them passes before any work."""
    cutoff = getattr(args, "cutoff", None)
    if cutoff is not None and not (math.isfinite(cutoff) and cutoff > 0):
        raise CalibrationError(f"--cutoff must be a positive number of cycles/nm (the low-pass cutoff of the "
                               f"spectral divergence), got {cutoff!r}")


def _where(message, user, file_values, alpha_default, source):
    """The message of a refused calibration, prefixed with the options or the file behind it."""
    named = [name for name in FIELD_OPTIONS if re.search(rf"\b{name}\b", message)]
    given = sorted({FIELD_OPTIONS[n] for n in named if n in user}, key=list(FIELD_OPTIONS.values()).index)
    recorded = [n for n in named if n not in user and n in file_values]
    measured = [n for n in named if n == "alpha_mrad" and n not in user and n not in file_values
                and alpha_default is not None]
    parts = []
    if given:
        parts.append(" and ".join(given))
    if recorded:
        what = ", ".join(f"{n} = {file_values[n]!r}" for n in recorded)
        options = " or ".join(sorted({FIELD_OPTIONS[n] for n in recorded}))
        parts.append(f"{source or 'the input file'} records {what} (give {options} to override it)")
    if measured:
        parts.append(f"alpha measured from the data as {alpha_default:.4g} mrad (give --alpha to override it)")
    return f"{'; '.join(parts)}: {message}" if parts else message


def _shown(value) -> str:
    """A value for a one-line message: a map by its shape and range, never element by element."""
    import numpy as np

    if np.ndim(value) > 0:
        arr = np.asarray(value, dtype=float)
        return f"a {' x '.join(map(str, arr.shape))} map ({np.nanmin(arr):.4g} to {np.nanmax(arr):.4g})"
    return repr(value)


def _same(a, b):
    try:
        return abs(float(a) - float(b)) <= 1e-9 * max(abs(float(a)), abs(float(b)), 1.0)
    except (TypeError, ValueError):
        return a is b


def add_field_options(group):
    """How the charge density and potential are computed from the field (shared by every reconstruction)."""
    group.add_argument("--charge-method", choices=("finite-difference", "spectral"), default="finite-difference",
                       help="divergence for the charge density (default: finite-difference)")
    group.add_argument("--cutoff", type=float, metavar="PER_NM",
                       help="low-pass cutoff of the spectral divergence in cycles/nm")
    group.add_argument("--potential-method", choices=("mirror", "dct"), default="mirror",
                       help="boundary treatment of the iDPC integration (default: mirror)")
