"""Opening 4D-STEM files lazily: real Merlin files, HyperSpy-written files, HDF5, .npy, raw."""

import math
import os
import re
import subprocess
import sys

import dask.array as da
import h5py
import hyperspy.api as hs
import numpy as np
import pytest

from dpcstem import physics
from dpcstem.errors import InputDataError, InsufficientMemoryError, MissingMetadataError, UnreadableFileError
from dpcstem.fourd import centre_of_mass, disc_mask
from dpcstem.io import open_pixelated
from dpcstem.io.pixelated import PixelatedData

MERLIN = ("001_4x2_6bit.mib", "002_merlin_test_roi_sig256x128_nav4x2_hot_pixel_52x_39y.mib")


@pytest.mark.parametrize("name, frame, dtype", [(MERLIN[0], (256, 256), np.uint8), (MERLIN[1], (128, 256), np.uint16)])
def test_real_merlin_files_load_lazily_and_give_the_in_memory_centre_of_mass(shared_data, name, frame, dtype):
    opened = open_pixelated(shared_data / "merlin" / name)
    assert isinstance(opened, PixelatedData) and opened.kind == "mib"
    assert isinstance(opened.data, da.Array)  # nothing read yet
    assert opened.shape == (2, 4, *frame) and opened.scan_shape == (2, 4) and opened.frame_shape == frame
    assert opened.dtype == np.dtype(dtype) and opened.dtype.isnative
    in_memory = np.asarray(opened.data.compute())
    assert in_memory.sum() > 0
    lazy = centre_of_mass(opened)
    eager = centre_of_mass(in_memory)
    for field in ("intensity", "com_x", "com_y"):
        np.testing.assert_array_equal(getattr(lazy, field), getattr(eager, field))
    np.testing.assert_array_equal(lazy.intensity, in_memory.sum(axis=(2, 3), dtype=np.int64))
    mask = disc_mask(frame, (frame[0] / 2, frame[1] / 2), frame[0] / 3)
    np.testing.assert_array_equal(centre_of_mass(opened, mask=mask).com_x, centre_of_mass(in_memory, mask=mask).com_x)


def test_merlin_chunks_hold_whole_frames_and_scan_shape_is_checked(shared_data):
    path = shared_data / "merlin" / MERLIN[0]
    opened = open_pixelated(path, chunk_bytes=3 * 256 * 256)
    assert len(opened.data.chunks[0]) * len(opened.data.chunks[1]) > 1
    assert opened.data.chunks[2:] == ((256,), (256,))
    np.testing.assert_array_equal(opened.data.compute(), open_pixelated(path).data.compute())
    given = open_pixelated(path, scan_shape=(4, 2))  # the header does not fix the scan: the user may
    assert given.shape == (4, 2, 256, 256)
    np.testing.assert_array_equal(given.data.compute().reshape(8, 256, 256),
                                  opened.data.compute().reshape(8, 256, 256))
    with pytest.raises(InputDataError, match="not the given scan_shape"):
        open_pixelated(path, scan_shape=(3, 3))  # 9 frames: more than the file holds


def test_hyperspy_files_carry_their_calibration(tmp_path):
    rng = np.random.default_rng(4)
    frames = rng.integers(0, 200, size=(3, 5, 16, 16)).astype(np.uint16)
    s = hs.signals.Signal2D(frames)
    s.axes_manager[0].scale, s.axes_manager[0].units = 0.7, "nm"   # scan x (columns)
    s.axes_manager[1].scale, s.axes_manager[1].units = 9.0, "Å"    # scan y (rows)
    for axis in s.axes_manager.signal_axes:
        axis.scale, axis.units = 0.5, "1/nm"
    s.metadata.set_item("Acquisition_instrument.TEM.beam_energy", 200.0)
    s.save(tmp_path / "f.hspy")
    opened = open_pixelated(tmp_path / "f.hspy")
    assert opened.kind == "hdf5" and isinstance(opened.data, da.Array)
    np.testing.assert_array_equal(opened.data.compute(), frames)
    assert opened.calibration["step_x_nm"] == pytest.approx(0.7)
    assert opened.calibration["step_y_nm"] == pytest.approx(0.9)
    assert opened.calibration["kv"] == 200.0
    expected = 0.5 * physics.wavelength_m(200.0) * physics.M_TO_NM / physics.MRAD_TO_RAD  # 1/nm × λ → mrad
    assert opened.mrad_per_px == pytest.approx(expected, rel=1e-12)
    assert opened.mrad_per_px == pytest.approx(1.254, rel=1e-3)


