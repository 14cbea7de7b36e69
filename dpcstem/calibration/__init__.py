"""The calibration of one acquisition and what is measured to make it.

- :mod:`~dpcstem.calibration.core`: the frozen :class:`Calibration` (optics, detector
  geometry, scan, specimen) with the one scan ↔ detector frame rotation
  (:meth:`Calibration.to_detector_frame`, :meth:`Calibration.to_scan_frame`);
- :mod:`~dpcstem.calibration.rotation`: detector rotation and flip from the data;
- :mod:`~dpcstem.calibration.descan`: the one robust descan fit;
- :mod:`~dpcstem.calibration.gains`: segment gains from a vacuum reference.
"""

from .core import SCALAR_FIELDS, Calibration

__all__ = ["SCALAR_FIELDS", "Calibration"]
