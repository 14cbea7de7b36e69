"""Large results written around the page cache where the file system allows (O_DIRECT), byte for
byte what a write through it gives: a bias series' slices on their own thread, a result file's
image; a refused direct write falls back, a failed one leaves nothing."""

import errno
import os
import threading

import h5py
import numpy as np
import pytest

from dpcstem.errors import OutputError
from dpcstem.fourd.reading import resident_fraction
from dpcstem.io import output as output_module
from dpcstem.io.output import DirectWrites, hdf5_output
from dpcstem.io.series import SeriesWriter

COUNT, SHAPE = 3, (512, 512)  # a float32 slice is 1 MiB: SeriesWriter.DIRECT_BYTES


def _slices(index, net=False):
    rng = np.random.default_rng(10 * index + net)
    prefix = "net_" if net else ""
    field = rng.normal(size=(2, *SHAPE)).astype(np.float32)
    return {f"{prefix}charge_density": (rng.normal(size=SHAPE), "C/m^3"),  # float64, stored as float32
            f"{prefix}field_x": (field[0], "V/m"), f"{prefix}field_y": (field[1], "V/m"),
            f"{prefix}valid": (rng.random(SHAPE) > 0.1, "1")}


def _write(path, order=(1, 0, 2), skip=()):
    with SeriesWriter(path, COUNT) as writer:
        for index in order:
            for net in (False, True):
                if (index, net) not in skip:
                    writer.put(index, _slices(index, net))
        writer.finish({"bias": (np.arange(COUNT, dtype=float), "V")}, {"kind": "test"})
        return writer


def _contents(path):
    """The file's datasets (those of the HyperSpy view are links to them or views of them)."""
    with h5py.File(path, "r") as f:
        return {name: node[()] for name, node in f.items() if isinstance(node, h5py.Dataset)}


def _same(a, b):
    assert a.keys() == b.keys()
    for name in a:
        assert a[name].dtype == b[name].dtype, name
        assert np.array_equal(a[name], b[name], equal_nan=a[name].dtype.kind == "f"), name


def _resident(path, name):
    """The share of dataset ``name``'s bytes (its chunks) in the page cache."""
    with h5py.File(path, "r") as f:
        ds = f[name]
        chunks = [ds.id.get_chunk_info(i) for i in range(ds.id.get_num_chunks())]
    fractions = [resident_fraction(np.memmap(path, np.uint8, "r", offset=c.byte_offset, shape=(c.size,)))
                 for c in chunks]
    return np.average(fractions, weights=[c.size for c in chunks])


def _direct_bypasses_the_cache(folder):
    """Whether a direct write in ``folder`` leaves its page out of the page cache (not on tmpfs,
    which accepts O_DIRECT but is the page cache), as far as this system can tell."""
    path = folder / "probe"
    try:
        with open(path, "wb") as fh:
            fh.write(b"\0" * 4096)
        writes = DirectWrites(path)
        with writes:
            if not writes.write(np.ones(4096, np.uint8), 0):
                return False
        return resident_fraction(np.memmap(path, np.uint8, "r")) == 0.0
    finally:
        path.unlink(missing_ok=True)


@pytest.fixture
def direct_folder(tmp_path):
    if not _direct_bypasses_the_cache(tmp_path):
        pytest.skip(f"direct writes in {tmp_path} are refused or stay in memory (tmpfs), or residency is unknown")
    return tmp_path


def test_every_slice_lands_where_h5py_would_put_it_and_the_maps_bypass_the_page_cache(direct_folder, monkeypatch):
    threads = set()
    write = SeriesWriter._write

    def on_which_thread(self, index, slices):
        threads.add(threading.current_thread().name)
        return write(self, index, slices)

    monkeypatch.setattr(SeriesWriter, "_write", on_which_thread)
    _write(direct_folder / "direct.h5")
    monkeypatch.setattr(SeriesWriter, "DIRECT_BYTES", 1 << 62)  # every slice through h5py
    _write(direct_folder / "h5py.h5")

    # before they are read: the float32 maps went around the page cache, the 256 KiB masks
    # (below DIRECT_BYTES) did not
    assert _resident(direct_folder / "direct.h5", "field_x") < 0.1
    assert _resident(direct_folder / "direct.h5", "valid") > 0.9
    assert _resident(direct_folder / "h5py.h5", "field_x") > 0.9
    direct, through_h5py = _contents(direct_folder / "direct.h5"), _contents(direct_folder / "h5py.h5")
    _same(direct, through_h5py)
    for index in range(COUNT):  # and both are what was put
        for name, (array, _) in {**_slices(index), **_slices(index, net=True)}.items():
            assert np.array_equal(direct[name][index], np.asarray(array).astype(direct[name].dtype)), name
    assert threads and all(name.startswith("dpcstem-series-writer") for name in threads)


