"""The streamed 4D reduction: the next block read while this one is reduced, and what it says."""

import os
import sys

import numpy as np
import pytest

from dpcstem import memory
from dpcstem.fourd import disc_mask, engine, frame_sums, quadrant_labels, reading


def _file(tmp_path, shape=(9, 7, 16, 16)):
    frames = np.random.default_rng(3).integers(0, 4000, size=shape).astype(np.uint16)
    np.save(tmp_path / "f.npy", frames)
    return frames, np.load(tmp_path / "f.npy", mmap_mode="r")


def test_read_ahead_gives_every_block_in_its_place(tmp_path):
    frames, memmap = _file(tmp_path)
    mask = disc_mask(frames.shape[2:], (7.5, 7.5), 6)
    labels = quadrant_labels(frames.shape[2:], (7.5, 7.5), 7)
    whole = frame_sums(frames, mask=mask, labels=labels)
    # one frame per block: 63 blocks, each read on the reader thread while the one before is reduced
    streamed = frame_sums(memmap, mask=mask, labels=labels, block_bytes=frames[0, 0].nbytes)
    for name in ("intensity", "com_x", "com_y", "segments"):
        np.testing.assert_array_equal(getattr(streamed, name), getattr(whole, name))
    # the reference computed by hand for one frame, far from the first block
    f = frames[6, 4].astype(float) * mask
    ky, kx = np.indices(f.shape)
    assert streamed.intensity[6, 4] == f.sum()
    np.testing.assert_allclose(streamed.com_x[6, 4], (kx * f).sum() / f.sum(), rtol=1e-12)
    np.testing.assert_allclose(streamed.com_y[6, 4], (ky * f).sum() / f.sum(), rtol=1e-12)


def test_a_long_reduction_says_so_in_one_line_off_a_terminal(tmp_path, capsys, monkeypatch):
    frames, memmap = _file(tmp_path, (4, 5, 8, 8))
    monkeypatch.setattr(engine, "STAGE_LINE_S", 0.0)  # every reduction counts as long
    frame_sums(memmap, block_bytes=frames[0, 0].nbytes * 3)
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("4D-STEM: reduced 20 frames")
    frame_sums(memmap, progress=False)  # asked for silence: none
    assert capsys.readouterr().err == ""


def test_a_short_reduction_is_silent(tmp_path, capsys):
    _, memmap = _file(tmp_path, (3, 3, 8, 8))
    frame_sums(memmap)
    assert capsys.readouterr().err == ""


def _sha256(path):
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_file_is_hashed_in_the_same_pass_as_it_is_read(tmp_path, monkeypatch):
    """The reduction of a memory-mapped file records its SHA-256 (header and all), and the result
    writer then takes it without reading the file again."""
    from dpcstem.io import results

    frames, memmap = _file(tmp_path)
    path = tmp_path / "f.npy"
    frame_sums(memmap, block_bytes=frames[0, 0].nbytes * 5)  # 18 blocks: 5 and 2 frames of each row of 7
    reads = []
    monkeypatch.setattr(results, "open", lambda *a, **k: reads.append(a) or open(*a, **k), raising=False)
    assert results.sha256_file(path) == _sha256(path)
    assert reads == []  # taken from the reduction's pass


@pytest.fixture(params=["page cache", "direct"])
def reading_mode(request, monkeypatch):
    """Each file test twice: read through the page cache (a file that could stay there), and
    read around it (``O_DIRECT``), as a file over half the machine's memory is when not cached."""
    if request.param == "direct":
        if not _direct_reads_work(request.getfixturevalue("tmp_path")):
            pytest.skip("the file system of the temporary folder refuses O_DIRECT")
        monkeypatch.setattr(reading, "_direct_above", lambda: 0)
    return request.param


def _direct_reads_work(folder):
    probe = folder / "direct-probe"
    probe.write_bytes(bytes(8192))
    try:
        os.close(os.open(probe, os.O_RDONLY | os.O_DIRECT))
    except (OSError, AttributeError):
        return False
    finally:
        probe.unlink()
    return True


