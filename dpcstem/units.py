"""Every map that leaves the library: its unit and its label, in one table.

Result files (HDF5 attribute ``units``), HyperSpy signals (axis and ``Signal.quantity``) and
figures (colour-bar labels) all read the unit and label of a named map here.

Examples
--------
>>> unit_of("field_x"), label_of("field_x")
('V/m', 'Field x')
>>> unit_of("net_charge_density")
'C/m^3'
>>> QUANTITY_BY_UNIT["C/m^3"]
'charge density'
"""

from __future__ import annotations

#: Map name → (unit, label). Units as written to files: ``^`` for powers, ``*`` for products.
QUANTITIES = {
    "deflection": ("mrad", "Deflection"),
    "deflection_x": ("mrad", "Deflection x"),
    "deflection_y": ("mrad", "Deflection y"),
    "field": ("V/m", "Field"),
    "field_x": ("V/m", "Field x"),
    "field_y": ("V/m", "Field y"),
    "charge_density": ("C/m^3", "Charge density"),
    "free_charge_density": ("C/m^3", "Free charge density"),
    "potential": ("V", "Potential"),
    "projected_potential": ("V*nm", "Projected potential"),
    "valid": ("1", "Valid"),
    "intensity": ("counts", "Intensity"),
    "segment_sum": ("counts", "Segment sum"),
    "com_x": ("px", "Centre of mass x"),
    "com_y": ("px", "Centre of mass y"),
    "curl": ("1/m^2*V", "Curl"),
}

#: Unit → the kind of quantity it measures (figure labels: "charge density (×10⁶ C/m³)").
QUANTITY_BY_UNIT = {
    "V/m": "electric field",
    "C/m^3": "charge density",
    "e/nm^3": "charge density",
    "C/m^2": "areal charge",
    "e/nm^2": "areal charge",
    "V": "potential",
    "V*nm": "projected potential",
    "mrad": "deflection",
}

_NET = "net_"
_UNCERTAINTY = "_uncertainty"


def _base(name):
    """The table entry behind a derived name: ``net_field_x`` and ``field_x_uncertainty`` are ``field_x``."""
    if name.startswith(_NET):
        name = name[len(_NET):]
    if name.endswith(_UNCERTAINTY):
        name = name[: -len(_UNCERTAINTY)]
    return name


def unit_of(name, default="") -> str:
    """The unit of a named map (``default`` for a name the table does not hold)."""
    entry = QUANTITIES.get(_base(name))
    return default if entry is None else entry[0]


def label_of(name) -> str:
    """The label of a named map ("Net field x" for ``net_field_x``); the name itself when unknown."""
    entry = QUANTITIES.get(_base(name))
    if entry is None:
        return name
    label = entry[1]
    if name.startswith(_NET):
        label = "Net " + label[0].lower() + label[1:]
    if name.endswith(_UNCERTAINTY):
        label += " uncertainty"
    return label
