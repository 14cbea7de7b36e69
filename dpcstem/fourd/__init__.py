"""Pixelated 4D-STEM: centre of mass and virtual segments, then deflection, field and charge.

Split by purpose, as LiberTEM's centre-of-mass analysis is:

- :mod:`~dpcstem.fourd.masks`: the detector masks (a disc or annulus, four quadrants);
- :mod:`~dpcstem.fourd.engine`: the accumulation, every frame reduced in one pass to its
  masked intensity, first moments and virtual-segment sums, from memory, HDF5 or Dask;
- :mod:`~dpcstem.fourd.reading`: the blocks of frames brought into memory for it, read (and
  a file hashed) on other threads while the block before is reduced;
- :mod:`~dpcstem.fourd.com`: pure post-processing of those sums: angular pixel size,
  descan, rotation into the scan frame, and the reconstruction.

The public names of masks, engine and com are re-exported here.
"""

from .com import bright_field_disc, deflection_from_com, mrad_per_px, reconstruct_com
from .engine import BLOCK_BYTES, PROGRESS_FRAMES, FrameSums, centre_of_mass, frame_sums, virtual_segments
from .masks import disc_mask, quadrant_labels

__all__ = ["BLOCK_BYTES", "PROGRESS_FRAMES", "FrameSums", "bright_field_disc", "centre_of_mass",
           "deflection_from_com", "disc_mask", "frame_sums", "mrad_per_px", "quadrant_labels", "reconstruct_com",
           "virtual_segments"]
