"""Whole acquisitions with their answer attached, and in-situ bias series.

:func:`simulate_acquisition` makes one four-segment acquisition the way an instrument
does, each part switchable:

1. the specimen: a space-charge layer whose potential drop follows the applied bias
   (:func:`~dpcstem.simulate.layers.layer_at_bias`), a mean-inner-potential step at the
   interface and a thickness map (:mod:`~dpcstem.simulate.specimen`), evaluated
   analytically at the positions the probe visits (a drifted scan is a shifted set of
   positions, not an interpolated image);
2. the probe: the deflection is weighted by the Airy intensity (:mod:`~dpcstem.simulate.probe`);
3. the instrument: descan, the detector's response (sharp or blurred disc edge), Poisson
   counting at a dose, unequal gains and offsets, uint16 (:mod:`~dpcstem.simulate.instrument`).

:func:`simulate_bias_series` makes the in-situ experiment: one acquisition per bias, the
reference bias first, the scan drifting between frames, plus a vacuum reference.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np

from .. import _validate, physics
from ..calibration import Calibration
from ..errors import InputDataError
from .instrument import Descan, _shape, detect, simulate_vacuum
from .layers import layer_at_bias
from .maps import Truth, UniformField, layer_truth_at
from .probe import airy_first_zero_nm, probe_kernel, probe_weighted
from .specimen import as_mean_inner_potential, as_thickness, mip_deflection_mrad

#: The biases of the in-situ LiCoO2 / Li6PS5Cl experiment, in V.
DEFAULT_BIASES_V = (0.0, 1.0, 1.2, 1.4, 1.6, 1.8, 2.0, 2.2)

#: Points per scan step of the fine profile a layer is interpolated from.
_PROFILE_POINTS_PER_STEP = 64


@dataclass(frozen=True)
class _Scene:
    """The specimen of a simulation: what the beam crosses, evaluated at any positions."""

    layer: object
    share: float
    interface: tuple  # ((x, y) nm, normal deg)
    mip: object
    thickness: object
    kv: float
    extent_nm: tuple  # distance range of the layer's fine profile
    resolution_nm: float
    particles: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))  # (x, y, radius) nm

    def particle_density(self, x, y):
        """Projected particle density at positions (nm), 0 … about 1 (bias-independent)."""
        out = np.zeros(np.shape(x))
        for px, py, radius in self.particles:
            out += np.exp(-((x - px) ** 2 + (y - py) ** 2) / (2 * radius**2))
        return out

    def truth(self, x, y, bias_v) -> Truth:
        """Field, charge, potential, thickness and mean inner potential at positions (nm)."""
        point, normal = self.interface
        if self.layer is None:
            truth = UniformField(0.0, 0.0).truth_at(x, y, point_nm=point)
            truth.figures = {}
        elif isinstance(self.layer, UniformField):
            truth = self.layer.truth_at(x, y, point_nm=point)
        else:
            layer = layer_at_bias(self.layer, bias_v, share=self.share)
            truth = layer_truth_at(layer, x, y, point_nm=point, normal_deg=normal, resolution_nm=self.resolution_nm,
                                   extent_nm=self.extent_nm)
        truth.thickness_nm = self.thickness.evaluate(x, y, self.interface)[0]
        if self.mip is not None:
            truth.mean_inner_potential = self.mip.evaluate(x, y, self.interface)[0]
        truth.figures["bias_v"] = float(bias_v)
        return truth

    def deflection(self, x, y, bias_v, truth=None):
        """Deflection (θx, θy) in mrad at positions (nm): the layer's field and the projected MIP."""
        truth = self.truth(x, y, bias_v) if truth is None else truth
        tx = physics.deflection_mrad_from_field(truth.field_x, self.kv, truth.thickness_nm)
        ty = physics.deflection_mrad_from_field(truth.field_y, self.kv, truth.thickness_nm)
        if self.mip is not None:
            mx, my = mip_deflection_mrad(self.mip, self.thickness, x, y, self.interface, self.kv)
            tx, ty = tx + mx, ty + my
        return tx, ty


