"""Damaged files of every supported format: each cut short at many points and with bytes flipped.

A file cut short loses data, and its reader must say so with a :class:`~dpcstem.DPCError`
(a cut that removes only bytes nothing points to, such as the padding at the end of a TIFF
file, may read the very same arrays). A flipped byte may land in data, where it only changes
a number, or in the structure, where the reader must refuse the file with a ``DPCError``:
never another exception, a crash or a hang. Most cases go through the Python readers (the
file is read in full: 4D-STEM files are reduced to their centre of mass, which reads every
frame); a few go through the ``dpcstem`` command in a subprocess with a time limit, where a
crash or a hang would show.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import warnings

import h5py
import numpy as np
import pytest
import tifffile

from dpcstem.errors import DPCError
from dpcstem.fourd import centre_of_mass
from dpcstem.io import load_result, open_pixelated, read_segments, write_result

from conftest import SHARED_DATA as SHARED
VELOX = SHARED / "velox" / "fei_example_dpc_titles.emd"
MERLIN = SHARED / "merlin" / "001_4x2_6bit.mib"

#: Evenly spaced cut lengths per file, besides the header boundaries of each format.
N_CUTS = 12
#: Flipped bytes per file: this many in the first kilobyte (headers) and as many anywhere.
N_FLIPS = 12


# -- the files, written fresh for each module run -------------------------------------------

def _segments():
    rng = np.random.default_rng(7)
    return rng.integers(100, 4000, size=(4, 12, 10)).astype(np.uint16)


def _npy(folder):
    path = folder / "segments.npy"
    np.save(path, _segments())
    with open(path, "rb") as fh:
        np.lib.format.read_magic(fh)
        np.lib.format.read_array_header_1_0(fh)
        data_start = fh.tell()
    return path, [6, 8, 10, data_start]


def _tiff(folder):
    path = folder / "segments.tif"
    tifffile.imwrite(path, _segments(), photometric="minisblack")
    marks = [8]
    with tifffile.TiffFile(path) as tif:
        for page in tif.pages:
            marks += [page.offset, page.offset + 2, *page.dataoffsets]
    return path, marks


def _hdf5_marks(path, dataset):
    with h5py.File(path, "r") as f:
        offset = f[dataset].id.get_offset()
    return [8, 48, 96, 512] + ([offset, offset + 1] if offset is not None else [])


def _h5(folder):
    path = folder / "segments.h5"
    with h5py.File(path, "w") as f:
        f["segments"] = _segments()
        f.attrs["kv"] = 200.0
        f.attrs["step_x_nm"] = 0.5
    return path, _hdf5_marks(path, "segments")


def _result(folder):
    path = folder / "result.h5"
    seg = _segments().astype(np.float32)
    write_result(path, {"deflection_x": (seg[0], "mrad"), "deflection_y": (seg[1], "mrad"),
                        "valid": (np.ones((12, 10), np.uint8), "1")},
                 {"kv": 200.0, "step_x_nm": 0.5, "step_y_nm": 0.5})
    return path, _hdf5_marks(path, "deflection_x")


def _velox(folder):
    if not VELOX.is_file():
        pytest.skip(f"reference file {VELOX} is absent (it lives beside the project, not in it)")
    path = folder / "velox.emd"
    shutil.copyfile(VELOX, path)
    return path, [8, 48, 96, 512]


def _mib(folder):
    if not MERLIN.is_file():
        pytest.skip(f"reference file {MERLIN} is absent (it lives beside the project, not in it)")
    path = folder / "frames.mib"
    shutil.copyfile(MERLIN, path)
    shutil.copyfile(MERLIN.with_suffix(".hdr"), path.with_suffix(".hdr"))
    frame = 384 + 256 * 256  # header and 8-bit pixels
    return path, [1, 100, 383, 384, 385, frame - 1, frame, frame + 1, frame + 384, 4 * frame, 7 * frame + 5]


def _hspy(folder):
    import hyperspy.api as hs

    path = folder / "frames.hspy"
    rng = np.random.default_rng(8)
    s = hs.signals.Signal2D(rng.integers(0, 200, size=(3, 4, 16, 16)).astype(np.uint16))
    s.metadata.set_item("Acquisition_instrument.TEM.beam_energy", 200.0)
    s.save(path)
    with h5py.File(path, "r") as f:
        found = []
        f.visititems(lambda n, o: found.append(n) if isinstance(o, h5py.Dataset) and o.ndim == 4 else None)
    return path, _hdf5_marks(path, found[0])


def _frames_npy(folder):
    path = folder / "frames.npy"
    np.save(path, np.random.default_rng(9).integers(0, 200, size=(3, 4, 16, 16)).astype(np.uint16))
    return path, [6, 8, 10, 128]


def _read_segments(path):
    return read_segments(path).segments


def _read_result(path):
    signals = load_result(path)
    return np.concatenate([signals[name].data.astype(np.float64).ravel() for name in sorted(signals)])


def _read_frames(path):
    sums = centre_of_mass(open_pixelated(path))
    return np.stack([sums.intensity, sums.com_x, sums.com_y])


FORMATS = {
    "npy": (_npy, _read_segments),
    "tiff": (_tiff, _read_segments),
    "hdf5": (_h5, _read_segments),
    "result": (_result, _read_result),
    "velox": (_velox, _read_segments),
    "mib": (_mib, _read_frames),
    "hspy": (_hspy, _read_frames),
    "npy-4d": (_frames_npy, _read_frames),
}


@pytest.fixture(scope="module")
def originals(tmp_path_factory):
    """Each format's intact file, its header boundaries and what its reader gives for it."""
    folder = tmp_path_factory.mktemp("originals")
    made = {}

    def get(name):
        if name not in made:
            make, read = FORMATS[name]
            sub = folder / name
            sub.mkdir(exist_ok=True)  # a make that skipped (no shared data) left it behind
            path, marks = make(sub)
            made[name] = (path, marks, read(path))
        return made[name]

    return get