def _evict(path):
    fd = os.open(path, os.O_RDONLY)
    os.fsync(fd)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    os.close(fd)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="page-cache residency (mincore) is read on Linux")
def test_a_file_that_could_not_stay_cached_is_read_around_the_page_cache(tmp_path, reading_mode):
    """The same sums and digest either way; read around the cache, the file's pages are not left
    there (which is what spares copying them through it)."""
    from dpcstem.io import results

    frames, memmap = _file(tmp_path, (16, 12, 32, 32))
    path = tmp_path / "f.npy"
    _evict(path)
    assert reading.resident_fraction(memmap) < 0.2  # the eviction worked: the measurement can see the difference
    sums = frame_sums(memmap, block_bytes=frames[0, 0].nbytes * 25)  # blocks of two scan rows of 12
    np.testing.assert_array_equal(sums.intensity, frames.sum(axis=(2, 3)))
    if reading_mode == "direct":
        assert reading.resident_fraction(memmap) < 0.2  # the header's page, hashed through the cache
    else:
        assert reading.resident_fraction(memmap) == 1.0
    assert results._KNOWN_SHA256[results.file_version(os.stat(path))] == _sha256(path)  # (which reads it whole)


def test_frames_between_a_header_and_a_trailer_hash_the_whole_file_in_blocks_within_a_scan_row(tmp_path,
                                                                                             reading_mode):
    """A raw file with bytes before and after its frames (a header of 100 bytes: no block starts
    on a page), reduced in blocks of two frames that split the scan's rows of seven: the sums are
    the frames', and the digest recorded on the way is the whole file's."""
    from dpcstem.io import results

    frames = np.random.default_rng(5).integers(0, 4000, size=(3, 7, 32, 32)).astype(np.uint16)
    path = tmp_path / "f.raw"
    path.write_bytes(b"H" * 100 + frames.tobytes() + b"tail" * 9)
    _evict(path)
    memmap = np.memmap(path, np.uint16, "r", offset=100, shape=frames.shape)
    sums = frame_sums(memmap, block_bytes=frames[0, 0].nbytes * 2)
    if sys.platform.startswith("linux"):  # read around the cache: only the header's and trailer's pages in it
        assert (reading.resident_fraction(memmap) < 0.5) == (reading_mode == "direct")
    np.testing.assert_array_equal(sums.intensity, frames.sum(axis=(2, 3)))
    kx = np.arange(32)
    np.testing.assert_allclose(sums.com_x, (frames * kx).sum(axis=(2, 3)) / frames.sum(axis=(2, 3)), rtol=1e-12)
    assert results._KNOWN_SHA256[results.file_version(os.stat(path))] == _sha256(path)  # recorded by the reduction


def test_a_file_changed_after_its_reduction_is_hashed_again(tmp_path):
    from dpcstem.io import results

    frames, memmap = _file(tmp_path, (3, 4, 8, 8))
    path = tmp_path / "f.npy"
    frame_sums(memmap)
    with open(path, "r+b") as fh:  # the same size, other bytes, a later modification time
        fh.seek(-4, 2)
        fh.write(b"\x01\x02\x03\x04")

    os.utime(path, ns=(os.stat(path).st_atime_ns, os.stat(path).st_mtime_ns + 10**9))
    assert results.sha256_file(path) == _sha256(path)


def test_a_view_of_part_of_a_file_records_no_digest(tmp_path):
    from dpcstem.io import results

    frames, memmap = _file(tmp_path, (4, 4, 8, 8))
    before = dict(results._KNOWN_SHA256)
    frame_sums(memmap[1:])  # starts one scan row into the data: not the file's bytes in order
    assert results._KNOWN_SHA256 == before