def _scene(layer, calibration, shape, *, share, point_nm, normal_deg, mip, thickness, particles=0):
    if layer is not None and not (hasattr(layer, "profile") or isinstance(layer, UniformField)):
        raise InputDataError(
            f"layer must be a MottSchottky, GouyChapman or UniformField (or None), got {type(layer).__name__}")
    if thickness is None:
        thickness = calibration.thickness_nm
        if thickness is None or np.ndim(thickness) != 0:
            raise InputDataError(
                "give thickness= (a number in nm, a pair (before, after) in nm, or a thickness model): "
                f"the calibration's thickness_nm is {'absent' if thickness is None else 'a map'}")
    ny, nx = shape
    sx, sy = calibration.step_x_nm, calibration.step_y_nm
    if point_nm is None:
        point_nm = ((nx - 1) * sx / 2, (ny - 1) * sy / 2)
    point_nm = tuple(float(v) for v in point_nm)
    if len(point_nm) != 2 or not all(math.isfinite(v) for v in point_nm):
        raise InputDataError(f"point_nm must be two finite numbers (x, y) in nm, got {point_nm!r}")
    normal_deg = _validate.finite("normal_deg", normal_deg, noun="angle in degrees")
    # The layer's fine profile covers the scan, a probe's reach and some drift, the same for
    # every frame of a series, so that their potentials share one zero.
    margin = 2 * max(airy_first_zero_nm(calibration.kv, calibration.alpha_mrad) * 10, 10 * max(sx, sy))
    n = math.radians(normal_deg)
    corners = [((cx - point_nm[0]) * math.cos(n) + (cy - point_nm[1]) * math.sin(n))
               for cx in (0.0, (nx - 1) * sx) for cy in (0.0, (ny - 1) * sy)]
    return _Scene(layer=layer, share=float(share), interface=(point_nm, normal_deg), mip=as_mean_inner_potential(mip),
                  thickness=as_thickness(thickness), kv=calibration.kv,
                  extent_nm=(min(corners) - margin, max(corners) + margin),
                  resolution_nm=min(sx, sy) / _PROFILE_POINTS_PER_STEP,
                  particles=_particles(particles, (nx - 1) * sx, (ny - 1) * sy, max(sx, sy)))


def _particles(count, width_nm, height_nm, step_nm):
    """``count`` round particles (x, y, radius in nm) scattered over the scan, at positions fixed by the count."""
    count = _validate.whole("particles", count, minimum=0)
    gen = np.random.default_rng(count)
    return np.column_stack([gen.uniform(0, width_nm, count), gen.uniform(0, height_nm, count),
                            gen.uniform(1.5, 4.0, count) * step_nm])


def _drift(drift_px):
    try:
        dy, dx = (float(v) for v in drift_px)
    except (TypeError, ValueError):
        raise InputDataError(f"drift_px must be two numbers (dy, dx) in pixels, got {drift_px!r}") from None
    if not (math.isfinite(dy) and math.isfinite(dx)):
        raise InputDataError(f"drift_px must be finite, got {drift_px!r}")
    return dy, dx


