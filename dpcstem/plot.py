"""Figures of DPC results: vector maps, arrow overlays, signed maps, profiles, bias series.

Every function draws with matplotlib and returns the :class:`~matplotlib.figure.Figure`
it drew into. Pass ``ax`` (or ``fig`` for the multi-panel figure) to draw into axes of
your own; without one a new figure is made through :mod:`matplotlib.pyplot`, so
``plt.show()`` and notebooks display it as usual.

How maps are shown
------------------
Maps are indexed ``[y, x]`` (rows, columns) as everywhere in dpcstem and drawn with row 0
at the top, so scan +x points right and scan +y points **down** on screen. The axes'
data coordinates are pixel indices (column, row); the pixel aspect ratio follows the scan
step, so shapes are true to life when ``step_x_nm`` differs from ``step_y_nm``. Lengths
are given by a scale bar in nm (or µm), not by tick labels.

Direction is drawn as hue. The azimuth φ of a vector is measured from scan +x toward
scan +y, φ = atan2(v_y, v_x), and the hue runs red (φ = 0, +x), yellow-green (φ = 90°,
+y), cyan (φ = 180°, −x), blue-violet (φ = 270°, −y). Because +y is down on screen,
increasing φ turns **clockwise** on screen; the colour wheel drawn as the legend is made
with the same convention, so a pixel has the colour that the wheel shows in the
direction the vector points on screen. Brightness is the magnitude: black is zero.

Pixels that hold NaN (invalid) are drawn in :data:`NAN_COLOUR`, a mid grey that no
finite value maps to in any of these colour schemes.
"""

from __future__ import annotations

import math
import re

import numpy as np

from .errors import CalibrationError, InputDataError
from .units import QUANTITY_BY_UNIT

__all__ = [
    "DIVERGING_CMAP",
    "NAN_COLOUR",
    "ROBUST_PERCENTILE",
    "SEQUENTIAL_CMAP",
    "add_scale_bar",
    "annotate_interface",
    "plot_arrows",
    "plot_bias_panel",
    "plot_charge_vs_bias",
    "plot_profile",
    "plot_scalar_map",
    "plot_vector_map",
    "pretty_units",
    "vector_colour_image",
]

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
    if not np.isfinite(limit) or limit <= 0:
        raise InputDataError(f"colour limit must be positive and finite, got {limit!r}")
    return -limit, limit


def _colormap(name):
    import matplotlib

    return matplotlib.colormaps[name].with_extremes(bad=NAN_COLOUR)


# --------------------------------------------------------------------------- vector maps


def _hsv_image(vx, vy, max_magnitude):
    from matplotlib.colors import hsv_to_rgb

    azimuth = np.arctan2(vy, vx)  # from +x toward +y, in (-π, π]
    hsv = np.empty(vx.shape + (3,))
    hsv[..., 0] = np.mod(azimuth / (2 * np.pi), 1.0)
    hsv[..., 1] = 1.0
    hsv[..., 2] = np.clip(np.hypot(vx, vy) / max_magnitude, 0.0, 1.0)
    bad = ~(np.isfinite(vx) & np.isfinite(vy))
    hsv[bad] = 0.0
    rgb = hsv_to_rgb(hsv)
    rgb[bad] = NAN_COLOUR
    return rgb