def test_an_array_in_memory_is_reduced_in_one_call_and_a_file_in_blocks(tmp_path, monkeypatch):
    """Each call of the parallel kernel wakes Numba's sleeping threads: an array already in memory
    is reduced in one call by default; a memory-mapped file in blocks of BLOCK_BYTES (what is
    held at a time), and an explicit block size is honoured."""
    calls = []
    kernel = engine._reduce_block
    monkeypatch.setattr(engine, "_reduce_block", lambda block, *a: calls.append(block.shape[:2]) or kernel(block, *a))
    monkeypatch.setattr(engine, "BLOCK_BYTES", 4 * 16 * 16 * 2)  # four frames
    frames, memmap = _file(tmp_path, (6, 4, 16, 16))
    expected = frame_sums(frames, block_bytes=10**9).intensity
    calls.clear()
    np.testing.assert_array_equal(frame_sums(frames).intensity, expected)
    assert calls == [(6, 4)]
    calls.clear()
    np.testing.assert_array_equal(frame_sums(memmap).intensity, expected)
    assert calls == [(1, 4)] * 6
    calls.clear()
    frame_sums(frames, block_bytes=8 * 16 * 16 * 2)
    assert calls == [(2, 4)] * 3


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="page-cache residency (mincore) is read on Linux")
def test_direct_reads_refused_midway_fall_back_to_the_page_cache(tmp_path, monkeypatch):
    """A file system that opens a file for direct reads but refuses them (here: offsets and
    lengths off its block size): every block is read through the page cache instead, with the
    same sums and digest."""
    from dpcstem.io import results

    frames, memmap = _file(tmp_path, (8, 6, 32, 32))
    path = tmp_path / "f.npy"
    if not _direct_reads_work(tmp_path):
        pytest.skip(f"the file system of {tmp_path} refuses O_DIRECT")
    monkeypatch.setattr(reading, "_direct_above", lambda: 0)
    monkeypatch.setattr(reading.FileBlocks, "ALIGN", 4096 + 100)  # no device's block size
    _evict(path)
    block_bytes = frames[0, 0].nbytes * 5
    plan = list(engine._blocks(memmap.shape, 2, block_bytes))
    assert reading.FileBlocks.of(memmap, plan).direct  # direct reads were chosen, and are refused
    sums = frame_sums(memmap, block_bytes=block_bytes)
    np.testing.assert_array_equal(sums.intensity, frames.sum(axis=(2, 3)))
    assert reading.resident_fraction(memmap) == 1.0  # read through the cache after all
    assert results._KNOWN_SHA256[results.file_version(os.stat(path))] == _sha256(path)



def test_blocks_too_large_to_hold_are_read_from_the_map_a_block_at_a_time(tmp_path, monkeypatch):
    """Reading into buffers holds four blocks: blocks that large against the memory go through
    the map's pages instead (one block held), with the same sums."""
    frames, memmap = _file(tmp_path, (6, 4, 16, 16))
    plan = list(engine._blocks(memmap.shape, 2, 10**9))  # one block: the whole file
    assert reading.FileBlocks.of(memmap, plan) is not None
    monkeypatch.setattr(memory, "physical_memory", lambda: 4 * memmap.nbytes)  # four blocks: all of memory
    assert reading.FileBlocks.of(memmap, plan) is None
    np.testing.assert_array_equal(frame_sums(memmap, block_bytes=10**9).intensity, frames.sum(axis=(2, 3)))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the mapped file's inode is read from /proc")
def test_a_file_replaced_under_its_map_is_read_through_the_map(tmp_path):
    """The map still shows the file it was made of: the reduction reads that one, and records no
    digest for the path, which now names another file."""
    from dpcstem.io import results

    frames, memmap = _file(tmp_path, (4, 3, 8, 8))
    path = tmp_path / "f.npy"
    np.save(tmp_path / "other.npy", frames[::-1].copy())
    os.replace(tmp_path / "other.npy", path)
    plan = list(engine._blocks(memmap.shape, 2, 10**9))
    assert reading.FileBlocks.of(memmap, plan) is None
    np.testing.assert_array_equal(frame_sums(memmap).intensity, frames.sum(axis=(2, 3)))
    assert results.file_version(os.stat(path)) not in results._KNOWN_SHA256
