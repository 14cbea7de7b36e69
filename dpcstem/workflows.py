"""What each command does, as one call that Python users, notebooks and the CLI share.

:func:`reconstruct_acquisition` is ``dpcstem reconstruct``, :func:`com_acquisition` is
``dpcstem com``: each reads its inputs, settles every calibration value with its source
(``file``, ``user``, ``default``, ``measured``, ``fitted``), refuses what cannot be right,
warns (one line: the quantity, how far off, the option) where a default may be wrong, runs
the reconstruction with each acquisition passing through the segment kernel once, and
returns an :class:`Outcome`: the result, the root attributes that record where every
number came from, the lines to print and the files read. The CLI only parses its options,
calls one of these and prints (DESIGN.md §0, §1).

Every default that can change a number is in :data:`DEFAULTS`, the one table that
``docs/defaults.md`` is generated from (:func:`defaults_markdown`).

Messages name what the caller typed: ``names`` maps each input to its spelling
(:data:`PYTHON_NAMES` here, the option names on the command line).
"""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .calibration import Calibration
from .errors import CalibrationError, InputDataError

#: Largest field a result may hold without a warning, V/m (breakdown fields of solids are
#: below 1e10 V/m; 1e11 V/m is an atomic-scale field averaged over a whole column).
FIELD_LIMIT_V_PER_M = 1e11


#: Pixels the curl and divergence must be measured on before an assumed rotation is warned
#: against (on fewer, the best rotation's curl is noise).
ROTATION_WARNING_PIXELS = 64


@dataclass(frozen=True)
class Default:
    """One default that can change a number: what is assumed, how the user is told, how to override it."""

    quantity: str
    commands: str
    assumed: str
    told: str
    override: str


#: Every default that can change a number, for every command (the source of docs/defaults.md).
DEFAULTS = (
    Default("detector collection angles", "reconstruct, bias-series",
            "none: required wherever the file does not record them (a file that records only the inner angle "
            "gets no outer edge)",
            "refused (exit 2) naming --collection; an assumed outer edge is printed; "
            "collection_*_source stored",
            "--collection INNER OUTER (mrad); --collection 0 inf for no hole and no outer edge"),
    Default("detector rotation ψ", "reconstruct, bias-series, com",
            "0° (segment A, or the camera's +kx, along scan +x) when the file records none",
            "printed as assumed with the rms curl/div of the result and that of the best rotation; a warning "
            "when the best rotation leaves far less curl; detector_rotation_deg_source = default",
            "--detector-rotation DEG, or --fit-rotation"),
    Default("detector flip", "reconstruct, bias-series, com",
            "no flip when the file records none",
            "printed as assumed; flip_source = default", "--flip / --no-flip, or --fit-rotation"),
    Default("180° branch of a fitted rotation", "reconstruct, com",
            "the branch whose charge density has a positive skew (compact positive charges)",
            "a warning with the skew and its significance; rotation_fit_polarity = skew",
            "--charge-sign-region X0 Y0 X1 Y1 {+,-}"),
    Default("descan", "reconstruct, bias-series, com",
            "none removed (segments: the detector centre is the undeflected beam; 4D: the median centre of "
            "mass over the scan, one constant, is the undeflected pattern centre)",
            "printed; com: a warning with its size in V/m where a robust plane across the scan stands out; "
            "descan_source = none",
            "--reference VACUUM (same scan and optics) or --descan-region X0 Y0 X1 Y1 (field-free, nm)"),
    Default("segment dark offsets", "reconstruct, bias-series",
            "0 counts in every segment (no black level)",
            "printed; offsets_source = default", "--offsets A B C D (counts) or --dark FILE (beam blanked)"),
    Default("segment gains", "reconstruct, bias-series",
            "equal gains (1, 1, 1, 1)", "printed; gains_source = default", "--reference VACUUM"),
    Default("detector response", "reconstruct, bias-series",
            "exact geometric response of a rigid uniform disc", "stored as response",
            "--response linear or an empirical response file"),
    Default("convergence semi-angle α (4D)", "com",
            "the bright-field disc radius measured on the first frames times --mrad-per-px",
            "alpha_mrad_source = measured", "--alpha MRAD"),
    Default("charge density divergence", "reconstruct, bias-series, com",
            "finite differences", "stored as charge_method", "--charge-method spectral [--cutoff PER_NM]"),
    Default("potential zero", "reconstruct, bias-series, com",
            "the mean over the valid pixels is zero", "stored", "--potential-reference X0 Y0 X1 Y1"),
    Default("potential boundary", "reconstruct, bias-series, com",
            "mirror extension", "stored as potential_method", "--potential-method dct"),
    Default("reference bias", "bias-series", "0 V", "printed", "--reference-bias V, --reference-index K"),
    Default("registration", "bias-series",
            "measured on the simultaneous ADF image, else the segment sum without the interface band",
            "printed per acquisition with its evidence; a warning when the evidence is weak",
            "--shift DY DX, --registration-image, --registration-exclude, --no-register"),
    Default("profile half-range", "reconstruct, bias-series, com",
            "reconstruct, com: the scan; bias-series: where the net field returns to noise, times 1.5",
            "printed; half_range_source stored", "--half-range NM"),
)