def damaged_copy(path, folder, data):
    """Write ``data`` under the file's name in ``folder`` (with the Merlin header file beside it)."""
    target = folder / path.name
    target.write_bytes(data)
    companion = path.with_suffix(".hdr")
    if companion.is_file():
        shutil.copyfile(companion, target.with_suffix(".hdr"))
    return target


def _outcome(read, path):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            value = read(path)
    except DPCError as exc:
        return "error", exc
    return "ok", value


def cut_lengths(size, marks):
    evenly = np.linspace(0, size - 1, N_CUTS).astype(int).tolist()
    return sorted({n for n in evenly + list(marks) if 0 <= n < size})


def flip_positions(size, seed):
    rng = np.random.default_rng(seed)
    head = rng.integers(0, min(size, 1024), N_FLIPS).tolist()
    anywhere = rng.integers(0, size, N_FLIPS).tolist()
    return sorted(set(head + anywhere))


@pytest.mark.parametrize("name", list(FORMATS))
def test_every_cut_is_a_dpc_error(name, originals, tmp_path):
    path, marks, intact = originals(name)
    data = path.read_bytes()
    size = len(data)
    lengths = cut_lengths(size, marks)
    assert len(lengths) >= N_CUTS
    read = FORMATS[name][1]
    same = []
    for n in lengths:
        folder = tmp_path / f"cut{n}"
        folder.mkdir()
        kind, value = _outcome(read, damaged_copy(path, folder, data[:n]))
        if kind == "ok":  # nothing the file points to was cut: the same arrays, or the test fails
            np.testing.assert_array_equal(value, intact, err_msg=f"{name} cut to {n} of {size} bytes read as other data")
            same.append(n)
        else:
            assert str(value).startswith(str(folder)), f"{name} cut to {n}: the message does not name the file: {value}"
    # Only trailing bytes nothing points to may be cut without an error (tifffile pads its files).
    assert all(n >= size - 64 for n in same), (name, same)
    assert len(same) <= 1, (name, same)


