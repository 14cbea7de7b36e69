import numpy as np
import pytest

from dpcstem import Calibration, DPCError
from dpcstem.errors import InsufficientMemoryError
from dpcstem.memory import require_memory
from dpcstem.reconstruct import reconstruct


def test_refuses_more_than_is_free():
    require_memory(1024, "a small thing")
    with pytest.raises(InsufficientMemoryError, match=r"a huge scan needs .* GiB but only .* GiB of memory is free"):
        require_memory(2**50, "a huge scan")


def test_reconstruction_checks_before_allocating():
    # A zero-strided array claims a vast scan without holding it; the check refuses it up front.
    huge = np.lib.stride_tricks.as_strided(np.ones(4, np.uint16), shape=(4, 200_000, 200_000), strides=(2, 0, 0))
    cal = Calibration(kv=200, alpha_mrad=1, step_x_nm=1, thickness_nm=100)
    with pytest.raises(DPCError, match="reconstructing a 200000 x 200000 scan needs"):
        reconstruct(huge, cal)
