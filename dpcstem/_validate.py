"""The checks every public function runs on its parameters, before any heavy work.

One function per kind of check, one error class per fault, and a message that names the
parameter, echoes the value and says what is allowed (as scikit-image's ``check_nD`` does):

- a value that is not a number, or a number outside its range: :class:`CalibrationError`;
- an array of the wrong shape, or a mask that does not fit the scan: :class:`InputDataError`.

Examples
--------
>>> positive("kv", 200)
200.0
>>> positive("kv", True)
Traceback (most recent call last):
...
dpcstem.errors.CalibrationError: kv must be a number, got True (a bool is not a number)
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from .errors import CalibrationError, InputDataError


def _what(what):
    return f" ({what})" if what else ""


def number(name, value, *, what="") -> float:
    """``value`` as a float; refused when it is not a real number (a bool, a string, a dict, an array)."""
    if isinstance(value, (bool, np.bool_)):
        raise CalibrationError(f"{name} must be a number{_what(what)}, got {value!r} (a bool is not a number)")
    if isinstance(value, (str, bytes, Mapping)) or np.ndim(value) != 0:
        raise CalibrationError(f"{name} must be a number{_what(what)}, got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise CalibrationError(f"{name} must be a number{_what(what)}, got {value!r}") from None


def finite(name, value, *, noun="number") -> float:
    """A finite number (``noun`` says what kind, e.g. "angle in degrees")."""
    result = number(name, value, what=noun)
    if not math.isfinite(result):
        raise CalibrationError(f"{name} must be a finite {noun}, got {result!r}")
    return result


def positive(name, value, *, what="", allow_none=False) -> float | None:
    """A positive, finite number (``None`` passes through when ``allow_none``)."""
    if value is None and allow_none:
        return None
    result = number(name, value, what=what)
    if not (math.isfinite(result) and result > 0):
        raise CalibrationError(f"{name} must be positive and finite{_what(what)}, got {result!r}")
    return result


def whole(name, value, *, minimum=1) -> int:
    """A whole number (an int, or a float with no fraction) of at least ``minimum``."""
    result = number(name, value, what="a whole number")
    if not (math.isfinite(result) and result == int(result) and result >= minimum):
        raise CalibrationError(f"{name} must be a whole number of at least {minimum}, got {value!r}")
    return int(result)


def non_negative(name, value, *, what="") -> float:
    """A finite number that is zero or positive."""
    result = number(name, value, what=what)
    if not (math.isfinite(result) and result >= 0):
        raise CalibrationError(f"{name} must be zero or positive and finite{_what(what)}, got {result!r}")
    return result


def flag(name, value) -> bool:
    """True or False from a bool or the numbers 0 and 1 (HDF5 attributes); anything else is refused.

    ``bool("no")`` is True: a string must not slip through as a flag.
    """
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, float, np.integer, np.floating)) and value in (0, 1):
        return bool(value)
    raise CalibrationError(f"{name} must be True or False, got {value!r}")


def four(name, values, *, positive_only=False) -> np.ndarray:
    """Four finite numbers, one per segment A, B, C, D, as float64 (a new array)."""
    if isinstance(values, (str, bytes, Mapping)):
        raise CalibrationError(f"{name} must be 4 finite numbers (A, B, C, D), got {values!r}")
    try:
        arr = np.array(values, dtype=np.float64).ravel()
    except (TypeError, ValueError):
        raise CalibrationError(f"{name} must be 4 finite numbers (A, B, C, D), got {values!r}") from None
    if arr.shape != (4,) or not np.all(np.isfinite(arr)):
        raise CalibrationError(f"{name} must be 4 finite numbers (A, B, C, D), got {values!r}")
    if positive_only and np.any(arr <= 0):
        raise CalibrationError(f"{name} must be 4 positive numbers (A, B, C, D), got {values!r}")
    return arr


def choice(name, value, allowed):
    """One of ``allowed``."""
    if not isinstance(value, str) or value not in allowed:
        raise CalibrationError(f"{name} must be one of {', '.join(map(repr, allowed))}, got {value!r}")
    return value


def mask(name, value, shape) -> np.ndarray | None:
    """A boolean mask of ``shape`` (``None`` passes through); a new array."""
    if value is None:
        return None
    if np.shape(value) != tuple(shape):
        raise InputDataError(f"{name} must have the scan's shape {tuple(shape)} (a boolean mask), "
                             f"got shape {np.shape(value)}")
    return np.array(value, dtype=bool)


def pair(name, x, y) -> tuple[np.ndarray, np.ndarray]:
    """Two non-empty 2-D maps of one shape, as float64."""
    tx = np.asarray(x, dtype=np.float64)
    ty = np.asarray(y, dtype=np.float64)
    if tx.ndim != 2 or tx.shape != ty.shape or tx.size == 0:
        raise InputDataError(f"{name} maps must be two non-empty 2-D arrays (ny, nx) of one shape, "
                             f"got {tx.shape} and {ty.shape}")
    return tx, ty
