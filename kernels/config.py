"""Settings every kernel shares.

``FASTMATH`` allows reassociation (vectorised sums), contraction into fused multiply-adds,
reciprocal approximations and fast library functions, but not ``nnan`` or ``ninf``:
detectors have dead pixels, and the kernels must still see NaN and inf.

Numba's OpenMP threads wait for the next parallel kernel asleep (``OMP_WAIT_POLICY=PASSIVE``)
unless the environment says otherwise: spinning waiters took the cores that the other
thread of a kernel needed on a machine shared with other processes, and a 32 MB reduction
of 4D frames took 16 ms instead of 3-4 ms (two cores, other processes using two thirds of
them). Waking a sleeping thread costs microseconds, against milliseconds per kernel. The
variable is read when the OpenMP library loads, at the first parallel kernel. Programs this
process starts should get the environment it was given: :data:`SET_ENVIRONMENT` names what was
set here, for them to leave out.
"""

import os

#: Environment variables set here (absent from the environment the process was given).
SET_ENVIRONMENT = () if "OMP_WAIT_POLICY" in os.environ else ("OMP_WAIT_POLICY",)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

#: The one fast-math flag set of the kernels (no ``nnan``/``ninf``: NaN and inf checks work).
FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}  # a set: numba takes no frozenset
