"""What every figure shares: the colour limits, units on axes, the pixel aspect and the NaN colour."""

from __future__ import annotations

import math
import re

import numpy as np

from .. import _validate
from ..errors import CalibrationError, InputDataError
from ..units import QUANTITY_BY_UNIT


#: RGB colour of invalid (NaN) pixels in every map.
NAN_COLOUR = (0.5, 0.5, 0.5)

#: Percentile of |value| (or of the magnitude) that sets a colour limit when none is given,
#: so that a few outlying pixels do not wash the map out.
ROBUST_PERCENTILE = 99.5

DIVERGING_CMAP = "RdBu_r"
SEQUENTIAL_CMAP = "viridis"

_SUPERSCRIPT = str.maketrans("0123456789-", "⁰¹²³⁴⁵⁶⁷⁸⁹⁻")


# --------------------------------------------------------------------------- helpers


def _pyplot():
    import matplotlib.pyplot as plt

    return plt


def _new_axes(ax, figsize):
    """The figure and axes to draw into: ``ax`` itself, or a fresh pyplot figure."""
    if ax is not None:
        return ax.figure, ax
    fig, ax = _pyplot().subplots(figsize=figsize, layout="constrained")
    return fig, ax


def _map_figsize(shape, step, extra_width):
    """Figure size (in) for one map 4.2 in wide plus ``extra_width`` for legend/colour bar."""
    ny, nx = shape
    aspect = ny / nx * (1.0 if step is None else step[1] / step[0])
    return (4.2 + extra_width, float(np.clip(4.2 * aspect + 0.8, 2.4, 7.0)))


def _map2d(name, array):
    a = np.asarray(array, dtype=np.float64)
    if a.ndim != 2 or a.size == 0:
        raise InputDataError(f"{name} must be a non-empty 2-D map (ny, nx), got shape {a.shape}")
    return a


def _same_shape(names, arrays):
    shapes = [a.shape for a in arrays]
    if len(set(shapes)) != 1:
        listed = ", ".join(f"{n} {s}" for n, s in zip(names, shapes))
        raise InputDataError(f"maps must have the same shape (ny, nx), got {listed}")


def _steps(step_nm):
    """(step_x_nm, step_y_nm) from one number, a pair, or None."""
    if step_nm is None:
        return None
    values = np.atleast_1d(np.asarray(step_nm, dtype=np.float64))
    if values.shape == (1,):
        values = np.repeat(values, 2)
    if values.shape != (2,) or not np.all(np.isfinite(values)) or np.any(values <= 0):
        raise CalibrationError(
            f"step_nm must be one positive scan step in nm or a pair (step_x_nm, step_y_nm), "
            f"got {step_nm!r}"
        )
    return float(values[0]), float(values[1])


def pretty_units(units):
    """A unit string as it is printed on a figure: ``"C/m^3"`` → ``"C/m³"``.

    ``^n`` becomes a superscript, ``*`` a middle dot, ``um`` becomes ``µm``; ``"1"``
    (dimensionless) becomes the empty string.
    """
    if units in (None, "", "1"):
        return ""
    text = re.sub(r"\^(-?\d+)", lambda m: m.group(1).translate(_SUPERSCRIPT), units)
    text = re.sub(r"\bum\b", "µm", text)
    return text.replace("*", "·")


def _quantity(quantity, units):
    if quantity is not None:
        return quantity
    return QUANTITY_BY_UNIT.get(units, "value")


def _exponent_for(limit):
    """Power of ten (a multiple of 3) that brings tick labels below 1000, or 0."""
    if not np.isfinite(limit) or limit == 0 or 1e-2 <= abs(limit) < 1e3:
        return 0
    return 3 * math.floor(math.log10(abs(limit)) / 3)


def _unit_label(quantity, units, exponent):
    """``"charge density (×10⁶ C/m³)"``: the tick value times what is in brackets."""
    unit = pretty_units(units)
    factor = f"×10{str(exponent).translate(_SUPERSCRIPT)}" if exponent else ""
    inside = " ".join(part for part in (factor, unit) if part)
    return f"{quantity} ({inside})" if inside else quantity


def _scaled_axis(axis, quantity, units, limit):
    """Label ``axis`` with quantity and unit; ticks show value / 10^exponent.

    The data stay in SI units (so what the artists hold is what the user passed); only
    the tick labels are divided, and the label says by how much.
    """
    from matplotlib.ticker import FuncFormatter

    exponent = _exponent_for(limit)
    scale = 10.0**exponent

    def fmt(value, _pos):
        text = f"{value / scale:.4g}"
        return "0" if text in ("-0", "0") else text.replace("-", "−")

    axis.set_major_formatter(FuncFormatter(fmt))
    axis.set_label_text(_unit_label(quantity, units, exponent))
    return exponent


def _format_value(value, units):
    """``3.2×10⁶ V/m``: one number with its unit, for legends and keys."""
    exponent = 0 if _exponent_for(value) == 0 else math.floor(math.log10(abs(value)))
    mantissa = f"{value / 10.0**exponent:.3g}"
    factor = f"×10{str(exponent).translate(_SUPERSCRIPT)}" if exponent else ""
    return f"{mantissa}{factor} {pretty_units(units)}".strip()


def _robust_abs_limit(values):
    finite = np.abs(values[np.isfinite(values)])
    if finite.size == 0:
        return 1.0
    limit = float(np.percentile(finite, ROBUST_PERCENTILE))
    if limit == 0:
        limit = float(finite.max())
    return limit if limit > 0 else 1.0


def _nice_length(max_length):
    """The largest 1, 2 or 5 × 10^n not above ``max_length`` (> 0)."""
    exponent = math.floor(math.log10(max_length))
    for mantissa in (5, 2, 1):
        length = mantissa * 10.0**exponent
        if length <= max_length * (1 + 1e-12):
            return length
    return 10.0**exponent


def _length_label(length_nm):
    if length_nm >= 1000:
        return f"{length_nm / 1000:g} µm"
    return f"{length_nm:g} nm"


def _show_map(ax, image, step, *, cmap=None, vmin=None, vmax=None):
    """imshow in pixel coordinates, row 0 at top, aspect = step_y / step_x."""
    aspect = 1.0 if step is None else step[1] / step[0]
    im = ax.imshow(image, cmap=cmap, vmin=vmin, vmax=vmax, origin="upper",
                   interpolation="nearest", aspect=aspect)
    if step is None:
        ax.set_xlabel("x (px)")
        ax.set_ylabel("y (px)")
    else:
        ax.set_xticks([])
        ax.set_yticks([])
    return im


def _diverging_limits(values, vmin, vmax):
    if vmin is None and vmax is None:
        limit = _robust_abs_limit(values)
    elif vmin is None or vmax is None or np.isclose(vmin, -vmax):
        limit = abs(vmax if vmax is not None else vmin)
    else:
        raise InputDataError(
            f"a diverging map is centred on zero: give vmax alone or vmin = -vmax, got "
            f"vmin={vmin!r}, vmax={vmax!r}; use diverging=False for other limits"
        )
    limit = _validate.positive("colour limit", limit)
    return -limit, limit


def _colormap(name):
    import matplotlib

    return matplotlib.colormaps[name].with_extremes(bad=NAN_COLOUR)
