"""Numba kernels: arrays in, arrays out; no files, units or metadata.

Installed as ``dpcstem.kernels``; imports nothing from ``dpcstem``. Each kernel writes into
preallocated outputs and is held in the tests to a plain NumPy reference.
"""

from .derivatives import curl, divergence
from .segments import deflection_linear, deflection_table

__all__ = ["curl", "deflection_linear", "deflection_table", "divergence"]
