"""In-situ bias series: net field and net charge accumulation against a reference bias.

Each acquisition is inverted through the detector response to a deflection map first; the
maps are registered to the reference acquisition (from their segment-sum images) and
subtracted **in deflection space**, θ_net = θ(V) − θ(V_ref), before the net field and net
charge density are computed. Subtracting raw difference signals instead would carry the
response's nonlinearity into the net map wherever a bias-independent deflection (the
mean-inner-potential step, thickness gradients, diffraction contrast) is large.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from .calibration import Calibration
from .errors import InputDataError
from .options import ReconstructionOptions
from .reconstruct import reconstruct_deflection, segment_deflection, vacuum_reference
from .response import response_model
from .units import unit_of

#: A direction of the segment-sum image has structure when its mean squared gradient (of the
#: smoothed image) exceeds this many times what the image's own noise alone would give.
STRUCTURE_SIGNIFICANCE = 4.0
#: Gaussian smoothing (pixels) of the image whose gradients judge its structure.
STRUCTURE_SMOOTHING_PX = 2.0


@dataclass(frozen=True)
class Registration:
    """Shift (dy, dx) in pixels that aligns a moving image onto the reference, and how it was found.

    ``constrained`` is True when the image had structure in one direction only and the
    shift was kept to that direction.
    """

    shift_px: tuple
    error: float
    constrained: bool


def register(reference, moving, *, upsample=20, valid=None, iterations=20) -> Registration:
    """Sub-pixel shift that brings ``moving`` onto ``reference``.

    A windowed phase correlation (scikit-image) gives a first estimate; Gauss–Newton
    least squares then refines it, minimising Σ (moving shifted by s − reference − c)² over
    the pixels that stay inside the scan, with cubic-spline shifts, on both images smoothed
    by a Gaussian of :data:`STRUCTURE_SMOOTHING_PX` (noisy gradients would bias the shift
    toward zero). The normal matrix of that
    fit is the images' structure tensor: along a direction whose gradient energy is not
    :data:`STRUCTURE_SIGNIFICANCE` times what the image's noise alone gives there is nothing
    to measure, so the shift is kept to the other direction (a straight interface gives a
    shift across it and none along it) and ``constrained`` is set; with no direction of
    structure the shift is zero.

    Parameters
    ----------
    reference, moving : ndarray, shape (ny, nx)
        Segment-sum (or any structural) images.
    upsample : int
        Precision 1/upsample of the first estimate.
    valid : ndarray of bool, optional
        Pixels to use; the others are replaced by the mean.
    iterations : int
        Largest number of Gauss–Newton steps.

    Returns
    -------
    Registration
        ``shift_px`` (dy, dx) to apply to ``moving`` (e.g. with :func:`shift_map`).
    """
    from skimage.registration import phase_cross_correlation

    ref = _fill(reference, valid)
    mov = _fill(moving, valid)
    ref = ref - ref.mean()
    mov = mov - mov.mean()
    energies, directions = _structure(ref)
    noise_energy = _noise_gradient_energy(ref)
    significant = energies > STRUCTURE_SIGNIFICANCE * noise_energy
    if not significant.any():
        return Registration((0.0, 0.0), math.nan, True)
    constrained = not significant.all()
    keep = directions[:, significant]  # (2, k): the directions with structure
    # The fit runs on smoothed images, over the pixels where the reference has structure:
    # gradients that are only noise would pull the shift toward zero.
    ref = ndimage.gaussian_filter(ref, STRUCTURE_SMOOTHING_PX, mode="nearest")
    mov = ndimage.gaussian_filter(mov, STRUCTURE_SMOOTHING_PX, mode="nearest")
    gy, gx = np.gradient(ref)
    edges = gy**2 + gx**2 > STRUCTURE_SIGNIFICANCE * 2 * noise_energy
    edges = ndimage.binary_dilation(edges, iterations=2) if edges.sum() >= 16 else np.ones_like(edges)

    window = np.outer(np.hanning(ref.shape[0]), np.hanning(ref.shape[1])) if min(ref.shape) > 4 else 1.0
    shift, _, _ = phase_cross_correlation(ref * window, mov * window, upsample_factor=upsample,
                                          normalization=None)
    shift = keep @ (keep.T @ np.asarray(shift, dtype=float))
    residual = math.nan
    for _ in range(iterations):
        warped = ndimage.shift(mov, shift, order=3, mode="nearest")
        margin = int(np.ceil(np.abs(shift).max())) + 2
        inner = (slice(margin, -margin or None), slice(margin, -margin or None))
        wy, wx = np.gradient(warped)
        use = np.zeros_like(edges)
        use[inner] = edges[inner]
        diff = (warped - ref)[use]
        if diff.size == 0:
            break
        # Unknowns: the shift step along the kept directions and an intensity offset.
        gradients = np.column_stack([wy[use], wx[use]]) @ keep
        design = np.column_stack([gradients, np.ones_like(diff)])
        solution = np.linalg.lstsq(design, diff, rcond=None)[0]
        step = keep @ solution[:-1]
        shift = shift + step
        residual = float(np.sqrt(np.mean((diff - solution[-1]) ** 2)) / (np.std(ref) or 1.0))
        if np.max(np.abs(step)) < 1e-4:
            break
    return Registration((float(shift[0]), float(shift[1])), residual, constrained)


def _structure(image):
    """Eigenvalues (ascending) and eigenvectors ((y, x) columns) of the smoothed image's structure tensor."""
    gy, gx = np.gradient(ndimage.gaussian_filter(image, STRUCTURE_SMOOTHING_PX, mode="nearest"))
    tensor = np.array([[np.mean(gy * gy), np.mean(gy * gx)], [np.mean(gx * gy), np.mean(gx * gx)]])
    return np.linalg.eigh(tensor)


