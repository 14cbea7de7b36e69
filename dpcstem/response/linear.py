"""The first-order response: difference signals proportional to the shift."""

from __future__ import annotations

from dataclasses import dataclass

from .exact import QuadrantResponse


@dataclass(frozen=True)
class LinearResponse:
    """The first-order response dA = k·u, dB = k·v with the geometric slope k."""

    slope: float

    @property
    def name(self) -> str:
        return "linear"

    @classmethod
    def from_calibration(cls, calibration) -> "LinearResponse":
        return cls(QuadrantResponse.from_calibration(calibration).linear_slope)