def test_blockfile_written_by_hyperspy(tmp_path):
    frames = np.random.default_rng(5).integers(0, 255, size=(4, 3, 12, 12)).astype(np.uint8)
    s = hs.signals.Signal2D(frames)
    for axis in s.axes_manager.navigation_axes:
        axis.scale, axis.units = 1.5, "nm"
    for axis in s.axes_manager.signal_axes:
        axis.units = "cm"
    s.save(tmp_path / "f.blo")
    opened = open_pixelated(tmp_path / "f.blo")
    assert opened.kind == "blockfile" and isinstance(opened.data, da.Array)
    np.testing.assert_array_equal(opened.data.compute(), frames)
    assert opened.calibration == {"step_x_nm": 1.5, "step_y_nm": 1.5}
    assert opened.mrad_per_px is None


def test_zspy_written_by_hyperspy(tmp_path):
    pytest.importorskip("zarr", reason="reading .zspy needs the optional package zarr")
    frames = np.arange(2 * 3 * 6 * 6, dtype=np.uint16).reshape(2, 3, 6, 6)
    hs.signals.Signal2D(frames).save(tmp_path / "f.zspy")
    opened = open_pixelated(tmp_path / "f.zspy")
    np.testing.assert_array_equal(opened.data.compute(), frames)


def test_zspy_without_zarr_says_what_to_install(tmp_path):
    try:
        import zarr  # noqa: F401
    except ImportError:
        (tmp_path / "f.zspy").mkdir()
        (tmp_path / "f.zspy" / ".zgroup").write_text("{}")
        with pytest.raises(UnreadableFileError, match="needs the package 'zarr'"):
            open_pixelated(tmp_path / "f.zspy")
    else:
        pytest.skip("zarr is installed here")


def test_prismatic_open_emd_file_needs_its_dataset_named(shared_data):
    path = shared_data / "prismatic" / "Si100_4D.emd"
    with pytest.raises(MissingMetadataError, match="several 4-D datasets.*depth0000.*depth0001"):
        open_pixelated(path)
    name = "4DSTEM_simulation/data/datacubes/CBED_array_depth0001/datacube"
    with pytest.warns(UserWarning, match=r"Si100_4D\.emd: axes labelled '\[n_m\]' and '\[n_m\^-1\]' hold Å and 1/Å "
                                         r"\(a Prismatic writer's label\).*scan step 0\.05 nm"):
        opened = open_pixelated(path, dataset=name)
    assert opened.shape == (11, 11, 8, 8) and opened.dtype == np.float32
    with h5py.File(path, "r") as f:
        stored = f[name][()]
        dim1 = f["4DSTEM_simulation/data/datacubes/CBED_array_depth0001/dim1"][()]
        dim3 = f["4DSTEM_simulation/data/datacubes/CBED_array_depth0001/dim3"][()]
        parameters = f["4DSTEM_simulation/metadata/metadata_0/original/simulation_parameters"].attrs
        probe_step_angstrom, kev = float(parameters["rx"]), float(parameters["E"])
    np.testing.assert_array_equal(opened.data.compute(), stored)
    # Prismatic writes Å under the label "[n_m]": the probe step it was run with (rx, Å) is the axis step
    assert float(dim1[1] - dim1[0]) == pytest.approx(probe_step_angstrom)
    assert opened.calibration["step_y_nm"] == pytest.approx(probe_step_angstrom / 10)
    assert opened.calibration["kv"] == kev
    wavelength_angstrom = physics.wavelength_m(kev) * 1e10
    assert opened.mrad_per_px == pytest.approx(float(dim3[1] - dim3[0]) * wavelength_angstrom * 1e3, rel=1e-6)
    np.testing.assert_allclose(centre_of_mass(opened).com_x, centre_of_mass(stored).com_x)
    with pytest.raises(MissingMetadataError, match="no dataset 'nope'"):
        open_pixelated(path, dataset="nope")


