"""The check of an assumed detector rotation, judged on block means of a large map."""

import warnings

import numpy as np
import pytest

from dpcstem import Calibration
from dpcstem.calibration.rotation import curl_ratio, find_rotation
from dpcstem.workflows.common import PYTHON_NAMES, CHECK_SIDE, _block_means, _rotation_lines

ASSUMED = {"detector_rotation_deg": "default", "flip": "default"}


def charges(n, rotation_deg):
    """The deflection of two compact charges (a gradient field), rotated by ``rotation_deg``."""
    y, x = np.mgrid[0:n, 0:n] / n
    phi = np.exp(-((x - 0.5) ** 2 + (y - 0.4) ** 2) / 0.02) + 0.5 * np.exp(-((x - 0.2) ** 2 + (y - 0.7) ** 2) / 0.005)
    gy, gx = np.gradient(phi)
    c, s = np.cos(np.radians(rotation_deg)), np.sin(np.radians(rotation_deg))
    return c * gx - s * gy, s * gx + c * gy


def test_block_means_keep_whole_blocks_and_scale_the_step():
    cal = Calibration(kv=200, alpha_mrad=1, step_x_nm=0.5, step_y_nm=0.7, thickness_nm=50)
    n = 2 * CHECK_SIDE + 3  # k = 3; the last rows and columns that fill no block are dropped
    tx = np.arange(n * n, dtype=float).reshape(n, n)
    valid = np.ones((n, n), bool)
    valid[4, 7] = False
    bx, by, ok, coarse = _block_means(tx, -tx, valid, cal)
    assert bx.shape == ok.shape == (n // 3, n // 3)
    assert bx[0, 0] == pytest.approx(tx[:3, :3].mean()) and by[0, 0] == pytest.approx(-tx[:3, :3].mean())
    assert not ok[1, 2] and ok.sum() == ok.size - 1  # the block holding the one bad pixel
    assert (coarse.step_x_nm, coarse.step_y_nm) == pytest.approx((1.5, 2.1))
    small = np.zeros((8, 8))
    assert _block_means(small, small, np.ones((8, 8), bool), cal)[3] is cal  # small maps are judged as they are


@pytest.mark.parametrize("rotation", [0.0, 30.0])
def test_the_coarse_judgement_agrees_with_the_full_map(rotation):
    n = 1200  # k = 3
    cal = Calibration(kv=200, alpha_mrad=1, step_x_nm=1, thickness_nm=50, sources=ASSUMED)
    tx, ty = charges(n, rotation)
    valid = np.ones((n, n), bool)
    full_ratio = curl_ratio(tx, ty, cal, valid=valid)
    full_best = find_rotation(tx, ty, cal, valid=valid, flip=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        lines, attrs = _rotation_lines(tx, ty, cal, valid, names=PYTHON_NAMES)
    assert attrs["rotation_curl_ratio"] == pytest.approx(full_ratio, abs=0.02)
    assert attrs["rotation_best_curl_ratio"] < 0.01 and full_best.curl_ratio < 0.01
    assert f"({(-rotation) % 360:.1f}°" in lines[0]
    assert bool(caught) == (rotation != 0.0)  # a wrong assumed rotation is warned, a right one is not
