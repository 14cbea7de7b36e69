"""Synthetic 4D-STEM frames: disc, shift, orientation, counting noise, reproducibility, bounded memory."""

import os
import subprocess
import sys
import textwrap

import h5py
import numpy as np
import pytest

from dpcstem import Calibration, InputDataError
from dpcstem.fourd import centre_of_mass
from dpcstem.io.pixelated import open_pixelated
from dpcstem.simulate.fourd import FrameSimulator, disc_frames, simulate_frames, write_frames
from helpers import PEAK_MEMORY_FUNCTIONS

CAL = Calibration(kv=200, alpha_mrad=1.0, step_x_nm=0.5)


def test_disc_frame_sums_to_the_dose_and_has_the_radius():
    frame = disc_frames([0.0], [0.0], frame_shape=(61, 61), radius_px=12.0, blur_px=0.7, dose=5e4)[0]
    assert frame.sum() == pytest.approx(5e4, rel=2e-3)
    centre_row = frame[30]
    half = np.flatnonzero(centre_row >= 0.5 * centre_row.max())
    assert (half[-1] - half[0] + 1) == pytest.approx(2 * 12.0, abs=1.0)
    np.testing.assert_allclose(frame, frame[::-1, ::-1], rtol=1e-12)  # symmetric about its centre


@pytest.mark.parametrize("sx, sy", [(0.0, 0.0), (2.3, -1.7), (-4.1, 0.6)])
def test_centre_of_mass_equals_the_shift_within_the_sampling(sx, sy):
    frame = disc_frames([sx], [sy], frame_shape=(48, 52), radius_px=10.0, centre_yx=(23.0, 26.5), blur_px=0.5)[0]
    y, x = np.indices(frame.shape)
    assert (frame * x).sum() / frame.sum() == pytest.approx(26.5 + sx, abs=2e-3)
    assert (frame * y).sum() / frame.sum() == pytest.approx(23.0 + sy, abs=2e-3)


@pytest.mark.parametrize("rotation, flip, direction", [
    (0.0, False, (1, 0)),     # scan +x along detector +kx
    (90.0, False, (0, -1)),   # detector +kx along scan +y, +ky along scan −x: θx moves the disc to −ky
    (90.0, True, (0, 1)),     # with flip +ky lies along scan +x
    (30.0, False, (np.cos(np.radians(30)), -np.sin(np.radians(30)))),
])
def test_scan_deflection_is_drawn_in_the_detector_frame(rotation, flip, direction):
    cal = Calibration(kv=200, alpha_mrad=1.0, step_x_nm=1.0, detector_rotation_deg=rotation, flip=flip)
    theta = 0.2  # mrad along scan +x
    frames = simulate_frames(np.full((1, 1), theta), np.zeros((1, 1)), cal, frame_shape=(40, 40),
                             mrad_per_px=0.1, noise=False)
    sums = centre_of_mass(frames)
    shift = theta / 0.1
    assert sums.com_x[0, 0] == pytest.approx(19.5 + shift * direction[0], abs=5e-3)
    assert sums.com_y[0, 0] == pytest.approx(19.5 + shift * direction[1], abs=5e-3)


def test_counting_noise_is_poisson_at_the_dose():
    sim = FrameSimulator(np.zeros((40, 50)), np.zeros((40, 50)), CAL, frame_shape=(20, 20), mrad_per_px=0.15,
                         dose=3000.0, seed=1)
    frames = sim.all()
    assert frames.dtype == np.uint16
    totals = frames.sum(axis=(2, 3), dtype=np.int64).ravel()
    assert totals.mean() == pytest.approx(3000.0, rel=0.01)
    assert totals.var() == pytest.approx(totals.mean(), rel=0.1)  # the sum of Poisson counts is Poisson
    pixel = frames[..., 10, 10].ravel().astype(float)
    expected = disc_frames([0.0], [0.0], frame_shape=(20, 20), radius_px=1.0 / 0.15, dose=3000.0)[0, 10, 10]
    assert pixel.mean() == pytest.approx(expected, rel=0.03)
    assert pixel.var() == pytest.approx(expected, rel=0.1)


