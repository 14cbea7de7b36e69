"""Detector masks for 4D-STEM frames: a disc (or annulus) and four virtual quadrant segments."""

from __future__ import annotations

import numpy as np

from ..errors import InputDataError


def disc_mask(frame_shape, centre_yx, radius_px, inner_radius_px=0.0) -> np.ndarray:
    """Boolean disc (or annulus) on the detector, shape ``frame_shape`` (ky, kx).

    Parameters
    ----------
    frame_shape : (int, int)
        Detector rows and columns.
    centre_yx : (float, float)
        Centre (row, column) in pixels.
    radius_px, inner_radius_px : float
        Outer and inner radius in pixels; pixels whose centre lies at a distance
        r with inner <= r <= outer are True.
    """
    ky, kx = (int(n) for n in frame_shape)
    if not radius_px > inner_radius_px >= 0:
        raise InputDataError(f"mask radii must satisfy outer > inner >= 0 (pixels), got outer {radius_px}, "
                             f"inner {inner_radius_px}")
    y, x = np.ogrid[:ky, :kx]
    r2 = (y - centre_yx[0]) ** 2 + (x - centre_yx[1]) ** 2
    mask = (r2 <= radius_px**2) & (r2 >= inner_radius_px**2)
    if not mask.any():
        raise InputDataError(f"the mask of radius {radius_px} px around {tuple(centre_yx)} holds no pixel of the "
                             f"{ky}x{kx} detector")
    return mask


def quadrant_labels(frame_shape, centre_yx, radius_px, inner_radius_px=0.0) -> np.ndarray:
    """Virtual four-segment detector: labels 1..4 = A, B, C, D, 0 outside, shape (ky, kx) uint8.

    Segment A is centred on the detector's +kx axis, B on +ky, C on −kx and D on −ky (each
    spans 90°; the pixel at the centre belongs to none). With the calibration's ``detector_rotation_deg`` and ``flip`` describing the
    detector's axes against the scan, these are the segments of DESIGN.md §2 and their sums
    can go to :func:`dpcstem.reconstruct.reconstruct`.
    """
    mask = disc_mask(frame_shape, centre_yx, radius_px, inner_radius_px)
    y, x = np.indices(mask.shape)
    dy = y - centre_yx[0]
    dx = x - centre_yx[1]
    # pixels on a diagonal go to the segment after them counter-clockwise (A keeps −45°, B +45°,
    # C 135°, D −135°), which keeps the four segments images of each other under 90° rotations
    labels = np.zeros(mask.shape, np.uint8)
    labels[(dx > 0) & (-dx <= dy) & (dy < dx)] = 1
    labels[(dy > 0) & (-dy < dx) & (dx <= dy)] = 2
    labels[(dx < 0) & (dx < dy) & (dy <= -dx)] = 3
    labels[(dy < 0) & (dy <= dx) & (dx < -dy)] = 4
    labels[~mask] = 0
    return labels


# -- the reduction engine -------------------------------------------------------------------