def defaults_markdown() -> str:
    """docs/defaults.md: :data:`DEFAULTS` as a Markdown table (a test keeps the file equal to it)."""
    lines = ["# Defaults that change a number", "",
             "Generated from `dpcstem.workflows.DEFAULTS` (a test checks this file against it). Every value a "
             "result depends on is stored in the result file with its source (`*_source`: `file`, `user`, "
             "`default`, `measured` or `fitted`); each default below is printed when it is used.", "",
             "Values outside physics are refused, naming the likely unit slip "
             "(`dpcstem.calibration.core.BOUNDS`): " + "; ".join(
                 f"{name} {low:g} to {high:g}" for name, (low, high, _) in _bounds().items())
             + f". A result with a field above {FIELD_LIMIT_V_PER_M:g} V/m is warned.", "",
             "| quantity | commands | assumed | how you are told | how to set it |",
             "|---|---|---|---|---|"]
    for d in DEFAULTS:
        lines.append(f"| {d.quantity} | {d.commands} | {d.assumed} | {d.told} | {d.override} |")
    return "\n".join(lines) + "\n"


def _bounds():
    from .calibration.core import BOUNDS

    return {k: v for k, v in BOUNDS.items() if k != "step_y_nm"}


#: How each input is spelt in messages to a Python caller (the CLI passes its option names).
PYTHON_NAMES = {
    "kv": "kv", "alpha_mrad": "alpha_mrad", "step": "step_nm", "thickness": "thickness_nm",
    "thickness_map": "thickness_nm (a map)", "eps_r": "eps_r", "collection": "collection_mrad",
    "collection_form": "collection_mrad=(inner, outer)",
    "collection_none": "collection_mrad=(0, inf)", "detector_rotation": "detector_rotation_deg",
    "flip": "flip=True", "no_flip": "flip=False", "fit_rotation": "fit_rotation=True",
    "charge_sign_region": "charge_sign_region=(x0, y0, x1, y1, sign)", "reference": "reference",
    "descan_region": "descan_region", "offsets": "offsets", "dark": "dark", "mrad_per_px": "mrad_per_px",
    "camera_length": "camera_length_mm", "detector_pixel": "detector_pixel_um",
    "potential_reference": "potential_reference",
}

#: Calibration field → key of ``names``.
FIELD_KEYS = {"kv": "kv", "alpha_mrad": "alpha_mrad", "step_x_nm": "step", "step_y_nm": "step",
              "thickness_nm": "thickness", "eps_r": "eps_r", "collection_inner_mrad": "collection",
              "collection_outer_mrad": "collection", "detector_rotation_deg": "detector_rotation", "flip": "flip"}


@dataclass
class Outcome:
    """What a command produced: the result, its provenance, what to print, what was read.

    Attributes
    ----------
    result : DPCResult
    attrs : dict
        Root attributes for the result file: the calibration with a ``*_source`` per value,
        the options, descan, offsets, gains and rotation fit.
    lines : list of str
        What the command prints, in order.
    inputs : list of Path
        The files read (their SHA-256 goes into the result file).
    """

    result: object
    attrs: dict = field(default_factory=dict)
    lines: list = field(default_factory=list)
    inputs: list = field(default_factory=list)


# -- calibration: file + user + defaults, each with its source -------------------------------

def merge_calibration(file_values: dict | None, user: dict, *, source=None, names=None, alpha_measured=None,
                      geometry=True) -> Calibration:
    """The :class:`Calibration` from what the file records and what the user gave (the user wins, warned).

    Parameters
    ----------
    file_values : dict
        Calibration field → value the file records.
    user : dict
        Calibration field → value the user gave. ``collection_outer_mrad`` may be ``inf``
        (no outer edge).
    source : str or Path, optional
        The file, for messages.
    names : dict, optional
        How each input is spelt in messages (default :data:`PYTHON_NAMES`).
    alpha_measured : float, optional
        α measured on the data (the 4D disc), used where neither file nor user gives it.
    geometry : bool
        Whether the detector's collection angles matter (segments): then a geometry that
        neither the file records nor the user gives is refused.
    """
    names = {**PYTHON_NAMES, **(names or {})}
    file_values = {k: v for k, v in (file_values or {}).items() if v is not None}
    user = {k: v for k, v in user.items() if v is not None}
    if user.get("flip") is False and file_values.get("flip"):
        pass  # the user's --no-flip turns off a recorded flip (warned below like any other override)
    for name, value in user.items():
        if name in file_values and not _same(file_values[name], value):
            warnings.warn(f"{name}: {source or 'the file'} says {_shown(file_values[name])}, using the given "
                          f"{_shown(value)}", stacklevel=3)
    values = {**file_values, **user}
    sources = {k: ("user" if k in user else "file") for k in values}
    if alpha_measured is not None and "alpha_mrad" not in values:
        values["alpha_mrad"], sources["alpha_mrad"] = alpha_measured, "measured"
    for name in ("kv", "alpha_mrad", "step_x_nm"):
        if values.get(name) is None:
            raise CalibrationError(f"{names[FIELD_KEYS[name]]} is needed: {source or 'the input file'} does not "
                                   f"record {name}")
    inner, outer = "collection_inner_mrad", "collection_outer_mrad"
    missing_geometry = geometry and inner not in values and outer not in values
    if geometry:
        for name in (inner, outer):
            sources.setdefault(name, "default")
    try:
        calibration = Calibration(**values, sources=sources)
    except CalibrationError as exc:
        raise CalibrationError(_where(str(exc), user, file_values, source, names, alpha_measured)) from None
    if missing_geometry:
        raise CalibrationError(
            f"{names['collection_form']} is needed: {source or 'the input'} does not record the detector's collection "
            f"angles, and an assumed geometry changes the field by up to 50 % (give the inner and outer "
            f"semi-angles in mrad, or {names['collection_none']} for no hole and no outer edge)")
    return calibration