def test_hdf5_plain_dataset_and_flat_stack(tmp_path):
    frames = np.random.default_rng(6).integers(0, 99, size=(4, 5, 7, 9)).astype(np.uint32)
    with h5py.File(tmp_path / "f.h5", "w") as f:
        f.create_dataset("a/b/frames", data=frames, chunks=(1, 5, 7, 9))
        f.create_dataset("a/stack", data=frames.reshape(20, 7, 9))
        f.create_dataset("a/image", data=np.zeros((3, 3)))
    opened = open_pixelated(tmp_path / "f.h5")
    assert opened.metadata["dataset"] == "/a/b/frames"
    np.testing.assert_array_equal(opened.data.compute(), frames)
    stack = open_pixelated(tmp_path / "f.h5", dataset="a/stack", scan_shape=(4, 5))
    np.testing.assert_array_equal(np.asarray(stack.data), frames)
    with pytest.raises(MissingMetadataError, match="without a scan shape.*--scan-shape"):
        open_pixelated(tmp_path / "f.h5", dataset="a/stack")
    with pytest.raises(InputDataError, match="4x6 = 24 frames, the file has 20"):
        open_pixelated(tmp_path / "f.h5", dataset="a/stack", scan_shape=(4, 6))
    with pytest.raises(InputDataError, match="has shape \\(3, 3\\)"):
        open_pixelated(tmp_path / "f.h5", dataset="a/image")
    with h5py.File(tmp_path / "none.h5", "w") as f:
        f.create_dataset("x", data=np.zeros((2, 2)))
    with pytest.raises(MissingMetadataError, match="no 4-D dataset"):
        open_pixelated(tmp_path / "none.h5")


def test_a_contiguous_hdf5_dataset_is_memory_mapped_and_hashed_in_its_one_pass(tmp_path, monkeypatch):
    """Stored contiguously and unfiltered, the frames lie in the file as a .npy file's do: they are
    memory-mapped read-only and the reduction takes the file's SHA-256 as it reads; chunked,
    compressed or big-endian datasets stay lazy Dask arrays."""
    import hashlib

    from dpcstem.fourd import frame_sums
    from dpcstem.io import results

    frames = np.random.default_rng(5).integers(0, 999, size=(6, 5, 8, 8)).astype(np.uint16)
    with h5py.File(tmp_path / "c.h5", "w") as f:
        f.attrs["note"] = "x" * 5000  # metadata before the data: hashed too
        f.create_dataset("frames", data=frames)
        f.create_dataset("chunked", data=frames, chunks=(1, 5, 8, 8))
        f.create_dataset("gzip", data=frames, compression="gzip")
        f.create_dataset("big", data=frames.astype(">u2"))
    opened = open_pixelated(tmp_path / "c.h5", dataset="frames")
    assert isinstance(opened.data, np.memmap) and opened.data.mode == "r"
    np.testing.assert_array_equal(opened.data, frames)
    for name in ("chunked", "gzip", "big"):
        other = open_pixelated(tmp_path / "c.h5", dataset=name)
        assert isinstance(other.data, da.Array), name
        np.testing.assert_array_equal(other.data.compute(), frames)
    np.testing.assert_array_equal(frame_sums(opened.data).intensity, frames.sum(axis=(2, 3), dtype=np.float64))
    reads = []
    monkeypatch.setattr(results, "open", lambda *a, **k: reads.append(a) or open(*a, **k), raising=False)
    assert results.sha256_file(tmp_path / "c.h5") == hashlib.sha256((tmp_path / "c.h5").read_bytes()).hexdigest()
    assert reads == []  # taken during the reduction


