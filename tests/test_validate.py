"""The parameter checks every public function shares: one error class per fault, the parameter named."""

import numpy as np
import pytest

from dpcstem import _validate
from dpcstem.errors import CalibrationError, InputDataError


@pytest.mark.parametrize("value", [0, -1.5, float("nan"), float("inf"), True, "3", None, [1.0]])
def test_positive_refuses_what_is_not_a_positive_number(value):
    with pytest.raises(CalibrationError, match=r"^thickness_nm must be"):
        _validate.positive("thickness_nm", value)


def test_positive_and_non_negative_return_floats():
    assert _validate.positive("kv", np.int64(200)) == 200.0
    assert isinstance(_validate.positive("kv", np.int64(200)), float)
    assert _validate.non_negative("blur", 0) == 0.0
    assert _validate.positive("cutoff", None, allow_none=True) is None
    with pytest.raises(CalibrationError, match="zero or positive"):
        _validate.non_negative("blur", -1e-9)


@pytest.mark.parametrize("value, minimum, expected", [(3, 1, 3), (4.0, 1, 4), (0, 0, 0), (np.int32(7), 1, 7)])
def test_whole_accepts_whole_numbers(value, minimum, expected):
    result = _validate.whole("every", value, minimum=minimum)
    assert result == expected and type(result) is int


@pytest.mark.parametrize("value, minimum", [(0, 1), (2.5, 1), (-1, 0), (True, 1), ("2", 1), (float("inf"), 1)])
def test_whole_refuses_fractions_bools_and_numbers_below_the_minimum(value, minimum):
    with pytest.raises(CalibrationError, match=r"^every must be"):
        _validate.whole("every", value, minimum=minimum)


def test_four_and_mask_name_their_fault_with_their_own_class():
    with pytest.raises(CalibrationError, match="gains must be 4 positive numbers"):
        _validate.four("gains", [1, 1, 0, 1], positive_only=True)
    with pytest.raises(InputDataError, match="region"):
        _validate.mask("region", np.ones((3, 3), bool), (4, 4))
