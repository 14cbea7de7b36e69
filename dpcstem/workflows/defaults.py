"""Every default that can change a number, in one table (the source of ``docs/defaults.md``)."""

from __future__ import annotations

from dataclasses import dataclass

#: Largest field a result may hold without a warning, V/m (breakdown fields of solids are
#: below 1e10 V/m; 1e11 V/m is an atomic-scale field averaged over a whole column).
FIELD_LIMIT_V_PER_M = 1e11
@dataclass(frozen=True)
class Default:
    """One default that can change a number: what is assumed, how the user is told, how to override it."""

    quantity: str
    commands: str
    assumed: str
    told: str
    override: str


#: Every default that can change a number, for every command (the source of docs/defaults.md).
DEFAULTS = (
    Default("detector collection angles", "reconstruct, bias-series",
            "none: required wherever the file does not record them (a file that records only the inner angle "
            "gets no outer edge)",
            "refused (exit 2) naming --collection; an assumed outer edge is printed; "
            "collection_*_source stored",
            "--collection INNER OUTER (mrad); --collection 0 inf for no hole and no outer edge"),
    Default("detector rotation ψ", "reconstruct, bias-series, com",
            "0° (segment A, or the camera's +kx, along scan +x) when the file records none",
            "printed as assumed with the rms curl/div of the result and that of the best rotation; a warning "
            "when the best rotation leaves far less curl; detector_rotation_deg_source = default",
            "--detector-rotation DEG, or --fit-rotation"),
    Default("detector flip", "reconstruct, bias-series, com",
            "no flip when the file records none",
            "printed as assumed; flip_source = default", "--flip / --no-flip, or --fit-rotation"),
    Default("180° branch of a fitted rotation", "reconstruct, bias-series, com",
            "the branch whose charge density has a positive skew (compact positive charges); bias-series: on the "
            "reference acquisition, the rotation fitted there applied to all",
            "a warning with the skew and its significance; rotation_fit_polarity = skew",
            "--charge-sign-region X0 Y0 X1 Y1 {+,-}; bias-series also --biased-side {+,-} with --interface (the side "
            "whose potential the bias raises: the data cannot tell which electrode is biased)"),
    Default("descan", "reconstruct, bias-series, com",
            "none removed (segments: the detector centre is the undeflected beam; 4D: the median centre of "
            "mass over the scan, one constant, is the undeflected pattern centre)",
            "printed; com: a warning with its size in V/m where a robust plane across the scan stands out; "
            "descan_source = none",
            "--reference VACUUM (same scan and optics) or --descan-region X0 Y0 X1 Y1 (field-free, nm; bias-series: "
            "fitted once, on the reference acquisition)"),
    Default("segment dark offsets", "reconstruct, bias-series",
            "0 counts in every segment (no black level)",
            "printed; offsets_source = default", "--offsets A B C D (counts) or --dark FILE (beam blanked)"),
    Default("segment gains", "reconstruct, bias-series",
            "equal gains (1, 1, 1, 1)", "printed; gains_source = default", "--reference VACUUM"),
    Default("detector response", "reconstruct, bias-series",
            "exact geometric response of a rigid uniform disc", "stored as response",
            "--response linear or an empirical response file"),
    Default("convergence semi-angle α (4D)", "com",
            "the tilt series' α with --response; else the bright-field disc radius measured on the first frames "
            "times --mrad-per-px (a blurred or cut disc reads it wrong)",
            "printed; alpha_mrad_source = measured", "--alpha MRAD"),
    Default("detector response (4D)", "com",
            "none: the centre of mass is the deflection (a camera that cuts the pattern's halo unevenly reads low)",
            "stored as response (absent: none)", "--response FILE (dpcstem calibrate-response on a 4D tilt series)"),
    Default("charge density divergence", "reconstruct, bias-series, com",
            "finite differences", "stored as charge_method", "--charge-method spectral [--cutoff PER_NM]"),
    Default("potential zero", "reconstruct, bias-series, com",
            "the mean over the valid pixels is zero", "stored", "--potential-reference X0 Y0 X1 Y1"),
    Default("potential boundary", "reconstruct, bias-series, com",
            "mirror extension", "stored as potential_method", "--potential-method dct"),
    Default("reference bias", "bias-series", "0 V", "printed", "--reference-bias V, --reference-index K"),
    Default("registration", "bias-series",
            "measured on the simultaneous ADF image, else the segment sum, without the interface band where the "
            "detector's sum can show the layer (an inner hole or an outer edge within 2 alpha)",
            "printed per acquisition with its evidence; a warning when the evidence is weak",
            "--shift DY DX, --registration-image, --registration-exclude, --no-register"),
    Default("profile half-range", "reconstruct, bias-series, com",
            "reconstruct, com: the scan; bias-series: where the net field returns to noise, times 1.5",
            "printed; half_range_source stored", "--half-range NM"),
    Default("profile bin width", "bias-series",
            "the finest with no bin left empty (noise raises a noisy profile's peak field and areal charge)",
            "printed; profile_bin_source stored", "--bin NM"),
)


def defaults_markdown() -> str:
    """docs/defaults.md: :data:`DEFAULTS` as a Markdown table (a test keeps the file equal to it)."""
    lines = ["# Defaults that change a number", "",
             "Generated from `dpcstem.workflows.DEFAULTS` (a test checks this file against it). Every value a "
             "result depends on is stored in the result file with its source (`*_source`: `file`, `user`, "
             "`default`, `measured` or `fitted`); each default below is printed when it is used.", "",
             "Values outside physics are refused, naming the likely unit slip "
             "(`dpcstem.calibration.core.BOUNDS`): " + "; ".join(
                 f"{name} {low:g} to {high:g}" for name, (low, high, _) in _bounds().items())
             + f". A result with a field above {FIELD_LIMIT_V_PER_M:g} V/m is warned.", "",
             "| quantity | commands | assumed | how you are told | how to set it |",
             "|---|---|---|---|---|"]
    for d in DEFAULTS:
        lines.append(f"| {d.quantity} | {d.commands} | {d.assumed} | {d.told} | {d.override} |")
    return "\n".join(lines) + "\n"


def _bounds():
    from ..calibration.core import BOUNDS

    return {k: v for k, v in BOUNDS.items() if k != "step_y_nm"}
