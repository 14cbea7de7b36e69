"""dpcstem: quantitative differential-phase-contrast STEM.

Four-segment or pixelated acquisitions → beam deflection (mrad) → projected in-plane
electric field (V/m) → charge density (C/m³) and potential (V); for in-situ bias series,
the net field and net charge accumulation against a reference bias.
"""

__version__ = "0.1.0"

from .calibration import Calibration  # noqa: E402
from .errors import (  # noqa: E402
    CalibrationError,
    DPCError,
    InputDataError,
    MissingMetadataError,
    UnreadableFileError,
)
from .result import DPCResult  # noqa: E402

__all__ = [
    "Calibration",
    "CalibrationError",
    "DPCError",
    "DPCResult",
    "InputDataError",
    "MissingMetadataError",
    "UnreadableFileError",
    "__version__",
    "load_result",
]


def load_result(path):
    """A dpcstem result file as HyperSpy signals (:func:`dpcstem.io.signals.load_result`)."""
    from .io import load_result as load

    return load(path)
