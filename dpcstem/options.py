"""How a reconstruction is done: one frozen, validated set of options.

:class:`ReconstructionOptions` holds every choice that changes the numbers of a
reconstruction besides the calibration: the detector response, segment gains and offsets,
the descan fitted to a vacuum scan, and how the charge density and potential are computed.
It is checked when it is made, so a misspelt method or a negative cutoff is refused before
any kernel runs, and it travels whole through :func:`dpcstem.reconstruct.reconstruct`,
:func:`~dpcstem.reconstruct.reconstruct_deflection`, the 4D path and the bias series.

Examples
--------
>>> options = ReconstructionOptions(charge_method="spectral", cutoff=0.5)
>>> options.cutoff
0.5
>>> ReconstructionOptions(potential_method="fourier")
Traceback (most recent call last):
...
dpcstem.errors.CalibrationError: potential_method must be one of 'mirror', 'dct', 'periodic', got 'fourier'
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from . import _validate
from .errors import CalibrationError, InputDataError
from .calibration.descan import check_order
from .fourier import INTEGRATION_METHODS
from .response import RESPONSES
#: How the divergence of the field is taken.
CHARGE_METHODS = ("finite-difference", "spectral")
#: How the deflection is integrated to the potential (:func:`dpcstem.fourier.integrate_gradient`).
POTENTIAL_METHODS = INTEGRATION_METHODS


@dataclass(frozen=True, eq=False)
class ReconstructionOptions:
    """Every option of a reconstruction, validated when made.

    Parameters
    ----------
    response : {"exact", "linear"} or empirical response
        The detector response to invert: the exact geometric model (both axes together),
        its first-order slope, or an object with ``name`` and ``inverse_table()`` (an
        :class:`~dpcstem.response.empirical.EmpiricalResponse`).
    gains, offsets : array_like, shape (4,), optional
        Per-segment gain (positive) and dark offset, A, B, C, D: true counts =
        (raw − offset) / gain. Default: gains 1, offsets 0. A vacuum scan given to
        :func:`~dpcstem.reconstruct.reconstruct` replaces the gains.
    descan_order : {1, 2}
        Plane or quadratic descan fitted to a vacuum scan (when one is given).
    charge_method : {"finite-difference", "spectral"}
        Divergence by central differences that skip invalid neighbours, or by Fourier
        differentiation with a raised-cosine low-pass window falling to zero at ``cutoff``.
    cutoff : float, optional
        Low-pass cutoff of the spectral divergence in cycles/nm (None: no window).
    potential_method : {"mirror", "dct", "periodic"}
        Integration of the deflection (see :func:`dpcstem.fourier.integrate_gradient`).
    potential_reference : array_like of bool, shape (ny, nx), optional
        Region where the potential is zero (default: its mean over valid pixels is zero);
        its shape is checked against the scan when the scan is known.
    """

    response: object = "exact"
    gains: np.ndarray | None = None
    offsets: np.ndarray | None = None
    descan_order: int = 2
    charge_method: str = "finite-difference"
    cutoff: float | None = None
    potential_method: str = "mirror"
    potential_reference: np.ndarray | None = None

    def __post_init__(self):
        setv = lambda name, v: object.__setattr__(self, name, v)  # noqa: E731 (frozen)
        if (isinstance(self.response, str) and self.response not in RESPONSES) or (
                not isinstance(self.response, str) and not hasattr(self.response, "inverse_table")):
            raise CalibrationError(f"response must be one of {RESPONSES} or an empirical response, "
                                   f"got {self.response!r}")
        if self.gains is not None:
            setv("gains", _readonly(_validate.four("gains", self.gains, positive_only=True)))
        if self.offsets is not None:
            setv("offsets", _readonly(_validate.four("offsets", self.offsets)))
        setv("descan_order", check_order(self.descan_order))
        _validate.choice("charge_method", self.charge_method, CHARGE_METHODS)
        setv("cutoff", _validate.positive("cutoff", self.cutoff, allow_none=True,
                                          what="low-pass cutoff in cycles/nm"))
        _validate.choice("potential_method", self.potential_method, POTENTIAL_METHODS)
        if self.potential_reference is not None:
            reference = np.array(self.potential_reference)
            if reference.ndim != 2 or reference.dtype.kind not in "bui":
                raise InputDataError(f"potential_reference must be a boolean mask (ny, nx), got shape "
                                     f"{reference.shape} and dtype {reference.dtype}")
            setv("potential_reference", _readonly(reference.astype(bool)))

    def replace(self, **changes) -> "ReconstructionOptions":
        """A copy with some options changed, validated again."""
        return dataclasses.replace(self, **changes)

    def attrs(self) -> dict:
        """The options that change the numbers, for a result file's root attributes."""
        return {"charge_method": self.charge_method, "potential_method": self.potential_method,
                "lowpass_cutoff_per_nm": self.cutoff}


def _readonly(array):
    array.setflags(write=False)
    return array


def check_options(options) -> ReconstructionOptions:
    """``options`` itself, or the defaults for ``None``; anything else is refused, naming the parameter."""
    if options is None:
        return ReconstructionOptions()
    if not isinstance(options, ReconstructionOptions):
        raise CalibrationError(f"options must be a dpcstem.options.ReconstructionOptions, got "
                               f"{type(options).__name__} {options!r}")
    return options
