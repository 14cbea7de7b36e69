"""Helpers shared by the tests of the 4D paths."""

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
