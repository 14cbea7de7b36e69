"""A user's data are never at risk from an output (DESIGN.md §4), through the command line.

Each test runs ``dpcstem`` in a subprocess, as a user does, and checks the promise: an
output that is an input or not a regular file is refused (exit 2, one line) even with
``--overwrite`` and the input stays byte for byte; an unwritable destination is found before
the work; a full disk gives one line, no crash and no file; two writers racing for one name
without ``--overwrite``: exactly one wins; results get the permissions the umask gives; a
closed pipe on standard output does not fail a run that wrote its result.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import h5py
import numpy as np
import pytest

from dpcstem.errors import OutputError, OutputExistsError
from dpcstem.io import atomic_output

from helpers import without_permission_override

OPTIONS = ["--kv", "200", "--alpha", "10", "--step", "1", "--thickness", "100", "--response", "linear", "--collection", "0", "inf"]
COM = ["--kv", "200", "--step", "1", "--thickness", "100", "--mrad-per-px", "0.5"]


def dpcstem(args, cwd, **kwargs):
    return subprocess.run([sys.executable, "-m", "dpcstem", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=600, **kwargs)


def counts(shape=(16, 16), seed=0):
    return np.random.default_rng(seed).integers(3000, 3100, size=(4, *shape)).astype(np.uint16)


def frames():
    y, x = np.indices((16, 16))
    return np.broadcast_to(((y - 8) ** 2 + (x - 8) ** 2 < 16) * 50, (4, 5, 16, 16)).astype(np.uint16)


def write_segments_h5(path, seed=0):
    with h5py.File(path, "w") as f:
        f["segments"] = counts(seed=seed)
    return path


def one_error_line(run):
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dpcstem: error: "), run.stderr
    return lines[0]


def snapshot(folder):
    """Every entry of a folder: name → (kind, bytes of a regular file, link target)."""
    out = {}
    for p in sorted(folder.iterdir()):
        st = p.lstat()
        data = p.read_bytes() if stat.S_ISREG(st.st_mode) else None
        out[p.name] = (stat.S_IFMT(st.st_mode), data, os.readlink(p) if p.is_symlink() else None)
    return out


# -- 1. an output that is an input -------------------------------------------------------------

def _inputs(d):
    write_segments_h5(d / "seg.h5")
    write_segments_h5(d / "b0.h5", 1)
    write_segments_h5(d / "b1.h5", 2)
    write_segments_h5(d / "vacuum.h5", 3)
    with h5py.File(d / "thick.h5", "w") as f:
        f["thickness"] = np.full((16, 16), 100.0)
    with h5py.File(d / "frames.h5", "w") as f:
        f["frames"] = frames()
    (d / "sub").mkdir()
    os.symlink("seg.h5", d / "link.h5")
    os.link(d / "b1.h5", d / "hard.h5")


INPUT_CASES = {
    "the segments by their name": ["reconstruct", "seg.h5", *OPTIONS, "-o", "seg.h5"],
    "the segments through another path": ["reconstruct", "seg.h5", *OPTIONS, "-o", "sub/../seg.h5"],
    "the segments through a symbolic link": ["reconstruct", "seg.h5", *OPTIONS, "-o", "link.h5"],
    "a bias-series file through a hard link": ["bias-series", "b0.h5", "b1.h5", "--bias", "0", "1", *OPTIONS,
                                               "-o", "hard.h5"],
    "the second bias-series file": ["bias-series", "b0.h5", "b1.h5", "--bias", "0", "1", *OPTIONS, "-o", "b1.h5"],
    "the --reference vacuum": ["reconstruct", "seg.h5", *OPTIONS, "--reference", "vacuum.h5", "-o", "vacuum.h5"],
    "the --thickness-map": ["reconstruct", "seg.h5", "--kv", "200", "--alpha", "10", "--step", "1",
                            "--thickness-map", "thick.h5", "-o", "thick.h5"],
    "the 4D file of com": ["com", "frames.h5", *COM, "-o", "frames.h5"],
}


@pytest.mark.parametrize("args", INPUT_CASES.values(), ids=INPUT_CASES.keys())
def test_an_output_that_is_an_input_is_refused_even_with_overwrite(args, tmp_path):
    _inputs(tmp_path)
    before = snapshot(tmp_path)
    run = dpcstem([*args, "--overwrite"], tmp_path)
    assert run.returncode == 2, run.stderr
    assert "the output is an input" in one_error_line(run)
    assert snapshot(tmp_path) == before  # byte for byte, and nothing added


# -- 2. anything but a regular file ----------------------------------------------------------

def test_special_files_and_folders_are_never_replaced(tmp_path):
    write_segments_h5(tmp_path / "seg.h5")
    os.mkfifo(tmp_path / "fifo.h5")
    (tmp_path / "folder.h5").mkdir()
    before = snapshot(tmp_path)
    for output, kind in (("/dev/null", "a character device"), ("fifo.h5", "a FIFO"), ("folder.h5", "a folder")):
        run = dpcstem(["reconstruct", "seg.h5", *OPTIONS, "--overwrite", "-o", output], tmp_path)
        assert run.returncode == 2, run.stderr
        assert f"the output is {kind}" in one_error_line(run)
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    assert snapshot(tmp_path) == before


def test_a_dangling_symbolic_link_is_replaced_only_with_overwrite(tmp_path):
    write_segments_h5(tmp_path / "seg.h5")
    os.symlink("nowhere.h5", tmp_path / "out.h5")
    run = dpcstem(["reconstruct", "seg.h5", *OPTIONS, "-o", "out.h5"], tmp_path)
    assert run.returncode == 2 and "a symbolic link exists" in one_error_line(run)
    assert os.readlink(tmp_path / "out.h5") == "nowhere.h5"
    run = dpcstem(["reconstruct", "seg.h5", *OPTIONS, "--overwrite", "-o", "out.h5"], tmp_path)
    assert run.returncode == 0, run.stderr
    assert not (tmp_path / "out.h5").is_symlink() and not (tmp_path / "nowhere.h5").exists()
    with h5py.File(tmp_path / "out.h5", "r") as f:
        assert f["deflection_x"].shape == (16, 16)


# -- 3. a full disk --------------------------------------------------------------------------

def _mount_tmpfs(folder, size):
    """A tmpfs of ``size`` at ``folder`` (skipped where mounting is not permitted); unmounted after."""
    folder.mkdir()
    mount = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True,
                           text=True)
    if mount.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here to fill ({mount.stderr.strip() or 'mount failed'})")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MiB filesystem (tmpfs), mounted for the test."""
    yield from _mount_tmpfs(tmp_path / "small", "2m")


