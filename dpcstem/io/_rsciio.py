"""Lazy reading through rosettasciio: Dask chunks of whole frames, about ``chunk_bytes`` each."""

from __future__ import annotations

import importlib

from ..errors import UnreadableFileError
from ._axes import beam_kv, from_axes
from ._common import PixelatedData


def whole_frames(read):
    """Read with Dask's automatic chunks, again with whole frames per chunk if those split a frame."""
    signal = read("auto")
    data = signal["data"]
    if hasattr(data, "chunks") and any(len(c) > 1 for c in data.chunks[-2:]):
        signal = read(("auto",) * (data.ndim - 2) + (-1, -1))
    return signal


def chunk_limit(chunk_bytes):
    """Context in which Dask's "auto" chunks hold about ``chunk_bytes`` bytes."""
    import dask

    return dask.config.set({"array.chunk-size": f"{int(chunk_bytes)}B"})


def open_lazy(kind, path, chunk_bytes, *, takes_chunks) -> PixelatedData:
    """Frames of a file that rosettasciio's ``kind`` reader opens lazily, with the calibration of its axes."""
    try:
        module = importlib.import_module(f"rsciio.{kind}")
    except ImportError as exc:
        raise UnreadableFileError(f"{path}: reading {path.suffix} files needs the package {exc.name!r} "
                                  f"(pip install {exc.name})") from None

    def read(chunks):
        with chunk_limit(chunk_bytes):
            return module.file_reader(str(path), lazy=True, **({"chunks": chunks} if takes_chunks else {}))[0]

    signal = whole_frames(read)
    calibration, mrad_per_px = from_axes(signal["axes"], beam_kv(signal.get("metadata", {})))
    return PixelatedData(signal["data"], path, kind, calibration, mrad_per_px,
                         metadata={"axes": signal["axes"], "metadata": signal.get("metadata", {})})
