"""Line plots: a profile across an interface, and a quantity against bias."""

from __future__ import annotations

import numpy as np

from ..errors import InputDataError
from ._common import _new_axes, _quantity, _scaled_axis


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
