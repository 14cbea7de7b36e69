#!/usr/bin/env bash
# Create validation/.venv/ (ignored by git) with abTEM from PyPI, for the scripts that
# make the multislice references (validation/make_*.py). abTEM pins its own NumPy, SciPy
# and Numba versions, so it lives in this environment of its own and is never a
# dependency of dpcstem: dpcstem's tests read the committed references and need no abTEM.
#
# Usage: bash validation/env.sh        (from anywhere; PYTHON=... to choose the interpreter)
set -eu
cd "$(dirname "$0")"
PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
VENV=.venv
test -x "$VENV/bin/python" || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet "abtem==1.0.11" h5py
"$VENV/bin/python" -m pip list 2>/dev/null | grep -iE '^(abtem|numpy|scipy|h5py|dask) '
