"""The benchmark cases, declared by their parameters.

A :class:`Spec` is a kind and its parameters; its name is derived from them
(``segments_exact_float32_4096``, ``com_uint16_128x128x128x128``), so a name and what it
measures cannot disagree. :func:`specs` lists a configuration's cases in order, and
:func:`build` makes the :class:`Case` (the timed calls, the NumPy counterpart and the check
that they agree) of one spec. Synthetic inputs are seeded from the parameters, so a case
gets the same data whether run alone (``--only``) or with the others.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable

import numpy as np

from . import baselines as npb
from ..memory import physical_memory
from .config import BenchConfig

def _fmt(value) -> str:
    return "x".join(map(str, value)) if isinstance(value, tuple) else str(value)


@dataclasses.dataclass(frozen=True)
class Spec:
    """One benchmark: a kind and its parameters, in the order its name lists them."""

    kind: str
    params: tuple

    @property
    def name(self) -> str:
        return "_".join([self.kind, *(_fmt(v) for _, v in self.params)])

    def __getitem__(self, key):
        return dict(self.params)[key]


def spec(kind: str, **params) -> Spec:
    return Spec(kind, tuple(params.items()))


def specs(config: BenchConfig) -> list[Spec]:
    """The cases a configuration runs, in order."""
    out = [spec("segments", response=r, dtype=d, n=n) for n in config.segment_sizes for d in ("uint16", "float32")
           for r in ("linear", "exact")]
    out += [spec(op, dtype="float64", n=config.derivative_size) for op in ("divergence", "curl")]
    out += [spec("spectral_divergence", dtype="float64", n=config.fourier_size)]
    out += [spec("integrate", method=m, dtype="float64", n=config.fourier_size) for m in ("mirror", "dct")]
    f = config.frame_size
    for s in config.com_scans:
        out += [spec(kind, dtype="uint16", shape=(s, s, f, f)) for kind in ("com", "vsegments")]
    shape = (config.bias_maps, config.bias_size, config.bias_size)
    out += [spec("bias_series", step=step, dtype="uint16", shape=shape) for step in ("reconstruct", "registered")]
    out += [spec("cli_reconstruct", dtype="uint16", shape=(4, n, n)) for n in config.command_sizes]
    if config.command_sizes:  # the bias series at its size and, for time against size, the next command size below
        smaller = [n for n in config.command_sizes if n < config.bias_size]
        out += [spec("cli_bias_series", dtype="uint16", shape=(config.bias_maps, 4, n, n))
                for n in [*smaller[-1:], config.bias_size]]
    f = config.frame_size
    out += [spec("cli_com", dtype="uint16", shape=(s, s, f, f)) for s in com_command_scans(config)]
    return out


def com_command_scans(config: BenchConfig) -> list[int]:
    """Scan sides of the ``com`` command's files; 0 in the configuration: a file larger than memory."""
    per_frame = config.frame_size ** 2 * 2
    return [s if s else math.ceil(math.sqrt(1.05 * physical_memory() / per_frame)) for s in config.com_command_scans]


#: Kinds run as commands of the real command line (:mod:`.commands`), not timed in this process.
COMMAND_KINDS = ("cli_reconstruct", "cli_bias_series", "cli_com")


def case_names(config: BenchConfig) -> list[str]:
    """Names of the benchmarks a configuration runs, in order (for ``--only``), and ``threads``."""
    return [s.name for s in specs(config)] + ["threads"]


@dataclasses.dataclass
class Case:
    """One benchmark: a dpcstem call and the NumPy call of the same computation.

    ``kernel`` and ``numpy`` are factories: calling one sets up (allocates the outputs of a
    Numba kernel) and returns the zero-argument call that is timed, which returns its
    outputs. ``check(kernel_out, numpy_out)`` raises AssertionError when they differ.
    ``numpy`` is None for a computation with no NumPy counterpart. ``warm``, when given,
    replaces the warm-up call (a small problem through the same code, for long calls).
    """

    name: str
    shape: tuple
    dtype: str
    pixels: int
    bytes_read: int
    bytes_written: int
    kernel: Callable
    numpy: Callable | None
    check: Callable | None
    repeats: int | None = None
    warm: Callable | None = None
    peers_frames: np.ndarray | None = None  # (scan_y, scan_x, ky, kx) view for the peers


