"""What the commands share: the spelling of inputs, the :class:`Outcome`, the calibration merge with its
sources, the descan/offset/reference/rotation steps and the closing summary.

About 550 lines, for one purpose: the steps every command takes the same way, so that
reconstruct, com and bias-series print, record and refuse alike; split by step, each piece
would need the spelling table and the Outcome of the others."""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import physics
from ..calibration import Calibration
from ..errors import CalibrationError, InputDataError
from .defaults import FIELD_LIMIT_V_PER_M


#: Pixels the curl and divergence must be measured on before an assumed rotation is warned
#: against (on fewer, the best rotation's curl is noise).
ROTATION_WARNING_PIXELS = 64
#: An assumed rotation, and a plane no descan removed, are judged on block means of the
#: deflection at most this many pixels a side: both are properties of the whole map, and
#: judging them at full resolution was the largest stage of a 2048² reconstruction (seconds,
#: for one printed line each).
CHECK_SIDE = 512

#: How each input is spelt in messages: key → (Python keyword, command-line option). The one
#: table both spellings come from (:data:`PYTHON_NAMES`, :data:`OPTION_NAMES`).
SPELLING = {
    "kv": ("kv", "--kv"), "alpha_mrad": ("alpha_mrad", "--alpha"), "step": ("step_nm", "--step"),
    "thickness": ("thickness_nm", "--thickness"), "thickness_map": ("thickness_nm (a map)", "--thickness-map"),
    "eps_r": ("eps_r", "--eps-r"), "collection": ("collection_mrad", "--collection"),
    "collection_form": ("collection_mrad=(inner, outer)", "--collection INNER OUTER"),
    "collection_none": ("collection_mrad=(0, inf)", "--collection 0 inf"),
    "detector_rotation": ("detector_rotation_deg", "--detector-rotation"), "flip": ("flip=True", "--flip"),
    "no_flip": ("flip=False", "--no-flip"), "fit_rotation": ("fit_rotation=True", "--fit-rotation"),
    "charge_sign_region": ("charge_sign_region=(x0, y0, x1, y1, sign)", "--charge-sign-region X0 Y0 X1 Y1 {+,-}"),
    "biased_side": ("biased_side", "--biased-side {+,-}"), "interface": ("interface", "--interface"),
    "reference": ("reference", "--reference"), "descan_region": ("descan_region", "--descan-region"),
    "offsets": ("offsets", "--offsets"), "dark": ("dark", "--dark"),
    "potential_reference": ("potential_reference", "--potential-reference"),
    "mrad_per_px": ("mrad_per_px", "--mrad-per-px"), "camera_length": ("camera_length_mm", "--camera-length"),
    "detector_pixel": ("detector_pixel_um", "--detector-pixel-um"),
    "bias": ("biases", "--bias"), "override_bias": ("override_bias=True", "--override-bias"),
    "reference_bias": ("reference_bias_v", "--reference-bias"), "reference_index": ("reference_index", "--reference-index"),
    "shift": ("shifts_px=", "--shift DY DX (once per FILE)"),
    "registration_image": ("registration_image=", "--registration-image NAME"),
    "registration_exclude": ("registration_exclude", "--registration-exclude"),
    "no_register": ("register=False", "--no-register"), "half_range": ("half_range_nm", "--half-range"),
    "bin": ("bin_nm", "--bin"),
}
#: Each input as a Python caller spells it.
PYTHON_NAMES = {key: python for key, (python, _) in SPELLING.items()}
#: Each input as the command line spells it.
OPTION_NAMES = {key: option for key, (_, option) in SPELLING.items()}

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
    rows : list of dict
        A bias series' net layer figures per bias (with an interface).
    """

    result: object
    attrs: dict = field(default_factory=dict)
    lines: list = field(default_factory=list)
    inputs: list = field(default_factory=list)
    rows: list = field(default_factory=list)


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
    inner, outer = "collection_inner_mrad", "collection_outer_mrad"
    missing_geometry = geometry and inner not in values and outer not in values
    missing = [name for name in ("kv", "alpha_mrad", "step_x_nm") if values.get(name) is None]
    if missing:  # every missing value in one message, not one per run
        options = [names[FIELD_KEYS[name]] for name in missing] + ([names["collection_form"]] * missing_geometry)
        recorded = missing + (["the collection angles"] if missing_geometry else [])
        raise CalibrationError(f"{', '.join(options)} {'is' if len(options) == 1 else 'are'} needed: "
                               f"{source or 'the input file'} does not record {', '.join(recorded)}")
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


def describe_calibration(calibration: Calibration) -> list:
    """Lines naming each calibration value the program assumed or measured (never silent).

    An assumed rotation and flip are printed by :func:`_rotation_lines`, with the curl they leave.
    """
    assumed = []
    s = calibration.sources
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
    signs = {"+": 1, "-": -1, "+1": 1, "-1": -1, 1: 1, -1: -1}
    if len(rectangle) != 4 or sign not in signs:
        raise InputDataError(f"{name} takes a rectangle X0 Y0 X1 Y1 in nm and the sign of the charge inside it, "
                             f"+ or -, got {rectangle_and_sign!r}")
    return region_mask(rectangle, shape, calibration, name), signs[sign]


def scan_regions(shape, calibration, names, *, descan_region=None, charge_sign_region=None,
                 potential_reference=None, fit_rotation=False):
    """A command's rectangles as masks: (potential zero, descan, (charge-sign mask, sign)).

    A charge-sign region settles the branch of a fitted rotation, so without
    ``fit_rotation`` it is refused.
    """
    potential = region_mask(potential_reference, shape, calibration, names["potential_reference"])
    descan = region_mask(descan_region, shape, calibration, names["descan_region"])
    sign = charge_sign(charge_sign_region, shape, calibration, names["charge_sign_region"])
    if sign[0] is not None and not fit_rotation:
        raise InputDataError(f"{names['charge_sign_region']} settles the branch of {names['fit_rotation']}: give both")
    return potential, descan, sign


def segment_calibration(file_values, user, shape, *, source, names) -> Calibration:
    """A segment acquisition's calibration (:func:`merge_calibration`), with a thickness that covers the scan."""
    cal = merge_calibration(file_values, user, source=source, names=names)
    cal.require_thickness()
    if np.ndim(cal.thickness_nm) == 2 and np.shape(cal.thickness_nm) != tuple(shape):
        raise CalibrationError(f"thickness map shape {np.shape(cal.thickness_nm)} does not match the scan {tuple(shape)}")
    return cal