def vector_colour_image(vx, vy, *, max_magnitude=None):
    """Colour-wheel image of a vector map: hue = direction, brightness = magnitude.

    Parameters
    ----------
    vx, vy : array_like, shape (ny, nx)
        Vector components along scan x (columns) and scan y (rows), in any one unit
        (V/m for a field, mrad for a deflection).
    max_magnitude : float, optional
        Magnitude, in the unit of ``vx``/``vy``, drawn at full brightness; larger ones are
        clipped. Default: the :data:`ROBUST_PERCENTILE` percentile of the finite
        magnitudes.

    Returns
    -------
    rgb : ndarray, float64, shape (ny, nx, 3)
        RGB in [0, 1]. Hue is the azimuth φ = atan2(vy, vx), measured from scan +x toward
        scan +y: red at +x, yellow-green at +y, cyan at −x, blue-violet at −y (HSV hue
        φ/360°). Shown with row 0 at the top, +y points down, so hue advances clockwise
        on screen. Value (brightness) is |v| / ``max_magnitude``; saturation is 1.
        Pixels where either component is not finite are :data:`NAN_COLOUR`.
    """
    vx = _map2d("vx", vx)
    vy = _map2d("vy", vy)
    _same_shape(("vx", "vy"), (vx, vy))
    if max_magnitude is None:
        max_magnitude = _robust_abs_limit(np.hypot(vx, vy))
    elif not (np.isfinite(max_magnitude) and max_magnitude > 0):
        raise InputDataError(f"max_magnitude must be positive and finite, got {max_magnitude!r}")
    return _hsv_image(vx, vy, float(max_magnitude))


def _colour_wheel(ax, max_magnitude, units, n=201):
    """Draw the legend wheel into ``ax``: the same colouring as the map, +y down."""
    coords = np.linspace(-1.0, 1.0, n)
    wx, wy = np.meshgrid(coords, coords)  # wy grows with the row index: down on screen
    radius = np.hypot(wx, wy)
    rgba = np.ones((n, n, 4))
    rgba[..., :3] = _hsv_image(wx, wy, 1.0)
    rgba[..., 3] = radius <= 1.0
    ax.imshow(rgba, origin="upper", extent=(-1, 1, 1, -1), interpolation="antialiased")
    ax.set_xlim(-1.55, 1.55)
    ax.set_ylim(1.55, -1.55)  # inverted, as the map: +y down
    ax.set_aspect("equal")
    ax.axis("off")
    style = dict(fontsize=8, ha="center", va="center")
    ax.text(1.3, 0.0, "+x", **style)
    ax.text(0.0, 1.3, "+y", **style)
    ax.text(0.0, -1.3, "−y", **style)
    ax.text(-1.3, 0.0, "−x", **style)
    ax.set_title(f"magnitude at rim\n{_format_value(max_magnitude, units)}", fontsize=8,
                 pad=2)


def plot_vector_map(vx, vy, *, ax=None, step_nm=None, units="V/m", title=None,
                    max_magnitude=None):
    """Show a vector map as a colour-wheel image with the wheel as legend.

    Parameters
    ----------
    vx, vy : array_like, shape (ny, nx)
        Components along scan x and scan y, in ``units`` (a field in V/m, a deflection
        in mrad). NaN marks invalid pixels, drawn in :data:`NAN_COLOUR`.
    ax : matplotlib.axes.Axes, optional
        Axes to draw into; a new figure is made if omitted.
    step_nm : float or (float, float), optional
        Scan step in nm, one value or (step_x_nm, step_y_nm). Sets the pixel aspect ratio
        and adds a scale bar; without it the axes are labelled in pixels.
    units : str
        Unit of ``vx``/``vy``, printed with the magnitude at the wheel's rim.
    title : str, optional
    max_magnitude : float, optional
        Magnitude drawn at full brightness; see :func:`vector_colour_image`.

    Returns
    -------
    matplotlib.figure.Figure

    Notes
    -----
    The colour wheel, an inset to the right of the map labelled ``"colour wheel"``, is
    drawn in the map's orientation: its right-hand edge is the colour of a vector along
    +x, its lower edge that of a vector along +y (down on screen). Its title gives the
    magnitude at full brightness.
    """
    vx = _map2d("vx", vx)
    vy = _map2d("vy", vy)
    _same_shape(("vx", "vy"), (vx, vy))
    step = _steps(step_nm)
    if max_magnitude is None:
        max_magnitude = _robust_abs_limit(np.hypot(vx, vy))
    rgb = vector_colour_image(vx, vy, max_magnitude=max_magnitude)
    fig, ax = _new_axes(ax, _map_figsize(rgb.shape[:2], step, 1.9))
    _show_map(ax, rgb, step)
    # a square inset whose side is 0.45 of the geometric mean of the map's width and
    # height on screen, so that it stays legible beside tall and wide maps alike
    ratio = rgb.shape[0] / rgb.shape[1] * (1.0 if step is None else step[1] / step[0])
    width, height = 0.45 * math.sqrt(ratio), 0.45 / math.sqrt(ratio)
    shrink = min(1.0, 0.5 / height, 1.0 / width)
    wheel = ax.inset_axes([1.03, 1.0 - height * shrink, width * shrink, height * shrink])
    wheel.set_label("colour wheel")
    wheel.set_anchor("NW")
    _colour_wheel(wheel, float(max_magnitude), units)
    if step is not None:
        add_scale_bar(ax, step)
    if title is not None:
        ax.set_title(title)
    return fig