def test_npy_is_memory_mapped_read_only(tmp_path):
    frames = np.random.default_rng(7).random((3, 2, 5, 5), dtype=np.float32)
    np.save(tmp_path / "f.npy", frames)
    opened = open_pixelated(tmp_path / "f.npy")
    assert isinstance(opened.data, np.memmap) and opened.data.mode == "r"
    np.testing.assert_array_equal(opened.data, frames)
    with pytest.raises(ValueError, match="read-only"):
        opened.data[0, 0, 0, 0] = 1


def test_raw_binary_with_header_and_byte_order(tmp_path):
    frames = np.random.default_rng(8).integers(0, 4000, size=(2, 3, 6, 4)).astype(">u2")
    path = tmp_path / "f.raw"
    path.write_bytes(b"H" * 100 + frames.tobytes())
    opened = open_pixelated(path, shape=(2, 3, 6, 4), dtype=">u2", offset=100)
    assert isinstance(opened.data, np.memmap) and opened.kind == "raw"
    np.testing.assert_array_equal(opened.data, frames)
    np.testing.assert_array_equal(centre_of_mass(opened).intensity, frames.astype(float).sum(axis=(2, 3)))
    with pytest.raises(MissingMetadataError, match="needs shape=.*dtype="):
        open_pixelated(path)
    with pytest.raises(UnreadableFileError, match="too small for shape"):
        open_pixelated(path, shape=(2, 3, 6, 5), dtype=">u2", offset=100)
    with pytest.raises(InputDataError, match="four positive sizes"):
        open_pixelated(path, shape=(2, 3, 6), dtype=">u2")


def test_missing_and_corrupt_files_are_named(tmp_path):
    with pytest.raises(UnreadableFileError, match="not found"):
        open_pixelated(tmp_path / "nope.mib")
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"not an HDF5 file at all")
    with pytest.raises(UnreadableFileError, match="bad.h5: not a readable HDF5 file"):
        open_pixelated(bad)
    junk = tmp_path / "junk.mib"
    junk.write_bytes(b"\x00" * 1000)
    with pytest.raises(UnreadableFileError, match="junk.mib"):
        open_pixelated(junk)
    with pytest.raises(InputDataError, match="raw binary files only"):
        open_pixelated(bad, shape=(1, 1, 1, 1), dtype="u2")


# -- memory: checked from declared shapes, large chunks read piecewise ----------------------------

def _too_large_scan():
    """A square scan side whose maps alone need twice the memory free now."""
    import psutil

    from dpcstem.io.pixelated import BYTES_PER_POSITION

    return int(math.ceil(math.sqrt(2 * psutil.virtual_memory().available / BYTES_PER_POSITION)))


def _declaring(path, scan):
    """An HDF5 file of a few KB that declares a scan of scan x scan frames and stores none of them."""
    with h5py.File(path, "w") as f:
        f.create_dataset("frames", shape=(scan, scan, 64, 64), dtype=np.uint16, chunks=(1, 1, 64, 64))
    return path


def test_a_file_declaring_a_scan_larger_than_memory_is_refused_before_reading(tmp_path):
    scan = _too_large_scan()
    path = _declaring(tmp_path / "huge.h5", scan)
    assert path.stat().st_size < 16 * 1024
    with pytest.raises(InsufficientMemoryError) as refused:
        open_pixelated(path)
    message = str(refused.value)
    assert "\n" not in message
    assert re.search(rf"huge\.h5: a scan of {scan} x {scan} positions \(declared shape \({scan}, {scan}, 64, 64\)"
                     r", \d+ bytes per position\) needs [\d.]+ GiB but only [\d.]+ GiB of memory is free", message)


def test_the_command_line_refuses_a_declared_scan_larger_than_memory_in_one_line(tmp_path):
    path = _declaring(tmp_path / "huge.h5", _too_large_scan())
    done = subprocess.run([sys.executable, "-m", "dpcstem", "com", str(path), "--kv", "200", "--step", "1",
                           "--thickness", "100", "--mrad-per-px", "0.1", "-o", str(tmp_path / "out.h5")],
                          capture_output=True, text=True)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "huge.h5: a scan of" in lines[0] and "GiB of memory is free" in lines[0]
    assert not (tmp_path / "out.h5").exists()