def _where(message, user, file_values, source, names, alpha_measured=None):
    """A refused calibration's message, prefixed with what gave the value (an option, the file, a measurement)."""
    named = [name for name in FIELD_KEYS if re.search(rf"\b{name}\b", message)]
    given = list(dict.fromkeys(names[FIELD_KEYS[n]] for n in named if n in user))
    recorded = [n for n in named if n not in user and n in file_values]
    parts = []
    if given:
        parts.append(" and ".join(given))
    if recorded:
        what = ", ".join(f"{n} = {file_values[n]!r}" for n in recorded)
        options = " or ".join(dict.fromkeys(names[FIELD_KEYS[n]] for n in recorded))
        parts.append(f"{source or 'the input file'} records {what} (give {options} to override it)")
    if not parts and "alpha_mrad" in named and alpha_measured is not None:
        parts.append(f"alpha measured from the data as {alpha_measured:.4g} mrad (give {names['alpha_mrad']} to "
                     "override it)")
    return f"{'; '.join(parts)}: {message}" if parts else message


def _shown(value) -> str:
    """A value for a one-line message: a map by its shape and range, never element by element."""
    if np.ndim(value) > 0:
        arr = np.asarray(value, dtype=float)
        return f"a {' x '.join(map(str, arr.shape))} map ({np.nanmin(arr):.4g} to {np.nanmax(arr):.4g})"
    return repr(value)


def _same(a, b):
    if np.ndim(a) > 0 or np.ndim(b) > 0:
        return np.shape(a) == np.shape(b) and np.allclose(a, b, rtol=1e-9)
    try:
        fa, fb = float(a), float(b)
    except (TypeError, ValueError):
        return a is b
    if math.isinf(fa) or math.isinf(fb):
        return fa == fb
    return abs(fa - fb) <= 1e-9 * max(abs(fa), abs(fb), 1.0)


def describe_calibration(calibration: Calibration, *, rotation=False) -> list:
    """Lines naming each calibration value the program assumed or measured (never silent).

    With ``rotation``, an assumed detector rotation and flip too (the commands that measure
    the curl they leave print that themselves).
    """
    assumed = []
    s = calibration.sources
    if rotation and (s.get("detector_rotation_deg") == "default" or s.get("flip") == "default"):
        assumed.append(f"detector rotation {calibration.detector_rotation_deg:g}°, flip "
                       f"{'on' if calibration.flip else 'off'} (assumed where the file is silent; "
                       "--detector-rotation and --flip/--no-flip set them)")
    if s.get("collection_inner_mrad") == "default" or s.get("collection_outer_mrad") == "default":
        outer = "no outer edge" if calibration.collection_outer_mrad is None else \
            f"{calibration.collection_outer_mrad:g} mrad"
        assumed.append(f"collection angles {calibration.collection_inner_mrad:g} mrad to {outer} "
                       "(assumed where the file is silent; --collection sets them)")
    if s.get("alpha_mrad") == "measured":
        assumed.append(f"alpha {calibration.alpha_mrad:.4g} mrad (measured: the bright-field disc radius; "
                       "--alpha sets it)")
    return assumed


# -- small pieces shared by the commands ------------------------------------------------------

def region_mask(rectangle, shape, calibration, name):
    """Boolean mask of a rectangle (x0, y0, x1, y1) in nm, scan frame; None for None."""
    if rectangle is None:
        return None
    x0, y0, x1, y1 = (float(v) for v in rectangle)
    y, x = np.mgrid[0 : shape[0], 0 : shape[1]]
    x = x * calibration.step_x_nm
    y = y * calibration.step_y_nm
    mask = (x >= min(x0, x1)) & (x <= max(x0, x1)) & (y >= min(y0, y1)) & (y <= max(y0, y1))
    if not mask.any():
        raise InputDataError(f"{name} {x0:g} {y0:g} {x1:g} {y1:g} nm holds no pixel of the "
                             f"{shape[1] * calibration.step_x_nm:g} x {shape[0] * calibration.step_y_nm:g} nm scan")
    return mask


def charge_sign(rectangle_and_sign, shape, calibration, name):
    """(mask, ±1) from (x0, y0, x1, y1, sign), sign '+', '-', +1 or -1; (None, None) for None."""
    if rectangle_and_sign is None:
        return None, None
    *rectangle, sign = rectangle_and_sign
    signs = {"+": 1, "-": -1, "+1": 1, "-1": -1, 1: 1, -1: -1, 1.0: 1, -1.0: -1}
    if len(rectangle) != 4 or sign not in signs:
        raise InputDataError(f"{name} takes a rectangle X0 Y0 X1 Y1 in nm and the sign of the charge inside it, "
                             f"+ or -, got {rectangle_and_sign!r}")
    return region_mask(rectangle, shape, calibration, name), signs[sign]


def response_from_name(response):
    """'exact', 'linear', an empirical response object, or the path of an empirical response file."""
    if isinstance(response, str) and response in ("exact", "linear"):
        return response
    if isinstance(response, (str, Path)):
        from .io.response_file import load_response

        return load_response(Path(response))
    return response


def segment_offsets(offsets, dark, *, names, shape=None):
    """Dark offsets (4,) and their source: the user's numbers, a beam-blanked scan's means, or 0 (default)."""
    from . import _validate

    if offsets is not None and dark is not None:
        raise CalibrationError(f"give {names['offsets']} or {names['dark']}, not both")
    if offsets is not None:
        return _validate.four(names["offsets"], offsets), "user", []
    if dark is None:
        return None, "default", []
    from .io import read_segments

    try:
        blank = read_segments(dark)
    except Exception as exc:  # noqa: BLE001 (re-raised with the option named)
        from .errors import DPCError

        if isinstance(exc, DPCError):
            raise type(exc)(f"{names['dark']} {dark}: {exc}") from None
        raise
    seg = np.asarray(blank.segments, dtype=np.float64)
    if shape is not None and seg.shape[1:] != tuple(shape) and seg.shape[1] * seg.shape[2] < 4:
        raise InputDataError(f"{names['dark']} {dark}: too few pixels for a black level")
    means = np.nanmean(seg.reshape(4, -1), axis=1)
    if not np.all(np.isfinite(means)):
        raise InputDataError(f"{names['dark']} {dark}: a segment holds no finite count")
    return means, "dark", list(blank.paths)


