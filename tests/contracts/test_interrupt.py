"""No data lost: results are written to a hidden temporary file and renamed into place.

A run killed while it writes leaves no result and never touches an existing one; a run
interrupted with Ctrl-C removes its temporary file; a failure while writing leaves the
existing output as it was; inputs are opened read-only (a run on read-only files, as a user
who may not write them, works and leaves them byte for byte as they were).
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from dpcstem.errors import OutputExistsError
from dpcstem.io import atomic_output, write_result

from helpers import without_permission_override

OPTIONS = ["--kv", "200", "--alpha", "10", "--step", "1", "--thickness", "100", "--response", "linear", "--collection", "0", "inf"]
EARLIER = b"an earlier result that must survive\n" * 1000


def counts(shape, seed):
    """Four segment images of a few thousand counts, a small deflection everywhere (uint16)."""
    rng = np.random.default_rng(seed)
    base = rng.integers(3000, 3100, size=(4, *shape)).astype(np.uint16)
    return base


def start(args, cwd, **kwargs):
    return subprocess.Popen([sys.executable, "-m", "dpcstem", *map(str, args)], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)


def temporary_files(folder, output="out.h5"):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(f".{output}.") and p.name.endswith(".tmp"))


def signal_while_writing(process, folder, signum):
    """Wait for the hidden temporary output to appear, then send ``signum``; True if it was sent while writing."""
    while process.poll() is None:
        if temporary_files(folder):
            process.send_signal(signum)
            return True
        time.sleep(0.001)
    return False


def run_and_interrupt(args, folder, signum):
    process = start(args, folder)
    try:
        sent = signal_while_writing(process, folder, signum)
        out, err = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert sent, f"the run ended before it wrote (exit {process.returncode}): {err}"
    return process.returncode, out, err


@pytest.fixture(scope="module")
def reconstruct_input(tmp_path_factory):
    folder = tmp_path_factory.mktemp("reconstruct_input")
    np.save(folder / "seg.npy", counts((512, 512), seed=1))
    return folder / "seg.npy"


def test_reconstruct_killed_while_writing_leaves_no_result_and_the_old_one_intact(reconstruct_input, tmp_path):
    (tmp_path / "seg.npy").write_bytes(reconstruct_input.read_bytes())
    (tmp_path / "out.h5").write_bytes(EARLIER)
    status, _, _ = run_and_interrupt(["reconstruct", "seg.npy", *OPTIONS, "--overwrite", "-o", "out.h5"], tmp_path,
                                     signal.SIGKILL)
    assert status == -signal.SIGKILL
    assert (tmp_path / "out.h5").read_bytes() == EARLIER
    visible = sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("."))
    assert visible == ["out.h5", "seg.npy"]
    left = temporary_files(tmp_path)  # a kill leaves the hidden temporary file, never mistaken for a result
    assert len(left) <= 1


def test_reconstruct_killed_while_writing_leaves_no_new_output(reconstruct_input, tmp_path):
    (tmp_path / "seg.npy").write_bytes(reconstruct_input.read_bytes())
    status, _, _ = run_and_interrupt(["reconstruct", "seg.npy", *OPTIONS, "-o", "out.h5"], tmp_path, signal.SIGKILL)
    assert status == -signal.SIGKILL
    assert not (tmp_path / "out.h5").exists()
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == ["seg.npy"]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=lambda s: s.name)
def test_bias_series_stopped_by_a_signal_while_writing_cleans_up(signum, tmp_path):
    """Ctrl-C, SIGTERM, SIGHUP while the series is written: 128 + the signal, the old result kept, nothing left."""
    # Large enough that the write lasts long past the moment the temporary file appears.
    for i in range(4):
        np.save(tmp_path / f"s{i}.npy", counts((512, 512), seed=10 + i))
    (tmp_path / "out.h5").write_bytes(EARLIER)
    status, _, err = run_and_interrupt(
        ["bias-series", "s0.npy", "s1.npy", "s2.npy", "s3.npy", "--bias", "0", "1", "2", "3", "--no-register",
         *OPTIONS, "--overwrite", "-o", "out.h5"], tmp_path, signum)
    assert status == 128 + signum, err
    assert err.strip().splitlines() == [f"dpcstem: interrupted ({signum.name}); no output was written"]
    assert (tmp_path / "out.h5").read_bytes() == EARLIER
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.h5", "s0.npy", "s1.npy", "s2.npy", "s3.npy"]


def test_a_failure_while_writing_leaves_the_existing_output(tmp_path):
    out = tmp_path / "out.h5"
    out.write_bytes(EARLIER)
    unstorable = np.array([object(), object()], dtype=object)
    with pytest.raises(TypeError):
        write_result(out, {"deflection_x": (np.zeros((2, 2)), "mrad"), "bad": (unstorable, "1")}, {},
                     overwrite=True)
    assert out.read_bytes() == EARLIER
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.h5"]


def test_atomic_output_renames_only_on_success(tmp_path):
    out = tmp_path / "out.h5"
    with pytest.raises(RuntimeError, match="stopped"):
        with atomic_output(out) as tmp:
            assert tmp.parent == tmp_path and tmp.name.startswith(".out.h5.") and tmp.name.endswith(".tmp")
            tmp.write_bytes(b"half")
            raise RuntimeError("stopped")
    assert list(tmp_path.iterdir()) == []
    with atomic_output(out) as tmp:
        tmp.write_bytes(b"whole")
    assert out.read_bytes() == b"whole" and sorted(p.name for p in tmp_path.iterdir()) == ["out.h5"]
    with pytest.raises(OutputExistsError, match="out.h5: output exists"):
        with atomic_output(out):
            pass
    assert out.read_bytes() == b"whole"


def test_an_output_appearing_while_writing_is_not_replaced(tmp_path):
    out = tmp_path / "out.h5"
    with pytest.raises(OutputExistsError, match="appeared while writing"):
        with atomic_output(out) as tmp:
            tmp.write_bytes(b"new")
            out.write_bytes(b"someone else's")
    assert out.read_bytes() == b"someone else's"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.h5"]


# -- inputs are opened read-only --------------------------------------------------------------

def run_on_read_only_inputs(args, folder, inputs):
    """Run with the inputs made read-only (0o444), where writing them would fail, even as root."""
    for path in inputs:
        path.chmod(0o444)
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in inputs}
    preexec = without_permission_override if os.geteuid() == 0 else None
    try:
        run = subprocess.run([sys.executable, "-m", "dpcstem", *map(str, args)], cwd=folder, capture_output=True,
                             text=True, preexec_fn=preexec, timeout=300)
    except subprocess.SubprocessError as exc:
        pytest.skip(f"cannot drop root's permission override here, so a 0o444 file would be writable ({exc})")
    for path, (data, mtime) in before.items():
        assert path.read_bytes() == data and path.stat().st_mtime_ns == mtime, path
        assert stat.S_IMODE(path.stat().st_mode) == 0o444
    return run


def test_read_only_files_cannot_be_written_by_the_run():
    """The check above can fail: the same child, asked to append to a read-only file, is refused."""
    with tempfile.TemporaryDirectory() as name:
        path = Path(name) / "input.npy"
        path.write_bytes(b"data")
        path.chmod(0o444)
        preexec = without_permission_override if os.geteuid() == 0 else None
        run = subprocess.run([sys.executable, "-c", f"open({str(path)!r}, 'ab').write(b'x')"], capture_output=True,
                             text=True, preexec_fn=preexec, timeout=60)
        assert run.returncode != 0 and "PermissionError" in run.stderr
        assert path.read_bytes() == b"data"


def test_reconstruct_reads_read_only_inputs(tmp_path):
    with h5py.File(tmp_path / "seg.h5", "w") as f:
        f["segments"] = counts((16, 16), seed=3)
        f.attrs["kv"] = 200.0
    with h5py.File(tmp_path / "vacuum.h5", "w") as f:
        f["segments"] = counts((16, 16), seed=4)
    np.save(tmp_path / "t.npy", np.full((16, 16), 100.0))
    inputs = [tmp_path / name for name in ("seg.h5", "vacuum.h5", "t.npy")]
    run = run_on_read_only_inputs(
        ["reconstruct", "seg.h5", "--alpha", "10", "--step", "1", "--thickness-map", "t.npy", "--reference",
         "vacuum.h5", "--response", "linear", "--collection", "0", "inf", "-o", "out.h5"], tmp_path, inputs)
    assert run.returncode == 0, run.stderr
    with h5py.File(tmp_path / "out.h5", "r") as f:
        assert f["deflection_x"].shape == (16, 16) and f.attrs["kv"] == 200.0


def test_com_reads_a_read_only_4d_file(tmp_path):
    y, x = np.indices((16, 16))
    frames = np.broadcast_to(((y - 8) ** 2 + (x - 8) ** 2 < 16) * 50, (4, 5, 16, 16)).astype(np.uint16)
    np.save(tmp_path / "frames.npy", frames)
    run = run_on_read_only_inputs(
        ["com", "frames.npy", "--kv", "200", "--step", "1", "--thickness", "100", "--mrad-per-px", "0.5", "-o",
         "out.h5"], tmp_path, [tmp_path / "frames.npy"])
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "out.h5").is_file()