def test_a_file_system_that_refuses_a_direct_write_gets_the_slices_through_h5py(direct_folder, monkeypatch):
    expected = _contents(_write(direct_folder / "expected.h5").path)

    monkeypatch.setattr(output_module, "aligned_bytes", _misaligned_bytes)
    writer = _write(direct_folder / "fallback.h5")
    assert writer._direct.fd is None  # given up after the first refusal
    _same(_contents(direct_folder / "fallback.h5"), expected)


def test_a_slice_never_put_reads_as_nan_and_masks_as_zero(tmp_path):
    contents = _contents(_write(tmp_path / "out.h5", skip={(2, True)}).path)
    assert np.isnan(contents["net_field_x"][2]).all() and not contents["net_valid"][2].any()
    assert np.array_equal(contents["net_field_x"][1], _slices(1, net=True)["net_field_x"][0])


def test_a_slice_that_does_not_fit_its_series_is_refused_before_anything_is_written(tmp_path):
    with SeriesWriter(tmp_path / "out.h5", COUNT) as writer:
        writer.put(0, _slices(0))
        for index in (-1, COUNT):
            with pytest.raises(IndexError, match=f"acquisition {index} of a series of {COUNT}"):
                writer.put(index, _slices(1))
        wide = {"field_x": (np.zeros((SHAPE[0], 2 * SHAPE[1]), np.float32), "V/m")}
        with pytest.raises(ValueError, match=r"field_x: a slice of shape \(512, 1024\)"):
            writer.put(1, wide)
        for index in range(1, COUNT):
            writer.put(index, _slices(index))
        writer.finish({}, {})
    contents = _contents(tmp_path / "out.h5")
    for index in range(COUNT):
        assert np.array_equal(contents["field_x"][index], _slices(index)["field_x"][0])


@pytest.mark.parametrize("fail_on", [0, 3 * 2 * COUNT - 1], ids=["the first write", "the last write"])
def test_a_write_that_fails_on_its_thread_fails_the_block_and_leaves_nothing(direct_folder, monkeypatch, fail_on):
    calls = []
    pwrite = os.pwrite

    def full_disk(fd, data, position):  # the maps' writes (three 1 MiB slices an acquisition)
        calls.append(position)
        if len(calls) > fail_on:
            raise OSError(errno.ENOSPC, "No space left on device")
        return pwrite(fd, data, position)

    monkeypatch.setattr(os, "pwrite", full_disk)
    with pytest.raises(OutputError, match="the disk is full"):
        _write(direct_folder / "out.h5", order=(0, 1, 2))
    assert len(calls) == fail_on + 1
    assert list(direct_folder.iterdir()) == []


def _misaligned_bytes(size, align=4096):  # an address the kernel refuses (EINVAL) for a direct write
    raw = np.empty(size + 2 * align, np.uint8)
    start = (-raw.ctypes.data % align) + 1
    return raw[start:start + size]


def _result(path, side):
    with hdf5_output(path) as f:
        f["map"] = np.random.default_rng(side).normal(size=(side, side)).astype(np.float32)
        f["map"].attrs["units"] = "V/m"


@pytest.mark.parametrize("side", [700, 2048], ids=["a length no whole number of blocks", "16 MiB exactly"])
def test_a_result_files_image_goes_around_the_page_cache_and_reads_back_whole(direct_folder, monkeypatch, side):
    _result(direct_folder / "direct.h5", side)
    fraction = resident_fraction(np.memmap(direct_folder / "direct.h5", np.uint8, "r"))
    assert fraction < 0.1  # bytes on the disk, none copied into the page cache
    monkeypatch.setattr(output_module, "aligned_bytes", _misaligned_bytes)  # refused: through the page cache
    _result(direct_folder / "refused.h5", side)
    assert resident_fraction(np.memmap(direct_folder / "refused.h5", np.uint8, "r")) > 0.9
    assert (direct_folder / "direct.h5").read_bytes() == (direct_folder / "refused.h5").read_bytes()
    with h5py.File(direct_folder / "direct.h5", "r") as f:
        assert np.array_equal(f["map"][()], np.random.default_rng(side).normal(size=(side, side)).astype(np.float32))
