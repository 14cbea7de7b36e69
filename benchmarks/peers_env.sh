#!/usr/bin/env bash
# Create .venv-peers/ (beside .venv/, ignored by git) with the peer packages the benchmark
# compares against: LiberTEM, py4DSTEM and pyxem, from PyPI. They pin other NumPy/SciPy
# versions than dpcstem, so they live in their own environment and are never dependencies
# of dpcstem; benchmarks/peers.py runs there as a subprocess.
#
# Usage: bash benchmarks/peers_env.sh        (from the repository root; PYTHON=... to choose)
# Each package is installed on its own, so one that fails to install leaves the others;
# the log of each attempt is kept in .venv-peers/install-<name>.log.
set -u
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
VENV=.venv-peers
test -x "$VENV/bin/python" || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
status=0
for pkg in libertem py4dstem pyxem; do
    if "$VENV/bin/python" -m pip install "$pkg" >"$VENV/install-$pkg.log" 2>&1; then
        echo "$pkg: installed"
    else
        echo "$pkg: FAILED to install (see $VENV/install-$pkg.log):"
        tail -n 5 "$VENV/install-$pkg.log" | sed 's/^/    /'
        status=1
    fi
done
"$VENV/bin/python" -m pip list 2>/dev/null | grep -iE '^(libertem|py4dstem|pyxem|numpy|numba|scipy) '
exit $status
