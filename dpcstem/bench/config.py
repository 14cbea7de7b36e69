"""Sizes and repeats of a benchmark run."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class BenchConfig:
    """Sizes and repeats of one benchmark run.

    Attributes
    ----------
    segment_sizes : tuple of int
        Side n of the (4, n, n) segment stacks (the largest is the headline, the others
        show how time scales with size).
    derivative_size, fourier_size : int
        Side of the (n, n) maps of the divergence/curl and of the Fourier benchmarks.
    com_scans : tuple of int
        Side s of the (s, s) scans of 4D frames (the largest is the headline, with peers).
    frame_size : int
        Side of each diffraction frame (pixels).
    bias_maps, bias_size : int
        Number and side of the segment maps of the bias-series benchmark.
    command_sizes : tuple of int
        Side n of the (4, n, n) acquisitions run through ``dpcstem reconstruct`` end to end
        (a subprocess of the real command line, from the file to the result file).
    com_command_scans : tuple of int
        Side s of the (s, s) scans of frames run through ``dpcstem com`` end to end from a
        ``.npy`` file, read cold; 0 stands for a file 5 % larger than the machine's memory.
    bandwidth_mib : int
        Size of the streaming-read array in MiB; each of the three triad arrays is half of it.
    repeats : int
        Timed calls after the warm-up; the Fourier benchmarks are timed ``slow_repeats``
        times, the bias series ``bias_repeats`` times, each peer ``peer_repeats`` times,
        each command ``command_repeats`` times.
    """

    segment_sizes: tuple = (1024, 2048, 4096)
    derivative_size: int = 4096
    fourier_size: int = 2048
    com_scans: tuple = (32, 64, 128)
    frame_size: int = 128
    bias_maps: int = 8
    bias_size: int = 2048
    command_sizes: tuple = (1024, 2048, 4096)
    com_command_scans: tuple = (128, 256, 0)
    bandwidth_mib: int = 1024
    repeats: int = 5
    slow_repeats: int = 3
    bias_repeats: int = 1
    peer_repeats: int = 3
    command_repeats: int = 1


#: The full benchmark (the README's table): n up to 4096, a 128×128 scan of 128×128 frames.
FULL = BenchConfig()

#: A few minutes on a two-core machine.
QUICK = BenchConfig(segment_sizes=(512, 1024), derivative_size=1024, fourier_size=512, com_scans=(32, 64),
                    bias_maps=8, bias_size=256, command_sizes=(1024, 2048), com_command_scans=(64, 128), bandwidth_mib=256, repeats=3,
                    slow_repeats=3, bias_repeats=1, peer_repeats=2, command_repeats=1)