def close(rtol, atol=0.0):
    """A check: every output of the kernel equal to the reference's within rtol, atol (NaN where it is NaN)."""
    def check(got, want):
        for g, w in zip(got, want, strict=True):
            np.testing.assert_allclose(np.asarray(g, dtype=np.float64), np.asarray(w, dtype=np.float64),
                                       rtol=rtol, atol=atol, equal_nan=True)
    return check


def check_deflection(got, want):
    """The four-segment outputs: the same valid pixels, θ and the sum to float32 rounding."""
    np.testing.assert_array_equal(got[3], want[3])  # valid
    close(2e-5, 1e-5)(got[:3], want[:3])


# -- synthetic inputs ------------------------------------------------------------------------

def synthetic_segments(n, dtype, rng, *, gains=(1.0, 1.02, 0.98, 1.01), offsets=(10.0, 12.0, 9.0, 11.0)):
    """A (4, n, n) segment stack (counts, A,B,C,D) of random shifts |u|, |v| ≤ 0.3 α.

    Made through the first-order response with slope 0.9 and a sum of about 4000 counts,
    then gain and offset applied; pixel (0, 0) has a zero sum and, for float dtypes,
    pixel (1, 1) of segment A is NaN (dead pixels).
    """
    u = rng.uniform(-0.3, 0.3, (n, n))
    v = rng.uniform(-0.3, 0.3, (n, n))
    total = 4000.0 + 200.0 * rng.standard_normal((n, n))
    half = 0.45 * total
    counts = np.stack([total / 4 + half * u, total / 4 + half * v, total / 4 - half * u, total / 4 - half * v])
    raw = counts * np.asarray(gains)[:, None, None] + np.asarray(offsets)[:, None, None]
    raw[:, 0, 0] = np.asarray(offsets)
    out = np.rint(raw).astype(dtype) if np.dtype(dtype).kind in "iu" else raw.astype(dtype)
    if np.dtype(dtype).kind == "f" and n > 1:
        out[0, 1, 1] = np.nan
    return out


def synthetic_frames(scan, size, rng):
    """(scan, scan, size, size) uint16 frames of uniform random counts 0..1000 (generated block by block)."""
    frames = np.empty((scan * scan, size, size), np.uint16)
    for start in range(0, scan * scan, 1024):
        block = frames[start:start + 1024]
        block[...] = rng.integers(0, 1000, size=block.shape, dtype=np.uint16, endpoint=True)
    return frames.reshape(scan, scan, size, size)


def _rng(*key):
    return np.random.default_rng([20260501, *key])


# One input at a time is kept: the cases that share it are listed next to each other.
@functools.lru_cache(maxsize=1)
def _segment_stack(n, dtype):
    return synthetic_segments(n, dtype, _rng(n, np.dtype(dtype).num))


@functools.lru_cache(maxsize=1)
def _gradient_maps(n):
    rng = _rng(n, 2)
    return rng.standard_normal((n, n)), rng.standard_normal((n, n))


@functools.lru_cache(maxsize=1)
def _frames(scan, size):
    return synthetic_frames(scan, size, _rng(scan, size, 4))


def bias_segments(count, size, rng):
    """``count`` (4, size, size) uint16 stacks with unit gains, no offsets and every pixel valid."""
    series = [synthetic_segments(size, "uint16", rng, gains=(1, 1, 1, 1), offsets=(0, 0, 0, 0))
              for _ in range(count)]
    for seg in series:  # every pixel valid, so finite differences are np.gradient's
        seg[:, 0, 0] = 1000
    return series


@functools.lru_cache(maxsize=1)
def _bias_series(count, size):
    return bias_segments(count, size, _rng(count, size, 5))


def clear_inputs():
    """Drop the cached synthetic inputs (each holds one array set)."""
    for cached in (_segment_stack, _gradient_maps, _frames, _bias_series):
        cached.cache_clear()


# -- the builders: one per kind ----------------------------------------------------------------

SEGMENT_OFFSET = np.array([10.0, 12.0, 9.0, 11.0])
SEGMENT_GAIN = np.array([1.0, 1.02, 0.98, 1.01])


