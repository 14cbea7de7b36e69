"""The peers (LiberTEM, py4DSTEM, pyxem) on the same 4D array, in their own environment.

They pin other versions of NumPy and friends than dpcstem, so they are never its
dependencies: ``benchmarks/peers_env.sh`` makes ``.venv-peers`` and ``benchmarks/peers.py``
runs there as a subprocess on a temporary ``.npy`` copy of the frames.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from ..kernels.config import SET_ENVIRONMENT

PEERS = ("libertem", "py4dstem", "pyxem")


def default_peers_python() -> Path:
    """``.venv-peers/bin/python`` at the top of the source tree (made by benchmarks/peers_env.sh)."""
    return Path(__file__).resolve().parents[2] / ".venv-peers" / "bin" / "python"


def _peers_script() -> Path:
    return Path(__file__).resolve().parents[2] / "benchmarks" / "peers.py"


def run_peers(frames, com_x, com_y, *, python, repeats, threads) -> dict:
    """Time the peers' centre of mass of ``frames`` (scan_y, scan_x, ky, kx) in their own venv.

    Returns ``{peer: {"median_s", "version", "max_diff_px", "how"} or {"error": "..."}}``;
    ``max_diff_px`` is the largest difference of the peer's centre of mass from dpcstem's.
    """
    python = Path(python)
    script = _peers_script()
    if not python.exists():
        return {p: {"error": f"not installed (no peers environment {python}; run benchmarks/peers_env.sh)"}
                for p in PEERS}
    if not script.exists():
        return {p: {"error": f"not installed ({script} not found: run from a source checkout)"} for p in PEERS}
    with tempfile.TemporaryDirectory(prefix="dpcstem-bench-") as tmp:
        path = Path(tmp) / "frames.npy"
        np.save(path, frames)
        out = Path(tmp) / "peers.json"
        # the peers run in the environment this process was given, not with dpcstem's kernel settings
        env = {k: v for k, v in os.environ.items() if k not in SET_ENVIRONMENT}
        proc = subprocess.run([str(python), str(script), str(path), "--repeats", str(repeats),
                               "--threads", str(threads), "--out", str(out)],
                              capture_output=True, text=True, check=False, env=env)
        if proc.returncode != 0 or not out.exists():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            return {p: {"error": f"peers.py failed (status {proc.returncode}): {tail[0]}"} for p in PEERS}
        report = json.loads(out.read_text())["peers"]
        scan = frames.shape[:2]
        for name, entry in report.items():
            npz = out.with_suffix(f".{name}.npz")
            if "error" not in entry and npz.exists():
                with np.load(npz) as got:
                    dx = np.nanmax(np.abs(got["com_x"].reshape(scan) - com_x.reshape(scan)))
                    dy = np.nanmax(np.abs(got["com_y"].reshape(scan) - com_y.reshape(scan)))
                entry["max_diff_px"] = float(max(dx, dy))
            entry.pop("times_s", None)
            entry.pop("detail", None)
    return report