def _observe(scene, calibration, shape, bias_v, drift_px, *, probe, oversample):
    """The truth at the positions the probe visits, with the deflection it measures."""
    ny, nx = shape
    sx, sy = calibration.step_x_nm, calibration.step_y_nm
    dy, dx = drift_px
    x = (np.arange(nx)[None, :] + dx) * sx + np.zeros((ny, 1))
    y = (np.arange(ny)[:, None] + dy) * sy + np.zeros((1, nx))
    truth = scene.truth(x, y, bias_v)
    if not probe:
        truth.deflection_x, truth.deflection_y = scene.deflection(x, y, bias_v, truth)
    else:
        os_ = _validate.whole("oversample", oversample)
        kernel = probe_kernel(calibration.kv, calibration.alpha_mrad, sx / os_, sy / os_)
        ky, kx = kernel.shape[0] // 2, kernel.shape[1] // 2
        fx = ((np.arange(os_ * (nx - 1) + 1 + 2 * kx) - kx) / os_ + dx) * sx
        fy = ((np.arange(os_ * (ny - 1) + 1 + 2 * ky) - ky) / os_ + dy) * sy
        fine_x, fine_y = np.meshgrid(fx, fy)
        tx, ty = probe_weighted(*scene.deflection(fine_x, fine_y, bias_v), kernel)
        truth.deflection_x, truth.deflection_y = tx[::os_, ::os_], ty[::os_, ::os_]
    truth.figures["drift_px"] = (float(dy), float(dx))
    truth.particles = scene.particle_density(x, y)
    return truth


def simulate_acquisition(layer, calibration: Calibration, shape, *, bias_v=0.0, share=1.0, point_nm=None,
                         normal_deg=0.0, mip=None, thickness=None, scattering_mfp_nm=None, probe=True, oversample=1,
                         descan=None, drift_px=(0.0, 0.0), edge_blur=0.0, gains=None, offsets=None, dose=4e4,
                         noise=True, dtype=np.uint16, rng=None):
    """One four-segment acquisition of a specimen, with its truth.

    Parameters
    ----------
    layer : MottSchottky, GouyChapman, UniformField or None
        The space-charge layer at zero bias (its ``potential_drop_v`` is the built-in
        drop), a uniform field, or no field at all.
    calibration : Calibration
        kV, α, scan step, collection angles, detector rotation and flip of the instrument;
        its ``thickness_nm`` is the specimen's thickness unless ``thickness`` is given.
    shape : (int, int)
        Scan shape (ny, nx).
    bias_v : float
        Applied bias in V; the layer's drop is ``layer.potential_drop_v + share·bias_v``.
    share : float
        Fraction of the bias that drops across the layer.
    point_nm : (float, float), optional
        A point (x, y) of the interface in nm, in the frame of the undrifted scan (pixel
        (0, 0) at the origin); default the scan centre.
    normal_deg : float
        Direction of the interface normal (toward the layer side), degrees from scan +x
        toward +y.
    mip : MeanInnerPotential or (float, float), optional
        Mean inner potentials (V) before and after the interface; None: no step.
    thickness : float, (float, float) or thickness model, optional
        Specimen thickness in nm: one number, two materials (before, after), or
        :class:`~dpcstem.simulate.specimen.WedgeThickness` /
        :class:`~dpcstem.simulate.specimen.StepThickness`. Default: ``calibration.thickness_nm``.
    scattering_mfp_nm : float, optional
        Mean free path (nm) for scattering outside the bright-field disc: the disc keeps
        ``dose·exp(−t/Λ)`` electrons, so the segment sum shows the thickness as an
        instrument's does. None: every electron stays in the disc.
    probe : bool
        Weight the deflection by the Airy probe intensity (else the deflection at the
        probe centre).
    oversample : int
        Positions per scan step at which the deflection is evaluated under the probe
        (1: the probe sampled on the scan grid).
    descan : Descan, optional
        Descan deflection added at the detector.
    drift_px : (float, float)
        Scan drift (dy, dx) in pixels: the probe visits (i + dy, j + dx) of the undrifted
        grid, so the image appears shifted by (−dy, −dx), and
        ``skimage.registration.phase_cross_correlation(undrifted, drifted)`` gives (dy, dx).
    edge_blur, gains, offsets, dose, noise, dtype, rng
        The detector, as for :func:`dpcstem.simulate.instrument.detect`.

    Returns
    -------
    segments : ndarray, shape (4, ny, nx), ``dtype`` (uint16)
        A, B, C, D in counts.
    truth : Truth
        At the positions the probe visited: the layer's field (V/m), charge (C/m³) and
        potential (V), the thickness (nm), the mean inner potential (V), the probe-weighted
        specimen deflection (mrad; add ``descan(shape)`` for what reaches the detector),
        and ``figures`` with ``bias_v`` and ``drift_px``.

    Examples
    --------
    >>> from dpcstem import Calibration
    >>> from dpcstem.simulate import MottSchottky, simulate_acquisition
    >>> cal = Calibration(kv=200, alpha_mrad=1.0, step_x_nm=1.0, thickness_nm=131)
    >>> layer = MottSchottky(density_per_m3=5e25, eps_r=12, potential_drop_v=0.2)
    >>> segments, truth = simulate_acquisition(layer, cal, (16, 32), bias_v=1.0, rng=0)
    >>> segments.shape, segments.dtype, round(truth.figures["potential_drop_v"], 3)
    ((4, 16, 32), dtype('uint16'), 1.2)
    """
    shape = _shape(shape)
    scene = _scene(layer, calibration, shape, share=share, point_nm=point_nm, normal_deg=normal_deg, mip=mip,
                   thickness=thickness)
    truth = _observe(scene, calibration, shape, bias_v, _drift(drift_px), probe=probe, oversample=oversample)
    descan_x, descan_y = (descan or Descan())(shape)
    segments = detect(truth.deflection_x + descan_x, truth.deflection_y + descan_y, calibration,
                      dose=_dose(dose, truth, scattering_mfp_nm), noise=noise, gains=gains, offsets=offsets,
                      edge_blur=edge_blur, dtype=dtype, rng=rng)
    return segments, truth