def _segments(s: Spec, config) -> Case:
    """Fused four-segment kernel, linear or exact response, on a (4, n, n) stack."""
    from ..calibration import Calibration
    from ..response import QuadrantResponse
    from ..kernels import deflection_linear, deflection_table

    n, dtype, kind = s["n"], s["dtype"], s["response"]
    response = QuadrantResponse()
    table = response.inverse_table()
    poly = response.inverse_polynomial()  # as reconstruct passes it: the polynomial, the table at the rim
    slope = response.linear_slope
    axes = np.ascontiguousarray(Calibration(kv=200, alpha_mrad=10, step_x_nm=1, detector_rotation_deg=30).frame_matrix.T)
    alpha = 10.0
    offset, inv_gain = SEGMENT_OFFSET, 1.0 / SEGMENT_GAIN
    seg = _segment_stack(n, dtype)
    full = float(np.iinfo(seg.dtype).max) if seg.dtype.kind in "ui" else np.inf  # as reconstruct passes it

    def kernel():
        out = (np.empty((n, n), np.float32), np.empty((n, n), np.float32), np.empty((n, n), np.float32),
               np.empty((n, n), np.uint8))
        if kind == "linear":
            return lambda: (deflection_linear(seg, offset, inv_gain, slope, axes, alpha, *out, full), out)[1]
        return lambda: (deflection_table(seg, offset, inv_gain, table.u, table.v, table.origin, table.step, axes,
                                         alpha, *out, full, poly.kernel_coefficients(), poly.reach), out)[1]

    def numpy():
        if kind == "linear":
            return lambda: npb.numpy_deflection_linear(seg, offset, inv_gain, slope, axes, alpha, full)
        return lambda: npb.numpy_deflection_table(seg, offset, inv_gain, table.u, table.v, table.origin,
                                                  table.step, axes, alpha, full, poly.coefficients, poly.reach)

    return Case(s.name, seg.shape, dtype, n * n, seg.nbytes, n * n * 13, kernel, numpy, check_deflection)


def _derivative(s: Spec, config) -> Case:
    """Masked finite-difference divergence or curl (every pixel valid) against :func:`numpy.gradient`."""
    from .. import kernels

    n = s["n"]
    kern = getattr(kernels, s.kind)
    ref = {"divergence": npb.numpy_divergence, "curl": npb.numpy_curl}[s.kind]
    fx, fy = _gradient_maps(n)
    valid = np.ones((n, n), np.uint8)
    step_x, step_y = 0.5, 0.7

    def kernel():
        out, out_valid = np.empty((n, n)), np.empty((n, n), np.uint8)
        return lambda: (kern(fx, fy, valid, step_x, step_y, out, out_valid), (out,))[1]

    return Case(s.name, (2, n, n), "float64", n * n, fx.nbytes + fy.nbytes + valid.nbytes, n * n * 9, kernel,
                lambda: lambda: (ref(fx, fy, step_x, step_y),), close(1e-12, 1e-12))


def _fourier(s: Spec, config) -> Case:
    """Spectral divergence or iDPC integration (mirror, dct) against :mod:`numpy.fft` versions."""
    from ..fourier import integrate_gradient, spectral_divergence

    n = s["n"]
    gx, gy = _gradient_maps(n)
    step_x, step_y = 0.5, 0.7
    cutoff = 0.5  # cycles per length unit: half the Nyquist frequency along x
    if s.kind == "spectral_divergence":
        def kernel():
            return lambda: (spectral_divergence(gx, gy, step_x=step_x, step_y=step_y, cutoff=cutoff),)

        def numpy():
            return lambda: (npb.numpy_spectral_divergence(gx, gy, step_x, step_y, cutoff),)
    else:
        method = s["method"]
        ref = {"mirror": npb.numpy_integrate_mirror, "dct": npb.numpy_integrate_dct}[method]

        def kernel():
            return lambda: (integrate_gradient(gx, gy, step_x=step_x, step_y=step_y, method=method),)

        def numpy():
            return lambda: (ref(gx, gy, step_x, step_y),)
    return Case(s.name, (2, n, n), "float64", n * n, gx.nbytes + gy.nbytes, n * n * 8, kernel, numpy,
                close(1e-9, 1e-9), repeats=config.slow_repeats)


