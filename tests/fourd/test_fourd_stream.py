"""The streamed 4D reduction: the next block read while this one is reduced, and what it says."""

import numpy as np

from dpcstem.fourd import disc_mask, frame_sums, quadrant_labels
from dpcstem.fourd import engine


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


def test_the_file_is_hashed_on_the_reader_thread_in_the_same_pass(tmp_path, monkeypatch):
    """The reduction of a memory-mapped file records its SHA-256 (header and all), and the result
    writer then takes it without reading the file again."""
    from dpcstem.io import results

    frames, memmap = _file(tmp_path)
    path = tmp_path / "f.npy"
    frame_sums(memmap, block_bytes=frames[0, 0].nbytes * 5)  # 13 blocks, the last one short
    reads = []
    monkeypatch.setattr(results, "open", lambda *a, **k: reads.append(a) or open(*a, **k), raising=False)
    assert results.sha256_file(path) == _sha256(path)
    assert reads == []  # taken from the reduction's pass


def test_frames_between_a_header_and_a_trailer_hash_the_whole_file_in_blocks_within_a_scan_row(tmp_path):
    """A raw file with bytes before and after its frames, reduced in blocks of two frames that
    split the scan's rows of seven: the digest recorded on the reader thread is the whole file's."""
    from dpcstem.io import results

    frames = np.random.default_rng(5).integers(0, 4000, size=(3, 7, 8, 8)).astype(np.uint16)
    path = tmp_path / "f.raw"
    path.write_bytes(b"H" * 100 + frames.tobytes() + b"tail" * 9)
    memmap = np.memmap(path, np.uint16, "r", offset=100, shape=frames.shape)
    sums = frame_sums(memmap, block_bytes=frames[0, 0].nbytes * 2)
    np.testing.assert_array_equal(sums.intensity, frames.sum(axis=(2, 3)))
    import os

    assert results._KNOWN_SHA256[results._identity(os.stat(path))] == _sha256(path)  # recorded by the reduction


def test_a_file_changed_after_its_reduction_is_hashed_again(tmp_path):
    from dpcstem.io import results

    frames, memmap = _file(tmp_path, (3, 4, 8, 8))
    path = tmp_path / "f.npy"
    frame_sums(memmap)
    with open(path, "r+b") as fh:  # the same size, other bytes, a later modification time
        fh.seek(-4, 2)
        fh.write(b"\x01\x02\x03\x04")
    import os

    os.utime(path, ns=(os.stat(path).st_atime_ns, os.stat(path).st_mtime_ns + 10**9))
    assert results.sha256_file(path) == _sha256(path)


def test_a_view_of_part_of_a_file_records_no_digest(tmp_path):
    from dpcstem.io import results

    frames, memmap = _file(tmp_path, (4, 4, 8, 8))
    before = dict(results._KNOWN_SHA256)
    frame_sums(memmap[1:])  # starts one scan row into the data: not the file's bytes in order
    assert results._KNOWN_SHA256 == before