@pytest.fixture
def disk_of_32_mib(tmp_path):
    yield from _mount_tmpfs(tmp_path / "disk", "32m")


def test_a_disk_that_fills_while_a_series_is_written_gives_one_error_and_leaves_nothing(disk_of_32_mib):
    """The space is there when the series starts (checked), then another program takes it: the
    writes that follow, on the writer's own thread and then HDF5 closing the file, meet a full disk."""
    from dpcstem.io.series import SeriesWriter

    maps = {name: (np.random.default_rng(1).normal(size=(512, 512)).astype(np.float32), "V/m")
            for name in ("field_x", "field_y", "charge_density")}  # 1 MiB each: written directly
    with pytest.raises(OutputError, match="the disk is full"):
        with SeriesWriter(disk_of_32_mib / "series.h5", 2) as writer:
            writer.put(0, maps)
            writer._settle()
            free = os.statvfs(disk_of_32_mib).f_bavail * os.statvfs(disk_of_32_mib).f_frsize
            (disk_of_32_mib / "other.bin").write_bytes(b"\1" * (free - (1 << 19)))  # another program's
            writer.put(1, maps)
            writer.put(0, {f"net_{name}": value for name, value in maps.items()})
            writer.put(1, {f"net_{name}": value for name, value in maps.items()})
            writer.finish({}, {})
    assert sorted(p.name for p in disk_of_32_mib.iterdir()) == ["other.bin"]


FULL_DISK_CASES = {
    "reconstruct": ["reconstruct", "big.npy", *OPTIONS, "-o", "out.h5"],
    "bias-series": ["bias-series", "big.npy", "big2.npy", "--bias", "0", "1", "--no-register", *OPTIONS,
                    "-o", "out.h5"],
    "simulate": ["simulate", "bias-series", "--out", "sim", "--shape", "128", "128"],
}


@pytest.mark.parametrize("args", FULL_DISK_CASES.values(), ids=FULL_DISK_CASES.keys())
def test_a_full_disk_gives_one_line_and_leaves_nothing(args, small_disk):
    # Inputs that fill most of the disk: incompressible counts, about 0.5 MiB each.
    for name, seed in (("big.npy", 1), ("big2.npy", 2)):
        np.save(small_disk / name, np.random.default_rng(seed).integers(0, 60000, (4, 256, 256)).astype(np.uint16))
    before = snapshot(small_disk)
    run = dpcstem(args, small_disk)
    assert run.returncode in (1, 2), (run.returncode, run.stderr)  # never a crash (a negative status)
    assert "the disk is full" in one_error_line(run)
    after = snapshot(small_disk)
    if "sim" in after:  # the folder asked for may be made; none of its files
        assert list((small_disk / "sim").iterdir()) == []
        del after["sim"]
    assert after == before


# -- 5. two writers without --overwrite: one wins --------------------------------------------

