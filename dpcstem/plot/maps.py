"""Scalar maps (signed or not), the scale bar, and an interface drawn over a map."""

from __future__ import annotations

import numpy as np

from .. import _validate
from ..errors import InputDataError
from ._common import (
    DIVERGING_CMAP, ROBUST_PERCENTILE, SEQUENTIAL_CMAP, _colormap, _diverging_limits, _length_label, _map2d,
    _map_figsize, _new_axes, _nice_length, _quantity, _scaled_axis, _show_map, _steps,
)


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
    else:
        length_nm = _validate.positive("length_nm", length_nm)
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
