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