def test_the_rename_without_overwrite_never_replaces_an_output_made_meanwhile(tmp_path):
    """Two writers that both passed the existence check: the second to finish is refused, atomically."""
    out = tmp_path / "out.h5"
    with pytest.raises(OutputExistsError, match="appeared while writing"):
        with atomic_output(out) as first:
            first.write_bytes(b"first")
            with atomic_output(out) as second:
                second.write_bytes(b"second")
    assert out.read_bytes() == b"second"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.h5"]


def test_two_commands_racing_for_one_output_exactly_one_wins(tmp_path):
    write_segments_h5(tmp_path / "seg.h5")
    for round_ in range(3):
        out = f"out{round_}.h5"
        racers = [subprocess.Popen([sys.executable, "-m", "dpcstem", "reconstruct", "seg.h5", *OPTIONS, "-o", out],
                                   cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                  for _ in range(2)]
        results = [(p.wait(timeout=600), p.communicate()[1]) for p in racers]
        assert sorted(status for status, _ in results) == [0, 2], results
        loser = next(err for status, err in results if status == 2)
        assert f"{out}: output" in loser and len(loser.strip().splitlines()) == 1
        with h5py.File(tmp_path / out, "r") as f:
            assert f["deflection_x"].shape == (16, 16)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out0.h5", "out1.h5", "out2.h5", "seg.h5"]


# -- 6. an unwritable destination is found before the work -------------------------------------

UNWRITABLE = {
    "a read-only folder": ("ro/out.h5", "cannot write in folder ro"),
    "a parent that is a file": ("seg.h5/out.h5", "seg.h5 is not a folder"),
    "a name too long": ("x" * 300 + ".h5", "the file name is too long"),
    "a missing folder": ("missing/out.h5", "folder missing does not exist"),
    "a suffix the writer does not produce": ("out.tif", "the result is written as HDF5; give a name ending in .h5"),
}


@pytest.mark.parametrize("output, message", UNWRITABLE.values(), ids=UNWRITABLE.keys())
def test_an_unwritable_destination_is_refused_before_the_work(output, message, tmp_path):
    write_segments_h5(tmp_path / "seg.h5")
    (tmp_path / "ro").mkdir()
    (tmp_path / "ro").chmod(0o555)
    preexec = without_permission_override if os.geteuid() == 0 else None
    # The input does not exist: only a check made before reading it can name the output.
    run = dpcstem(["reconstruct", "absent.h5", *OPTIONS, "-o", output], tmp_path, preexec_fn=preexec)
    assert run.returncode == 2, run.stderr
    assert message in one_error_line(run)
    assert list((tmp_path / "ro").iterdir()) == []


def test_demo_refuses_an_existing_file_as_its_folder(tmp_path):
    (tmp_path / "taken").write_text("a file of the user's\n")
    run = dpcstem(["demo", "--out", "taken"], tmp_path)
    assert run.returncode == 2
    assert "taken: --out must be a folder, and this is a file" in one_error_line(run)
    assert (tmp_path / "taken").read_text() == "a file of the user's\n"


# -- 10. permissions -------------------------------------------------------------------------

@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_results_get_the_permissions_the_umask_gives(umask, mode, tmp_path):
    write_segments_h5(tmp_path / "seg.h5")
    run = dpcstem(["reconstruct", "seg.h5", *OPTIONS, "-o", "out.h5"], tmp_path, preexec_fn=lambda: os.umask(umask))
    assert run.returncode == 0, run.stderr
    assert stat.S_IMODE((tmp_path / "out.h5").stat().st_mode) == mode


# -- 9. a closed pipe on standard output -------------------------------------------------------

def test_a_closed_pipe_on_stdout_does_not_fail_a_run_that_wrote_its_result(tmp_path):
    write_segments_h5(tmp_path / "seg.h5")
    process = subprocess.Popen([sys.executable, "-m", "dpcstem", "reconstruct", "seg.h5", *OPTIONS, "-o", "out.h5"],
                               cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.close()  # as `| head -0` does
    with process.stderr:
        err = process.stderr.read().decode()
    assert process.wait(timeout=600) == 0, err
    assert err == ""
    with h5py.File(tmp_path / "out.h5", "r") as f:
        assert f["deflection_x"].shape == (16, 16)


def test_a_4d_set_larger_than_the_free_space_is_refused_before_writing(small_disk):
    from dpcstem import Calibration
    from dpcstem.errors import OutputError
    from dpcstem.simulate.fourd import write_frames

    cal = Calibration(kv=200, alpha_mrad=10, step_x_nm=1, thickness_nm=100)
    theta = np.zeros((24, 24))  # 576 frames of 64 x 64 uint16: 4.5 MiB on a 2 MiB disk
    with pytest.raises(OutputError,
                       match=r"frames\.h5: the disk is full for it: it needs 4\.5 MiB but only .* MiB is free"):
        write_frames(small_disk / "frames.h5", theta, theta, cal, frame_shape=(64, 64), mrad_per_px=0.5)
    assert list(small_disk.iterdir()) == []