def _dose(dose, truth, scattering_mfp_nm):
    """Electrons per position in the bright-field disc: the dose less what the specimen scatters out."""
    return dose * (1.0 - _scattered(truth, scattering_mfp_nm))


#: Fraction of the beam a particle at its centre scatters out of the bright-field disc.
PARTICLE_SCATTERING = 0.3


def _scattered(truth, scattering_mfp_nm):
    """Fraction of the beam scattered outside the bright-field disc (by thickness and particles)."""
    kept = 1.0 - PARTICLE_SCATTERING * np.clip(getattr(truth, "particles", 0.0), 0.0, 1.0)
    if scattering_mfp_nm is not None:
        mfp = _validate.positive("scattering_mfp_nm", scattering_mfp_nm, what="in nm")
        kept = kept * np.exp(-truth.thickness_nm / mfp)
    return 1.0 - kept


def annular_dark_field(truth, scattering_mfp_nm, *, dose, noise, rng):
    """The simultaneous ADF image: electrons scattered outside the disc (a share of them), counted.

    It follows the thickness and the particles and nothing that depends on the bias.
    Returns float32 counts, shape of the scan.
    """
    expected = 0.5 * dose * _scattered(truth, scattering_mfp_nm)
    counts = rng.poisson(expected) if noise else expected
    return np.asarray(counts, dtype=np.float32)


@dataclass
class Acquisition:
    """One frame of a simulated series.

    Attributes
    ----------
    segments : ndarray, (4, ny, nx)
        A, B, C, D in counts (uint16 unless asked otherwise).
    truth : Truth
        At the positions this frame's probe visited (see :func:`simulate_acquisition`).
    bias_v : float
    drift_px : (float, float)
        (dy, dx) of this frame against the undrifted grid, pixels.
    adf : ndarray, (ny, nx) float32, or None
        The simultaneous annular dark-field image (counts), when asked for.
    """

    segments: np.ndarray
    truth: Truth
    bias_v: float
    drift_px: tuple
    adf: np.ndarray | None = None


