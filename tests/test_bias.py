import shlex
import warnings

import numpy as np
import pytest

from dpcstem import Calibration, InputDataError
from dpcstem.bias import check_biases, command_line, reconstruct_series, resolve_biases
from dpcstem.interface import Interface


def test_repeated_biases_are_allowed_and_the_reference_is_chosen_by_bias_then_index():
    biases, ref = check_biases([0.0, 1.0, 0.0], 3, 0.0)
    assert biases.tolist() == [0.0, 1.0, 0.0] and ref == 0
    assert check_biases([0.0, 1.0, 0.0], 3, 0.0, reference_index=2)[1] == 2
    assert check_biases([1.0, 0.0, 2.0], 3, 0.0)[1] == 1
    with pytest.raises(InputDataError, match=r"reference_index 1 is not an acquisition at the reference bias"):
        check_biases([0.0, 1.0, 0.0], 3, 0.0, reference_index=1)
    with pytest.raises(InputDataError, match="needs 3 biases, got 2"):
        check_biases([0, 1], 3, 0.0)
    with pytest.raises(InputDataError, match="reference bias 0.5 V is not among"):
        check_biases([0, 1], 2, 0.5)


def test_a_given_bias_never_silently_replaces_a_recorded_one():
    names = ["a.h5", "b.h5"]
    assert resolve_biases([0.0, 1.0], None, names) == ([0.0, 1.0], ["file", "file"])
    assert resolve_biases([0.0, 1.0], [0.0, 1.0], names) == ([0.0, 1.0], ["user", "user"])
    with pytest.raises(InputDataError, match=r"b\.h5 records a bias of 1 V but --bias gives 2 V"):
        resolve_biases([0.0, 1.0], [0.0, 2.0], names, option="--bias")
    with pytest.warns(UserWarning, match=r"b\.h5: the file records 1 V, using the given 2 V"):
        assert resolve_biases([0.0, 1.0], [0.0, 2.0], names, override=True)[0] == [0.0, 2.0]
    with pytest.raises(InputDataError, match=r"no bias recorded in b\.h5"):
        resolve_biases([0.0, None], None, names)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resolve_biases([None, None], [0.0, 1.0], names)[0] == [0.0, 1.0]  # nothing recorded: nothing to warn


def test_series_with_shapes_that_differ_is_refused():
    cal = Calibration(kv=200, alpha_mrad=1, step_x_nm=1, thickness_nm=100)
    with pytest.raises(InputDataError, match="different shapes"):
        reconstruct_series([np.full((4, 5, 5), 100.0), np.full((4, 5, 6), 100.0)], [0, 1], cal, register_maps=False)


def test_command_line_writes_the_points_exactly_and_splits_back():
    iface = Interface.from_normal((30.0, 64.0), 15.0, 80.0)
    line = command_line(["data dir/bias_+0.000V.h5"], output="out.h5", interface=iface, half_range_nm=12.5,
                        table="t.csv", options=["--reference", "vacuum.h5"])
    words = shlex.split(line)
    assert words[:3] == ["dpcstem", "bias-series", "data dir/bias_+0.000V.h5"]
    points = [float(w) for w in words[words.index("--interface") + 1:][:4]]
    assert points == [*iface.start_nm, *iface.end_nm]  # exact: the normal cannot flip
    assert Interface(tuple(points[:2]), tuple(points[2:])).normal_deg == pytest.approx(15.0)
    assert words[words.index("--half-range") + 1] == "12.5" and words[-2:] == ["-o", "out.h5"]
