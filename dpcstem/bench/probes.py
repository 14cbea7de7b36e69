"""What a run measures besides the cases: the memory bandwidth (the limit), wall time,
traced peak memory, the other processes' share of the CPU, and power-law scaling."""

from __future__ import annotations

import os
import statistics
import time
import tracemalloc
from collections.abc import Callable, Sequence

import numba
import numpy as np

from ..kernels.config import FASTMATH

#: Elements per block of the streaming read: each thread sums whole blocks (vectorised).
_BLOCK = 4096

PEAK_MEMORY_METHOD = ("tracemalloc: NumPy/Python allocations of one call, outputs included and inputs "
                      "excluded; Numba-internal allocations and libraries' private scratch are not seen")


@numba.njit(parallel=True, fastmath=FASTMATH, cache=True)
def stream_sum(a):
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


@numba.njit(parallel=True, fastmath=FASTMATH, cache=True)
def triad(a, b, c, scalar):
    """a = b + scalar·c (the STREAM triad)."""
    for i in numba.prange(a.size):
        a[i] = b[i] + scalar * c[i]


class on_threads:
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
    with on_threads(threads):
        _, times = time_median(lambda: stream_sum(a), repeats)
    read_s = min(times)
    del a
    m = max(nbytes // 16, 1)
    x, y, z = np.zeros(m), np.ones(m), np.full(m, 0.5)
    with on_threads(threads):
        _, times = time_median(lambda: triad(x, y, z, 3.0), repeats)
    return {"read_gbps": n * 8 / read_s / 1e9, "triad_gbps": m * 24 / min(times) / 1e9}


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


class OtherLoad:
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