@dataclass
class SimulatedSeries:
    """An in-situ bias series with its answer.

    Attributes
    ----------
    acquisitions : list of Acquisition
        In the order scanned; the reference bias first.
    reference_truths : list of Truth
        Each frame's truth on the grid of the reference frame (what a series registered
        to the reference should give), probe-weighted deflection included.
    vacuum : ndarray, (4, ny, nx) or None
        A vacuum reference scan with the same detector and descan.
    calibration : Calibration
        The instrument's calibration with the specimen's thickness (a number, or the
        reference frame's thickness map).
    descan : Descan
        The descan every frame (and the vacuum scan) carries; ``descan(shape)`` gives its maps.
    settings : dict
        Everything that made the series (HDF5-attribute friendly: numbers, strings, arrays).
    """

    acquisitions: list
    reference_truths: list
    vacuum: np.ndarray | None
    calibration: Calibration
    descan: Descan = field(default_factory=Descan)
    settings: dict = field(default_factory=dict)

    @property
    def biases(self) -> np.ndarray:
        """Bias of each frame, V, in the order scanned."""
        return np.array([a.bias_v for a in self.acquisitions])

    @property
    def drifts_px(self) -> np.ndarray:
        """(dy, dx) drift of each frame, pixels, shape (n, 2)."""
        return np.array([a.drift_px for a in self.acquisitions], dtype=float).reshape(-1, 2)

    def net_truth(self, index) -> dict:
        """Frame ``index`` minus the reference, on the reference grid.

        Returns
        -------
        dict
            ``field_x``, ``field_y`` (V/m), ``charge_density`` (C/m³), ``potential`` (V),
            ``deflection_x``, ``deflection_y`` (mrad), each float64 (ny, nx).
        """
        ref, frame = self.reference_truths[0], self.reference_truths[index]
        names = ("field_x", "field_y", "charge_density", "potential", "deflection_x", "deflection_y")
        return {name: getattr(frame, name) - getattr(ref, name) for name in names}


