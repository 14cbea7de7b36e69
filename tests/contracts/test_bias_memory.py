"""The series is streamed: its peak memory is a few maps, whatever the number of acquisitions."""

import subprocess
import sys
import textwrap

import h5py
import numpy as np

from dpcstem.memory import SERIES_BYTES_PER_PIXEL
from helpers import PEAK_MEMORY_FUNCTIONS

SIDE = 256


def write_series(folder, count, rng):
    folder.mkdir()
    for k in range(count):
        with h5py.File(folder / f"bias_{k:02d}.h5", "w") as f:
            f["segments"] = rng.poisson(1000, (4, SIDE, SIDE)).astype(np.uint16)
            f.attrs["bias_v"] = float(k)


def peak_growth(tmp_path, name):
    """Peak resident memory of ``dpcstem bias-series`` on one folder, in a fresh process after a warm-up run.

    Each series is measured in its own process: measured one after another in one process, the
    second starts from the pages the allocator kept from the first, and the difference means nothing.
    """
    script = PEAK_MEMORY_FUNCTIONS + textwrap.dedent(f"""
        from dpcstem.cli import main
        common = ["--kv", "200", "--alpha", "10", "--step", "0.5", "--thickness", "100", "--collection", "0", "inf",
                  "--interface", "5", "5", "5", "100"]
        def run(name):
            assert main(["bias-series", {str(tmp_path)!r} + "/" + name, *common, "-o",
                         {str(tmp_path)!r} + "/" + name + ".h5", "--overwrite"]) == 0
        run("warm")  # compile the kernels and load the libraries outside the measurement
        print("PEAK", growth(lambda: run({name!r}))[0])
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return int(out.stdout.split("PEAK")[1].split()[0])


def test_peak_memory_is_bounded_by_a_few_maps_not_the_series(tmp_path, rng):
    write_series(tmp_path / "few", 3, rng)
    write_series(tmp_path / "many", 12, rng)
    write_series(tmp_path / "warm", 2, rng)
    peak_growth(tmp_path, "warm")  # fills the session's inverse-table cache: both runs below load it
    few, many = peak_growth(tmp_path, "few"), peak_growth(tmp_path, "many")
    one_map = SIDE * SIDE * 4  # bytes of one float32 map
    # the result of 12 acquisitions holds 12 × 16 maps; held whole they would need ~190 float32 maps
    assert many < SERIES_BYTES_PER_PIXEL * SIDE * SIDE, (many / SIDE**2, "bytes per pixel")
    # Four times the acquisitions, the same peak: what is held is a few maps, whatever the length of
    # the series (measured alone: about 15 maps for 3 and for 12 acquisitions, most of it the doubled
    # complex grid of the potential's mirror extension). Holding the series whole would add 32 maps
    # per acquisition (its maps and net maps, float32 and their float64 intermediates).
    assert many - few < 2 * one_map, ((many - few) / one_map, "maps more for 9 more acquisitions")
    with h5py.File(tmp_path / "many.h5", "r") as f:
        assert f["net_field_x"].shape == (12, SIDE, SIDE) and f["layer_bias"].shape == (11,)