def _block_means(values, every):
    """Mean of the finite values in each every × every block (NaN where none)."""
    ny, nx = values.shape
    by, bx = -(-ny // every), -(-nx // every)
    padded = np.full((by * every, bx * every), np.nan)
    padded[:ny, :nx] = values
    blocks = padded.reshape(by, every, bx, every)
    finite = np.isfinite(blocks)
    count = finite.sum(axis=(1, 3))
    total = np.where(finite, blocks, 0.0).sum(axis=(1, 3))
    out = np.full((by, bx), np.nan)
    np.divide(total, count, out=out, where=count > 0)
    return out


_ARROW_COLOUR = "#ffd21f"


_ARROW_WIDTH = 0.006  # shaft width of the arrows, as a fraction of the axes' width


def _arrow_key(ax, length_px, text, shape, aspect):
    """Key to the right of the axes, at its foot: an arrow ``length_px`` long (x data
    units, drawn at the axes' scale and in the style of the quiver's arrows) over its
    magnitude."""
    from matplotlib.offsetbox import AnchoredOffsetbox, AuxTransformBox, TextArea, VPacker
    from matplotlib.patches import FancyArrow

    width_x = _ARROW_WIDTH * shape[1]  # x data units
    width_y = width_x / aspect  # the same width on screen, in y data units
    box = AuxTransformBox(ax.transData)
    arrow = FancyArrow(0.0, 0.0, length_px, 0.0, width=width_y, head_width=3.5 * width_y,
                       head_length=min(4.0 * width_x, length_px), length_includes_head=True,
                       facecolor=_ARROW_COLOUR, edgecolor="black", linewidth=0.5)
    box.add_artist(arrow)
    label = TextArea(text, textprops=dict(fontsize=9))
    key = AnchoredOffsetbox(loc="lower left", child=VPacker(children=[box, label],
                                                            align="left", pad=0, sep=4),
                            bbox_to_anchor=(1.02, 0.0), bbox_transform=ax.transAxes,
                            borderpad=0, pad=0, frameon=False)
    key.arrow = arrow
    key.text = label._text
    key.set_label("arrow key")
    ax.add_artist(key)
    return key


def plot_arrows(vx, vy, background, *, ax=None, every=None, step_nm=None, units="V/m",
                title=None):
    """Arrows of a vector map over an image (ADF, segment sum).

    Parameters
    ----------
    vx, vy : array_like, shape (ny, nx)
        Components along scan x and scan y, in ``units``.
    background : array_like, shape (ny, nx)
        Image drawn in grey underneath (any unit; limits at the 0.5 and 99.5 percentiles).
    ax : matplotlib.axes.Axes, optional
    every : int, optional
        One arrow per ``every`` × ``every`` pixel block, the block's mean vector (NaN
        pixels left out), drawn at the block's centre. Default: about 16 arrows along
        the longer side.
    step_nm : float or (float, float), optional
        Scan step in nm, (step_x_nm, step_y_nm); adds a scale bar and sets the aspect.
    units : str
        Unit of ``vx``/``vy``, used in the arrow key.
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure

    Notes
    -----
    Arrows point on screen the way the vector points in the scan frame (+x right, +y
    down), with pixel aspect and scan step taken into account; their length is
    proportional to the magnitude, the longest block mean spanning about 0.9 of a block.
    A key to the right of the image shows the arrow of a round magnitude.
    """
    vx = _map2d("vx", vx)
    vy = _map2d("vy", vy)
    background = _map2d("background", background)
    _same_shape(("vx", "vy", "background"), (vx, vy, background))
    step = _steps(step_nm)
    ny, nx = vx.shape
    if every is None:
        every = max(1, round(max(ny, nx) / 16))
    if int(every) != every or every < 1:
        raise InputDataError(f"every must be a positive whole number of pixels, got {every!r}")
    every = int(every)
    sx, sy = step if step is not None else (1.0, 1.0)

    fig, ax = _new_axes(ax, _map_figsize(vx.shape, step, 1.3))
    finite = background[np.isfinite(background)]
    lo, hi = (np.percentile(finite, [100 - ROBUST_PERCENTILE, ROBUST_PERCENTILE])
              if finite.size else (0.0, 1.0))
    _show_map(ax, background, step, cmap=_colormap("gray"), vmin=lo, vmax=hi if hi > lo else None)

    mean_x, mean_y = _block_means(vx, every), _block_means(vy, every)
    centres_y = np.arange(mean_x.shape[0]) * every + (every - 1) / 2
    centres_x = np.arange(mean_x.shape[1]) * every + (every - 1) / 2
    cx, cy = np.meshgrid(centres_x, centres_y)
    keep = np.isfinite(mean_x) & np.isfinite(mean_y)
    magnitude = np.hypot(mean_x, mean_y)[keep]
    longest = float(magnitude.max()) if magnitude.size and magnitude.max() > 0 else 1.0
    # Components in pixels per unit so that, at the axes' aspect sy/sx, the drawn arrow
    # has the physical direction; scale: the longest arrow spans 0.9 block in nm.
    u = mean_x[keep] / sx
    v = mean_y[keep] / sy
    scale = longest / (0.9 * every * min(sx, sy))
    quiver = ax.quiver(cx[keep], cy[keep], u, v, angles="xy", scale_units="xy",
                       scale=scale, pivot="middle", color=_ARROW_COLOUR, edgecolor="black",
                       linewidth=0.5, width=_ARROW_WIDTH, headwidth=3.5, headlength=4,
                       headaxislength=3.5, minlength=0)
    key = _nice_length(longest)
    _arrow_key(ax, key / sx / scale, _format_value(key, units), vx.shape, sy / sx)
    ax.set_xlim(-0.5, nx - 0.5)
    ax.set_ylim(ny - 0.5, -0.5)
    if step is not None:
        add_scale_bar(ax, step)
    if title is not None:
        ax.set_title(title)
    return fig


# --------------------------------------------------------------------------- scalar maps


def plot_scalar_map(m, *, ax=None, units="C/m^3", diverging=True, step_nm=None, title=None,
                    quantity=None, vmin=None, vmax=None, cmap=None):
    """Show a scalar map with a colour bar in physical units.

    Parameters
    ----------
    m : array_like, shape (ny, nx)
        The map in ``units``; NaN marks invalid pixels, drawn in :data:`NAN_COLOUR`.
    ax : matplotlib.axes.Axes, optional
    units : str
        Unit of ``m`` as dpcstem writes it (``"C/m^3"``, ``"V/m"``, ``"V"``, ``"mrad"``).
    diverging : bool
        True for a signed quantity (charge density, a field component, a net map): the
        ``RdBu_r`` map, white at zero, red positive, blue negative, with limits
        symmetric about zero. False: ``viridis`` between the given or robust limits.
    step_nm : float or (float, float), optional
        Scan step in nm, (step_x_nm, step_y_nm); adds a scale bar and sets the aspect.
    title : str, optional
    quantity : str, optional
        Name on the colour bar; default from the unit (``"C/m^3"`` → charge density).
    vmin, vmax : float, optional
        Colour limits in ``units``. Diverging: give ``vmax`` alone (limits ±vmax);
        default ± the :data:`ROBUST_PERCENTILE` percentile of |m|. Sequential: each
        limit not given is the 0.5 or 99.5 percentile of the finite values.
    cmap : str, optional
        Colour map of a sequential map instead of ``viridis``: ``"gray"`` for a structural
        image (segment sum, ADF).

    Returns
    -------
    matplotlib.figure.Figure

    Notes
    -----
    The image holds ``m`` unchanged; the colour bar's tick labels are divided by a power
    of ten, which its label states: ``charge density (×10⁶ C/m³)`` means a tick ``2`` is
    2×10⁶ C/m³.
    """
    m = _map2d("m", m)
    step = _steps(step_nm)
    if diverging:
        if cmap is not None:
            raise InputDataError(f"a diverging map is drawn in {DIVERGING_CMAP}; cmap={cmap!r} needs diverging=False")
        vmin, vmax = _diverging_limits(m, vmin, vmax)
        cmap = _colormap(DIVERGING_CMAP)
    else:
        finite = m[np.isfinite(m)]
        lo, hi = (np.percentile(finite, [100 - ROBUST_PERCENTILE, ROBUST_PERCENTILE])
                  if finite.size else (0.0, 1.0))
        vmin = float(lo) if vmin is None else vmin
        vmax = float(hi) if vmax is None else vmax
        if vmax < vmin:
            raise InputDataError(f"vmax must not be below vmin, got vmin={vmin!r}, "
                                 f"vmax={vmax!r}")
        cmap = _colormap(cmap or SEQUENTIAL_CMAP)
    fig, ax = _new_axes(ax, _map_figsize(m.shape, step, 1.4))
    im = _show_map(ax, m, step, cmap=cmap, vmin=vmin, vmax=vmax)
    extend = _extend(m, vmin, vmax)
    cbar = fig.colorbar(im, ax=ax, extend=extend, shrink=0.9)
    _scaled_axis(cbar.ax.yaxis, _quantity(quantity, units), units, max(abs(vmin), abs(vmax)))
    if step is not None:
        add_scale_bar(ax, step, colour="black" if diverging else "white")
    if title is not None:
        ax.set_title(title)
    return fig


def _extend(values, vmin, vmax):
    finite = values[np.isfinite(values)]
    below = finite.size and finite.min() < vmin
    above = finite.size and finite.max() > vmax
    return {(False, False): "neither", (True, False): "min", (False, True): "max",
            (True, True): "both"}[(bool(below), bool(above))]


def add_scale_bar(ax, step_nm, *, length_nm=None, colour="white", location="lower right",
                  fraction=0.25):
    """Add a scale bar labelled in nm (µm from 1000 nm) to a map drawn in pixel units.

    Parameters
    ----------
    ax : matplotlib.axes.Axes
        Axes showing a map in pixel coordinates (as every map in this module is).
    step_nm : float or (float, float)
        Scan step in nm, one value or (step_x_nm, step_y_nm); the bar is horizontal and
        ``length_nm / step_x_nm`` pixels long.
    length_nm : float, optional
        Bar length in nm. Default: the largest 1, 2 or 5 × 10^n nm not longer than
        ``fraction`` of the visible width.
    colour : str
        Bar and text colour; each is outlined in the opposite of black/white so that it
        reads on light and dark maps.
    location : str
        Matplotlib legend location code (``"lower right"``, ``"upper left"``, ...).
    fraction : float
        Largest share of the axes' width the default bar may take.

    Returns
    -------
    matplotlib.offsetbox.AnchoredOffsetbox
        The artist, already added to ``ax``; ``.length_nm`` is the bar length in nm,
        ``.bar`` the bar (a Rectangle in data coordinates), ``.text`` its label.
    """
    from matplotlib import patheffects
    from matplotlib.offsetbox import AnchoredOffsetbox, AuxTransformBox, TextArea, VPacker
    from matplotlib.patches import Rectangle

    step_x, _ = _steps(step_nm)
    if length_nm is None:
        left, right = ax.get_xlim()
        length_nm = _nice_length(fraction * abs(right - left) * step_x)
    elif not (np.isfinite(length_nm) and length_nm > 0):
        raise InputDataError(f"length_nm must be positive and finite, got {length_nm!r}")
    outline = "black" if colour == "white" else "white"
    length_px = length_nm / step_x
    height_px = 0.018 * abs(np.diff(ax.get_ylim())[0])
    box = AuxTransformBox(ax.transData)
    bar = Rectangle((0, 0), length_px, height_px, facecolor=colour, edgecolor=outline,
                    linewidth=0.8)
    box.add_artist(bar)
    label = TextArea(_length_label(length_nm), textprops=dict(
        color=colour, fontsize=9, fontweight="bold",
        path_effects=[patheffects.withStroke(linewidth=2, foreground=outline)]))
    packed = VPacker(children=[label, box], align="center", pad=0, sep=2)
    artist = AnchoredOffsetbox(loc=location, child=packed, pad=0.4, borderpad=0.5,
                               frameon=False)
    artist.length_nm = float(length_nm)
    artist.bar = bar
    artist.text = label._text
    ax.add_artist(artist)
    return artist


def annotate_interface(ax, interface, step_nm, *, before=None, after=None, colour="black"):
    """Draw an interface on a map: its line, the normal as an arrow, the material on each side.

    Parameters
    ----------
    ax : matplotlib.axes.Axes
        Axes showing a map in pixel coordinates (as every map in this module is).
    interface : dpcstem.interface.Interface
        The interface (two points in nm, scan frame); its normal points toward distances
        d > 0 (:mod:`dpcstem.interface`).
    step_nm : float or (float, float)
        Scan step in nm, (step_x_nm, step_y_nm).
    before, after : str, optional
        Material on the side d < 0 and on the side d > 0 (the normal points from
        ``before`` into ``after``), written beside the line.
    colour : str
        Colour of the line, arrow and labels (outlined in white so they read on any map).

    Returns
    -------
    dict
        The artists drawn: ``"line"``, ``"normal"`` (the arrow, labelled "n"), and
        ``"before"``/``"after"`` (texts) where given.
    """
    from matplotlib import patheffects

    step_x, step_y = _steps(step_nm)
    outline = [patheffects.withStroke(linewidth=2.5, foreground="white")]
    start = np.array(interface.start_nm, dtype=float)
    end = np.array(interface.end_nm, dtype=float)
    normal = np.asarray(interface.normal, dtype=float)
    to_px = np.array([1.0 / step_x, 1.0 / step_y])
    (line,) = ax.plot(*np.stack([start * to_px, end * to_px]).T, ls="--", lw=1.2, color=colour,
                      path_effects=outline, scalex=False, scaley=False)
    line.set_label("interface")
    # the arrow and the labels sit where the interface crosses the middle of the view
    left, right = sorted(ax.get_xlim())
    bottom, top = sorted(ax.get_ylim())
    centre_px = np.array([(left + right) / 2, (bottom + top) / 2])
    direction = (end - start) / np.hypot(*(end - start))
    along = np.dot(centre_px / to_px - start, direction)
    middle = start + along * direction  # nm, on the line
    reach_nm = 0.18 * min(right - left, top - bottom) * min(step_x, step_y)
    tail, head = middle * to_px, (middle + reach_nm * normal) * to_px
    arrow = ax.annotate("", xy=head, xytext=tail,
                        arrowprops=dict(arrowstyle="-|>", color=colour, lw=1.6, mutation_scale=14))
    arrow.set_label("interface normal")
    label = ax.text(*(middle + 1.2 * reach_nm * normal) * to_px, "n", color=colour, fontsize=10,
                    fontweight="bold", fontstyle="italic", ha="center", va="center", path_effects=outline)
    out = {"line": line, "normal": arrow, "normal_label": label}
    offset = 0.45 * reach_nm * direction  # beside the arrow, not on it
    for key, text, sign in (("before", before, -1.0), ("after", after, 1.0)):
        if text:
            where = (middle + sign * 0.9 * reach_nm * normal - offset) * to_px
            out[key] = ax.text(*where, text, color=colour, fontsize=9, fontweight="bold", ha="center",
                               va="center", path_effects=outline, clip_on=True)
    return out


# --------------------------------------------------------------------------- line plots


def plot_profile(distance_nm, value, *, error=None, ax=None, label=None, units="V/m",
                 quantity=None):
    """Plot a profile across an interface, with an error band.

    Parameters
    ----------
    distance_nm : array_like, shape (n,)
        Position along the profile in nm (for instance from the interface, positive
        into one phase).
    value : array_like, shape (n,)
        The profile in ``units``.
    error : array_like, shape (n,), optional
        One standard uncertainty in ``units``; the band spans value ± error.
    ax : matplotlib.axes.Axes, optional
        Axes to draw into; several profiles may share one.
    label : str, optional
        Legend entry of this profile (a legend is drawn when given).
    units : str
    quantity : str, optional
        Name on the y axis; default from the unit.

    Returns
    -------
    matplotlib.figure.Figure
    """
    distance = np.asarray(distance_nm, dtype=np.float64)
    value = np.asarray(value, dtype=np.float64)
    if distance.ndim != 1 or value.shape != distance.shape:
        raise InputDataError(
            f"distance_nm and value must be 1-D of one length, got shapes {distance.shape} "
            f"and {value.shape}"
        )
    fig, ax = _new_axes(ax, (5.0, 3.5))
    (line,) = ax.plot(distance, value, label=label, lw=1.5)
    if error is not None:
        error = np.broadcast_to(np.asarray(error, dtype=np.float64), value.shape)
        if np.any(error < 0):
            raise InputDataError("error must be non-negative (one standard uncertainty)")
        ax.fill_between(distance, value - error, value + error, color=line.get_color(),
                        alpha=0.25, linewidth=0, label="_nolegend_")
    ax.set_xlabel("distance (nm)")
    _rescale_y(ax, quantity if quantity is not None else _quantity(None, units), units)
    if label is not None:
        ax.legend(frameon=False)
    return fig


def _rescale_y(ax, quantity, units):
    """Label the y axis for everything drawn so far (call after each series)."""
    ax.relim()
    ax.autoscale_view()
    low, high = ax.get_ylim()
    _scaled_axis(ax.yaxis, quantity, units, max(abs(low), abs(high)))


def plot_charge_vs_bias(biases_v, values, *, errors=None, ax=None, label=None,
                        units="C/m^2", quantity=None):
    """Net charge (or any per-bias number) against applied bias, one or several series.

    Parameters
    ----------
    biases_v : array_like, shape (n,)
        Applied bias in V.
    values : array_like, shape (n,) or (k, n)
        One series, or k series over the same biases (bare and coated cathode), in
        ``units``.
    errors : array_like, same shape as ``values``, optional
        One standard uncertainty, drawn as error bars.
    ax : matplotlib.axes.Axes, optional
        Axes to draw into; call again with the same ``ax`` to add series with other
        biases.
    label : str or sequence of str, optional
        Legend entry per series.
    units : str
        Unit of ``values``: ``"C/m^2"`` for the net areal charge of a layer.
    quantity : str, optional
        Name on the y axis; default "net " plus the name from the unit.

    Returns
    -------
    matplotlib.figure.Figure
    """
    biases = np.asarray(biases_v, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    if biases.ndim != 1:
        raise InputDataError(f"biases_v must be 1-D, got shape {biases.shape}")
    series = values[np.newaxis] if values.ndim == 1 else values
    if series.ndim != 2 or series.shape[1] != biases.size:
        raise InputDataError(
            f"values must have shape (n,) or (k, n) with n = {biases.size} biases, got "
            f"{values.shape}"
        )
    if errors is not None:
        errors = np.broadcast_to(np.asarray(errors, dtype=np.float64), values.shape)
        errors = errors[np.newaxis] if values.ndim == 1 else errors
    n_series = series.shape[0]
    if label is None:
        labels = [None] * n_series
    else:
        labels = [label] if isinstance(label, str) else list(label)
    if len(labels) != n_series:
        raise InputDataError(f"label must give one name per series ({n_series}), got "
                             f"{label!r}")
    fig, ax = _new_axes(ax, (5.0, 3.5))
    markers = "osD^v<>"
    start = len(ax.containers)
    for i, (row, name) in enumerate(zip(series, labels)):
        ax.errorbar(biases, row, yerr=None if errors is None else errors[i], label=name,
                    marker=markers[(start + i) % len(markers)], capsize=3, lw=1.2, ms=5)
    ax.axhline(0.0, color="0.6", lw=0.7, zorder=0)
    ax.set_xlabel("bias (V)")
    if quantity is None:
        quantity = "net " + _quantity(None, units)
    _rescale_y(ax, quantity, units)
    if any(name is not None for name in labels):
        ax.legend(frameon=False)
    return fig


# --------------------------------------------------------------------------- bias panels


def _bias_text(bias):
    if bias == 0:
        return "0 V"
    return f"{bias:+g} V".replace("-", "−")


def plot_bias_panel(maps, biases_v, *, fig=None, units="C/m^3", step_nm=None, ncols=None,
                    quantity=None, vmax=None, title=None):
    """One map per bias in a grid, one symmetric colour scale shared by all.

    Parameters
    ----------
    maps : array_like, shape (n, ny, nx)
        One signed map per bias (a net charge density, a net field component) in
        ``units``; NaN pixels are drawn in :data:`NAN_COLOUR`.
    biases_v : array_like, shape (n,)
        Bias of each map in V, written as the title of its panel ("+1.5 V").
    fig : matplotlib.figure.Figure, optional
        An empty figure to draw into; a new one is made if omitted.
    units : str
    step_nm : float or (float, float), optional
        Scan step in nm; adds a scale bar to the first panel and sets the aspect.
    ncols : int, optional
        Panels per row; default up to 4.
    quantity : str, optional
        Name on the colour bar; default from the unit.
    vmax : float, optional
        Colour limit in ``units`` (limits ±vmax); default the :data:`ROBUST_PERCENTILE`
        percentile of |maps| over all biases.
    title : str, optional
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure
    """
    maps = np.asarray(maps, dtype=np.float64)
    biases = np.asarray(biases_v, dtype=np.float64)
    if maps.ndim != 3 or maps.shape[0] == 0:
        raise InputDataError(f"maps must have shape (n_bias, ny, nx), got {maps.shape}")
    if biases.shape != (maps.shape[0],):
        raise InputDataError(
            f"biases_v must give one bias per map ({maps.shape[0]}), got shape {biases.shape}"
        )
    step = _steps(step_nm)
    n = maps.shape[0]
    if ncols is None:
        ncols = min(n, 4)
    if int(ncols) != ncols or ncols < 1:
        raise InputDataError(f"ncols must be a positive whole number, got {ncols!r}")
    ncols = int(ncols)
    nrows = -(-n // ncols)
    vmin, vmax = _diverging_limits(maps, None, vmax)
    if fig is None:
        ny, nx = maps.shape[1:]
        aspect = ny / nx * (1.0 if step is None else step[1] / step[0])
        width = min(12.0, 2.6 * ncols + 1.3)
        panel = (width - 1.3) / ncols
        height = nrows * (panel * aspect + 0.4) + (0.45 if title is not None else 0.15)
        fig = _pyplot().figure(figsize=(width, height), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    cmap = _colormap(DIVERGING_CMAP)
    for i, ax in enumerate(axes):
        if i >= n:
            ax.set_axis_off()
            continue
        im = _show_map(ax, maps[i], step, cmap=cmap, vmin=vmin, vmax=vmax)
        ax.set_title(_bias_text(biases[i]), fontsize=11, fontweight="bold", pad=3)
        if step is not None and i == 0:
            add_scale_bar(ax, step, colour="black")
    extend = _extend(maps, vmin, vmax)
    cbar = fig.colorbar(im, ax=list(axes[:n]), extend=extend, shrink=0.9)
    _scaled_axis(cbar.ax.yaxis, _quantity(quantity, units), units, vmax)
    if title is not None:
        fig.suptitle(title)
    return fig
