"""Multi-panel figures of a bias series: one map per bias, on one colour scale."""

from __future__ import annotations

import numpy as np

from .. import _validate
from ..errors import InputDataError
from ._common import DIVERGING_CMAP, _colormap, _diverging_limits, _pyplot, _quantity, _scaled_axis, _show_map, _steps
from .maps import _extend, add_scale_bar


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
    ncols = _validate.whole("ncols", ncols)
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
