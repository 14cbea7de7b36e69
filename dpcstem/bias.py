"""In-situ bias series: net field and net charge accumulation against a reference bias.

Each acquisition is inverted through the detector response to a deflection map first; the
maps are registered to the reference acquisition (:mod:`dpcstem.registration`, on a channel
that does not change with bias) and subtracted **in deflection space**,
θ_net = θ(V) − θ(V_ref), before the net field, net charge density and net potential are
computed. Subtracting raw difference signals instead would carry the response's
nonlinearity into the net map wherever a bias-independent deflection (the
mean-inner-potential step, thickness gradients, diffraction contrast) is large.

The series is streamed: the reference's deflection and registration image are kept, and one
acquisition at a time is read, reconstructed, handed to a sink (a result file, or the
in-memory :class:`BiasSeriesResult`) and dropped, so memory holds a few maps, not the series.

One module of about 610 lines, for one purpose, the series: its checks (biases, reference,
registration), the stream, the two sinks it feeds (the in-memory result and the per-bias
:class:`LayerTable` of the interface) and the command line that reproduces it all share the
stream's order and attributes; split apart, each piece would re-derive them.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field

import numpy as np

from . import _validate
from .calibration import Calibration
from .errors import InputDataError
from .options import ReconstructionOptions
from .progress import Stages
from .reconstruct import reconstruct_deflection, segment_deflection, vacuum_reference
from .registration import PreparedReference, Registration, register, shift_map
from .response import response_model
from .units import unit_of

#: The maps of each acquisition, and of each net map, that go to a result file.
MAP_NAMES = ("deflection_x", "deflection_y", "field_x", "field_y", "charge_density", "free_charge_density",
             "potential")
NET_NAMES = ("deflection_x", "deflection_y", "field_x", "field_y", "charge_density", "free_charge_density",
             "potential")

@dataclass
class BiasSeriesResult:
    """Every bias's maps and the net maps against the reference bias, held in memory.

    Attributes
    ----------
    biases_v : ndarray, shape (n,)
        Bias of each acquisition in V, in acquisition order (a bias may repeat).
    reference_index : int
    maps : list of DPCResult
        Each acquisition's own reconstruction, registered onto the reference.
    net : list of DPCResult
        Net maps θ(V) − θ(V_ref) → net field, net charge and net potential (the reference's own is zero).
    registration : list of Registration
    calibration : Calibration
    """

    biases_v: np.ndarray
    reference_index: int
    maps: list
    net: list
    registration: list
    calibration: Calibration
    attrs: dict = field(default_factory=dict)

    @property
    def reference_bias_v(self) -> float:
        return float(self.biases_v[self.reference_index])

    def stacked(self, name, *, net=False):
        """One quantity over the series, shape (n, ny, nx)."""
        source = self.net if net else self.maps
        return np.stack([getattr(r, name) for r in source])

    def file_maps(self) -> dict:
        """The result-file layout of DESIGN.md §4 for a bias series: name → (array, unit)."""
        out = {}
        for i, (m, n) in enumerate(zip(self.maps, self.net)):
            for name, (array, unit) in {**series_slices(m), **series_slices(n, net=True)}.items():
                out.setdefault(name, (np.empty((len(self.maps), *array.shape), array.dtype), unit))[0][i] = array
        out.update(series_axes(self.biases_v, self.registration))
        return out

    def file_attrs(self) -> dict:
        return {**self.calibration.to_attrs(), **series_attrs(self.biases_v, self.reference_index,
                                                               self.registration), **self.attrs}


def series_slices(result, *, net=False) -> dict:
    """One acquisition's slices of the result file (its maps, or with ``net`` its net maps): name → (array, unit)."""
    prefix, names = ("net_", NET_NAMES) if net else ("", MAP_NAMES)
    out = {}
    for name in names:
        if getattr(result, name) is not None:
            out[f"{prefix}{name}"] = (np.asarray(getattr(result, name), np.float32), unit_of(name))
    out[f"{prefix}valid"] = (result.valid.astype(np.uint8), "1")
    return out


def series_axes(biases_v, registrations) -> dict:
    """The per-acquisition vectors of the result file: bias, index, shift and its evidence."""
    regs = list(registrations)
    return {
        "bias": (np.asarray(biases_v, np.float64), "V"),
        "acquisition_index": (np.arange(len(regs), dtype=np.int64), "1"),
        "registration_shift": (np.array([r.shift_px for r in regs], np.float64).reshape(-1, 2), "px"),
        "registration_structure_snr": (np.array([r.structure_snr for r in regs], np.float64), "1"),
        "registration_residual_before": (np.array([r.residual_before for r in regs], np.float64), "1"),
        "registration_residual_after": (np.array([r.residual_after for r in regs], np.float64), "1"),
        "registration_shift_stderr": (np.array([r.shift_stderr_px for r in regs], np.float64), "px"),
    }


def series_attrs(biases_v, reference_index, registrations) -> dict:
    regs = list(registrations)
    return {"reference_bias_v": float(np.asarray(biases_v)[reference_index]), "reference_index": int(reference_index),
            "registration_source": [r.source for r in regs],
            "registration_constrained": np.array([r.constrained for r in regs], np.uint8),
            "registration_reason": [r.reason or "" for r in regs]}


def check_biases(biases_v, count, reference_bias_v, *, reference_index=None):
    """Validate the biases of a series; return them as an array and the reference's index.

    A bias may repeat (a return sweep 0 → 1 → 0 V). The reference is the acquisition at
    ``reference_bias_v``; where that bias repeats, the first of them, or ``reference_index``.
    """
    reference_bias_v = _validate.finite("reference_bias_v", reference_bias_v, noun="bias in V")
    biases = np.asarray(biases_v, dtype=float).ravel()
    if biases.size != count:
        raise InputDataError(f"a bias series of {count} acquisitions needs {count} biases, got {biases.size}")
    if not np.all(np.isfinite(biases)):
        raise InputDataError(f"biases must be finite numbers in V, got {biases.tolist()}")
    matches = np.flatnonzero(np.isclose(biases, reference_bias_v, rtol=0, atol=1e-9))
    if matches.size == 0:
        raise InputDataError(
            f"the reference bias {reference_bias_v} V is not among the biases {biases.tolist()} V "
            "(set reference_bias_v)")
    if reference_index is None:
        return biases, int(matches[0])
    if int(reference_index) not in matches:
        raise InputDataError(f"reference_index {reference_index} is not an acquisition at the reference bias "
                             f"{reference_bias_v:g} V (those are {matches.tolist()})")
    return biases, int(reference_index)


def resolve_biases(recorded, given, names, *, override=False, option="given", override_option="override=True"):
    """The bias of each acquisition from what its file records and what the user gave.

    Parameters
    ----------
    recorded : sequence of float or None
        The bias each file records (None: none recorded).
    given : sequence of float or None
        The biases the user gave, one per acquisition in the same order, or None.
    names : sequence of str
        What to call each acquisition in a message (its file).
    override : bool
        A given bias replaces a different recorded one (with a warning) instead of being refused.
    option, override_option : str
        The names of the user's biases and of the override in messages (``--bias`` and
        ``--override-bias`` on the command line).

    Returns
    -------
    list of float, and the source of each (``"file"`` or ``"user"``)
    """
    import warnings

    if given is None:
        missing = [n for n, r in zip(names, recorded) if r is None]
        if missing:
            raise InputDataError(f"no bias recorded in {', '.join(missing)}: give {option} V... (one per FILE)")
        return [float(r) for r in recorded], ["file"] * len(recorded)
    given = list(given)
    if len(given) != len(recorded):
        raise InputDataError(f"a bias series of {len(recorded)} acquisitions needs {len(recorded)} biases, got "
                             f"{len(given)} ({option})")
    out, sources = [], []
    for name, r, g in zip(names, recorded, given):
        if r is not None and abs(float(r) - float(g)) > 1e-9:
            if not override:
                raise InputDataError(f"{name} records a bias of {float(r):g} V but {option} gives {float(g):g} V "
                                     f"for it: leave out {option} to use the recorded biases, or give {override_option}")
            warnings.warn(f"{name}: the file records {float(r):g} V, using the given {float(g):g} V", stacklevel=2)
        out.append(float(g))
        sources.append("user")
    return out, sources


#: Names of the registration choices in messages, for Python callers.
PYTHON_NAMES = {"shift": "shifts_px=", "registration_image": "registration_images=", "no_register": "register_maps=False"}


def registration_warning(registrations, biases, *, names=None, options=PYTHON_NAMES):
    """One warning line for the acquisitions registration could not align, or None."""
    failed = [i for i, r in enumerate(registrations) if r.source == "rejected"]
    if not failed:
        return None
    label = names or [f"{b:+g} V" for b in biases]
    first = registrations[failed[0]]
    return (f"registration: no reliable shift for {len(failed)} of {len(registrations) - 1} acquisitions "
            f"({', '.join(label[i] for i in failed[:4])}{' …' if len(failed) > 4 else ''}: {first.reason}); "
            f"none was applied, so drift (if any) remains in the net maps: give the shifts with {options['shift']}, "
            f"register on an image without bias contrast with {options['registration_image']}, or accept no drift "
            f"correction with {options['no_register']}")


def _load(source, image):
    """Segments and registration image of one acquisition (a source may be a callable reading it)."""
    if callable(source):
        got = source()
        if isinstance(got, tuple):
            return got
        return got, image
    return source, image


def stream_series(sources, biases_v, calibration: Calibration, sink, *, reference_bias_v=0.0, reference_index=None,
                  response="exact", gains=None, offsets=None, vacuum=None, descan_order=2, descan_region=None,
                  settle_frame=None, settle_branch=None, on_reference=None, shifts_px=None, register_maps=True, registration_images=None,
                  registration_exclude=None, upsample=20, progress=False, names=None, **options):
    """Reconstruct a bias series one acquisition at a time, handing each to ``sink``.

    ``sink(index, result, registration, net=False)`` gets, the reference first and then the
    others in acquisition order, each acquisition's registered
    :class:`~dpcstem.result.DPCResult`, then (``net=True``) its net one against the
    reference, with its :class:`~dpcstem.registration.Registration`: one map set at a time,
    dropped once the sink returns (and never changed after: the sink may keep the arrays, as
    the result file does while it writes them and the next set is computed). Only the reference's deflection and registration image
    stay in memory throughout (the image prepared once for every registration,
    :class:`~dpcstem.registration.PreparedReference`). Each acquisition passes through the
    segment kernel once.

    Parameters
    ----------
    sources : sequence
        Per acquisition: an array (4, ny, nx) of segments A, B, C, D in counts, or a
        callable that returns one (or a pair (segments, registration image)) when called.
    biases_v : sequence of float
        Applied bias of each acquisition, V (may repeat).
    calibration : Calibration
    sink : callable
    reference_bias_v, reference_index
        The reference acquisition (see :func:`check_biases`).
    response, gains, offsets
        As in :func:`dpcstem.reconstruct.segment_deflection`.
    vacuum : array_like, shape (4, ny, nx), optional
        A vacuum scan: the segment gains and the descan, removed from every map before
        registration (the descan belongs to the scan, so it must not move with the drift
        correction). See :func:`dpcstem.reconstruct.vacuum_reference`.
    descan_order : {1, 2}
    descan_region : ndarray of bool (ny, nx), optional
        Field-free pixels of the **reference** acquisition: one descan surface is fitted
        there (after the vacuum's, if any) and removed from every acquisition before
        registration. The descan belongs to the scan, which a series keeps; a region
        field-free at the reference bias may hold field at another, so it is fitted once.
    settle_frame : callable, optional
        ``settle_frame(u, v, valid) -> Calibration``: given the reference's deflection in the
        detector frame (ψ = 0, no flip; descan removed), the calibration whose rotation and
        flip turn it into the scan frame (a fitted rotation), applied to every acquisition.
        Without it the calibration's own rotation is used.
    settle_branch : callable, optional
        ``settle_branch(u, v, valid, bias_difference_v, calibration) -> Calibration``: given
        the first net map whose bias differs from the reference's (detector frame) and the
        calibration ``settle_frame`` gave, the calibration on the right 180° branch (the
        polarity of the bias). Needs ``settle_frame``.
    on_reference : callable, optional
        ``on_reference(theta_x, theta_y, valid, calibration)``: shown the reference's
        deflection in the scan frame before it is reconstructed (to judge an assumed rotation
        by the curl it leaves, without a second pass through the kernel).
    shifts_px : sequence of (dy, dx), optional
        Shifts given by hand (pixels, applied to each map) instead of measured ones.
    register_maps : bool
        Measure shifts (default) or apply none.
    registration_images : sequence of ndarray (ny, nx), optional
        Per acquisition, an image of a channel that does not change with bias (the
        simultaneous ADF/HAADF) to register on; default the segment sum.
    registration_exclude : ndarray of bool (ny, nx), optional
        Pixels the registration leaves out (the interface band, where the segment sum of an
        annular detector shows the layer itself).
    upsample : int
    progress : bool or dpcstem.progress.Stages
        Show progress through the stages; or the stages of the command this series is part of.
    names : sequence of str, optional
        What to call each acquisition in a message (its file); default its number.
    **options
        Passed to :func:`dpcstem.reconstruct.reconstruct_deflection`.

    Returns
    -------
    reference_index : int
    registrations : list of Registration
    attrs : dict
        Provenance for the result file (response, descan), and ``calibration``: the
        calibration the maps were reconstructed with (a fitted rotation in it).
    """
    from .calibration.descan import fit_descan

    options = ReconstructionOptions(response=response, gains=gains, offsets=offsets, descan_order=descan_order,
                                    **options)  # refused here, before any acquisition is read
    sources = list(sources)
    count = len(sources)
    if not count:
        raise InputDataError("a bias series needs at least one acquisition")
    if settle_branch is not None and settle_frame is None:
        raise InputDataError("settle_branch chooses the 180° branch of a fitted rotation: give settle_frame too")
    biases, ref = check_biases(biases_v, count, reference_bias_v, reference_index=reference_index)
    names = list(names) if names is not None else [f"acquisition {i + 1} of {count}" for i in range(count)]
    images = list(registration_images) if registration_images is not None else [None] * count
    if len(images) != count:
        raise InputDataError(f"registration_images: give one image per acquisition ({count}), got {len(images)}")
    if shifts_px is not None:
        try:
            shifts = np.asarray(shifts_px, dtype=float)
        except (TypeError, ValueError):
            shifts = np.full(1, np.nan)
        if shifts.shape != (count, 2) or not np.all(np.isfinite(shifts)):
            raise InputDataError(f"give one finite shift (dy, dx) in pixels per acquisition, {count} in "
                                 f"all, got {shifts_px!r}")
        shifts_px = [tuple(float(v) for v in row) for row in shifts]
    # The maps are measured in the frame the rotation is known in: the scan frame, or with a
    # rotation still to fit the detector frame (turned into the scan frame once it is fitted).
    measured = calibration if settle_frame is None else calibration.replace(detector_rotation_deg=0.0, flip=False)
    stages = progress if isinstance(progress, Stages) else Stages("bias series", progress)
    descans = []
    if vacuum is not None:
        stages.stage("vacuum reference", 1)
        gains, vacuum_descan = vacuum_reference(vacuum, measured, options=options)
        options = options.replace(gains=gains)
        descans.append(("descan", vacuum_descan))
        stages.step()
    shape = None

    def deflection(i):
        nonlocal shape
        segments, image = _load(sources[i], images[i])
        segments = np.asarray(segments)
        if shape is None:
            shape = segments.shape
        elif segments.shape != shape:
            raise InputDataError(f"the acquisitions of a bias series have different shapes: "
                                 f"{sorted({shape, segments.shape})} ({names[i]})")
        tx, ty, total, valid = segment_deflection(segments, measured, options=options)
        del segments
        if not valid.any():
            raise InputDataError(f"{names[i]} ({biases[i]:g} V): no pixel could be reconstructed (zero, saturated "
                                 "or non-finite segments); nothing was written")
        for _, fit in descans:
            tx, ty = fit.subtract(tx, ty)
        if image is None:
            image = total
        else:
            image = np.asarray(image, dtype=float)
            if image.shape != shape[1:]:
                raise InputDataError(f"{names[i]}: the registration image has shape {image.shape}, the scan "
                                     f"{shape[1:]}")
        return tx, ty, valid, image

    stages.stage("reconstructing, registering and subtracting", count)
    ref_x, ref_y, ref_valid, ref_image = deflection(ref)
    if descan_region is not None:
        region_fit = fit_descan(ref_x, ref_y, mask=np.asarray(descan_region, bool) & ref_valid, order=descan_order)
        ref_x, ref_y = region_fit.subtract(ref_x, ref_y)
        descans.append(("descan_region", region_fit))
    frame = calibration if settle_frame is None else settle_frame(ref_x, ref_y, ref_valid)
    registrations = [None] * count
    ref_reg = Registration(shifts_px[ref] if shifts_px is not None else (0.0, 0.0),
                           "user" if shifts_px is not None else "reference")
    if shifts_px is not None and ref_reg.shift_px != (0.0, 0.0):
        rx, ok_x = shift_map(ref_x, ref_reg.shift_px, ref_valid)
        ry, ok_y = shift_map(ref_y, ref_reg.shift_px, ref_valid)
        ref_x, ref_y, ref_valid = rx, ry, ok_x & ok_y
    ref_x, ref_y = ref_x.astype(np.float32), ref_y.astype(np.float32)
    ref_image = PreparedReference(np.asarray(ref_image, np.float32)) if shifts_px is None and register_maps else None

    def registered(i):
        """Acquisition i's deflection (measured frame, float32) shifted onto the reference, and its registration."""
        tx, ty, valid, image = deflection(i)
        if shifts_px is not None:
            reg = Registration(shifts_px[i], "user")
        elif register_maps:
            reg = register(ref_image, image, valid=ref_valid & valid, exclude=registration_exclude,
                           upsample=upsample)
        else:
            reg = Registration((0.0, 0.0), "none")
        sx, ok_x = shift_map(tx, reg.shift_px, valid)
        sy, ok_y = shift_map(ty, reg.shift_px, valid)
        return sx.astype(np.float32, copy=False), sy.astype(np.float32, copy=False), ok_x & ok_y, reg

    pending = {}
    if settle_branch is not None:
        first = next((i for i in range(count) if i != ref and biases[i] != biases[ref]), None)
        if first is not None:  # the polarity of the bias: read from the first net map, kept for its turn
            pending[first] = registered(first)
            sx, sy, ok, _ = pending[first]
            frame = settle_branch(sx - ref_x, sy - ref_y, ok & ref_valid, biases[first] - biases[ref], frame)

    def scan_frame(x, y):
        if settle_frame is None:
            return x, y
        u, v = frame.to_scan_frame(x, y)
        return u.astype(np.float32), v.astype(np.float32)

    ref_tx, ref_ty = scan_frame(ref_x, ref_y)
    if on_reference is not None:
        on_reference(ref_tx, ref_ty, ref_valid, frame)
    ref_result = reconstruct_deflection(ref_tx, ref_ty, frame, valid=ref_valid, options=options)
    del ref_tx, ref_ty
    # A net map over the reference's valid pixels has the potential of the map minus the reference's
    # (the integration is linear): one integration per map, not two (the difference is float32's).
    ref_projected = _projected(ref_result)
    sink(ref, ref_result, ref_reg)
    zero = np.zeros(ref_x.shape, np.float32)
    ref_net = reconstruct_deflection(zero, zero, frame, valid=ref_valid, options=options,
                                     projected_potential=zero)
    del ref_result, zero
    sink(ref, ref_net, ref_reg, net=True)
    registrations[ref] = ref_reg
    del ref_net
    stages.step()
    for i in range(count):
        if i == ref:
            continue
        sx, sy, ok, reg = pending.pop(i) if i in pending else registered(i)
        registrations[i] = reg
        result = reconstruct_deflection(*scan_frame(sx, sy), frame, valid=ok, options=options)
        net_projected = None  # other valid pixels (or no thickness): the net deflection is integrated itself
        if ref_projected is not None and np.array_equal(ok, ref_valid):
            net_projected = _projected(result) - ref_projected
        sink(i, result, reg)
        del result
        sx -= ref_x
        sy -= ref_y
        sink(i, reconstruct_deflection(*scan_frame(sx, sy), frame, valid=ok & ref_valid, options=options,
                                       projected_potential=net_projected), reg, net=True)
        del sx, sy, net_projected
        stages.step()
    stages.close()
    attrs = {"response": response_model(response, frame).name, "calibration": frame}
    for prefix, fit in descans:
        attrs.update(fit.attrs(frame if settle_frame is not None else None, prefix))
    return ref, registrations, attrs


def _projected(result):
    """A result's projected potential (V·nm, NaN outside its valid pixels), or None without a thickness."""
    return result.extra["projected_potential"][0] if "projected_potential" in result.extra else None


def reconstruct_series(segments_list, biases_v, calibration: Calibration, *, warn=True, **kwargs) -> BiasSeriesResult:
    """Reconstruct a bias series and its net maps against the reference bias, in memory.

    Takes the arguments of :func:`stream_series` (less ``sink``) and keeps every map.
    With ``warn``, acquisitions that registration could not align raise one warning naming
    what would fix it.
    """
    import warnings

    segments_list = list(segments_list)
    maps, nets = [None] * len(segments_list), [None] * len(segments_list)

    def keep(i, result, _, net=False):
        (nets if net else maps)[i] = result

    ref, registrations, attrs = stream_series(segments_list, biases_v, calibration, keep, **kwargs)
    calibration = attrs.pop("calibration")
    biases = np.asarray(biases_v, dtype=float).ravel()
    if warn and (message := registration_warning(registrations, biases)):
        warnings.warn(message, stacklevel=2)
    return BiasSeriesResult(biases, ref, maps, nets, registrations, calibration, attrs=attrs)


class LayerTable:
    """Profiles across an interface of each net map, as the series streams, and the layer figures.

    Use it as (part of) the sink of :func:`stream_series`: ``add`` takes each net map's
    profiles (full band); ``rows`` gives the figures within a half-range, the user's or, by
    default, :func:`~dpcstem.interface.default_half_range` from the profiles themselves.
    """

    #: The figures of a row, with their units, in the order of the CSV table and the result file.
    FIGURES = (("peak_field_v_per_m", "V/m"), ("peak_field_stderr", "V/m"), ("peak_position_nm", "nm"),
               ("width_nm", "nm"), ("width_stderr", "nm"), ("potential_drop_v", "V"),
               ("potential_drop_stderr", "V"), ("areal_charge_c_per_m2", "C/m^2"),
               ("areal_charge_stderr", "C/m^2"), ("side", "1"))

    def __init__(self, interface, calibration: Calibration, shape, *, bin_nm=None, side=None, counter_nm=None):
        self.interface = interface
        self.step = (calibration.step_x_nm, calibration.step_y_nm)
        interface.check_inside(shape, self.step)
        self.bin_nm, self.side, self.counter_nm = bin_nm, side, counter_nm
        self.field_profiles, self.charge_profiles = {}, {}

    def add(self, index, net):
        from .interface import profile_across

        normal = self.interface.normal_component(net.field_x, net.field_y)
        self.field_profiles[index] = profile_across(normal, self.interface, self.step, bin_nm=self.bin_nm,
                                                    valid=net.valid, units="V/m")
        self.charge_profiles[index] = profile_across(net.charge_density, self.interface, self.step,
                                                     bin_nm=self.bin_nm, valid=net.valid, units="C/m^3")

    def half_range(self, reference_index):
        """The data's half-range (nm): where the net field returns to noise."""
        from .interface import default_half_range

        return default_half_range([p for i, p in self.field_profiles.items() if i != reference_index])

    def rows(self, biases_v, reference_index, half_range_nm):
        """Layer figures of each net map but the reference's: dicts with ``index``, ``bias_v`` and the figures."""
        from .interface import layer_figures

        rows = []
        for i in sorted(self.field_profiles):
            if i == reference_index:
                continue
            fp = self.field_profiles[i].within(half_range_nm)
            figures = layer_figures(fp, side=self.side, counter_nm=self.counter_nm)
            rows.append({"index": i, "bias_v": float(biases_v[i]), **figures.as_dict(), "field_profile": fp,
                         "charge_profile": self.charge_profiles[i].within(half_range_nm),
                         "half_range_nm": float(half_range_nm)})
        return rows

    @classmethod
    def file_maps(cls, rows) -> dict:
        """The figures as result-file vectors ``layer_<figure>`` (one entry per row), with ``layer_bias``."""
        out = {"layer_index": (np.array([r["index"] for r in rows], np.int64), "1"),
               "layer_bias": (np.array([r["bias_v"] for r in rows], np.float64), "V")}
        for name, unit in cls.FIGURES:
            out[f"layer_{name}"] = (np.array([r[name] for r in rows], np.float64), unit)
        return out

    @classmethod
    def csv_rows(cls, rows):
        """Header and rows of the ``--table`` CSV: index, bias and every figure with its unit."""
        header = ["index", "bias_V"] + [f"{name}[{unit}]" for name, unit in cls.FIGURES]
        return header, [[r["index"], r["bias_v"], *[r[name] for name, _ in cls.FIGURES]] for r in rows]


def interface_table(series: BiasSeriesResult, interface, *, half_range_nm=None, bin_nm=None, side=None,
                    counter_nm=None):
    """Net layer figures for each bias of an in-memory series (a list of dicts with ``index`` and ``bias_v``).

    ``half_range_nm`` None takes it from the data (:func:`~dpcstem.interface.default_half_range`);
    the half-range used is in each row as ``half_range_nm``.
    """
    table = LayerTable(interface, series.calibration, series.maps[0].shape, bin_nm=bin_nm, side=side,
                       counter_nm=counter_nm)
    for i, net in enumerate(series.net):
        if i != series.reference_index:
            table.add(i, net)
    half = table.half_range(series.reference_index) if half_range_nm is None else float(half_range_nm)
    return table.rows(series.biases_v, series.reference_index, half)


def command_line(files, *, output, interface=None, half_range_nm=None, table=None, options=()):
    """The ``dpcstem bias-series`` command that reproduces a series and its layer table, as one shell line.

    Parameters
    ----------
    files : path-like or sequence of path-like
        The acquisitions, or the folder that holds them.
    output : path-like
        The result file.
    interface : Interface, optional
        Its two points are written exactly (``repr`` of each float), so the normal is the same.
    half_range_nm : float, optional
        A half-range to fix (default: the command takes it from the data, as the original run).
    table : path-like, optional
        The CSV of the layer figures.
    options : sequence of str
        Further options, each already split (e.g. ``["--reference", "vacuum.h5"]``).
    """
    files = list(files) if isinstance(files, (list, tuple)) else [files]
    words = ["dpcstem", "bias-series", *(str(f) for f in files), *(str(o) for o in options)]
    if interface is not None:
        words += ["--interface", *(repr(float(v)) for v in (*interface.start_nm, *interface.end_nm))]
    if half_range_nm is not None:
        words += ["--half-range", repr(float(half_range_nm))]
    if table is not None:
        words += ["--table", str(table)]
    words += ["-o", str(output)]
    return shlex.join(words)
