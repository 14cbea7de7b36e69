"""Per-segment gains from a vacuum reference scan."""

from __future__ import annotations

import numpy as np

from .. import _validate
from ..errors import InputDataError


def gains_from_vacuum(vacuum, *, offsets=None):
    """Per-segment gains from a vacuum reference (no specimen, beam undeflected on average).

    With the beam centred every segment collects the same area, so the mean of each segment
    over the vacuum scan, divided by the mean over segments, is its relative gain.

    Parameters
    ----------
    vacuum : array_like, shape (4, ny, nx) or (4,)
        Vacuum segment images (or their means), order A, B, C, D, in counts.
    offsets : array_like, shape (4,), optional
        Dark offsets to subtract first, in counts.

    Returns
    -------
    ndarray, shape (4,), float64
        Gains normalised to a mean of 1.
    """
    vac = np.asarray(vacuum, dtype=np.float64)
    if vac.ndim not in (1, 3) or vac.shape[0] != 4:
        raise InputDataError(f"a vacuum reference needs 4 segments (4, ny, nx), got shape {vac.shape}")
    means = np.nanmean(vac.reshape(4, -1), axis=1) - (0.0 if offsets is None else _validate.four("offsets", offsets))
    if not np.all(np.isfinite(means)) or np.any(means <= 0):
        raise InputDataError(f"vacuum reference segment means must be positive after offsets, got {means}")
    return means / means.mean()
