"""The inverse response as a table: shift (u, v) on a regular grid of difference signals.

Every response the reconstruction inverts (exact, empirical) is an :class:`InverseTable`;
its bilinear lookup is the one the fused kernel runs per pixel
(:func:`dpcstem.kernels.deflection_table`, held to :meth:`InverseTable.lookup` by a test),
and its Jacobian carries the counting noise into the deflection (:mod:`dpcstem.noise`).

A cell whose four corners are not all finite gives NaN: such signals are refused, by the
kernel and here alike; so is a signal outside the grid.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Points per axis of the inverse lookup table in difference-signal space.
TABLE_SIZE = 257


@dataclass(frozen=True)
class InverseTable:
    """The inverse response on a regular grid of difference signals.

    ``u[i, j]`` and ``v[i, j]`` are the shifts (units of α, detector frame) whose signals are
    ``dA = origin + j·step`` and ``dB = origin + i·step``; NaN where no shift below
    :data:`dpcstem.response.geometry.S_MAX` gives those signals.

    Examples
    --------
    >>> grid = np.linspace(-1, 1, 3)
    >>> table = InverseTable(u=np.tile(grid, (3, 1)), v=np.tile(grid[:, None], (1, 3)), origin=-1.0, step=1.0,
    ...                      name="identity")
    >>> [float(x) for x in table.lookup(0.25, -0.5)]
    [0.25, -0.5]
    >>> [float(x) for x in table.lookup(1.5, 0.0)]
    [nan, nan]
    """

    u: np.ndarray
    v: np.ndarray
    origin: float
    step: float
    name: str

    def interpolate(self, grids, d_a, d_b):
        """Bilinear interpolation of each of ``grids`` (on this table's grid) at signals (d_a, d_b).

        NaN outside the grid and where a corner of the cell is NaN: exactly the kernel's rule.
        """
        n = self.u.shape[0]
        fj = (np.asarray(d_a, float) - self.origin) / self.step
        fi = (np.asarray(d_b, float) - self.origin) / self.step
        outside = ~((fj >= 0) & (fi >= 0) & (fj < n - 1) & (fi < n - 1))
        fj, fi = np.where(outside, 0.0, fj), np.where(outside, 0.0, fi)
        j, i = fj.astype(int), fi.astype(int)
        wx, wy = fj - j, fi - i

        def at(t):
            return (1 - wy) * ((1 - wx) * t[i, j] + wx * t[i, j + 1]) + wy * ((1 - wx) * t[i + 1, j] + wx * t[i + 1, j + 1])

        return tuple(np.where(outside, np.nan, at(t)) for t in grids)

    def lookup(self, d_a, d_b):
        """Shift (u, v) at signals (d_a, d_b) by bilinear interpolation, as the kernel does it; NaN outside."""
        return self.interpolate((self.u, self.v), d_a, d_b)

    def jacobian(self, d_a, d_b):
        """∂(u, v)/∂(dA, dB) at the signals, shape (2, 2, ...): [[du/dA, du/dB], [dv/dA, dv/dB]].

        The table's derivatives (central differences where both neighbours are finite,
        one-sided otherwise) interpolated like :meth:`lookup`: NaN where it gives NaN.
        """
        grids = [_derivative(t, self.step, axis) for t in (self.u, self.v) for axis in (1, 0)]
        du_da, du_db, dv_da, dv_db = self.interpolate(grids, d_a, d_b)
        return np.array([[du_da, du_db], [dv_da, dv_db]])


def _derivative(t, step, axis):
    """Central difference along ``axis`` where both neighbours are finite, one-sided otherwise."""
    t = np.moveaxis(t, axis, 0)
    out = np.full(t.shape, np.nan)
    out[1:-1] = (t[2:] - t[:-2]) / (2 * step)
    forward = np.full(t.shape, np.nan)
    forward[:-1] = (t[1:] - t[:-1]) / step
    backward = np.full(t.shape, np.nan)
    backward[1:] = (t[1:] - t[:-1]) / step
    out = np.where(np.isfinite(out), out, np.where(np.isfinite(forward), forward, backward))
    return np.moveaxis(out, 0, axis)


@dataclass(frozen=True)
class InversePolynomial:
    """The inverse response near the centre as one polynomial, for a response symmetric under
    A ↔ C and A ↔ B: u = dA·P(dA², dB²), v = dB·P(dB², dA²) where dA² + dB² < ``reach``².

    ``coefficients`` multiply the terms of :data:`dpcstem.kernels.segments.POLY_TERMS` (a basis
    of the polynomials of total degree ≤ 6); ``shift_reach`` is the shift (units of α) the fit
    covered, every signal inside ``reach`` coming from a shift inside it; ``max_error`` the
    largest |Δ(u, v)| (units of α) from the exact inverse measured over it when it was fitted.
    Beyond ``reach`` the kernel reads the table.
    """

    coefficients: np.ndarray
    reach: float
    shift_reach: float
    max_error: float

    def kernel_coefficients(self) -> tuple:
        """The coefficients as the kernel takes them (a tuple of float32)."""
        return tuple(np.float32(c) for c in self.coefficients)

    def evaluate(self, d_a, d_b):
        """(u, v) at signals (d_a, d_b) by the polynomial, NaN outside ``reach`` (float64 here)."""
        d_a, d_b = np.broadcast_arrays(np.asarray(d_a, float), np.asarray(d_b, float))
        x, y = d_a * d_a, d_b * d_b
        inside = x + y < self.reach**2
        u = d_a * polynomial_value(self.coefficients, x, y)
        v = d_b * polynomial_value(self.coefficients, y, x)
        return np.where(inside, u, np.nan), np.where(inside, v, np.nan)


def polynomial_value(coefficients, x, y):
    """Σ c_k (x − y)^k (x + y)^a (x·y)^b over the terms (k, a, b) of
    :data:`dpcstem.kernels.segments.POLY_TERMS` (NumPy arrays x and y, float64)."""
    from ..kernels.segments import POLY_TERMS

    return sum(c * (x - y) ** k * (x + y) ** a * (x * y) ** b for c, (k, a, b) in zip(coefficients, POLY_TERMS))
