"""Nothing but the one line around an error, and no noise around a result (command line, subprocesses)."""

from __future__ import annotations

import subprocess
import sys

import h5py
import numpy as np
import pytest

OPTIONS = ["--kv", "200", "--alpha", "10", "--step", "1", "--response", "linear", "--collection", "0", "inf"]


def dpcstem(args, cwd, **kwargs):
    return subprocess.run([sys.executable, "-m", "dpcstem", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=600, **kwargs)


def counts(shape=(16, 16), seed=0):
    return np.random.default_rng(seed).integers(3000, 3100, size=(4, *shape)).astype(np.uint16)


def test_an_option_error_is_one_line(tmp_path):
    run = dpcstem(["reconstruct", "seg.npy", "--kv"], tmp_path)
    assert run.returncode == 2
    assert run.stderr.splitlines() == ["dpcstem: error: dpcstem reconstruct: argument --kv: expected one argument "
                                       "(see dpcstem reconstruct --help)"]


def test_debug_is_taken_after_the_subcommand_too(tmp_path):
    np.save(tmp_path / "seg.npy", counts())
    for args in (["--debug", "reconstruct", "seg.npy"], ["reconstruct", "seg.npy", "--debug"]):
        run = dpcstem([*args, *OPTIONS, "--thickness", "100", "--overwrite", "-o", "out.h5"], tmp_path)
        assert run.returncode == 0, run.stderr


def test_a_non_utf8_file_name_is_one_line(tmp_path):
    name = b"seg\xff.npy"
    np.save(tmp_path / "seg.npy", counts())
    (tmp_path / "seg.npy").rename(tmp_path / name.decode("utf-8", "surrogateescape"))
    run = subprocess.run([sys.executable, "-m", "dpcstem", "reconstruct", name, *OPTIONS, "--thickness", "100",
                          "-o", "out.h5"], cwd=tmp_path, capture_output=True, timeout=600)
    assert run.returncode == 2
    assert run.stderr.decode().splitlines() == [
        "dpcstem: error: seg\\xff.npy: the name is not valid UTF-8, and dpcstem records file names as text in its "
        "results; rename the file"]


def test_an_overridden_thickness_map_is_named_by_its_shape_not_printed(tmp_path):
    with h5py.File(tmp_path / "seg.h5", "w") as f:
        f["segments"] = counts((64, 64))
        f.attrs["thickness_nm"] = 120.0
    np.save(tmp_path / "t.npy", np.linspace(90.0, 110.0, 64 * 64).reshape(64, 64))
    run = dpcstem(["reconstruct", "seg.h5", *OPTIONS, "--thickness-map", "t.npy", "-o", "out.h5"], tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.stderr.splitlines() == ["dpcstem: warning: thickness_nm: seg.h5 says 120.0, using the given a "
                                       "64 x 64 map (90 to 110)"]


def test_no_progress_bar_when_stderr_is_not_a_terminal(tmp_path):
    for i in range(3):
        np.save(tmp_path / f"s{i}.npy", counts(seed=i))
    run = dpcstem(["bias-series", "s0.npy", "s1.npy", "s2.npy", "--bias", "0", "1", "2", *OPTIONS, "--thickness",
                   "100", "-o", "out.h5"], tmp_path)
    assert run.returncode == 0, run.stderr
    assert "\r" not in run.stderr and "%|" not in run.stderr, run.stderr


@pytest.mark.slow
def test_a_local_cluster_logs_nothing(tmp_path):
    y, x = np.indices((16, 16))
    np.save(tmp_path / "frames.npy", np.broadcast_to(((y - 8) ** 2 + (x - 8) ** 2 < 16) * 50,
                                                     (6, 6, 16, 16)).astype(np.uint16))
    run = dpcstem(["com", "frames.npy", "--kv", "200", "--step", "1", "--thickness", "100", "--mrad-per-px", "0.5",
                   "--workers", "2", "-o", "out.h5"], tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.stderr == ""
