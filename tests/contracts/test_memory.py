"""Memory is checked against what a run really holds, before the work (DESIGN.md §4).

The budgets of :mod:`dpcstem.memory` are held to measurements: the work runs in a
subprocess whose peak resident memory is read, and a budget below what the work holds, or
far above it, fails.
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dpcstem import Calibration, DPCError
from dpcstem.errors import InsufficientMemoryError
from dpcstem.memory import (
    LIMIT_VARIABLE,
    RECONSTRUCTION_BYTES_PER_PIXEL,
    available_memory,
    require_memory,
    series_bytes,
)
from dpcstem.reconstruct import reconstruct

from helpers import PEAK_MEMORY_FUNCTIONS

TESTS = Path(__file__).resolve().parents[1]
OPTIONS = ["--kv", "200", "--alpha", "10", "--step", "1", "--thickness", "100", "--collection", "0", "inf"]


def test_refuses_more_than_is_free():
    require_memory(1024, "a small thing")
    with pytest.raises(InsufficientMemoryError, match=r"a huge scan needs .* GiB but only .* GiB of memory is free"):
        require_memory(2**50, "a huge scan")


def test_reconstruction_checks_before_allocating():
    # A zero-strided array claims a vast scan without holding it; the check refuses it up front.
    huge = np.lib.stride_tricks.as_strided(np.ones(4, np.uint16), shape=(4, 200_000, 200_000), strides=(2, 0, 0))
    cal = Calibration(kv=200, alpha_mrad=1, step_x_nm=1, thickness_nm=100)
    with pytest.raises(DPCError, match="reconstructing a 200000 x 200000 scan needs"):
        reconstruct(huge, cal)


def test_the_memory_limit_caps_what_is_free(monkeypatch):
    monkeypatch.setenv(LIMIT_VARIABLE, "64M")
    assert available_memory() == (64 * 2**20, True)
    with pytest.raises(InsufficientMemoryError, match=rf"needs 0\.10 GiB but only 0\.06 GiB .*\({LIMIT_VARIABLE}\)"):
        require_memory(0.1 * 2**30, "a thing")
    monkeypatch.setenv(LIMIT_VARIABLE, "lots")
    with pytest.raises(InsufficientMemoryError, match=rf"{LIMIT_VARIABLE}='lots': give a number of bytes"):
        available_memory()


MEASURE_RECONSTRUCTION = PEAK_MEMORY_FUNCTIONS + '''
import sys
import numpy as np
from dpcstem import Calibration
from dpcstem.options import ReconstructionOptions
from dpcstem.reconstruct import reconstruct

n, method = int(sys.argv[1]), sys.argv[2]
cal = Calibration(kv=200, alpha_mrad=10, step_x_nm=1, thickness_nm=100)
counts = lambda shape: np.random.default_rng(0).integers(3000, 3100, (4, *shape)).astype(np.uint16)
options = ReconstructionOptions(charge_method=method)
reconstruct(counts((32, 32)), cal, options=options)  # compiled, and the table built, outside the measure
segments = counts((n, n))
peak, _ = growth(lambda: reconstruct(segments, cal, options=options))
print(peak / n / n)
'''


@pytest.mark.slow
@pytest.mark.parametrize("method", ["finite-difference", "spectral"])
def test_the_reconstruction_budget_is_what_a_reconstruction_holds(method):
    n = 768
    run = subprocess.run([sys.executable, "-c", MEASURE_RECONSTRUCTION, str(n), method], capture_output=True,
                         text=True, cwd=TESTS, timeout=600)
    assert run.returncode == 0, run.stderr
    held = float(run.stdout.split()[-1])
    assert held <= RECONSTRUCTION_BYTES_PER_PIXEL, f"a reconstruction holds {held:.0f} B/px, budgeted " \
                                                   f"{RECONSTRUCTION_BYTES_PER_PIXEL}"
    assert held >= 0.75 * RECONSTRUCTION_BYTES_PER_PIXEL, f"the budget ({RECONSTRUCTION_BYTES_PER_PIXEL} B/px) " \
                                                          f"is far above what is held ({held:.0f} B/px)"


def test_bias_series_checks_memory_before_reconstructing(tmp_path):
    """Each file fits; the series' working maps do not: refused before any reconstruction, naming the series."""
    for i in range(4):
        np.save(tmp_path / f"s{i}.npy", np.full((4, 512, 512), 3000, np.uint16))
    run = subprocess.run(
        [sys.executable, "-m", "dpcstem", "bias-series", "s0.npy", "s1.npy", "s2.npy", "s3.npy", "--bias", "0", "1",
         "2", "3", *OPTIONS, "-o", "out.h5"], cwd=tmp_path, capture_output=True, text=True, timeout=600,
        env={**os.environ, LIMIT_VARIABLE: "64M"})
    assert run.returncode == 2, run.stderr
    assert run.stderr.strip().splitlines() == [
        f"dpcstem: error: a bias series of 4 acquisitions of 512 x 512 needs "
        f"{series_bytes((4, 512, 512), np.uint16) / 2**30:.2f} GiB but only 0.06 GiB of memory "
        f"is free ({LIMIT_VARIABLE}); free memory, crop the scan, or use the chunked 4D path"]
    assert not (tmp_path / "out.h5").exists()