@pytest.mark.parametrize("name", list(FORMATS))
def test_flipped_bytes_give_a_dpc_error_or_a_file_that_reads(name, originals, tmp_path):
    path, _, intact = originals(name)
    data = path.read_bytes()
    read = FORMATS[name][1]
    outcomes = {}
    for position in flip_positions(len(data), seed=len(name)):
        damaged = bytearray(data)
        damaged[position] ^= 0xFF
        folder = tmp_path / f"flip{position}"
        folder.mkdir()
        kind, value = _outcome(read, damaged_copy(path, folder, bytes(damaged)))
        outcomes[position] = kind
        if kind == "ok":
            assert np.shape(value) == np.shape(intact), f"{name} with byte {position} flipped read another shape"
    assert len(outcomes) >= N_FLIPS


def test_a_flipped_byte_in_a_structure_is_refused(originals, tmp_path):
    """Flips known to land in structure: each is a DPCError naming the file."""
    cases = [("npy", 1), ("npy", 20), ("tiff", 2), ("tiff", 4), ("hdf5", 0), ("hdf5", 9), ("result", 0)]
    if MERLIN.is_file():
        cases += [("mib", 0), ("mib", 13)]
    for name, position in cases:
        path, _, _ = originals(name)
        damaged = bytearray(path.read_bytes())
        damaged[position] ^= 0xFF
        folder = tmp_path / f"{name}{position}"
        folder.mkdir()
        kind, value = _outcome(FORMATS[name][1], damaged_copy(path, folder, bytes(damaged)))
        assert kind == "error", (name, position)
        assert str(folder) in str(value), value


def _dpcstem(*args, cwd):
    return subprocess.run([sys.executable, "-m", "dpcstem", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


def _cut(fraction):
    def damage(path, data):
        return data[: int(len(data) * fraction)]
    return damage


def _flip_in_chunk(path, data):
    """Flip a byte in the middle of the first compressed chunk of the 4-D dataset."""
    with h5py.File(path, "r") as f:
        found = []
        f.visititems(lambda n, o: found.append(o.id.get_chunk_info(0)) if isinstance(o, h5py.Dataset) and o.ndim == 4
                     else None)
    damaged = bytearray(data)
    damaged[found[0].byte_offset + found[0].size // 2] ^= 0xFF
    return bytes(damaged)


RECONSTRUCT = ["reconstruct", "{file}", "--kv", "200", "--alpha", "10", "--step", "1", "--thickness", "100",
               "--collection", "0", "inf", "-o", "out.h5"]
COM = ["com", "{file}", "--kv", "200", "--step", "1", "--thickness", "100", "--mrad-per-px", "0.1", "-o", "out.h5"]
CLI_CASES = [
    ("hdf5", _cut(0.5), RECONSTRUCT),
    ("tiff", _cut(0.7), RECONSTRUCT),
    ("velox", _cut(0.3), ["reconstruct", "{file}", "--thickness", "100", "-o", "out.h5"]),
    ("mib", _cut(0.5), COM),
    ("hspy", _flip_in_chunk, COM),
]


@pytest.mark.parametrize("name, damage, argv", CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_command_line_on_a_damaged_file(name, damage, argv, originals, tmp_path):
    path, _, _ = originals(name)
    target = damaged_copy(path, tmp_path, damage(path, path.read_bytes()))
    run = _dpcstem(*[a.format(file=target.name) for a in argv], cwd=tmp_path)
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert run.returncode == 2, run.stderr  # not 1 (internal error), not a signal (a crash)
    assert len(lines) == 1 and lines[0].startswith(f"dpcstem: error: {target.name}"), run.stderr
    assert not (tmp_path / "out.h5").exists()
