"""Helpers shared by the tests."""

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