def test_same_seed_same_bits_whatever_the_blocks(tmp_path):
    rng = np.random.default_rng(2)
    tx, ty = rng.uniform(-0.05, 0.05, (2, 7, 5))
    options = dict(frame_shape=(16, 18), mrad_per_px=0.12, dose=800, seed=42)
    a = simulate_frames(tx, ty, CAL, **options)
    row = a[0].nbytes
    write_frames(tmp_path / "one.h5", tx, ty, CAL, block_bytes=row, **options)
    write_frames(tmp_path / "three.npy", tx, ty, CAL, block_bytes=3 * row, **options)
    with h5py.File(tmp_path / "one.h5", "r") as f:
        np.testing.assert_array_equal(f["frames"][()], a)
    np.testing.assert_array_equal(np.load(tmp_path / "three.npy"), a)
    assert not np.array_equal(simulate_frames(tx, ty, CAL, **{**options, "seed": 43}), a)


def test_written_files_open_with_their_calibration(tmp_path):
    tx = np.linspace(-0.05, 0.05, 12).reshape(3, 4)
    path = write_frames(tmp_path / "sim.h5", tx, -tx, CAL, frame_shape=(24, 24), mrad_per_px=0.1, noise=False)
    opened = open_pixelated(path)
    assert opened.dtype == np.float32
    assert opened.mrad_per_px == 0.1
    assert opened.calibration == {"kv": 200.0, "step_x_nm": 0.5, "step_y_nm": 0.5}
    with h5py.File(path, "r") as f:
        np.testing.assert_array_equal(f["truth/deflection_x"][()], tx)
        assert f["truth/deflection_y"].attrs["units"] == "mrad"
        assert f["frames"].attrs["units"] == "counts"
    with pytest.raises(Exception, match="output exists"):
        write_frames(path, tx, -tx, CAL, frame_shape=(24, 24), mrad_per_px=0.1)
    with pytest.raises(InputDataError, match=r"\.h5, \.hdf5 or \.npy"):
        write_frames(tmp_path / "sim.tif", tx, -tx, CAL, frame_shape=(24, 24), mrad_per_px=0.1)
    with pytest.raises(InputDataError, match="finite"):
        simulate_frames(np.full((2, 2), np.nan), np.zeros((2, 2)), CAL, frame_shape=(8, 8), mrad_per_px=0.1)


_PEAK_SCRIPT = PEAK_MEMORY_FUNCTIONS + """
import os, sys
import numpy as np
from dpcstem import Calibration
from dpcstem.simulate.fourd import simulate_frames, write_frames


path, block = sys.argv[1], int(sys.argv[2])
cal = Calibration(kv=200, alpha_mrad=1.0, step_x_nm=1.0)
options = dict(frame_shape=(64, 64), mrad_per_px=0.05, dose=2000)
def theta(rows):
    return np.linspace(-0.05, 0.05, rows * 64).reshape(rows, 64)
warm = path.replace("big", "warm")
write_frames(warm, theta(2), theta(2), cal, **options)  # warm up imports and the file library
small, _ = growth(lambda: write_frames(path.replace("big", "small"), theta(24), theta(24), cal, block_bytes=block,
                                    **options))
big, _ = growth(lambda: write_frames(path, theta(96), -theta(96), cal, block_bytes=block, **options))
held, _ = growth(lambda: simulate_frames(theta(24), theta(24), cal, **options))  # the control: a set in memory
print(small, big, held)
"""


@pytest.mark.skipif(not os.access("/proc/self/clear_refs", os.W_OK), reason="needs Linux /proc/self/clear_refs "
                    "to measure a peak of resident memory")
@pytest.mark.parametrize("suffix", [".h5", ".npy"])
def test_writing_a_set_holds_one_block_not_the_set(tmp_path, suffix):
    """Sets of 12 and 48 MiB written in 1 MiB blocks: the larger set costs no more memory than the
    smaller one (holding it would cost 36 MiB more), and well under its own size; making the small set
    in memory (the control) costs its size, so the measurement sees what a set held costs."""
    path = tmp_path / f"big{suffix}"
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(_PEAK_SCRIPT), str(path), str(2**20)],
                          capture_output=True, text=True, check=True)
    small, big, held = (int(v) for v in done.stdout.split())
    small_size, big_size = 24 * 64 * 64 * 64 * 2, 96 * 64 * 64 * 64 * 2
    assert path.stat().st_size >= big_size
    assert held > 0.9 * small_size
    assert big - small < small_size / 2, f"{big_size / 2**20:.0f} MiB grew {big / 2**20:.1f} MiB, " \
                                         f"{small_size / 2**20:.0f} MiB grew {small / 2**20:.1f} MiB"
    assert big < big_size / 2
