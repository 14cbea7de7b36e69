"""The on-disk cache of the exact response's inverse tables (``$DPCSTEM_CACHE``, else the user's cache).

A table takes seconds to build and depends only on the detector geometry, so it is kept as
an ``.npz`` file named by that geometry and the version of the building method. The table
is built in :mod:`dpcstem.response.exact`; only the file is read and written here.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

#: Bumped whenever the way tables are built changes, so cached tables are rebuilt.
TABLE_VERSION = 2


def cache_path(inner, outer, size) -> Path:
    """Where the table of one geometry is cached: ``$DPCSTEM_CACHE``, else the user's cache folder."""
    root = os.environ.get("DPCSTEM_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "dpcstem")
    name = f"response_v{TABLE_VERSION}_{size}_{inner!r}_{outer!r}.npz".replace("inf", "infinite")
    return Path(root) / name


def load_table(path: Path):
    """The arrays (u, v, origin, step) cached at ``path``, or None where there is none or it is damaged."""
    if not path.is_file():
        return None
    try:
        with np.load(path) as f:
            return f["u"], f["v"], float(f["origin"]), float(f["step"])
    except (OSError, ValueError, KeyError):
        return None  # a damaged cache entry is rebuilt


def store_table(path: Path, table) -> None:
    """Cache ``table`` at ``path`` through a temporary file renamed into place; silently not where it cannot."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".table.", suffix=".npz", dir=path.parent)
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, u=table.u, v=table.v, origin=table.origin, step=table.step)
        os.replace(tmp, path)
    except OSError:
        pass  # no cache: the table is rebuilt next time