_ONE_CHUNK_SCRIPT = """
import sys
import h5py
import numpy as np
from dpcstem.fourd import centre_of_mass
from dpcstem.io import open_pixelated

path, chunk_bytes = sys.argv[1], int(sys.argv[2])
opened = open_pixelated(path, chunk_bytes=chunk_bytes)
centre_of_mass(opened.data[:1, :1])  # warm up the kernels
held, sums = growth(lambda: centre_of_mass(opened))
with h5py.File(path, "r") as f:
    rows = f["frames"][:4]
expected = centre_of_mass(rows)
np.testing.assert_allclose(sums.com_x[:4], expected.com_x)
np.testing.assert_allclose(sums.intensity[:4], expected.intensity)
print(held, opened.data.chunksize[0])
"""


@pytest.mark.skipif(not os.access("/proc/self/clear_refs", os.W_OK), reason="needs Linux /proc/self/clear_refs "
                    "to measure a peak of resident memory")
def test_a_dataset_stored_in_one_large_chunk_is_read_piecewise(tmp_path):
    """96 MiB of frames in one uncompressed HDF5 chunk, reduced with 4 MiB Dask blocks: read whole (as
    the file's chunking suggests) it would cost twice its size; piecewise it costs a few blocks."""
    from helpers import PEAK_MEMORY_FUNCTIONS

    shape = (96, 128, 64, 64)
    path = tmp_path / "one_chunk.h5"
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("frames", shape=shape, dtype=np.uint16, chunks=shape)
        for y in range(shape[0]):
            ds[y] = np.random.default_rng(y).integers(0, 100, size=shape[1:], dtype=np.uint16)
    size = math.prod(shape) * 2
    done = subprocess.run([sys.executable, "-c", PEAK_MEMORY_FUNCTIONS + _ONE_CHUNK_SCRIPT, str(path), str(4 * 2**20)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    held, rows_per_block = (int(v) for v in done.stdout.split())
    assert rows_per_block < shape[0]
    assert held < size / 3, f"reducing {size / 2**20:.0f} MiB in one chunk held {held / 2**20:.1f} MiB"


# -- byte order and extended precision --------------------------------------------------------

def test_big_endian_and_float128_frames_open_in_native_order(tmp_path):
    frames = np.random.default_rng(3).integers(0, 999, size=(3, 4, 8, 8))
    with h5py.File(tmp_path / "big.h5", "w") as f:
        f["frames"] = frames.astype(">u2")
    opened = open_pixelated(tmp_path / "big.h5")
    assert opened.dtype == np.dtype("=u2")
    np.testing.assert_array_equal(opened.data.compute(), frames)
    np.save(tmp_path / "wide.npy", frames.astype(np.longdouble))
    wide = open_pixelated(tmp_path / "wide.npy")
    np.testing.assert_allclose(centre_of_mass(wide).com_x, centre_of_mass(frames.astype(np.float64)).com_x)


@pytest.mark.parametrize("stored, expected", [("200", 200.0), ("300 kV", 300.0)])
def test_kv_stored_as_text_in_a_frames_attribute_is_read(tmp_path, stored, expected):
    with h5py.File(tmp_path / "f.h5", "w") as f:
        f.create_dataset("frames", data=np.zeros((2, 2, 4, 4), np.uint16)).attrs["kv"] = stored
    assert open_pixelated(tmp_path / "f.h5").calibration["kv"] == expected


def test_kv_text_that_is_no_number_in_a_frames_attribute_is_refused(tmp_path):
    with h5py.File(tmp_path / "f.h5", "w") as f:
        f.create_dataset("frames", data=np.zeros((2, 2, 4, 4), np.uint16)).attrs["kv"] = "high"
    with pytest.raises(InputDataError, match=r"f\.h5: dataset '/frames': attribute 'kv' is the text 'high', "
                                             r"not a number in kV"):
        open_pixelated(tmp_path / "f.h5")
