"""Options and checks shared by the subcommands."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from ..errors import CalibrationError
from ..workflows import OPTION_NAMES  # noqa: F401 (the subcommands spell their messages with it)


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


def write_outcome(outcome, output: Path, overwrite: bool) -> int:
    """Write a workflow's result file, print what it did, and give the exit status."""
    from ..io import write_result

    write_result(output, outcome.result.maps(), outcome.attrs, inputs=outcome.inputs, overwrite=overwrite)
    for line in outcome.lines:
        print(line)
    print(f"wrote {output}")
    return 0


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
                       help="detector inner and outer collection semi-angles in mrad (needed where the file does "
                            "not record them; '0 inf' for a detector with no hole and no outer edge)")
    add_rotation_options(g, detector)


def add_rotation_options(group, detector=True):
    """The detector's orientation against the scan, given or fitted (every command that has a detector frame)."""
    axis = "segment A" if detector else "the detector's +kx (column) axis"
    group.add_argument("--detector-rotation", type=float, metavar="DEG",
                       help=f"azimuth ψ of {axis} in degrees, from scan +x toward +y (default: the file's, else 0, "
                            "printed with the curl it leaves)")
    group.add_argument("--flip", action=argparse.BooleanOptionalAction, default=None,
                       help="the detector's y axis is (or, --no-flip, is not) mirrored against the scan "
                            "(B at ψ−90°); --no-flip turns off a flip the file records")
    group.add_argument("--fit-rotation", action="store_true",
                       help="find the detector rotation (deg) and flip that make the deflection curl-free "
                            "(--flip/--no-flip then fix the flip)")
    group.add_argument("--charge-sign-region", nargs=5, metavar=("X0", "Y0", "X1", "Y1", "SIGN"),
                       help="with --fit-rotation: a rectangle (nm, scan frame) where the charge density is known to "
                            "be positive (+) or negative (-), which settles the 180° branch (default: the skew of "
                            "the charge, warned as a guess)")


def user_calibration(args) -> dict:
    """Calibration field → value for every calibration option the user gave."""
    from ..io import read_thickness_map

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
    if getattr(args, "flip", None) is not None:
        user["flip"] = bool(args.flip)
    return user


def _check_cutoff(args):
    """--cutoff of the commands that reconstruct: checked here, where each of them passes before any work."""
    cutoff = getattr(args, "cutoff", None)
    if cutoff is not None and not (math.isfinite(cutoff) and cutoff > 0):
        raise CalibrationError(f"--cutoff must be a positive number of cycles/nm (the low-pass cutoff of the "
                               f"spectral divergence), got {cutoff!r}")


def add_descan_options(group):
    """Where the descan comes from (one meaning on every command)."""
    group.add_argument("--descan-region", type=float, nargs=4, metavar=("X0", "Y0", "X1", "Y1"),
                       help="field-free rectangle (nm, scan frame) to which a descan surface is fitted and removed "
                            "(default: no descan removed, printed)")
    group.add_argument("--descan-order", type=int, choices=(1, 2), default=2,
                       help="plane (1) or quadratic (2) descan fitted to the --reference vacuum scan or the "
                            "--descan-region (default: 2)")


def add_field_options(group):
    """How the charge density and potential are computed from the field (shared by every reconstruction)."""
    group.add_argument("--charge-method", choices=("finite-difference", "spectral"), default="finite-difference",
                       help="divergence for the charge density (default: finite-difference)")
    group.add_argument("--cutoff", type=float, metavar="PER_NM",
                       help="low-pass cutoff of the spectral divergence in cycles/nm")
    group.add_argument("--potential-method", choices=("mirror", "dct"), default="mirror",
                       help="boundary treatment of the iDPC integration (default: mirror)")
