"""Helpers shared by the tests."""

import numpy as np
import psutil

#: Source of two functions for a measuring subprocess: ``growth(work)`` runs ``work()`` and
#: returns (peak resident memory above what was resident before, in bytes; work's result).
PEAK_MEMORY_FUNCTIONS = '''
import os


def _peak_rss():
    \"\"\"The process's peak resident memory in bytes (VmHWM; getrusage's ru_maxrss keeps the peak of
    threads that have exited, which a reset does not clear).\"\"\"
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")

def growth(work):
    \"\"\"Peak resident memory of work() above the resident memory before it, in bytes.\"\"\"
    with open("/proc/self/clear_refs", "w") as fh:  # reset the peak (VmHWM, ru_maxrss) to the present
        fh.write("5")
    with open("/proc/self/statm") as fh:
        before = int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    result = work()
    return _peak_rss() - before, result
'''


def worker_processes():
    """Child processes other than multiprocessing's resource tracker (which lives as long as we do)."""
    out = set()
    for p in psutil.Process().children(recursive=True):
        try:
            if p.status() != psutil.STATUS_ZOMBIE and "resource_tracker" not in " ".join(p.cmdline()):
                out.add(p.pid)
        except psutil.NoSuchProcess:
            pass
    return out


_PR_CAPBSET_DROP = 24
_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH = 1, 2


def without_permission_override():
    """In the child before it starts: drop root's power to write files whose mode forbids it.

    Dropped from the bounding set, CAP_DAC_OVERRIDE is gone after exec, so even root gets
    EACCES opening a 0o444 file for writing, as any other user would.
    """
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH):
        if libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) refused")

def segments_with_faults(rng, shape, dtype):
    """Counts 200..1200 with a zero sum, a pixel outside the response, NaN, inf and a saturated segment."""
    seg = rng.uniform(200, 1200, (4, *shape))
    seg[:, 0, 0] = 0.0
    seg[0, -1, -1], seg[2, -1, -1] = 5e4, 0.0
    if np.dtype(dtype).kind == "f":
        seg[1, 0, 1] = np.nan
        seg[3, 1, 0] = np.inf
    seg[2, 1, 1] = 65535.0
    return seg.astype(dtype)


def assert_equal_to_float32_rounding(got, want, alpha):
    np.testing.assert_array_equal(got[3], want[3])
    ok = want[3].astype(bool)
    for g, w in zip(got[:2], want[:2]):
        assert np.isnan(g[~ok]).all()
        np.testing.assert_allclose(g[ok], w[ok], rtol=4e-7 * 8, atol=4e-7 * 8 * alpha)
    if got[2] is not None:
        finite = np.isfinite(want[2])
        np.testing.assert_allclose(got[2][finite], want[2][finite], rtol=4e-7 * 4)
