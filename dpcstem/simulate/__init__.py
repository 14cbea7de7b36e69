"""Synthetic acquisitions with their answer attached.

- :mod:`~dpcstem.simulate.layers`: space-charge layers (Mott–Schottky, Gouy–Chapman).
- :mod:`~dpcstem.simulate.maps`: truth maps on the scan grid.
- :mod:`~dpcstem.simulate.segments`: four-segment images through the exact detector response.
"""

from .layers import GouyChapman, LayerProfile, MottSchottky
from .maps import Truth, deflection_from_truth, interface_distance, layer_truth, uniform_field_truth
from .segments import segments_from_deflection

__all__ = [
    "GouyChapman",
    "LayerProfile",
    "MottSchottky",
    "Truth",
    "deflection_from_truth",
    "interface_distance",
    "layer_truth",
    "segments_from_deflection",
    "uniform_field_truth",
]
