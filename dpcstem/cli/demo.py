"""``dpcstem demo``: simulate an acquisition with a known answer, reconstruct it, compare."""

from __future__ import annotations

from pathlib import Path


def add_parser(subparsers):
    p = subparsers.add_parser("demo", help="simulate a space-charge layer, reconstruct it, print true vs recovered",
                              description="Simulate a four-segment acquisition of a space-charge layer with "
                                          "counting noise, reconstruct it, and compare with the truth.")
    p.add_argument("--out", type=Path, default=Path("demo_output"), metavar="DIR",
                   help="folder for the demo's files (default: ./demo_output)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.set_defaults(run=run)


def run(args):
    import numpy as np

    from ..calibration import Calibration
    from ..io import write_result
    from ..reconstruct import reconstruct
    from ..simulate import MottSchottky, deflection_from_truth, layer_truth, segments_from_deflection

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    cal = Calibration(kv=200, alpha_mrad=1.0, step_x_nm=1.0, thickness_nm=131)
    layer = MottSchottky(density_per_m3=5e25, eps_r=12, potential_drop_v=1.0, sheet_nm=2.0)
    truth = layer_truth(layer, (96, 160), 1.0, normal_deg=0)
    tx, ty = deflection_from_truth(truth, cal.kv, cal.thickness_nm)
    segments = segments_from_deflection(tx, ty, cal, dose=2e5, rng=rng, dtype=np.uint16)
    np.save(out / "segments.npy", segments)
    result = reconstruct(segments, cal)
    path = write_result(out / "result.h5", result.maps(), cal.to_attrs(), inputs=[out / "segments.npy"],
                        overwrite=True)
    profile_true = truth.field_x.mean(axis=0)
    profile = np.nanmean(result.field_x, axis=0)
    k = int(np.argmax(np.abs(profile_true)))
    print(f"peak field   true {profile_true[k]:.4g} V/m   recovered {profile[k]:.4g} V/m")
    print(f"layer width  true {layer.width_nm:.3g} nm")
    print(f"wrote {out / 'segments.npy'} and {path}")
    return 0
