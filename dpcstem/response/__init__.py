"""The detector response: what difference signals a beam shift gives, and its inverse.

- :mod:`~dpcstem.response.geometry`: the closed-form overlap of a shifted disc with the
  quadrant segments, and the one :func:`~dpcstem.response.geometry.difference_signals`;
- :mod:`~dpcstem.response.table`: the inverse table, its bilinear lookup and Jacobian;
- :mod:`~dpcstem.response.exact`, :mod:`~dpcstem.response.linear`,
  :mod:`~dpcstem.response.empirical`: the responses a reconstruction inverts.
"""

from __future__ import annotations

from ..errors import CalibrationError
from .exact import QuadrantResponse
from .linear import LinearResponse

#: Names of the geometric responses; an empirical response is given as an object.
RESPONSES = ("exact", "linear")


def response_model(response, calibration):
    """The response object for a name ("exact", "linear") or a given response (with ``inverse_table()``)."""
    if isinstance(response, str) and response == "exact":
        return QuadrantResponse.from_calibration(calibration)
    if isinstance(response, str) and response == "linear":
        return LinearResponse.from_calibration(calibration)
    if hasattr(response, "inverse_table"):
        return response
    raise CalibrationError(f"response must be one of {RESPONSES} or an empirical response, got {response!r}")


__all__ = ["RESPONSES", "LinearResponse", "QuadrantResponse", "response_model"]
