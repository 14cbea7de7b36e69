"""Synthetic acquisitions with their answer attached.

- :mod:`~dpcstem.simulate.layers`: space-charge layers (Mott–Schottky, Gouy–Chapman) and
  their potential drop under bias.
- :mod:`~dpcstem.simulate.maps`: truth maps on the scan grid or at any positions.
- :mod:`~dpcstem.simulate.specimen`: mean-inner-potential step and thickness maps.
- :mod:`~dpcstem.simulate.probe`: the Airy probe and the probe-weighted deflection.
- :mod:`~dpcstem.simulate.blurred`: the segment response of a disc with a blurred edge.
- :mod:`~dpcstem.simulate.instrument`: descan, counting, gains and offsets, vacuum
  reference, tilt series.
- :mod:`~dpcstem.simulate.segments`: four-segment images through the detector response.
- :mod:`~dpcstem.simulate.series`: whole acquisitions and bias series with their truth.
- :mod:`~dpcstem.simulate.files`: a simulated series as files (through :mod:`dpcstem.io`).
- :mod:`~dpcstem.simulate.fourd`: pixelated 4D-STEM frames, written block by block.
"""

from .blurred import blurred_segment_areas
from .instrument import (
    Descan,
    TiltSeries,
    detect,
    simulate_tilt_series,
    simulate_vacuum,
)
from .layers import GouyChapman, LayerProfile, MottSchottky, layer_at_bias
from .maps import (
    Truth,
    UniformField,
    deflection_from_truth,
    interface_distance,
    layer_truth,
    layer_truth_at,
    uniform_field_truth,
)
from .probe import airy_first_zero_nm, airy_intensity, probe_kernel, probe_weighted
from .segments import segments_from_deflection
from .series import (
    DEFAULT_BIASES_V,
    Acquisition,
    SimulatedSeries,
    simulate_acquisition,
    simulate_bias_series,
)
from .specimen import MeanInnerPotential, StepThickness, UniformThickness, WedgeThickness

__all__ = [
    "DEFAULT_BIASES_V",
    "Acquisition",
    "Descan",
    "GouyChapman",
    "LayerProfile",
    "MeanInnerPotential",
    "MottSchottky",
    "SimulatedSeries",
    "StepThickness",
    "TiltSeries",
    "Truth",
    "UniformField",
    "UniformThickness",
    "WedgeThickness",
    "airy_first_zero_nm",
    "airy_intensity",
    "blurred_segment_areas",
    "deflection_from_truth",
    "detect",
    "interface_distance",
    "layer_at_bias",
    "layer_truth",
    "layer_truth_at",
    "probe_kernel",
    "probe_weighted",
    "segments_from_deflection",
    "simulate_acquisition",
    "simulate_bias_series",
    "simulate_tilt_series",
    "simulate_vacuum",
    "uniform_field_truth",
]