def _fourd(s: Spec, config) -> Case:
    """Centre of mass of whole frames (``com``), or four virtual quadrants covering them
    (``vsegments``), of an in-memory (s, s, k, k) uint16 scan through :mod:`dpcstem.fourd`."""
    from ..fourd import centre_of_mass, quadrant_labels, virtual_segments

    scan, _, size, _ = s["shape"]
    data = _frames(scan, size)
    frames = data.reshape(-1, size, size)
    n = len(frames)
    if s.kind == "com":
        def com():
            sums = centre_of_mass(data, progress=False)
            return sums.com_x.ravel(), sums.com_y.ravel()

        return Case(s.name, data.shape, "uint16", frames.size, frames.nbytes, n * 24, lambda: com,
                    lambda: lambda: npb.numpy_centre_of_mass(frames), close(1e-12), peers_frames=data)
    centre = ((size - 1) / 2, (size - 1) / 2)
    labels = quadrant_labels((size, size), centre, radius_px=size)  # reaches the corners
    onehot = np.stack([(labels == j + 1).astype(np.float64) for j in range(4)])
    return Case(s.name, data.shape, "uint16", frames.size, frames.nbytes, n * 32,
                lambda: lambda: (virtual_segments(data, labels, progress=False).reshape(4, -1).T,),
                lambda: lambda: (npb.numpy_frame_sums(frames, onehot),), close(1e-12))


def _bias_series_case(s: Spec, config) -> Case:
    """A bias series of m segment maps (n, n): each through :func:`dpcstem.reconstruct.reconstruct`
    (``reconstruct``, against NumPy), or the whole series through
    :func:`dpcstem.bias.reconstruct_series` (``registered``: registration to the 0 V map, every
    map and its net map against it; no NumPy counterpart)."""
    from ..bias import reconstruct_series
    from ..calibration import Calibration
    from ..response import QuadrantResponse
    from ..reconstruct import reconstruct

    maps, n, _ = s["shape"]
    cal = Calibration(kv=200, alpha_mrad=10, step_x_nm=0.5, thickness_nm=100)
    series = _bias_series(maps, n)
    small = bias_segments(2, 32, _rng(2, 32, 6))
    nbytes = sum(seg.nbytes for seg in series)
    shape = (maps, 4, n, n)
    if s["step"] == "registered":
        biases = np.arange(maps, dtype=float) * 0.5

        def whole(segments_list, biases_v):
            result = reconstruct_series(segments_list, biases_v, cal, warn=False)  # random maps: no structure
            return (np.stack([m.charge_density for m in result.maps]),
                    np.stack([m.charge_density for m in result.net]))

        return Case(s.name, shape, "uint16", maps * n * n, nbytes, maps * n * n * 4 * 14,
                    lambda: lambda: whole(series, biases), None, None, repeats=config.bias_repeats,
                    warm=lambda: whole(small, [0.0, 1.0]))
    table = QuadrantResponse.from_calibration(cal).inverse_table()

    def per_map(segments_list):
        out = []
        for seg in segments_list:
            r = reconstruct(seg, cal)
            out.append((r.deflection_x, r.deflection_y, r.charge_density, r.potential))
        return tuple(np.stack(q) for q in zip(*out))

    def numpy():
        return lambda: tuple(np.stack(q) for q in zip(*(npb.numpy_reconstruct(seg, cal, table) for seg in series)))

    def check(got, want):
        close(2e-5, 1e-5)(got[:2], want[:2])
        for g, w in zip(got[2:], want[2:]):  # ρ and V: float32 deflection differences, amplified
            scale = float(np.nanmax(np.abs(w)))
            np.testing.assert_allclose(g, w, rtol=0, atol=1e-3 * scale)

    return Case(s.name, shape, "uint16", maps * n * n, nbytes, maps * n * n * 4 * 7,
                lambda: lambda: per_map(series), numpy, check, repeats=config.bias_repeats,
                warm=lambda: per_map(small))


BUILDERS = {
    "segments": _segments,
    "divergence": _derivative,
    "curl": _derivative,
    "spectral_divergence": _fourier,
    "integrate": _fourier,
    "com": _fourd,
    "vsegments": _fourd,
    "bias_series": _bias_series_case,
}


def build(s: Spec, config: BenchConfig) -> Case:
    """The :class:`Case` of one in-process spec."""
    return BUILDERS[s.kind](s, config)
