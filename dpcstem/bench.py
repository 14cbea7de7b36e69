"""Benchmarks: each kernel against the memory bandwidth, plain NumPy and the peer packages.

The work of dpcstem is memory-bound, so the limit is the machine's memory bandwidth,
measured in the same run (DESIGN.md §5): a streaming read (a parallel sum over a float64
array far larger than the caches) and a triad ``a = b + s·c``, each on one thread and on all
of Numba's threads. Every benchmark then reports

* the median time over ``repeats`` calls after a warm-up call;
* throughput in pixels/s and in GB/s of input read, and the fraction of the measured read
  bandwidth that is (``bandwidth_fraction``); the bytes written are reported too, with the
  total traffic against the triad bandwidth (``moved_fraction``);
* the ratio to a plain NumPy/SciPy implementation of the same computation, timed in the
  same run (``ratio_vs_numpy`` = NumPy's median time / dpcstem's; above 1 dpcstem is
  faster), after checking that both give the same numbers (``agrees_with_numpy``);
* the peak memory of the call, outputs included, inputs excluded, by :mod:`tracemalloc`,
  which sees NumPy's allocations (and so SciPy's output arrays) but not Numba's internal
  ones nor a library's private scratch buffers;
* for the 4D centre of mass, the ratio to LiberTEM, py4DSTEM and pyxem computing the same
  centre of mass on the same array, run by ``benchmarks/peers.py`` in the separate
  environment ``.venv-peers`` (made by ``benchmarks/peers_env.sh``); null where absent.

Numba kernels are timed as they are meant to be called: outputs preallocated once and
reused (a fresh allocation would add the operating system's first-touch page faults to
every call). Absolute times on a shared machine are noise: the ratios measured in one run
are the figures to compare.

The machine-readable record (``dpcstem bench --json FILE``) is::

    {"machine": {"cores", "threads", "versions", "bandwidth_read_gbps", "bandwidth_triad_gbps",
                 "bandwidth_read_1thread_gbps", "bandwidth_triad_1thread_gbps", ...},
     "results": [{"name", "shape", "dtype", "median_s", "gbps", "bandwidth_fraction",
                  "ratio_vs_numpy", "peak_mb", "peers": {"libertem", "py4dstem", "pyxem"}, ...}],
     "scaling": {...}, "threads": {...}}
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Sequence
from pathlib import Path

import numba
import numpy as np

from .errors import InputDataError

PEERS = ("libertem", "py4dstem", "pyxem")

#: Fast-math flags of the probes: those of the kernels (vectorised sums, NaN checks kept).
_FAST = {"nsz", "arcp", "contract", "afn", "reassoc"}

#: Elements per block of the streaming read: each thread sums whole blocks (vectorised).
_BLOCK = 4096

PEAK_MEMORY_METHOD = ("tracemalloc: NumPy/Python allocations of one call, outputs included and inputs "
                      "excluded; Numba-internal allocations and libraries' private scratch are not seen")


# -- configuration ------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class BenchConfig:
    """Sizes and repeats of one benchmark run.

    Attributes
    ----------
    segment_sizes : tuple of int
        Side n of the (4, n, n) segment stacks (the largest is the headline, the others
        show how time scales with size).
    derivative_size, fourier_size : int
        Side of the (n, n) maps of the divergence/curl and of the Fourier benchmarks.
    com_scans : tuple of int
        Side s of the (s, s) scans of 4D frames (the largest is the headline, with peers).
    frame_size : int
        Side of each diffraction frame (pixels).
    bias_maps, bias_size : int
        Number and side of the segment maps of the bias-series benchmark.
    bandwidth_mib : int
        Size of the streaming-read array in MiB; each of the three triad arrays is half of it.
    repeats : int
        Timed calls after the warm-up; the Fourier benchmarks are timed ``slow_repeats``
        times, the bias series ``bias_repeats`` times, each peer ``peer_repeats`` times.
    """

    segment_sizes: tuple = (1024, 2048, 4096)
    derivative_size: int = 4096
    fourier_size: int = 2048
    com_scans: tuple = (32, 64, 128)
    frame_size: int = 128
    bias_maps: int = 8
    bias_size: int = 2048
    bandwidth_mib: int = 1024
    repeats: int = 5
    slow_repeats: int = 3
    bias_repeats: int = 1
    peer_repeats: int = 3


#: The full benchmark (the README's table): n up to 4096, a 128×128 scan of 128×128 frames.
FULL = BenchConfig()

#: About a minute on a two-core machine.
QUICK = BenchConfig(segment_sizes=(512, 1024), derivative_size=1024, fourier_size=512, com_scans=(32, 64),
                    bias_maps=8, bias_size=256, bandwidth_mib=256, repeats=3, slow_repeats=3, bias_repeats=1,
                    peer_repeats=2)


# -- the bandwidth limit ------------------------------------------------------------------

@numba.njit(parallel=True, fastmath=_FAST, cache=True)
def _stream_sum(a):
    """Sum of a 1-D float64 array, read once; each thread sums whole blocks."""
    blocks = a.size // _BLOCK
    partial = np.zeros(blocks)
    for b in numba.prange(blocks):
        s = 0.0
        for i in range(b * _BLOCK, (b + 1) * _BLOCK):
            s += a[i]
        partial[b] = s
    total = 0.0
    for b in range(blocks):
        total += partial[b]
    for i in range(blocks * _BLOCK, a.size):
        total += a[i]
    return total


@numba.njit(parallel=True, fastmath=_FAST, cache=True)
def _triad(a, b, c, scalar):
    """a = b + scalar·c (the STREAM triad)."""
    for i in numba.prange(a.size):
        a[i] = b[i] + scalar * c[i]


class _threads:
    """Run the enclosed code on ``n`` Numba threads."""

    def __init__(self, n):
        self.n = n

    def __enter__(self):
        self.previous = numba.get_num_threads()
        numba.set_num_threads(self.n)

    def __exit__(self, *exc):
        numba.set_num_threads(self.previous)


def thread_counts() -> list[int]:
    """1 and the number of threads Numba may use (just 1 on a one-core machine)."""
    top = numba.config.NUMBA_NUM_THREADS
    return [1] if top == 1 else [1, top]


def measure_bandwidth(nbytes: int, *, threads: int, repeats: int = 5) -> dict:
    """Streaming-read and triad bandwidth in GB/s (10⁹ bytes/s) on ``threads`` Numba threads.

    Parameters
    ----------
    nbytes : int
        Size of the read array; the triad uses three arrays of ``nbytes/2`` each. Give
        several times the last-level cache (1 GiB for the record).
    threads : int
    repeats : int
        Timed passes after a warm-up; the fastest is reported (STREAM's convention: the
        limit is what the machine can do, and a pass slowed by another process says
        nothing about it).

    Returns
    -------
    dict
        ``read_gbps``: bytes of the array / time of the fastest sum; ``triad_gbps``: the
        STREAM count, 24 bytes per element (two read, one written; write-allocate not
        counted) / time of the fastest pass.
    """
    n = max(nbytes // 8, _BLOCK)
    a = np.ones(n)
    with _threads(threads):
        _, times = time_median(lambda: _stream_sum(a), repeats)
    read_s = min(times)
    del a
    m = max(nbytes // 16, 1)
    x, y, z = np.zeros(m), np.ones(m), np.full(m, 0.5)
    with _threads(threads):
        _, times = time_median(lambda: _triad(x, y, z, 3.0), repeats)
    return {"read_gbps": n * 8 / read_s / 1e9, "triad_gbps": m * 24 / min(times) / 1e9}


# -- timing and memory --------------------------------------------------------------------

def time_median(func: Callable, repeats: int, *, warmup: int = 1) -> tuple[float, list[float]]:
    """Median wall time (s) of ``repeats`` calls of ``func()`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        func()
    times = []
    for _ in range(max(repeats, 1)):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


def peak_memory_mb(make: Callable) -> float:
    """Peak traced allocation (MB, 10⁶ bytes) of ``make()()``: setting up a call and making it."""
    tracemalloc.start()
    try:
        make()()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak / 1e6


def scaling_exponent(sizes: Sequence[float], times: Sequence[float]) -> float:
    """Slope of log(time) against log(size), least squares: 1 for a linear cost."""
    x = np.log(np.asarray(sizes, dtype=float))
    y = np.log(np.asarray(times, dtype=float))
    return float(np.polyfit(x, y, 1)[0])


# -- NumPy references: the same computations written plainly -------------------------------

def _rotate(u, v, ok, total, axes, alpha):
    theta_x = alpha * (u * axes[0, 0] + v * axes[1, 0])
    theta_y = alpha * (u * axes[0, 1] + v * axes[1, 1])
    theta_x[~ok] = np.nan
    theta_y[~ok] = np.nan
    return theta_x.astype(np.float32), theta_y.astype(np.float32), total.astype(np.float32), ok.astype(np.uint8)


def _normalised(segments, offset, inv_gain, saturation):
    x = (segments - offset[:, None, None]) * inv_gain[:, None, None]
    total = x[0] + x[1] + x[2] + x[3]
    ok = (total > 0) & (total <= np.finfo(np.float32).max) & ~(segments >= saturation).any(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        d_a = (x[0] - x[2]) / total
        d_b = (x[1] - x[3]) / total
    ok &= (np.abs(d_a) <= 1) & (np.abs(d_b) <= 1)
    return d_a, d_b, total, ok


def numpy_deflection_linear(segments, offset, inv_gain, slope, axes, alpha, saturation=np.inf):
    """NumPy version of :func:`dpcstem.kernels.deflection_linear`.

    Returns ``(theta_x, theta_y, total, valid)`` as the kernel writes them: float32 ×3 and
    uint8, shape (ny, nx); NaN deflection where ``valid`` is 0 (a sum not positive and
    within float32, a raw segment at or above ``saturation``, |dA| or |dB| above 1).
    """
    d_a, d_b, total, ok = _normalised(segments, offset, inv_gain, saturation)
    return _rotate(d_a / slope, d_b / slope, ok, total, axes, alpha)


def numpy_deflection_table(segments, offset, inv_gain, table_u, table_v, origin, step, axes, alpha,
                           saturation=np.inf):
    """NumPy version of :func:`dpcstem.kernels.deflection_table`: a vectorised bilinear lookup."""
    d_a, d_b, total, ok = _normalised(segments, offset, inv_gain, saturation)
    n = table_u.shape[0]
    with np.errstate(invalid="ignore"):
        fj = (d_a - origin) / step
        fi = (d_b - origin) / step
        inside = ok & (fj >= 0) & (fi >= 0) & (fj < n - 1) & (fi < n - 1)
    fj = np.where(inside, fj, 0.0)
    fi = np.where(inside, fi, 0.0)
    j = fj.astype(np.intp)
    i = fi.astype(np.intp)
    wx = fj - j
    wy = fi - i
    k = i * n + j

    def lookup(table):
        flat = table.ravel()
        return ((1 - wy) * ((1 - wx) * flat[k] + wx * flat[k + 1])
                + wy * ((1 - wx) * flat[k + n] + wx * flat[k + n + 1]))

    u = lookup(table_u)
    v = lookup(table_v)
    ok = inside & ~np.isnan(u) & ~np.isnan(v)
    return _rotate(u, v, ok, total, axes, alpha)


def numpy_divergence(fx, fy, step_x, step_y):
    """∂fx/∂x + ∂fy/∂y by :func:`numpy.gradient` (central inside, one-sided at the edges)."""
    return np.gradient(fx, step_x, axis=1) + np.gradient(fy, step_y, axis=0)


def numpy_curl(fx, fy, step_x, step_y):
    """∂fy/∂x − ∂fx/∂y by :func:`numpy.gradient`."""
    return np.gradient(fy, step_x, axis=1) - np.gradient(fx, step_y, axis=0)


def _mirror(f, odd_x, odd_y):
    sx = -1.0 if odd_x else 1.0
    sy = -1.0 if odd_y else 1.0
    top = np.concatenate([f, sx * f[:, ::-1]], axis=1)
    return np.concatenate([top, sy * top[::-1, :]], axis=0)


def numpy_spectral_divergence(fx, fy, step_x, step_y, cutoff):
    """Fourier divergence of the evenly extended maps with a raised-cosine window, by :mod:`numpy.fft`."""
    ny, nx = fx.shape
    ex = _mirror(fx, False, False)
    ey = _mirror(fy, False, False)
    ky = np.fft.fftfreq(2 * ny, step_y)[:, None]
    kx = np.fft.fftfreq(2 * nx, step_x)[None, :]
    k = np.sqrt(kx**2 + ky**2)
    window = 0.5 * (1 + np.cos(np.pi * np.clip((k - cutoff / 2) / (cutoff / 2), 0, 1)))
    spectrum = 2j * np.pi * (kx * np.fft.fft2(ex) + ky * np.fft.fft2(ey)) * window
    return np.fft.ifft2(spectrum).real[:ny, :nx]


def numpy_integrate_mirror(gx, gy, step_x, step_y):
    """f with ∇f = (gx, gy) by a periodic Fourier solve of the mirror-extended gradient (:mod:`numpy.fft`)."""
    ny, nx = gx.shape
    ex = _mirror(gx, True, False)
    ey = _mirror(gy, False, True)
    ky = np.fft.fftfreq(2 * ny, step_y)[:, None]
    kx = np.fft.fftfreq(2 * nx, step_x)[None, :]
    k2 = kx**2 + ky**2
    k2[0, 0] = 1.0
    spectrum = (kx * np.fft.fft2(ex) + ky * np.fft.fft2(ey)) / (2j * np.pi * k2)
    spectrum[0, 0] = 0.0
    f = np.fft.ifft2(spectrum).real[:ny, :nx]
    return f - f.mean()


def numpy_integrate_dct(gx, gy, step_x, step_y):
    """The discrete Neumann Poisson solve of ``method="dct"``, by an even extension and :mod:`numpy.fft`."""
    ny, nx = gx.shape
    flux_x = np.zeros((ny, nx + 1))
    flux_x[:, 1:-1] = 0.5 * (gx[:, 1:] + gx[:, :-1])
    flux_y = np.zeros((ny + 1, nx))
    flux_y[1:-1, :] = 0.5 * (gy[1:, :] + gy[:-1, :])
    rhs = np.diff(flux_x, axis=1) / step_x + np.diff(flux_y, axis=0) / step_y
    lam_y = (2 * np.cos(np.pi * np.arange(2 * ny) / ny) - 2) / step_y**2
    lam_x = (2 * np.cos(np.pi * np.arange(2 * nx) / nx) - 2) / step_x**2
    lam = lam_y[:, None] + lam_x[None, :]
    lam[0, 0] = 1.0
    spectrum = np.fft.fft2(_mirror(rhs, False, False)) / lam
    spectrum[0, 0] = 0.0
    f = np.fft.ifft2(spectrum).real[:ny, :nx]
    return f - f.mean()


def numpy_frame_sums(frames, weights, chunk=1024):
    """Weighted sums of each frame, ``frames (n, ky, kx) @ weights (m, ky, kx)`` → (n, m) float64.

    The frames are converted to float64 ``chunk`` at a time and multiplied by the weight
    matrix (BLAS), the way a NumPy user (or LiberTEM's masks) computes masked sums.
    """
    n = frames.shape[0]
    w = weights.reshape(len(weights), -1).T
    out = np.empty((n, w.shape[1]))
    for start in range(0, n, chunk):
        block = frames[start:start + chunk].reshape(-1, w.shape[0]).astype(np.float64)
        out[start:start + chunk] = block @ w
    return out


def numpy_centre_of_mass(frames):
    """Centre of mass (column, row; detector pixels) of each whole frame, by :func:`numpy_frame_sums`."""
    ky, kx = frames.shape[1:]
    rows, cols = np.indices((ky, kx), dtype=np.float64)
    sums = numpy_frame_sums(frames, np.stack([np.ones((ky, kx)), cols, rows]))
    with np.errstate(divide="ignore", invalid="ignore"):
        return sums[:, 1] / sums[:, 0], sums[:, 2] / sums[:, 0]


def numpy_reconstruct(segments, calibration, table):
    """Deflection, charge density and potential of a segment stack: :func:`dpcstem.reconstruct.reconstruct`
    written in NumPy (exact response by bilinear lookup, :func:`numpy.gradient`, mirror integration).

    Valid for maps whose every pixel is valid (no masked neighbours). Returns float32
    ``(theta_x, theta_y, charge_density, potential)``.
    """
    from . import physics

    axes = calibration.segment_axes()
    full = float(np.iinfo(segments.dtype).max) if segments.dtype.kind in "ui" else np.inf
    tx, ty, _, valid = numpy_deflection_table(segments, np.zeros(4), np.ones(4), table.u, table.v, table.origin,
                                              table.step, axes, calibration.alpha_mrad, full)
    kv, t = calibration.kv, calibration.thickness_nm
    ex = physics.field_v_per_m_from_deflection(tx.astype(np.float64), kv, t)
    ey = physics.field_v_per_m_from_deflection(ty.astype(np.float64), kv, t)
    step_x = calibration.step_x_nm * physics.NM_TO_M
    step_y = calibration.step_y_nm * physics.NM_TO_M
    rho = physics.VACUUM_PERMITTIVITY_F_M * numpy_divergence(ex, ey, step_x, step_y)
    projected = calibration.pv_over_e_v * physics.MRAD_TO_RAD * numpy_integrate_mirror(
        tx.astype(np.float64), ty.astype(np.float64), calibration.step_x_nm, calibration.step_y_nm)
    return tx, ty, rho.astype(np.float32), (projected / t).astype(np.float32)


# -- the cases ----------------------------------------------------------------------------

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


def _close(rtol, atol=0.0):
    def check(got, want):
        for g, w in zip(got, want, strict=True):
            np.testing.assert_allclose(np.asarray(g, dtype=np.float64), np.asarray(w, dtype=np.float64),
                                       rtol=rtol, atol=atol, equal_nan=True)
    return check


def _check_deflection(got, want):
    np.testing.assert_array_equal(got[3], want[3])  # valid
    _close(2e-5, 1e-5)(got[:3], want[:3])


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


def segment_cases(sizes, dtypes=("uint16", "float32"), responses=("linear", "exact"), *, rng=None):
    """Fused four-segment kernel, linear and exact response, on (4, n, n) stacks."""
    from .calibration import Calibration
    from .detector import QuadrantResponse
    from .kernels import deflection_linear, deflection_table

    rng = np.random.default_rng(20260501) if rng is None else rng
    response = QuadrantResponse()
    table = response.inverse_table()
    slope = response.linear_slope
    axes = Calibration(kv=200, alpha_mrad=10, step_x_nm=1, detector_rotation_deg=30).segment_axes()
    alpha = 10.0
    offset = np.array([10.0, 12.0, 9.0, 11.0])
    inv_gain = 1.0 / np.array([1.0, 1.02, 0.98, 1.01])
    cases = []
    for n in sizes:
        for dtype in dtypes:
            seg = synthetic_segments(n, dtype, rng)
            full = float(np.iinfo(seg.dtype).max) if seg.dtype.kind in "ui" else np.inf  # as reconstruct passes
            for kind in responses:
                def kernel(seg=seg, kind=kind, full=full):
                    ny, nx = seg.shape[1:]
                    out = (np.empty((ny, nx), np.float32), np.empty((ny, nx), np.float32),
                           np.empty((ny, nx), np.float32), np.empty((ny, nx), np.uint8))
                    if kind == "linear":
                        return lambda: (deflection_linear(seg, offset, inv_gain, slope, axes, alpha, *out, full),
                                        out)[1]
                    return lambda: (deflection_table(seg, offset, inv_gain, table.u, table.v, table.origin,
                                                     table.step, axes, alpha, *out, full), out)[1]

                def numpy(seg=seg, kind=kind, full=full):
                    if kind == "linear":
                        return lambda: numpy_deflection_linear(seg, offset, inv_gain, slope, axes, alpha, full)
                    return lambda: numpy_deflection_table(seg, offset, inv_gain, table.u, table.v, table.origin,
                                                          table.step, axes, alpha, full)

                cases.append(Case(f"segments_{kind}_{dtype}_{n}", seg.shape, dtype, n * n, seg.nbytes,
                                  n * n * 13, kernel, numpy, _check_deflection))
    return cases


def derivative_cases(n, *, rng=None):
    """Masked finite-difference divergence and curl (every pixel valid) against :func:`numpy.gradient`."""
    from .kernels import curl, divergence

    rng = np.random.default_rng(20260502) if rng is None else rng
    fx = rng.standard_normal((n, n))
    fy = rng.standard_normal((n, n))
    valid = np.ones((n, n), np.uint8)
    step_x, step_y = 0.5, 0.7
    cases = []
    for name, kern, ref in (("divergence", divergence, numpy_divergence), ("curl", curl, numpy_curl)):
        def kernel(kern=kern):
            out, out_valid = np.empty((n, n)), np.empty((n, n), np.uint8)
            return lambda: (kern(fx, fy, valid, step_x, step_y, out, out_valid), (out,))[1]

        def numpy(ref=ref):
            return lambda: (ref(fx, fy, step_x, step_y),)

        cases.append(Case(f"{name}_float64_{n}", (2, n, n), "float64", n * n, fx.nbytes + fy.nbytes + valid.nbytes,
                          n * n * 9, kernel, numpy, _close(1e-12, 1e-12)))
    return cases


def fourier_cases(n, *, repeats=None, rng=None):
    """Spectral divergence and iDPC integration (mirror, dct) against :mod:`numpy.fft` versions."""
    from .fourier import integrate_gradient, spectral_divergence

    rng = np.random.default_rng(20260503) if rng is None else rng
    gx = rng.standard_normal((n, n))
    gy = rng.standard_normal((n, n))
    step_x, step_y = 0.5, 0.7
    cutoff = 0.5  # cycles per length unit: half the Nyquist frequency along x
    read = gx.nbytes + gy.nbytes
    check = _close(1e-9, 1e-9)

    def spectral():
        return lambda: (spectral_divergence(gx, gy, step_x=step_x, step_y=step_y, cutoff=cutoff),)

    def spectral_np():
        return lambda: (numpy_spectral_divergence(gx, gy, step_x, step_y, cutoff),)

    def integrate(method):
        return lambda: lambda: (integrate_gradient(gx, gy, step_x=step_x, step_y=step_y, method=method),)

    return [
        Case(f"spectral_divergence_float64_{n}", (2, n, n), "float64", n * n, read, n * n * 8, spectral, spectral_np,
             check, repeats=repeats),
        Case(f"integrate_mirror_float64_{n}", (2, n, n), "float64", n * n, read, n * n * 8, integrate("mirror"),
             lambda: lambda: (numpy_integrate_mirror(gx, gy, step_x, step_y),), check, repeats=repeats),
        Case(f"integrate_dct_float64_{n}", (2, n, n), "float64", n * n, read, n * n * 8, integrate("dct"),
             lambda: lambda: (numpy_integrate_dct(gx, gy, step_x, step_y),), check, repeats=repeats),
    ]


def synthetic_frames(scan, size, rng):
    """(scan, scan, size, size) uint16 frames of uniform random counts 0..1000 (generated block by block)."""
    frames = np.empty((scan * scan, size, size), np.uint16)
    for start in range(0, scan * scan, 1024):
        block = frames[start:start + 1024]
        block[...] = rng.integers(0, 1000, size=block.shape, dtype=np.uint16, endpoint=True)
    return frames.reshape(scan, scan, size, size)


def fourd_cases(scans, size, *, rng=None):
    """Centre of mass of whole frames, and four virtual quadrants covering them, of in-memory
    (s, s, size, size) uint16 scans, through :func:`dpcstem.fourd.centre_of_mass` and
    :func:`dpcstem.fourd.virtual_segments` (block by block on Numba's threads)."""
    from .fourd import centre_of_mass, quadrant_labels, virtual_segments

    rng = np.random.default_rng(20260504) if rng is None else rng
    centre = ((size - 1) / 2, (size - 1) / 2)
    labels = quadrant_labels((size, size), centre, radius_px=size)  # reaches the corners
    onehot = np.stack([(labels == j + 1).astype(np.float64) for j in range(4)])
    cases = []
    for scan in scans:
        data = synthetic_frames(scan, size, rng)
        frames = data.reshape(-1, size, size)
        n = len(frames)
        shape = f"{scan}x{scan}x{size}x{size}"

        def com(data=data):
            def call():
                sums = centre_of_mass(data, progress=False)
                return sums.com_x.ravel(), sums.com_y.ravel()
            return call

        def segments(data=data):
            return lambda: (virtual_segments(data, labels, progress=False).reshape(4, -1).T,)

        cases.append(Case(f"com_uint16_{shape}", data.shape, "uint16", frames.size, frames.nbytes, n * 24, com,
                          lambda frames=frames: lambda: numpy_centre_of_mass(frames), _close(1e-12),
                          peers_frames=data))
        cases.append(Case(f"vsegments_uint16_{shape}", data.shape, "uint16", frames.size, frames.nbytes, n * 32,
                          segments, lambda frames=frames: lambda: (numpy_frame_sums(frames, onehot),),
                          _close(1e-12)))
    return cases


def bias_series_cases(maps, n, *, repeats=1, rng=None):
    """A bias series of ``maps`` segment maps (n, n): each through :func:`dpcstem.reconstruct.reconstruct`
    (against NumPy), and the whole series through :func:`dpcstem.bias.reconstruct_series`
    (registration to the 0 V map, every map and its net map against it; no NumPy counterpart)."""
    from .bias import reconstruct_series
    from .calibration import Calibration
    from .detector import QuadrantResponse
    from .reconstruct import reconstruct

    rng = np.random.default_rng(20260505) if rng is None else rng
    cal = Calibration(kv=200, alpha_mrad=10, step_x_nm=0.5, thickness_nm=100)
    table = QuadrantResponse.from_calibration(cal).inverse_table()

    def make_series(count, size):
        series = [synthetic_segments(size, "uint16", rng, gains=(1, 1, 1, 1), offsets=(0, 0, 0, 0))
                  for _ in range(count)]
        for seg in series:  # every pixel valid, so finite differences are np.gradient's
            seg[:, 0, 0] = 1000
        return series

    series = make_series(maps, n)
    small = make_series(2, 32)
    biases = np.arange(maps, dtype=float) * 0.5

    def per_map(segments_list):
        out = []
        for seg in segments_list:
            r = reconstruct(seg, cal)
            out.append((r.deflection_x, r.deflection_y, r.charge_density, r.potential))
        return tuple(np.stack(q) for q in zip(*out))

    def whole(segments_list, biases_v):
        result = reconstruct_series(segments_list, biases_v, cal, warn=False)  # random maps: nothing to register on
        return (np.stack([m.charge_density for m in result.maps]), np.stack([m.charge_density for m in result.net]))

    def numpy():
        return lambda: tuple(np.stack(q) for q in zip(*(numpy_reconstruct(seg, cal, table) for seg in series)))

    def check(got, want):
        _close(2e-5, 1e-5)(got[:2], want[:2])
        for g, w in zip(got[2:], want[2:]):  # ρ and V: float32 deflection differences, amplified
            scale = float(np.nanmax(np.abs(w)))
            np.testing.assert_allclose(g, w, rtol=0, atol=1e-3 * scale)

    nbytes = sum(s.nbytes for s in series)
    shape = (maps, 4, n, n)
    tag = f"uint16_{maps}x{n}x{n}"
    return [
        Case(f"bias_series_reconstruct_{tag}", shape, "uint16", maps * n * n, nbytes, maps * n * n * 4 * 7,
             lambda: lambda: per_map(series), numpy, check, repeats=repeats, warm=lambda: per_map(small)),
        Case(f"bias_series_registered_{tag}", shape, "uint16", maps * n * n, nbytes, maps * n * n * 4 * 14,
             lambda: lambda: whole(series, biases), None, None, repeats=repeats,
             warm=lambda: whole(small, [0.0, 1.0])),
    ]


def case_names(config: BenchConfig) -> list[str]:
    """Names of the benchmarks a configuration runs, in order (for ``--only``)."""
    names = [f"segments_{kind}_{dtype}_{n}" for n in config.segment_sizes for dtype in ("uint16", "float32")
             for kind in ("linear", "exact")]
    names += [f"{op}_float64_{config.derivative_size}" for op in ("divergence", "curl")]
    names += [f"{op}_float64_{config.fourier_size}" for op in ("spectral_divergence", "integrate_mirror",
                                                              "integrate_dct")]
    f = config.frame_size
    for s in config.com_scans:
        names += [f"com_uint16_{s}x{s}x{f}x{f}", f"vsegments_uint16_{s}x{s}x{f}x{f}"]
    tag = f"uint16_{config.bias_maps}x{config.bias_size}x{config.bias_size}"
    names += [f"bias_series_reconstruct_{tag}", f"bias_series_registered_{tag}"]
    names += ["threads"]
    return names


def _selected(name, only):
    return only is None or any(name.startswith(token) for token in only)


def _build_cases(config, only):
    groups = [
        (lambda: segment_cases(config.segment_sizes), "segments_"),
        (lambda: derivative_cases(config.derivative_size), ("divergence_", "curl_")),
        (lambda: fourier_cases(config.fourier_size, repeats=config.slow_repeats),
         ("spectral_divergence_", "integrate_")),
        (lambda: fourd_cases(config.com_scans, config.frame_size), ("com_", "vsegments_")),
        (lambda: bias_series_cases(config.bias_maps, config.bias_size, repeats=config.bias_repeats),
         "bias_series_"),
    ]
    wanted = [n for n in case_names(config) if _selected(n, only)]
    for build, prefix in groups:
        if any(n.startswith(prefix) for n in wanted):
            for case in build():
                if case.name in wanted:
                    yield case


# -- peers --------------------------------------------------------------------------------

def default_peers_python() -> Path:
    """``.venv-peers/bin/python`` at the top of the source tree (made by benchmarks/peers_env.sh)."""
    return Path(__file__).resolve().parents[1] / ".venv-peers" / "bin" / "python"


def _peers_script() -> Path:
    return Path(__file__).resolve().parents[1] / "benchmarks" / "peers.py"


def run_peers(frames, com_x, com_y, *, python, repeats, threads) -> dict:
    """Time the peers' centre of mass of ``frames`` (scan_y, scan_x, ky, kx) in their own venv.

    Returns ``{peer: {"median_s", "version", "max_diff_px", "how"} or {"error": "..."}}``;
    ``max_diff_px`` is the largest difference of the peer's centre of mass from dpcstem's.
    """
    python = Path(python)
    script = _peers_script()
    if not python.exists():
        return {p: {"error": f"not installed (no peers environment {python}; run benchmarks/peers_env.sh)"}
                for p in PEERS}
    if not script.exists():
        return {p: {"error": f"not installed ({script} not found: run from a source checkout)"} for p in PEERS}
    with tempfile.TemporaryDirectory(prefix="dpcstem-bench-") as tmp:
        path = Path(tmp) / "frames.npy"
        np.save(path, frames)
        out = Path(tmp) / "peers.json"
        proc = subprocess.run([str(python), str(script), str(path), "--repeats", str(repeats),
                               "--threads", str(threads), "--out", str(out)],
                              capture_output=True, text=True, check=False)
        if proc.returncode != 0 or not out.exists():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            return {p: {"error": f"peers.py failed (status {proc.returncode}): {tail[0]}"} for p in PEERS}
        report = json.loads(out.read_text())["peers"]
        scan = frames.shape[:2]
        for name, entry in report.items():
            npz = out.with_suffix(f".{name}.npz")
            if "error" not in entry and npz.exists():
                with np.load(npz) as got:
                    dx = np.nanmax(np.abs(got["com_x"].reshape(scan) - com_x.reshape(scan)))
                    dy = np.nanmax(np.abs(got["com_y"].reshape(scan) - com_y.reshape(scan)))
                entry["max_diff_px"] = float(max(dx, dy))
            entry.pop("times_s", None)
            entry.pop("detail", None)
    return report


# -- running ------------------------------------------------------------------------------

def _time_case(factory, case, repeats):
    call = factory()
    if case.warm is not None:
        case.warm()
        median, times = time_median(call, repeats, warmup=0)
    else:
        median, times = time_median(call, repeats)
    return call, median, times


def _measure(case: Case, repeats: int) -> dict:
    repeats = case.repeats or repeats
    call, median, times = _time_case(case.kernel, case, repeats)
    got = call()
    del call
    numpy_median = agrees = numpy_peak = None
    if case.numpy is not None:
        ref, numpy_median, _ = _time_case(case.numpy, case, repeats)
        want = ref()
        try:
            case.check(got, want)
            agrees = True
        except AssertionError:
            agrees = False
        del ref, want
        numpy_peak = peak_memory_mb(case.numpy)
    return {
        "name": case.name,
        "shape": list(case.shape),
        "dtype": case.dtype,
        "median_s": median,
        "times_s": times,
        "pixels": case.pixels,
        "pixels_per_s": case.pixels / median,
        "bytes_read": case.bytes_read,
        "bytes_written": case.bytes_written,
        "numpy_median_s": numpy_median,
        "ratio_vs_numpy": None if numpy_median is None else numpy_median / median,
        "agrees_with_numpy": agrees,
        "peak_mb": peak_memory_mb(case.kernel),
        "numpy_peak_mb": numpy_peak,
        "peers": {p: None for p in PEERS},
        "_output": got if case.peers_frames is not None else None,
    }


def _add_rates(entry: dict, bandwidth: dict) -> dict:
    """GB/s read and moved, and their fractions of the read and triad bandwidth, from the times."""
    gbps = entry["bytes_read"] / entry["median_s"] / 1e9
    moved = (entry["bytes_read"] + entry["bytes_written"]) / entry["median_s"] / 1e9
    rates = {"gbps": gbps, "bandwidth_fraction": gbps / bandwidth["read_gbps"], "gbps_moved": moved,
             "moved_fraction": moved / bandwidth["triad_gbps"]}
    keys = list(entry)
    at = keys.index("bytes_written") + 1
    return {**{k: entry[k] for k in keys[:at]}, **rates, **{k: entry[k] for k in keys[at:]}}


def _versions():
    from . import __version__

    import scipy

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"dpcstem": __version__, "python": platform.python_version(), "numpy": np.__version__,
            "numba": numba.__version__, "scipy": scipy.__version__, "platform": platform.platform(), "cpu": cpu}


def run(config: BenchConfig = FULL, *, only: Sequence[str] | None = None, peers_python: Path | None = None,
        log: Callable[[str], None] = print) -> dict:
    """Run the benchmarks of ``config`` and return the record (see the module docstring).

    Parameters
    ----------
    config : BenchConfig
    only : sequence of str, optional
        Run only the benchmarks whose name starts with one of these (the bandwidth is
        always measured); ``"threads"`` selects the thread-scaling measurement.
    peers_python : path, optional
        Python of the peers environment (default :func:`default_peers_python`).
    log : callable
        Receives a line of progress per benchmark.

    Raises
    ------
    InputDataError
        When a name in ``only`` selects no benchmark.
    """
    names = case_names(config)
    if only:
        unknown = [t for t in only if not any(n.startswith(t) for n in names)]
        if unknown:
            raise InputDataError(f"--only {' '.join(unknown)}: no benchmark of that name; the names are "
                                 f"{', '.join(names)} (or any prefix, such as segments or com)")
    peers_python = default_peers_python() if peers_python is None else Path(peers_python)
    started = datetime.datetime.now(datetime.timezone.utc)
    load_before = os.getloadavg() if hasattr(os, "getloadavg") else None
    others = _OtherLoad()
    counts = thread_counts()
    top = counts[-1]

    def probe(when):
        out = {}
        for t in counts:
            out[t] = measure_bandwidth(config.bandwidth_mib << 20, threads=t, repeats=config.repeats)
            log(f"bandwidth ({when}) on {t} thread(s): read {out[t]['read_gbps']:.1f} GB/s, "
                f"triad {out[t]['triad_gbps']:.1f} GB/s")
        return out

    start = probe("start")
    results = []
    with _threads(top):
        for case in _build_cases(config, only):
            entry = _measure(case, config.repeats)
            if case.peers_frames is not None and case.peers_frames.shape[0] == max(config.com_scans):
                com_x, com_y = entry["_output"]
                report = run_peers(case.peers_frames, com_x, com_y, python=peers_python,
                                   repeats=config.peer_repeats, threads=top)
                entry["peers"] = {p: (report[p]["median_s"] / entry["median_s"] if "median_s" in report.get(p, {})
                                      else None) for p in PEERS}
                entry["peer_details"] = report
            entry.pop("_output")
            results.append(entry)
            log(f"{case.name}: {entry['median_s'] * 1e3:.2f} ms, {_fmt_ratio(entry['ratio_vs_numpy'])} NumPy")
            del case
    threads = _thread_scaling(config, counts) if _selected("threads", only) else {}
    end = probe("end")
    # The limit is the better of the two probes: one taken while another process ran is low.
    bandwidth = {t: {k: max(start[t][k], end[t][k]) for k in start[t]} for t in counts}
    results = [_add_rates(entry, bandwidth[top]) for entry in results]
    for row in threads.values():
        for t in counts:
            row[str(t)]["bandwidth_fraction"] = row[str(t)]["gbps"] / bandwidth[t]["read_gbps"]
    peer_versions = {}
    for entry in results:
        for name, detail in entry.get("peer_details", {}).items():
            peer_versions[name] = detail.get("version", detail.get("error"))
    machine = {
        "date": started.isoformat(timespec="seconds"),
        "cores": os.cpu_count(),
        "threads": top,
        "threading_layer": numba.threading_layer(),
        "versions": {**_versions(), **peer_versions},
        "bandwidth_read_gbps": bandwidth[top]["read_gbps"],
        "bandwidth_triad_gbps": bandwidth[top]["triad_gbps"],
        "bandwidth_read_1thread_gbps": bandwidth[1]["read_gbps"],
        "bandwidth_triad_1thread_gbps": bandwidth[1]["triad_gbps"],
        "bandwidth_array_mib": config.bandwidth_mib,
        "bandwidth_probes": {when: {str(t): v for t, v in probe_.items()} for when, probe_ in
                             (("start", start), ("end", end))},
        "peak_memory_method": PEAK_MEMORY_METHOD,
        "load_average_before": load_before,
        "load_average_after": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "other_processes_cpu_fraction": others.fraction(),
        "config": dataclasses.asdict(config),
    }
    return {"machine": machine, "results": results, "scaling": _size_scaling(results), "threads": threads}


class _OtherLoad:
    """Share of the machine's CPU time that other processes used while the benchmark ran."""

    def __init__(self):
        import psutil

        self.me = psutil.Process()
        self.start = time.monotonic()
        self.busy = self._busy_system()
        self.mine = self._busy_mine()

    @staticmethod
    def _busy_system():
        import psutil

        t = psutil.cpu_times()
        return sum(t) - t.idle - getattr(t, "iowait", 0.0)

    def _busy_mine(self):
        t = self.me.cpu_times()
        return t.user + t.system + t.children_user + t.children_system

    def fraction(self) -> float:
        """(system busy − this process and its children) / (wall time × cores), 0..1."""
        wall = (time.monotonic() - self.start) * (os.cpu_count() or 1)
        other = (self._busy_system() - self.busy) - (self._busy_mine() - self.mine)
        return max(0.0, min(1.0, other / wall)) if wall > 0 else 0.0


def _size_scaling(results) -> dict:
    """Time against size for the four-segment kernel (linear, float32) and the centre of mass."""
    out = {}
    for series, prefix in (("segments_linear_float32", "segments_linear_float32_"), ("com_uint16", "com_uint16_")):
        rows = sorted((r["pixels"], r["median_s"]) for r in results if r["name"].startswith(prefix))
        if len(rows) >= 2:
            pixels, times = zip(*rows)
            out[series] = {"pixels": list(pixels), "median_s": list(times),
                           "ns_per_pixel": [t / p * 1e9 for p, t in rows],
                           "exponent": scaling_exponent(pixels, times)}
    return out


def _thread_scaling(config, counts) -> dict:
    """Median time of the headline four-segment and centre-of-mass kernels on 1 and all threads."""
    n = max(config.segment_sizes)
    s = max(config.com_scans)
    picks = [c for c in segment_cases([n], dtypes=("float32",), responses=("linear",))]
    picks += [c for c in fourd_cases([s], config.frame_size) if c.name.startswith("com_")]
    out = {}
    for case in picks:
        call = case.kernel()
        row = {}
        for t in counts:
            with _threads(t):
                median, _ = time_median(call, config.repeats)
            row[str(t)] = {"median_s": median, "gbps": case.bytes_read / median / 1e9}
        if len(counts) > 1:
            row["speedup"] = row["1"]["median_s"] / row[str(counts[-1])]["median_s"]
        out[case.name] = row
    return out


# -- reporting ----------------------------------------------------------------------------

def _fmt_ratio(value):
    return "—" if value is None else f"{value:.1f}×"


def _fmt_same(value):
    return "—" if value is None else ("yes" if value else "NO")


def _fmt_mb(value):
    return "—" if value is None else f"{value:.0f}"


def format_table(record: dict) -> str:
    """The record as Markdown tables (the README's form)."""
    m = record["machine"]
    versions = m["versions"]
    lines = [
        f"dpcstem {versions['dpcstem']} benchmark, {m['date']}, {versions['cpu']}, {m['cores']} cores, "
        f"{m['threads']} Numba threads; NumPy {versions['numpy']}, Numba {versions['numba']}, "
        f"SciPy {versions['scipy']}",
        f"Memory bandwidth (the better of two probes in this run, {m['bandwidth_array_mib']} MiB arrays): read "
        f"{m['bandwidth_read_gbps']:.1f} GB/s ({m['bandwidth_read_1thread_gbps']:.1f} on one thread), triad "
        f"{m['bandwidth_triad_gbps']:.1f} GB/s ({m['bandwidth_triad_1thread_gbps']:.1f} on one thread). Other "
        f"processes used {100 * m['other_processes_cpu_fraction']:.0f}% of the machine's CPU time during the run.",
        "Ratios (× NumPy, × peers: their time / dpcstem's), not absolute times, are the figures to compare.",
        "",
        "| benchmark | median ms | Mpx/s | GB/s read | % of read BW | × NumPy | same result | peak MB "
        "(NumPy) | × LiberTEM | × py4DSTEM | × pyxem |",
        "|---|---:|---:|---:|---:|---:|:-:|---:|---:|---:|---:|",
    ]
    for r in record["results"]:
        peers = r["peers"]
        lines.append(
            f"| {r['name']} | {r['median_s'] * 1e3:.1f} | {r['pixels_per_s'] / 1e6:.0f} | {r['gbps']:.2f} | "
            f"{100 * r['bandwidth_fraction']:.0f} | {_fmt_ratio(r['ratio_vs_numpy'])} | "
            f"{_fmt_same(r['agrees_with_numpy'])} | {r['peak_mb']:.0f} ({_fmt_mb(r['numpy_peak_mb'])}) | "
            f"{_fmt_ratio(peers['libertem'])} | {_fmt_ratio(peers['py4dstem'])} | {_fmt_ratio(peers['pyxem'])} |")
    details = [(r["name"], r["peer_details"]) for r in record["results"] if "peer_details" in r]
    for name, report in details:
        lines.append("")
        lines.append(f"Peers on {name}:")
        for peer in PEERS:
            d = report.get(peer, {"error": "not run"})
            if "error" in d:
                lines.append(f"- {peer}: {d['error']}")
            else:
                lines.append(f"- {peer} {d['version']}: {d['median_s'] * 1e3:.1f} ms, centre of mass within "
                             f"{d.get('max_diff_px', math.nan):.1e} px of dpcstem's; {d['how']}")
    if record["scaling"]:
        lines += ["", "Time against size (exponent of a power-law fit; 1 is linear):"]
        for series, s in record["scaling"].items():
            per = ", ".join(f"{p / 1e6:.2f} Mpx: {ns:.2f} ns/px" for p, ns in zip(s["pixels"], s["ns_per_pixel"]))
            lines.append(f"- {series}: exponent {s['exponent']:.2f} ({per})")
    if record["threads"]:
        lines += ["", "Threads:"]
        for name, row in record["threads"].items():
            parts = [f"{t} thread(s) {v['median_s'] * 1e3:.1f} ms = {100 * v['bandwidth_fraction']:.0f}% of that "
                     f"bandwidth" for t, v in row.items() if t != "speedup"]
            speed = f"; speed-up {row['speedup']:.2f}" if "speedup" in row else ""
            lines.append(f"- {name}: {', '.join(parts)}{speed}")
    lines += ["", f"Peak memory: {m['peak_memory_method']}."]
    return "\n".join(lines)


def write_json(record: dict, path: Path) -> Path:
    """Write the record as JSON through a temporary file renamed into place."""
    from .io.results import atomic_output

    path = Path(path)
    with atomic_output(path, overwrite=True) as tmp:
        Path(tmp).write_text(json.dumps(record, indent=1, default=_json_default))
    return path


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
