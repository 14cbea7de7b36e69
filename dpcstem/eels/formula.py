"""Chemical formulas: the atoms of a formula unit and the effective atomic number of Malis et al. (1988).

References
----------
T. Malis, S. C. Cheng, R. F. Egerton, "EELS log-ratio technique for specimen-thickness
measurement in the TEM", J. Electron Microsc. Tech. 8 (1988) 193–200,
doi:10.1002/jemt.1060080206.
"""

from __future__ import annotations

import math
import re

import numpy as np

from ..errors import CalibrationError

#: Element symbols in order of atomic number (Z = index + 1).
_ELEMENTS = (
    "H He Li Be B C N O F Ne Na Mg Al Si P S Cl Ar K Ca Sc Ti V Cr Mn Fe Co Ni Cu Zn Ga Ge As Se "
    "Br Kr Rb Sr Y Zr Nb Mo Tc Ru Rh Pd Ag Cd In Sn Sb Te I Xe Cs Ba La Ce Pr Nd Pm Sm Eu Gd Tb "
    "Dy Ho Er Tm Yb Lu Hf Ta W Re Os Ir Pt Au Hg Tl Pb Bi Po At Rn Fr Ra Ac Th Pa U Np Pu Am Cm "
    "Bk Cf Es Fm Md No Lr Rf Db Sg Bh Hs Mt Ds Rg Cn Nh Fl Mc Lv Ts Og"
).split()
_ATOMIC_NUMBER = {symbol: z for z, symbol in enumerate(_ELEMENTS, start=1)}

FORMULA_HELP = "give a chemical formula such as 'LiCoO2', 'Li6PS5Cl' or 'LiNi0.8Mn0.1Co0.1O2'"
_TOKEN = re.compile(r"([A-Z][a-z]?)|(\d+\.?\d*|\.\d+)|([()\[\]])")


def parse_formula(formula: str) -> dict[str, float]:
    """Atoms of each element in a chemical formula.

    Parameters
    ----------
    formula : str
        A chemical formula: element symbols each followed by an optional count (integer
        or decimal), with parentheses or brackets for groups, e.g. ``"LiCoO2"``,
        ``"Li6PS5Cl"``, ``"Ca(OH)2"``, ``"LiNi0.8Mn0.1Co0.1O2"``. Spaces are ignored.

    Returns
    -------
    dict
        element symbol → number of atoms in the formula unit (float), in order of first
        appearance.

    Raises
    ------
    CalibrationError
        For an empty formula, an unknown element symbol, unbalanced brackets, a zero count
        or any other character.

    Examples
    --------
    >>> parse_formula("Li6PS5Cl")
    {'Li': 6.0, 'P': 1.0, 'S': 5.0, 'Cl': 1.0}
    """
    if not isinstance(formula, str):
        raise CalibrationError(f"composition must be a chemical formula (text), got {formula!r}; {FORMULA_HELP}")
    text = "".join(formula.split())
    if not text:
        raise CalibrationError(f"composition {formula!r} is empty; {FORMULA_HELP}")
    tokens = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise CalibrationError(
                f"composition {formula!r}: unexpected character {text[pos]!r} at position {pos}; {FORMULA_HELP}")
        tokens.append((m.lastindex, m.group(), pos))
        pos = m.end()

    stack: list[dict[str, float]] = [{}]
    closers: list[str] = []
    i = 0
    while i < len(tokens):
        kind, value, at = tokens[i]
        i += 1
        count = 1.0
        if i < len(tokens) and tokens[i][0] == 2:
            count = float(tokens[i][1])
            i += 1
            if count <= 0:
                raise CalibrationError(
                    f"composition {formula!r}: the count after {value!r} must be positive, got 0; {FORMULA_HELP}")
        if kind == 1:
            if value not in _ATOMIC_NUMBER:
                raise CalibrationError(
                    f"composition {formula!r}: unknown element symbol {value!r} at position {at}; {FORMULA_HELP}")
            stack[-1][value] = stack[-1].get(value, 0.0) + count
        elif kind == 2:
            raise CalibrationError(
                f"composition {formula!r}: a number at position {at} follows no element or group; {FORMULA_HELP}")
        elif value in "([":
            if count != 1.0:
                raise CalibrationError(
                    f"composition {formula!r}: a number at position {at + 1} follows an opening bracket; {FORMULA_HELP}")
            stack.append({})
            closers.append(")" if value == "(" else "]")
        else:
            if not closers or closers.pop() != value:
                raise CalibrationError(
                    f"composition {formula!r}: unbalanced {value!r} at position {at}; {FORMULA_HELP}")
            group = stack.pop()
            if not group:
                raise CalibrationError(f"composition {formula!r}: empty group before position {at}; {FORMULA_HELP}")
            for symbol, n in group.items():
                stack[-1][symbol] = stack[-1].get(symbol, 0.0) + n * count
    if closers:
        raise CalibrationError(f"composition {formula!r}: a bracket is not closed; {FORMULA_HELP}")
    if not stack[0]:
        raise CalibrationError(f"composition {formula!r} names no element; {FORMULA_HELP}")
    return stack[0]


def effective_atomic_number(composition) -> float:
    """Effective atomic number Z_eff of a compound, weighted as Malis et al. (1988).

    Parameters
    ----------
    composition : str or mapping
        A chemical formula (see :func:`parse_formula`) or a mapping element symbol →
        number of atoms (any normalisation).

    Returns
    -------
    float
        Z_eff = Σ f_i Z_i^1.3 / Σ f_i Z_i^0.3 with f_i the atomic fractions (13.65 for LiCoO2).
    """
    atoms = parse_formula(composition) if isinstance(composition, str) else dict(composition)
    if not atoms:
        raise CalibrationError(f"composition {composition!r} names no element; {FORMULA_HELP}")
    z = []
    n = []
    for symbol, count in atoms.items():
        if symbol not in _ATOMIC_NUMBER:
            raise CalibrationError(f"composition: unknown element symbol {symbol!r}; {FORMULA_HELP}")
        count = float(count)
        if not math.isfinite(count) or count <= 0:
            raise CalibrationError(f"composition: the number of {symbol} atoms must be positive, got {count!r}")
        z.append(_ATOMIC_NUMBER[symbol])
        n.append(count)
    z = np.asarray(z, dtype=float)
    f = np.asarray(n) / np.sum(n)
    return float(np.sum(f * z**1.3) / np.sum(f * z**0.3))
