"""Reading acquisitions and writing results: the only place dpcstem touches files.

One module per file format (:mod:`~dpcstem.io.npy`, :mod:`~dpcstem.io.tiff`,
:mod:`~dpcstem.io.hdf5`, :mod:`~dpcstem.io.emd`, :mod:`~dpcstem.io.dm`,
:mod:`~dpcstem.io.image`, :mod:`~dpcstem.io.merlin`, :mod:`~dpcstem.io.blockfile`,
:mod:`~dpcstem.io.zspy`, :mod:`~dpcstem.io.raw`), found by suffix in
:mod:`~dpcstem.io.formats`, which also dispatches the writers. Front doors:
:mod:`~dpcstem.io.segments` (four-segment acquisitions), :mod:`~dpcstem.io.pixelated`
(4D-STEM frames, opened lazily), :mod:`~dpcstem.io.results` (the HDF5 result file), :mod:`~dpcstem.io.output` (how every
output is written: checks, temporary file, rename),
:mod:`~dpcstem.io.series` (a bias series' result, streamed),
:mod:`~dpcstem.io.signals` (HyperSpy signal types, pyxem). The names below are imported on first use
so that ``import dpcstem`` stays fast.
"""

import importlib

_WHERE = {
    "read_segments": "segments",
    "SegmentAcquisition": "segments",
    "read_spectrum": "spectra",
    "read_thickness_map": "results",
    "write_result": "results",
    "load_result_arrays": "results",
    "atomic_output": "output",
    "check_destination": "output",
    "hdf5_output": "output",
    "output_folder": "output",
    "output_group": "output",
    "write_figure": "output",
    "sha256_file": "results",
    "open_pixelated": "pixelated",
    "PixelatedData": "pixelated",
    "write_segments": "formats",
    "write_frames": "formats",
    "write_arrays": "formats",
    "load_result": "signals",
    "SeriesWriter": "series",
    "write_table": "series",
    "read_image": "series",
    "result_to_signals": "signals",
    "from_beam_shift": "signals",
}

__all__ = sorted(_WHERE)


def __getattr__(name):
    if name in _WHERE:
        module = importlib.import_module(f"{__name__}.{_WHERE[name]}")
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted({*globals(), *_WHERE})
