"""Vector maps drawn as colour (hue = direction, brightness = magnitude, with its colour wheel) and as arrows."""

from __future__ import annotations

import math

import numpy as np

from .. import _validate
from ._common import (
    NAN_COLOUR, ROBUST_PERCENTILE, _colormap, _format_value, _map2d, _map_figsize, _new_axes, _nice_length,
    _robust_abs_limit, _same_shape, _show_map, _steps,
)
from .maps import add_scale_bar


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
    else:
        max_magnitude = _validate.positive("max_magnitude", max_magnitude)
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
    every = _validate.whole("every", every)
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
    ax.quiver(cx[keep], cy[keep], u, v, angles="xy", scale_units="xy",
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