def _noise_gradient_energy(image):
    """Mean squared gradient, along one direction, that the image's noise alone leaves after smoothing.

    The noise σ is estimated robustly from neighbour differences (median absolute
    deviation), and the smoothing-and-gradient filter's gain for white noise is its
    squared impulse response summed.
    """
    diff = np.diff(image, axis=1).ravel()
    sigma = 1.4826 * np.median(np.abs(diff - np.median(diff))) / math.sqrt(2)
    size = int(8 * STRUCTURE_SMOOTHING_PX) | 1
    impulse = np.zeros((size, size))
    impulse[size // 2, size // 2] = 1.0
    response = np.gradient(ndimage.gaussian_filter(impulse, STRUCTURE_SMOOTHING_PX, mode="constant"), axis=1)
    return sigma**2 * float(np.sum(response**2))


def _fill(image, valid):
    image = np.asarray(image, dtype=float)
    ok = np.isfinite(image) if valid is None else (np.asarray(valid, bool) & np.isfinite(image))
    if not ok.any():
        raise InputDataError("an image for registration has no valid pixel")
    return np.where(ok, image, image[ok].mean())


def shift_map(values, shift_px, valid=None):
    """Shift a map by (dy, dx) pixels (cubic spline); pixels that leave the scan become NaN.

    Returns the shifted map and its validity: a pixel is valid where it came from inside
    the scan and from valid pixels (the 4×4 neighbourhood the spline reads).
    """
    values = np.asarray(values, dtype=float)
    ok = np.isfinite(values) if valid is None else (np.asarray(valid, bool) & np.isfinite(values))
    if shift_px == (0.0, 0.0):
        return np.where(ok, values, np.nan), ok
    mean = values[ok].mean() if ok.any() else 0.0
    shifted = ndimage.shift(np.where(ok, values, mean), shift_px, order=3, mode="nearest")
    support = ndimage.binary_erosion(ok, np.ones((3, 3), bool), border_value=1)
    weight = ndimage.shift(support.astype(float), shift_px, order=1, mode="constant", cval=0.0)
    good = weight > 1 - 1e-6
    return np.where(good, shifted, np.nan), good


@dataclass
class BiasSeriesResult:
    """Every bias's maps and the net maps against the reference bias.

    Attributes
    ----------
    biases_v : ndarray, shape (n,)
    reference_index : int
    maps : list of DPCResult
        Each acquisition's own reconstruction, registered onto the reference.
    net : list of DPCResult
        Net maps θ(V) − θ(V_ref) → net field and net charge (the reference's own is zero).
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
        for name in ("deflection_x", "deflection_y", "field_x", "field_y", "charge_density",
                     "free_charge_density", "potential"):
            if getattr(self.maps[0], name) is not None:
                out[name] = (self.stacked(name), unit_of(name))
        out["valid"] = (self.stacked("valid").astype(np.uint8), "1")
        for name in ("field_x", "field_y", "charge_density", "free_charge_density"):
            if getattr(self.net[0], name) is not None:
                out[f"net_{name}"] = (self.stacked(name, net=True), unit_of(name))
        out["net_deflection_x"] = (self.stacked("deflection_x", net=True), "mrad")
        out["net_deflection_y"] = (self.stacked("deflection_y", net=True), "mrad")
        out["net_valid"] = (self.stacked("valid", net=True).astype(np.uint8), "1")
        out["bias"] = (self.biases_v.astype(np.float64), "V")
        out["registration_shift"] = (np.array([r.shift_px for r in self.registration]), "px")
        return out

    def file_attrs(self) -> dict:
        return {**self.calibration.to_attrs(), "reference_bias_v": self.reference_bias_v,
                "registration_constrained": np.array([r.constrained for r in self.registration], np.uint8),
                **self.attrs}


def check_biases(biases_v, count, reference_bias_v):
    """Validate the biases of a series; return them as an array and the reference's index."""
    biases = np.asarray(biases_v, dtype=float).ravel()
    if biases.size != count:
        raise InputDataError(f"a bias series of {count} acquisitions needs {count} biases, got {biases.size}")
    if not np.all(np.isfinite(biases)):
        raise InputDataError(f"biases must be finite numbers in V, got {biases.tolist()}")
    values, counts = np.unique(biases, return_counts=True)
    if np.any(counts > 1):
        raise InputDataError(f"duplicate bias values {values[counts > 1].tolist()} V: give each acquisition its own bias")
    matches = np.flatnonzero(np.isclose(biases, reference_bias_v, rtol=0, atol=1e-9))
    if matches.size == 0:
        raise InputDataError(
            f"the reference bias {reference_bias_v} V is not among the biases {biases.tolist()} V "
            "(give --reference-bias)")
    return biases, int(matches[0])


def reconstruct_series(segments_list, biases_v, calibration: Calibration, *, reference_bias_v=0.0,
                       response="exact", gains=None, offsets=None, vacuum=None, descan_order=2, shifts_px=None,
                       register_maps=True, upsample=20, progress=False, names=None, **options) -> BiasSeriesResult:
    """Reconstruct a bias series and its net maps against the reference bias.

    Parameters
    ----------
    segments_list : sequence of array_like, each (4, ny, nx)
        The acquisitions, A, B, C, D in counts, all of one shape.
    biases_v : sequence of float
        Applied bias of each acquisition, V (distinct).
    calibration : Calibration
    reference_bias_v : float
        The bias whose map is subtracted (default 0 V).
    response, gains, offsets
        As in :func:`dpcstem.reconstruct.segment_deflection`.
    vacuum : array_like, shape (4, ny, nx), optional
        A vacuum scan: the segment gains and the descan, which is removed from every map
        before registration (the descan belongs to the scan, not to the specimen, so it
        must not move with the drift correction). See :func:`dpcstem.reconstruct.vacuum_reference`.
    descan_order : {1, 2}
        Plane or quadratic descan fitted to the vacuum scan.
    shifts_px : sequence of (dy, dx), optional
        Registration shifts given by hand (pixels, applied to each map); overrides the
        measured ones.
    register_maps : bool
        Measure the shifts from the segment-sum images (default) or apply none.
    upsample : int
        Sub-pixel precision of the registration.
    progress : bool
        Show a progress bar over the series.
    names : sequence of str, optional
        What to call each acquisition in an error (e.g. its file); default its number.
    **options
        Passed to :func:`dpcstem.reconstruct.reconstruct_deflection`.

    Returns
    -------
    BiasSeriesResult
    """
    options = ReconstructionOptions(response=response, gains=gains, offsets=offsets, descan_order=descan_order,
                                    **options)
    segments_list = list(segments_list)
    if not segments_list:
        raise InputDataError("a bias series needs at least one acquisition")
    biases, ref = check_biases(biases_v, len(segments_list), reference_bias_v)
    shapes = {np.shape(s) for s in segments_list}
    if len(shapes) > 1:
        raise InputDataError(f"the acquisitions of a bias series have different shapes: {sorted(shapes)}")
    if shifts_px is not None:
        try:
            shifts = np.asarray(shifts_px, dtype=float)
        except (TypeError, ValueError):
            shifts = np.full(1, np.nan)
        if shifts.shape != (len(segments_list), 2) or not np.all(np.isfinite(shifts)):
            raise InputDataError(f"give one finite shift (dy, dx) in pixels per acquisition, {len(segments_list)} in "
                                 f"all, got {shifts_px!r}")
        shifts_px = [tuple(row) for row in shifts]

    iterator = range(len(segments_list))
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(iterator, desc="bias series", unit="map")
    descan = None
    if vacuum is not None:
        gains, descan = vacuum_reference(vacuum, calibration, options=options)
        options = options.replace(gains=gains)
    deflections = [None] * len(segments_list)
    for i in iterator:
        tx, ty, total, valid = segment_deflection(segments_list[i], calibration, options=options)
        if not valid.any():
            name = names[i] if names is not None else f"acquisition {i + 1} of {len(segments_list)}"
            raise InputDataError(f"{name} ({biases[i]:g} V): no pixel could be reconstructed (zero, saturated or "
                                 "non-finite segments); nothing was written")
        if descan is not None:
            tx, ty = descan.subtract(tx, ty)
        deflections[i] = (tx, ty, total, valid)
    reference_total, reference_valid = deflections[ref][2], deflections[ref][3]

    registrations, maps, net = [], [], []
    for i, (tx, ty, total, valid) in enumerate(deflections):
        if shifts_px is not None:
            reg = Registration(tuple(float(v) for v in shifts_px[i]), math.nan, False)
        elif register_maps and i != ref:
            reg = register(reference_total, total, upsample=upsample, valid=reference_valid & valid)
        else:
            reg = Registration((0.0, 0.0), 0.0, False)
        registrations.append(reg)
        sx, ok_x = shift_map(tx, reg.shift_px, valid)
        sy, ok_y = shift_map(ty, reg.shift_px, valid)
        maps.append((sx, sy, ok_x & ok_y))
    ref_x, ref_y, ref_ok = maps[ref]
    results = []
    for sx, sy, ok in maps:
        results.append(reconstruct_deflection(sx, sy, calibration, valid=ok, options=options))
        both = ok & ref_ok
        net.append(reconstruct_deflection(sx - ref_x, sy - ref_y, calibration, valid=both, options=options))
    attrs = {"response": response_model(response, calibration).name}
    if descan is not None:
        attrs.update(descan.attrs())
    return BiasSeriesResult(biases, ref, results, net, registrations, calibration, attrs=attrs)


def interface_table(series: BiasSeriesResult, interface, *, half_range_nm=None, bin_nm=None, side=None,
                    counter_nm=None, net=True):
    """Layer figures for each bias from the (net) maps: a list of dicts with ``bias_v``.

    Each row holds the :class:`~dpcstem.interface.LayerFigures` of the net field (the field
    component along the interface normal) and the net charge density.
    """
    from .interface import layer_figures, profile_across

    step = (series.calibration.step_x_nm, series.calibration.step_y_nm)
    rows = []
    source = series.net if net else series.maps
    for bias, result in zip(series.biases_v, source):
        if net and bias == series.reference_bias_v:
            continue
        normal = interface.normal_component(result.field_x, result.field_y)
        fp = profile_across(normal, interface, step, half_range_nm=half_range_nm, bin_nm=bin_nm, valid=result.valid,
                            units="V/m")
        cp = profile_across(result.charge_density, interface, step, half_range_nm=half_range_nm, bin_nm=bin_nm,
                            valid=result.valid, units="C/m^3")
        figures = layer_figures(fp, side=side, counter_nm=counter_nm)
        rows.append({"bias_v": float(bias), **figures.as_dict(), "field_profile": fp, "charge_profile": cp})
    return rows