def simulate_bias_series(layer, calibration: Calibration, shape, biases=DEFAULT_BIASES_V, *, reference_bias_v=0.0,
                         drift_px=(0.0, 0.0), vacuum=True, rng=None, share=1.0, point_nm=None, normal_deg=0.0,
                         mip=None, thickness=None, scattering_mfp_nm=None, probe=True, oversample=1, descan=None,
                         edge_blur=0.0, gains=None, offsets=None, dose=4e4, noise=True,
                         dtype=np.uint16, particles=0, adf=False) -> SimulatedSeries:
    """An in-situ bias series: one acquisition per bias, the reference first, drifting.

    Parameters
    ----------
    layer, calibration, shape
        As for :func:`simulate_acquisition`.
    biases : sequence of float
        Applied biases in V, in the order scanned; a bias may come back (a return sweep
        0 → 1 → 0 V). The reference bias is prepended when the sequence does not start with it.
    reference_bias_v : float
        The reference bias, V.
    drift_px : (float, float) or array_like (n, 2)
        Drift (dy, dx) in pixels added with every frame (frame k drifts by k·drift), or the
        drift of each frame in the order scanned.
    vacuum : bool
        Add a vacuum reference scan (scanned last).
    rng : numpy.random.Generator or int, optional
        One generator serves every frame in turn, so one seed gives the same series.
    share, point_nm, normal_deg, mip, thickness, scattering_mfp_nm, probe, oversample, descan
        As for :func:`simulate_acquisition`, the same for every frame.
    edge_blur, gains, offsets, dose, noise, dtype
        As for :func:`simulate_acquisition`, the same for every frame.
    particles : int
        Round particles (radius 1.5–4 scan steps) scattered over the specimen, at positions
        fixed by their number: bias-independent structure that scatters up to
        :data:`PARTICLE_SCATTERING` of the beam out of the disc (so the segment sum and the
        ADF image show them).
    adf : bool
        Record the simultaneous annular dark-field image of each frame (``Acquisition.adf``):
        what the specimen scatters outside the disc, counted (drawn after the frame's segments).

    Returns
    -------
    SimulatedSeries
    """
    shape = _shape(shape)
    try:
        biases = [float(b) for b in np.atleast_1d(np.asarray(biases, dtype=float))]
        reference_bias_v = float(reference_bias_v)
    except (TypeError, ValueError):
        raise InputDataError(f"biases must be numbers in V, got {biases!r}") from None
    if not biases or not all(math.isfinite(b) for b in [*biases, reference_bias_v]):
        raise InputDataError(f"biases must be finite numbers in V, got {biases!r} (reference {reference_bias_v!r})")
    order = biases if biases[0] == reference_bias_v else [reference_bias_v, *biases]
    drifts = np.asarray(drift_px, dtype=float)
    if drifts.shape == (2,):
        drifts = np.arange(len(order))[:, None] * drifts[None, :]
    if drifts.shape != (len(order), 2) or not np.all(np.isfinite(drifts)):
        raise InputDataError(
            f"drift_px must be (dy, dx) per frame or an array of shape ({len(order)}, 2) in pixels, "
            f"got shape {drifts.shape}")
    scene = _scene(layer, calibration, shape, share=share, point_nm=point_nm, normal_deg=normal_deg, mip=mip,
                   thickness=thickness, particles=particles)
    rng = np.random.default_rng(rng)
    descan = descan or Descan()
    descan_x, descan_y = descan(shape)
    detector = dict(noise=noise, gains=gains, offsets=offsets, edge_blur=edge_blur, dtype=dtype, rng=rng)
    acquisitions, reference_truths = [], []
    for bias, drift in zip(order, drifts):
        truth = _observe(scene, calibration, shape, bias, tuple(drift), probe=probe, oversample=oversample)
        segments = detect(truth.deflection_x + descan_x, truth.deflection_y + descan_y, calibration,
                          dose=_dose(dose, truth, scattering_mfp_nm), **detector)
        image = annular_dark_field(truth, scattering_mfp_nm, dose=dose, noise=noise, rng=rng) if adf else None
        acquisitions.append(Acquisition(segments, truth, bias, (float(drift[0]), float(drift[1])), image))
        if np.array_equal(drift, drifts[0]):
            reference_truths.append(truth)
        else:
            reference_truths.append(_observe(scene, calibration, shape, bias, tuple(drifts[0]), probe=probe,
                                             oversample=oversample))
    vacuum_scan = simulate_vacuum(calibration, shape, descan=descan, dose=dose, **detector) if vacuum else None
    ref_thickness = reference_truths[0].thickness_nm
    uniform = bool(np.all(ref_thickness == ref_thickness.flat[0]))
    series_calibration = calibration.replace(thickness_nm=float(ref_thickness.flat[0]) if uniform else ref_thickness)
    settings = _settings(scene, descan, probe=probe, oversample=oversample, edge_blur=edge_blur, gains=gains,
                         offsets=offsets, dose=dose, noise=noise, reference_bias_v=reference_bias_v, particles=int(particles),
                         scattering_mfp_nm=math.nan if scattering_mfp_nm is None else scattering_mfp_nm)
    return SimulatedSeries(acquisitions, reference_truths, vacuum_scan, series_calibration, descan, settings)


def describe(obj, prefix) -> dict:
    """A model's fields as flat ``prefix_name`` → value (HDF5-attribute friendly; None left out)."""
    if obj is None:
        return {f"{prefix}_model": "none"}
    out = {f"{prefix}_model": type(obj).__name__}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if value is not None:
            out[f"{prefix}_{f.name}"] = np.asarray(value, dtype=float) if np.ndim(value) else value
    return out


def _settings(scene, descan, **values):
    point, normal = scene.interface
    out = {"interface_point_nm": np.asarray(point), "interface_normal_deg": normal, "bias_share": scene.share}
    out.update(describe(scene.layer, "layer"))
    out.update(describe(scene.mip, "mip"))
    out.update(describe(scene.thickness, "thickness"))
    out.update(describe(descan, "descan"))
    for name, value in values.items():
        if name in ("gains", "offsets"):
            value = np.full(4, 1.0 if name == "gains" else 0.0) if value is None else np.asarray(value, dtype=float)
        out[name] = value
    return out