def check_reference(reference, calibration: Calibration, shape, *, names):
    """A vacuum reference recorded with other optics, geometry or scan is refused, naming the mismatch."""
    label = f"{names['reference']} {reference.metadata.get('path', '')}".strip()
    if reference.segments.shape[1:] != tuple(shape):
        ry, rx = reference.segments.shape[1:]
        raise InputDataError(f"{label}: the vacuum scan is {ry} x {rx}, the data {shape[0]} x {shape[1]}: a descan is "
                             "never extrapolated to another scan; record the vacuum with the same scan")
    recorded = reference.calibration_values
    for name in ("kv", "alpha_mrad", "collection_inner_mrad", "collection_outer_mrad", "step_x_nm", "step_y_nm"):
        theirs, ours = recorded.get(name), getattr(calibration, name)
        if theirs is None:
            continue
        ours = math.inf if ours is None else ours
        if not _same(theirs, ours):
            raise CalibrationError(f"{label}: the vacuum scan records {name} {theirs!r}, the data {ours!r}: a "
                                   "reference must be recorded with the same optics, detector and scan")


def _rotation_lines(tx, ty, calibration, valid, *, names):
    """Lines and warnings for a rotation and flip nobody gave: the curl they leave, and the best one's."""
    from .calibration.rotation import curl_ratio, find_rotation

    s = calibration.sources
    if s.get("detector_rotation_deg") != "default" and s.get("flip") != "default":
        return [], {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            assumed = curl_ratio(tx, ty, calibration, valid=valid)
            best = find_rotation(tx, ty, calibration, valid=valid,
                                 flip=None if s.get("flip") == "default" else calibration.flip)
        except InputDataError:  # a uniform deflection, too few pixels: nothing to judge it by
            assumed, best = math.nan, None
    what = []
    if s.get("detector_rotation_deg") == "default":
        what.append(f"detector rotation {calibration.detector_rotation_deg:g}°")
    if s.get("flip") == "default":
        what.append(f"flip {'on' if calibration.flip else 'off'}")
    line = f"assumed {' and '.join(what)} (the file records none): rms curl/div of the result {assumed:.3g}"
    attrs = {"rotation_curl_ratio": assumed}
    if best is not None:
        line += f"; the best rotation ({best.rotation_deg:.1f}°, flip {best.flip}) would leave {best.curl_ratio:.3g}"
        attrs["rotation_best_curl_ratio"] = best.curl_ratio
        if assumed > 3 * best.curl_ratio + 0.05 and best.n_pixels >= ROTATION_WARNING_PIXELS:
            warnings.warn(f"detector rotation: the assumed {calibration.detector_rotation_deg:g}° leaves a curl of "
                          f"{assumed:.2g} x the divergence where {best.rotation_deg:.1f}° leaves {best.curl_ratio:.2g}: "
                          f"field and charge may be rotated; give {names['detector_rotation']} or "
                          f"{names['fit_rotation']}", stacklevel=3)
    return [line + f" ({names['detector_rotation']} or {names['fit_rotation']} sets it)"], attrs


def _fit_rotation(wx, wy, raw, valid, *, flip, sign_region, names):
    """The fitted rotation (from the detector-frame deflection), its lines and a warning for a guessed branch."""
    from .calibration.rotation import find_rotation

    region, sign = sign_region
    fit = find_rotation(wx, wy, raw, valid=valid, flip=flip, region=region, charge_sign=sign, warn_polarity=False)
    lines = [f"fitted detector rotation {fit.rotation_deg:.2f}°, flip {fit.flip}: rms curl / rms div "
             f"{fit.curl_ratio:.3f} (other flip {fit.curl_ratio_other_flip:.3f}); 180° branch from the "
             f"{fit.polarity}"]
    if fit.polarity == "skew":
        significance = abs(fit.charge_skew) / fit.skew_noise if fit.skew_noise > 0 else math.inf
        warnings.warn(f"detector rotation: the 180° branch ({fit.rotation_deg:.1f}° rather than "
                      f"{(fit.rotation_deg + 180) % 360:.1f}°) is a guess from the skew of the charge density "
                      f"({fit.charge_skew:.3g}, {significance:.1f} x its noise; it assumes compact positive "
                      f"charges): if wrong, field and charge are inverted; give {names['charge_sign_region']}",
                      stacklevel=3)
    return fit, lines


def _to_scan_frame(wx, wy, cal, valid, *, fit_rotation, flip, sign_region, names, lines, attrs):
    """The detector-frame deflection (ψ = 0, no flip) in the scan frame: the rotation fitted, or given, or
    assumed (then printed with the curl it leaves). Returns (calibration, θx, θy); adds to ``lines``, ``attrs``."""
    if fit_rotation:
        raw = cal.replace(detector_rotation_deg=0.0, flip=False)
        fit, fit_lines = _fit_rotation(wx, wy, raw, valid, flip=flip, sign_region=sign_region, names=names)
        sources = {**cal.sources, "detector_rotation_deg": "fitted"}
        if flip is None:
            sources["flip"] = "fitted"
        cal = fit.calibration(cal).replace(sources=sources)
        lines += fit_lines
        attrs.update(fit.attrs())
    tx, ty = cal.to_scan_frame(wx, wy)
    if not fit_rotation:
        rotation_lines, rotation_attrs = _rotation_lines(tx, ty, cal, valid, names=names)
        lines += rotation_lines
        attrs.update(rotation_attrs)
    return cal, tx, ty


def _descan_attrs(fit, cal, prefix):
    """A descan fitted in the detector frame, recorded in the scan frame."""
    sx, sy = cal.to_scan_frame(fit.coefficients_x, fit.coefficients_y)
    return {f"{prefix}_order": fit.order, f"{prefix}_terms": ",".join(fit.terms),
            f"{prefix}_x_coefficients_mrad": sx, f"{prefix}_y_coefficients_mrad": sy,
            f"{prefix}_origin": "scan centre, pixels"}


def _field_check(result):
    """Warn when the field leaves what a specimen can hold (a unit slip of the thickness or step)."""
    if result.field_x is None:
        return
    magnitude = np.hypot(result.field_x, result.field_y)
    if np.isfinite(magnitude).any() and np.nanmax(magnitude) > FIELD_LIMIT_V_PER_M:
        warnings.warn(f"field: max |E| {np.nanmax(magnitude):.3g} V/m is above {FIELD_LIMIT_V_PER_M:g} V/m, more "
                      "than any specimen holds: check the thickness (nm), kV and alpha (mrad)", stacklevel=3)


def _descan_line(source, tx, ty, valid, names):
    if source != "none":
        return f"descan: {'the vacuum reference' if source == 'vacuum' else 'fitted over the descan region'} removed"
    mean_x = float(np.nanmean(np.where(valid, tx, np.nan)))
    mean_y = float(np.nanmean(np.where(valid, ty, np.nan)))
    return (f"descan: none removed (no vacuum reference or field-free region given): a descan stays in the maps as a "
            f"uniform field; mean deflection ({mean_x:.3g}, {mean_y:.3g}) mrad; {names['reference']} or "
            f"{names['descan_region']} removes it")


def interface_summary(result, points, half_range_nm):
    """Profiles across the interface (1-D datasets for the file) and the layer figures as text lines."""
    from .interface import Interface, layer_figures, profile_across

    cal = result.calibration
    x1, y1, x2, y2 = points
    interface = Interface((x1, y1), (x2, y2))
    step = (cal.step_x_nm, cal.step_y_nm)
    fp = profile_across(interface.normal_component(result.field_x, result.field_y), interface, step,
                        half_range_nm=half_range_nm, valid=result.valid, units="V/m")
    cp = profile_across(result.charge_density, interface, step, half_range_nm=half_range_nm, valid=result.valid,
                        units="C/m^3")
    f = layer_figures(fp)
    reach = "the whole scan (--half-range limits it)" if half_range_nm is None else f"{half_range_nm:g} nm"
    lines = [f"interface from ({x1:g}, {y1:g}) to ({x2:g}, {y2:g}) nm, normal at {interface.normal_deg:.1f}°; "
             f"profiles over {reach}:",
             f"  peak field {f.peak_field_v_per_m:.4g} ± {f.peak_field_stderr:.2g} V/m at {f.peak_position_nm:.2f} nm",
             f"  layer width {f.width_nm:.3g} ± {f.width_stderr:.2g} nm",
             f"  potential drop {f.potential_drop_v:.4g} ± {f.potential_drop_stderr:.2g} V",
             f"  areal charge {f.areal_charge_c_per_m2:.4g} ± {f.areal_charge_stderr:.2g} C/m^2"]
    maps = {"profile_distance": (fp.distance_nm, "nm"), "profile_field": (fp.mean, "V/m"),
            "profile_field_stderr": (fp.stderr, "V/m"), "profile_charge_density": (cp.mean, "C/m^3"),
            "profile_charge_density_stderr": (cp.stderr, "C/m^3")}
    attrs = {**interface.attrs(), "half_range_nm": math.nan if half_range_nm is None else half_range_nm,
             "half_range_source": "default" if half_range_nm is None else "user"}
    return lines, maps, attrs


def summary_lines(result) -> list:
    """What was computed and how many pixels were masked."""
    ny, nx = result.shape
    lines = [f"reconstructed {ny} x {nx} pixels ({result.attrs.get('response', 'centre of mass')} response)"]
    n_bad = result.attrs.get("n_bad_input")
    if n_bad is not None:
        lines.append(f"masked pixels: {result.n_invalid} of {ny * nx}: {n_bad} with a zero or non-finite segment sum "
                     f"or a signal outside the detector response, {result.n_invalid - n_bad} without a valid "
                     "neighbour for the charge density")
    else:
        lines.append(f"masked pixels: {result.n_invalid} of {ny * nx}")
    magnitude = np.hypot(result.deflection_x, result.deflection_y)
    if np.isfinite(magnitude).any():
        lines.append(f"deflection: median |θ| {np.nanmedian(magnitude):.4g} mrad, max {np.nanmax(magnitude):.4g} mrad")
    if result.field_x is not None and np.isfinite(result.field_x).any():
        field_ = np.hypot(result.field_x, result.field_y)
        lines.append(f"field: max |E| {np.nanmax(field_):.4g} V/m")
        rho = result.charge_density
        lines.append(f"charge density: {np.nanmin(rho):.4g} to {np.nanmax(rho):.4g} C/m^3")
    return lines


def _plain(attrs):
    return {k: v for k, v in attrs.items() if v is not None}


# -- reconstruct ------------------------------------------------------------------------------

def reconstruct_acquisition(segments, *, calibration=None, dataset=None, reference=None, dark=None, offsets=None,
                            response="exact", descan_region=None, descan_order=2, fit_rotation=False,
                            charge_sign_region=None, charge_method="finite-difference", cutoff=None,
                            potential_method="mirror", potential_reference=None, dose=None,
                            counts_per_electron=None, interface=None, half_range_nm=None,
                            names=None) -> Outcome:
    """``dpcstem reconstruct``: one four-segment acquisition → deflection, field, charge, potential.

    Parameters
    ----------
    segments : path-like or str
        The acquisition (any format :func:`dpcstem.io.read_segments` takes).
    calibration : dict, optional
        Calibration field → value the user gives (``kv``, ``alpha_mrad``, ``step_x_nm``,
        ``step_y_nm``, ``thickness_nm`` (number or map), ``eps_r``, ``collection_inner_mrad``,
        ``collection_outer_mrad`` (``inf``: no outer edge), ``detector_rotation_deg``,
        ``flip`` (True or False)); it wins over the file, with a warning.
    reference : path-like, optional
        Vacuum scan of the same scan, optics and detector: segment gains and the descan.
    dark, offsets : optional
        A beam-blanked scan whose segment means are the dark offsets, or the four offsets
        in counts (A, B, C, D).
    descan_region : (x0, y0, x1, y1), optional
        Field-free rectangle (nm, scan frame) over which the descan surface is fitted and removed.
    fit_rotation : bool
        Find the detector rotation (and the flip, unless ``calibration['flip']`` fixes it)
        that makes the deflection curl-free.
    charge_sign_region : (x0, y0, x1, y1, sign), optional
        Settles the 180° branch of the fitted rotation: a rectangle (nm) where the charge
        density has the sign '+' or '-'.
    dose, counts_per_electron : float, optional
        Counting statistics: uncertainty maps (electrons per probe position, or detector
        counts per electron).
    interface : (x1, y1, x2, y2), optional
        Two points (nm) on an interface: profiles across it and the layer figures.
    names : dict, optional
        Spelling of each input in messages (the CLI gives its option names).

    Returns
    -------
    Outcome
    """
    from .calibration.descan import fit_descan
    from .calibration.gains import gains_from_vacuum
    from .io import read_segments
    from .noise import uncertainty_maps
    from .options import ReconstructionOptions
    from .reconstruct import count_saturated, reconstruct_deflection, segment_deflection
    from .response import response_model

    names = {**PYTHON_NAMES, **(names or {})}
    acquisition = read_segments(segments, dataset=dataset)
    shape = acquisition.segments.shape[1:]
    user = dict(calibration or {})
    cal = merge_calibration(acquisition.calibration_values, user, source=segments, names=names)
    cal.require_thickness()
    if np.ndim(cal.thickness_nm) == 2 and np.shape(cal.thickness_nm) != tuple(shape):
        raise CalibrationError(f"thickness map shape {np.shape(cal.thickness_nm)} does not match the scan {tuple(shape)}")
    response = response_from_name(response)
    if hasattr(response, "check"):
        response.check(cal)
    offsets, offsets_source, dark_paths = segment_offsets(offsets, dark, names=names)
    options = ReconstructionOptions(
        response=response, offsets=offsets, descan_order=descan_order, charge_method=charge_method, cutoff=cutoff,
        potential_method=potential_method,
        potential_reference=region_mask(potential_reference, shape, cal, names.get("potential_reference",
                                                                                    "potential_reference")))
    descan_mask = region_mask(descan_region, shape, cal, names["descan_region"])
    sign_region = charge_sign(charge_sign_region, shape, cal, names["charge_sign_region"])
    if sign_region[0] is not None and not fit_rotation:
        raise InputDataError(f"{names['charge_sign_region']} settles the branch of {names['fit_rotation']}: give both")
    inputs = list(acquisition.paths) + dark_paths
    lines, attrs = [], {}
    # Everything is measured in the detector frame (ψ = 0, no flip) and turned into the scan
    # frame once the rotation is settled: one pass through the kernel per acquisition.
    raw = cal.replace(detector_rotation_deg=0.0, flip=False)
    vacuum_descan = None
    gains_source = "default"
    if reference is not None:
        vac = read_reference(reference, names)
        check_reference(vac, cal, shape, names=names)
        gains = gains_from_vacuum(vac.segments, offsets=offsets)
        options = options.replace(gains=gains)
        vx, vy, _, vok = segment_deflection(vac.segments, raw, options=options)
        vacuum_descan = fit_descan(vx, vy, mask=vok, order=descan_order)
        gains_source = "vacuum"
        inputs += list(vac.paths)
    wx, wy, total, valid = segment_deflection(acquisition.segments, raw, options=options)
    if not valid.any():
        raise InputDataError("no pixel could be reconstructed: every pixel has a zero, negative or non-finite "
                             "segment sum or a signal outside the detector response")
    descan_source, descan_fits = "none", []
    if vacuum_descan is not None:
        wx, wy = vacuum_descan.subtract(wx, wy)
        descan_source, descan_fits = "vacuum", [vacuum_descan]
    if descan_mask is not None:
        region_fit = fit_descan(wx, wy, mask=descan_mask & valid, order=descan_order)
        wx, wy = region_fit.subtract(wx, wy)
        descan_source = "region" if descan_source == "none" else "vacuum and region"
        descan_fits.append(region_fit)
    cal, tx, ty = _to_scan_frame(wx, wy, cal, valid, fit_rotation=fit_rotation, flip=user.get("flip"),
                                 sign_region=sign_region, names=names, lines=lines, attrs=attrs)
    result = reconstruct_deflection(tx, ty, cal, valid=valid, options=options)
    model = response_model(options.response, cal)
    result.extra["segment_sum"] = (total, "counts")
    result.attrs.update(response=model.name, n_bad_input=int(valid.size - np.count_nonzero(valid)),
                        n_saturated=count_saturated(acquisition.segments, valid))
    if dose is not None or counts_per_electron is not None:
        result.extra.update(uncertainty_maps(acquisition.segments, cal, options=options, dose=dose,
                                             counts_per_electron=counts_per_electron, valid=valid))
    for k, fit_ in enumerate(descan_fits):
        attrs.update(_descan_attrs(fit_, cal, "descan" if k == 0 else "descan_region"))
    attrs.update(descan_source=descan_source, offsets_source=offsets_source, gains_source=gains_source,
                 segment_offsets=np.zeros(4) if offsets is None else np.asarray(offsets, float),
                 segment_gains=np.ones(4) if options.gains is None else np.asarray(options.gains, float))
    if hasattr(response, "attrs"):
        attrs.update(response.attrs())
    lines += describe_calibration(cal)
    lines.append(_descan_line(descan_source, tx, ty, valid, names))
    if offsets_source == "default":
        lines.append(f"segment offsets: 0 counts assumed (a black level lowers the field in proportion; "
                     f"{names['offsets']} or {names['dark']} sets them)")
    else:
        lines.append(f"segment offsets: {', '.join(f'{o:.4g}' for o in offsets)} counts ({offsets_source})")
    if gains_source == "default":
        lines.append(f"segment gains: equal (assumed; {names['reference']} measures them)")
    return _outcome(result, cal, attrs, lines, inputs, interface, half_range_nm)


def _outcome(result, cal, attrs, lines, inputs, interface, half_range_nm, *, drop=()) -> Outcome:
    """The closing steps every command shares: the summary, the field check, the interface figures, the attributes."""
    lines += summary_lines(result)
    _field_check(result)
    if interface is not None:
        interface_lines, profile_maps, interface_attrs = interface_summary(result, interface, half_range_nm)
        result.extra.update(profile_maps)
        attrs.update(interface_attrs)
        lines += interface_lines
    attrs = {**cal.to_attrs(), **_plain(result.attrs), **attrs}
    for name in drop:
        attrs.pop(name, None)
        attrs.pop(f"{name}_source", None)
    return Outcome(result=result, attrs=attrs, lines=lines, inputs=inputs)


def read_reference(path, names):
    from .calibration.gains import gains_from_vacuum
    from .errors import DPCError
    from .io import read_segments

    try:
        reference = read_segments(path)
        gains_from_vacuum(reference.segments)
    except DPCError as exc:
        raise type(exc)(f"{names['reference']} {path}: {exc}") from None
    reference.metadata["path"] = str(path)
    return reference


# -- com (4D) ---------------------------------------------------------------------------------

def com_acquisition(data, *, calibration=None, mrad_per_px=None, camera_length_mm=None, detector_pixel_um=None,
                    mask_radius_px=None, dataset=None, scan_shape=None, raw=None, scheduler=None, workers=None,
                    reference=None, descan_region=None, descan_order=2, fit_rotation=False, charge_sign_region=None,
                    charge_method="finite-difference", cutoff=None, potential_method="mirror",
                    potential_reference=None, dose=None, interface=None, half_range_nm=None, response=None,
                    names=None) -> Outcome:
    """``dpcstem com``: a 4D-STEM acquisition → centre of mass → deflection, field, charge, potential.

    The frames are read once, chunk by chunk. The options mean what they mean for
    :func:`reconstruct_acquisition`; besides: the detector's angular pixel size
    (``mrad_per_px``, or ``camera_length_mm`` with ``detector_pixel_um``; default: what the
    file records), ``mask_radius_px`` (centre of mass inside a disc around the bright-field
    disc), ``reference`` (a 4D vacuum scan of the same scan and frame shape whose centre of
    mass is the undeflected pattern centre), and ``dose`` (electrons per frame: the counting
    noise of a centre of mass of N electrons in a disc of semi-angle α, σθ = α/(2√N) per
    component, carried to the field and charge as uncertainty maps).
    """
    from .fourd import bright_field_disc, centre_of_mass, disc_mask
    from .fourd.com import deflection_from_com, pattern_centre, undeflected_centre_lines
    from .fourd.response import correct_com
    from .calibration.descan import fit_descan
    from .io.pixelated import open_pixelated
    from .noise import uncertainty_from_covariance
    from .options import ReconstructionOptions
    from .reconstruct import reconstruct_deflection

    names = {**PYTHON_NAMES, **(names or {})}
    frames = open_pixelated(data, dataset=dataset, scan_shape=scan_shape, **(raw or {}))
    scale, scale_source = _angular_pixel(frames.mrad_per_px, mrad_per_px, camera_length_mm, detector_pixel_um,
                                         names)
    centre, radius = bright_field_disc(frames)
    user = dict(calibration or {})
    cal = merge_calibration(frames.calibration, user, source=data, names=names, alpha_measured=radius * scale,
                            geometry=False)
    cal.require_thickness()
    shape = tuple(frames.scan_shape)
    options = ReconstructionOptions(
        descan_order=descan_order, charge_method=charge_method, cutoff=cutoff, potential_method=potential_method,
        potential_reference=region_mask(potential_reference, shape, cal, names.get("potential_reference",
                                                                                    "potential_reference")))
    descan_mask = region_mask(descan_region, shape, cal, names["descan_region"])
    sign_region = charge_sign(charge_sign_region, shape, cal, names["charge_sign_region"])
    if sign_region[0] is not None and not fit_rotation:
        raise InputDataError(f"{names['charge_sign_region']} settles the branch of {names['fit_rotation']}: give both")
    if reference is not None and descan_region is not None:
        raise InputDataError(f"give {names['reference']} or {names['descan_region']}, not both")
    engine = {"scheduler": scheduler, "workers": workers}
    mask = disc_mask(frames.frame_shape, centre, mask_radius_px) if mask_radius_px is not None else None
    inputs = [Path(data)]
    ref = None
    if reference is not None:
        vacuum = open_pixelated(reference, dataset=dataset, scan_shape=scan_shape, **(raw or {}))
        if vacuum.scan_shape != frames.scan_shape or vacuum.frame_shape != frames.frame_shape:
            raise InputDataError(f"{names['reference']} {reference}: shape {vacuum.shape} differs from the data's "
                                 f"{frames.shape}: a descan is never extrapolated to another scan")
        for name in ("kv", "alpha_mrad", "step_x_nm", "step_y_nm"):
            theirs = vacuum.calibration.get(name)
            if theirs is not None and not _same(theirs, getattr(cal, name)):
                raise CalibrationError(f"{names['reference']} {reference}: the vacuum scan records {name} {theirs!r}, "
                                       f"the data {getattr(cal, name)!r}: a reference must be recorded with the same "
                                       "optics and scan")
        vac = centre_of_mass(vacuum, mask=mask, **engine)
        ref = (vac.com_x, vac.com_y)
        inputs.append(Path(reference))
    sums = centre_of_mass(frames, mask=mask, **engine)
    raw_cal = cal.replace(detector_rotation_deg=0.0, flip=False)  # the detector frame
    lines, attrs = [], {}
    if ref is None:
        centre_x, centre_y = pattern_centre(sums.com_x, sums.com_y)
        attrs.update(pattern_centre_x_px=centre_x, pattern_centre_y_px=centre_y)
        ref = (centre_x, centre_y)
    wx, wy = deflection_from_com(sums.com_x, sums.com_y, raw_cal, mrad_per_px=scale, reference=ref)
    valid = np.isfinite(wx) & np.isfinite(wy)
    if not valid.any():
        raise InputDataError("no frame has a finite centre of mass: every frame holds zero counts or NaN inside the "
                             "mask (check the data, the mask radius and centre)")
    descan_source = "vacuum" if reference is not None else "none"
    if descan_mask is not None:
        fit = fit_descan(wx, wy, mask=descan_mask & valid, order=descan_order)
        wx, wy = fit.subtract(wx, wy)
        descan_source = "region"
    if response is not None:
        wx, wy, valid = correct_com(wx, wy, valid, response_from_name(response), raw_cal, lines, attrs,
                                    descan=descan_source, names=names)
    cal, tx, ty = _to_scan_frame(wx, wy, cal, valid, fit_rotation=fit_rotation, flip=user.get("flip"),
                                 sign_region=sign_region, names=names, lines=lines, attrs=attrs)
    if descan_mask is not None:
        attrs.update(_descan_attrs(fit, cal, "descan"))
    result = reconstruct_deflection(tx, ty, cal, valid=valid, options=options)
    result.extra["com_x"] = (sums.com_x.astype(np.float32), "px")
    result.extra["com_y"] = (sums.com_y.astype(np.float32), "px")
    result.extra["intensity"] = (sums.intensity.astype(np.float32), "counts")
    attrs.update(mrad_per_px=float(scale), mrad_per_px_source=scale_source, descan_source=descan_source)
    if mask_radius_px is not None:
        attrs.update(mask_radius_px=float(mask_radius_px), mask_centre_y_px=float(centre[0]),
                     mask_centre_x_px=float(centre[1]))
    if dose is not None:
        from . import _validate

        n = _validate.positive("dose", dose, what="electrons per frame")
        sigma = cal.alpha_mrad / (2 * math.sqrt(n))
        variance = np.where(result.valid, sigma**2, np.nan)
        result.extra.update(uncertainty_from_covariance(variance, variance, np.zeros_like(variance), cal,
                                                        valid=result.valid, options=options))
        lines.append(f"counting noise: {n:g} electrons per frame in a disc of {cal.alpha_mrad:.4g} mrad give "
                     f"σθ = α/(2√N) = {sigma:.3g} mrad per component (a uniform disc; the frames' own counts are "
                     "not used)")
        attrs["dose_electrons_per_frame"] = n
    lines.insert(0, f"reduced {shape[0]} x {shape[1]} frames of {frames.frame_shape[0]} x {frames.frame_shape[1]} px "
                    f"({scale:.4g} mrad/px, bright-field disc radius {radius:.1f} px)")
    lines += describe_calibration(cal)
    if descan_source == "none":
        lines += undeflected_centre_lines(tx, ty, valid, cal, ref, names, attrs)
    else:
        lines.append(_descan_line(descan_source, tx, ty, valid, names))
    return _outcome(result, cal, attrs, lines, inputs, interface, half_range_nm,
                    drop=("collection_inner_mrad", "collection_outer_mrad"))  # a camera has no segments


def _angular_pixel(file_value, mrad_per_px, camera_length_mm, detector_pixel_um, names):
    """The detector's angular pixel size (mrad) and its source."""
    from .fourd import mrad_per_px as angular

    given = mrad_per_px is not None or camera_length_mm is not None or detector_pixel_um is not None
    if not given:
        if file_value is None:
            units = (" X", " MM", " UM") if names["mrad_per_px"].startswith("--") else ("", "", "")
            raise CalibrationError(f"the detector's angular pixel size is needed: give {names['mrad_per_px']}{units[0]}, "
                                   f"or {names['camera_length']}{units[1]} with {names['detector_pixel']}{units[2]}")
        return file_value, "file"
    try:
        value = angular(camera_length_mm=camera_length_mm, detector_pixel_um=detector_pixel_um,
                        mrad_per_px=mrad_per_px)
    except CalibrationError as exc:
        spelt = {"mrad_per_px": names["mrad_per_px"], "camera_length_mm": names.get("camera_length", "camera_length_mm"),
                 "detector_pixel_um": names.get("detector_pixel", "detector_pixel_um")}
        named = [option for name, option in spelt.items() if name in str(exc)]
        raise CalibrationError(f"{' and '.join(named)}: {exc}" if named else str(exc)) from None
    if file_value is not None and abs(file_value - value) > 1e-9 * value:
        warnings.warn(f"mrad_per_px: the file says {file_value!r}, using the given {value!r}", stacklevel=3)
    return value, "user"
