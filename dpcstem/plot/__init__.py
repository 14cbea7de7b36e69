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

from ._common import DIVERGING_CMAP, NAN_COLOUR, ROBUST_PERCENTILE, SEQUENTIAL_CMAP, pretty_units
from .vectors import plot_arrows, plot_vector_map, vector_colour_image
from .maps import add_scale_bar, annotate_interface, plot_scalar_map
from .profiles import plot_charge_vs_bias, plot_profile
from .series import plot_bias_panel

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
