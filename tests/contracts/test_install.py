"""A real install: a wheel built from a clean copy of the checkout, installed without ``-e``.

The wheel is built from the files git tracks (what a clone holds), installed into a fresh
virtual environment (its dependencies reached through a ``.pth`` to this environment's
site-packages, so no network is needed), and ``dpcstem`` is run from a folder outside the
checkout: ``--help`` and a small reconstruction. Every package of the checkout
(``dpcstem/**/__init__.py`` and ``kernels/``) must be in the wheel.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]


def checkout_packages() -> set[str]:
    """Every package of the checkout, by its import name."""
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "dpcstem").rglob("__init__.py")
             if "__pycache__" not in p.parts}
    if (ROOT / "kernels" / "__init__.py").is_file():
        found.add("dpcstem.kernels")
    return found


def wheel_packages(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as archive:
        return {".".join(Path(name).parent.parts) for name in archive.namelist() if name.endswith("/__init__.py")}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """A wheel built from the tracked files of the checkout, copied to a folder of their own."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: the clean copy is made from the files git tracks")
    listing = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True)
    source = tmp_path_factory.mktemp("clean_copy")
    for name in listing.stdout.decode().split("\0"):
        if name and (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    dist = tmp_path_factory.mktemp("dist")
    build = subprocess.run([sys.executable, "-c", "import sys; from setuptools import build_meta; "
                            "print(build_meta.build_wheel(sys.argv[1]))", str(dist)],
                           cwd=source, capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr[-3000:]
    return dist / build.stdout.split()[-1]


def test_the_wheel_holds_every_package_of_the_checkout(wheel):
    missing = checkout_packages() - wheel_packages(wheel)
    assert not missing, f"packages missing from the wheel (list them in pyproject.toml): {sorted(missing)}"


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory):
    """A fresh virtual environment with the wheel installed (not editable); its bin folder."""
    env = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True, timeout=600)
    install = subprocess.run([sys.executable, "-m", "pip", "--python", str(env / "bin" / "python"), "install",
                              "--no-deps", "--no-index", "--quiet", str(wheel)], capture_output=True, text=True,
                             timeout=600)
    assert install.returncode == 0, install.stderr
    purelib = subprocess.run([str(env / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                             capture_output=True, text=True, check=True).stdout.strip()
    # The dependencies, from this environment; its editable dpcstem is not seen (a .pth in a folder
    # that a .pth adds is never read), and the installed wheel comes first on the path.
    Path(purelib, "dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    return env / "bin"


def _clean_env():
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}


def test_the_installed_command_runs_outside_the_checkout(installed, tmp_path):
    where = subprocess.run([str(installed / "python"), "-c", "import dpcstem, dpcstem.kernels; "
                            "print(dpcstem.__file__); print(dpcstem.kernels.__file__)"], cwd=tmp_path,
                           capture_output=True, text=True, env=_clean_env(), timeout=600)
    assert where.returncode == 0, where.stderr
    for line in where.stdout.split():
        assert Path(line).is_relative_to(installed.parent) and not Path(line).is_relative_to(ROOT), line

    helped = subprocess.run([str(installed / "dpcstem"), "--help"], cwd=tmp_path, capture_output=True, text=True,
                            env=_clean_env(), timeout=600)
    assert helped.returncode == 0, helped.stderr
    assert "reconstruct" in helped.stdout and "bias-series" in helped.stdout

    np.save(tmp_path / "seg.npy", np.random.default_rng(0).integers(3000, 3100, (4, 16, 16)).astype(np.uint16))
    run = subprocess.run([str(installed / "dpcstem"), "reconstruct", "seg.npy", "--kv", "200", "--alpha", "10",
                          "--step", "1", "--thickness", "100", "--collection", "0", "inf", "-o", "out.h5"],
                         cwd=tmp_path, capture_output=True,
                         text=True, env=_clean_env(), timeout=600)
    assert run.returncode == 0, run.stderr
    with h5py.File(tmp_path / "out.h5", "r") as f:
        assert f["deflection_x"].shape == (16, 16) and f.attrs["kv"] == 200.0
