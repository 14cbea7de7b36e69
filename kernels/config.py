"""Settings every kernel shares.

``FASTMATH`` allows reassociation (vectorised sums), contraction into fused multiply-adds,
reciprocal approximations and fast library functions, but not ``nnan`` or ``ninf``:
detectors have dead pixels, and the kernels must still see NaN and inf.
"""

#: The one fast-math flag set of the kernels (no ``nnan``/``ninf``: NaN and inf checks work).
FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}  # a set: numba takes no frozenset