def checked_response(response, calibration):
    """The response :func:`response_from_name` gives, checked against the calibration it will invert."""
    response = response_from_name(response)
    if hasattr(response, "check"):
        response.check(calibration)
    return response


def response_from_name(response):
    """'exact', 'linear', an empirical response object, or the path of an empirical response file."""
    if isinstance(response, str) and response in ("exact", "linear"):
        return response
    if isinstance(response, (str, Path)):
        from ..io.response_file import load_response

        return load_response(Path(response))
    return response


def segment_offsets(offsets, dark, *, names, shape=None):
    """Dark offsets (4,) and their source: the user's numbers, a beam-blanked scan's means, or 0 (default)."""
    from .. import _validate

    if offsets is not None and dark is not None:
        raise CalibrationError(f"give {names['offsets']} or {names['dark']}, not both")
    if offsets is not None:
        return _validate.four(names["offsets"], offsets), "user", []
    if dark is None:
        return None, "default", []
    from ..io import read_segments

    try:
        blank = read_segments(dark)
    except Exception as exc:  # noqa: BLE001 (re-raised with the option named)
        from ..errors import DPCError

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
    from ..calibration.rotation import curl_ratio, find_rotation

    s = calibration.sources
    if s.get("detector_rotation_deg") != "default" and s.get("flip") != "default":
        return [], {}
    tx, ty, valid, judged = _block_means(tx, ty, valid, calibration)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            assumed = curl_ratio(tx, ty, judged, valid=valid)
            best = find_rotation(tx, ty, judged, valid=valid,
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
        best_deg = round(best.rotation_deg, 1) % 360.0  # 359.96° reads 0.0°, not 360.0°
        line += f"; the best rotation ({best_deg:.1f}°, flip {best.flip}) would leave {best.curl_ratio:.3g}"
        attrs["rotation_best_curl_ratio"] = best.curl_ratio
        if assumed > 3 * best.curl_ratio + 0.05 and best.n_pixels >= ROTATION_WARNING_PIXELS:
            warnings.warn(f"detector rotation: the assumed {calibration.detector_rotation_deg:g}° leaves a curl of "
                          f"{assumed:.2g} x the divergence where {best_deg:.1f}° leaves {best.curl_ratio:.2g}: "
                          f"field and charge may be rotated; give {names['detector_rotation']} or "
                          f"{names['fit_rotation']}", stacklevel=3)
    return [line + f" ({names['detector_rotation']} or {names['fit_rotation']} sets it)"], attrs


def _block_means(tx, ty, valid, calibration, side=CHECK_SIDE):
    """The deflection as means over blocks of k × k pixels, k the least that brings it to ``side``
    pixels a side, with the calibration of the coarser scan; a block is valid when all its pixels are."""
    k = max(1, math.ceil(max(tx.shape) / side))
    if k == 1:
        return tx, ty, valid, calibration
    ny, nx = (n // k * k for n in tx.shape)

    def blocks(a):
        return a[:ny, :nx].reshape(ny // k, k, nx // k, k)

    ok = blocks(np.asarray(valid, bool)).all(axis=(1, 3))
    means = [blocks(np.where(valid, t, 0.0)).mean(axis=(1, 3)) for t in (tx, ty)]
    coarse = calibration.replace(step_x_nm=calibration.step_x_nm * k, step_y_nm=calibration.step_y_nm * k,
                                 thickness_nm=None)
    return means[0], means[1], ok, coarse


def _fit_rotation(wx, wy, raw, valid, *, flip, sign_region, names):
    """The fitted rotation (from the detector-frame deflection), its lines and a warning for a guessed branch."""
    from ..calibration.rotation import find_rotation

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


def descan_plane_lines(tx, ty, valid, calibration: Calibration, names, attrs) -> list:
    """Where no descan was removed: look for a plane across the scan, warn where one stands out.

    A descan moves the beam linearly with the scan position, so a significant robust plane
    (:func:`dpcstem.calibration.descan.check_plane`) that is not small against the rest of
    the map is most likely descan nothing removed: the warning gives its size in mrad and
    V/m against the field the rest of the map holds, and the options that remove it. The
    plane's size is recorded (``descan_plane_mrad``, ``descan_plane_field_v_per_m``) in
    ``attrs`` wherever it was looked for. A large map is judged on its block means
    (:func:`_block_means`). Returns the lines to print.
    """
    from ..calibration.descan import check_plane

    tx, ty, valid, _ = _block_means(tx, ty, valid, calibration)  # a plane spans the scan: block means hold it
    check = check_plane(tx, ty, valid=valid)
    if check is None or calibration.thickness_nm is None:
        return []
    thickness = float(np.nanmedian(calibration.thickness_nm))

    def field(mrad):
        return abs(float(physics.field_v_per_m_from_deflection(mrad, calibration.kv, thickness)))

    plane_field = field(check.plane_mrad)
    attrs.update(descan_plane_mrad=check.plane_mrad, descan_plane_field_v_per_m=plane_field)
    if not check.holds_plane:
        return [f"descan check: no plane across the scan that stands out (a robust fit: up to "
                f"{check.plane_mrad:.3g} mrad, {plane_field:.3g} V/m)"]
    besides = np.hypot(*check.fit.subtract(tx, ty))[valid]
    median, p95 = (field(np.percentile(besides, q)) for q in (50, 95))
    warnings.warn(f"descan: the deflection holds a plane across the scan of up to {check.plane_mrad:.3g} mrad "
                  f"({plane_field:.3g} V/m; the field besides it: median {median:.3g}, 95th percentile {p95:.3g} "
                  f"V/m) that no descan removed: if it is descan, the field is off by up to {plane_field:.3g} V/m; "
                  f"give {names['reference']} VACUUM (a vacuum scan) or {names['descan_region']} over a "
                  "field-free region", stacklevel=3)
    return []


def interface_summary(result, points, half_range_nm):
    """Profiles across the interface (1-D datasets for the file) and the layer figures as text lines."""
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
    from ..calibration.gains import gains_from_vacuum
    from ..errors import DPCError
    from ..io import read_segments

    try:
        reference = read_segments(path)
        gains_from_vacuum(reference.segments)
    except DPCError as exc:
        raise type(exc)(f"{names['reference']} {path}: {exc}") from None
    reference.metadata["path"] = str(path)
    return reference
