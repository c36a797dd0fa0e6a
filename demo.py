"""The main job: SAMP's four training stages on the synthetic city, then a results table.

    python demo.py                         # configs/demo.yaml; re-running continues where it stopped
    python demo.py --config configs/vigor_same_area.yaml   # the real thing (needs data, weights, time)

Generates the synthetic city (VIGOR's formats) if missing, trains E_1a -> E_1b, E_1a -> E_2_1
-> E_2_2 -> E_3, evaluates the last checkpoint of each stage on the test split, and prints
retrieval and localization results next to the chance and tile-centre baselines.
"""
if __name__ == "__main__":  # a Ctrl-C while TensorFlow loads: one line, exit 130 (utils/startup.py)
    from utils.startup import begin
    begin()

from utils.reproducible import pin_numerics

PINNED = pin_numerics()   # before TensorFlow, numpy and OpenCV load: the same numbers on every x86-64 machine

import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

import train_first_E_1  # noqa: E402
import train_second_E_2_1  # noqa: E402
import train_second_E_2_2  # noqa: E402
import train_third_E_3  # noqa: E402
from utils.session import checkpoints as ckpt  # noqa: E402
from utils.config import load_config, stage_argument_parser  # noqa: E402
from utils.evaluation.report import evaluate_outputs  # noqa: E402
from utils.config import resolve_path  # noqa: E402
from utils.data.splits import load_splits  # noqa: E402
from utils.data.synthetic_vigor import read_difficulty  # noqa: E402
from utils.evaluation import calibration, claims  # noqa: E402
from utils.training.stage import stage_dir  # noqa: E402
from utils.training.trainer import run_stage  # noqa: E402

STAGES = [train_first_E_1.E_1a, train_first_E_1.E_1b, train_second_E_2_1.E_2_1,
          train_second_E_2_2.E_2_2, train_third_E_3.E_3]


def evaluate_stage(cfg, stage, out_root):
    from utils.evaluation.inference import compute_outputs
    stage_name = stage.name
    _, path = ckpt.last_epoch_checkpoint(stage_dir(cfg, stage_name))
    outputs = compute_outputs(cfg, path, network=stage.network.__name__, progress=False)
    test, out_dir = outputs["index"], os.path.join(out_root, stage_name)
    results = evaluate_outputs(test, outputs["sat_desc"], outputs["grd_desc"], offsets=outputs.get("offsets"),
                               offsets_positive=outputs.get("offsets_positive"), sigma=outputs.get("sigma"),
                               heatmaps=outputs.get("heatmaps"), out_dir=out_dir, name=f"SAMP {stage_name}",
                               found=outputs["retrieval"], skipped=outputs["skips"])
    known = read_difficulty(resolve_path(cfg.data.root), test.grd_paths)
    if "calibration" in results and known is not None and "fine_errors" in _per_query(out_dir):
        per_query = _per_query(out_dir)
        results["difficulty"] = calibration.difficulty_report(per_query["uncertainty"], per_query["fine_errors"],
                                                              known)
        with open(os.path.join(out_dir, "difficulty.json"), "w") as f:
            json.dump(results["difficulty"], f, indent=1)
    return results


def _per_query(out_dir):
    with np.load(os.path.join(out_dir, "per_query.npz")) as data:
        return dict(data)


def baseline_rows(cfg, out_root):
    """Chance: random descriptors, each panorama placed at the centre of its top-1 tile."""
    _, test = load_splits(cfg)
    rng = np.random.default_rng(0)
    sat = rng.normal(size=(len(test.sat_paths), 16)).astype(np.float32)
    grd = rng.normal(size=(len(test.grd_paths), 16)).astype(np.float32)
    sat /= np.linalg.norm(sat, axis=1, keepdims=True)
    grd /= np.linalg.norm(grd, axis=1, keepdims=True)
    return evaluate_outputs(test, sat, grd, out_dir=os.path.join(out_root, "chance"), name="chance")


def table(rows):
    """One markdown row per result: retrieval (%), then localization (m)."""
    lines = ["| result | top-1 | top-5 | top-1% | hit | top-1 tile: median m | <50 m | "
             "true tile: mean m | median m | tile centre: mean m |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    pct = lambda v: "-" if v is None else f"{100 * v:.1f}"  # noqa: E731
    num = lambda v: "-" if v is None else f"{v:.1f}"  # noqa: E731
    for name, r in rows:
        ret, loc = r.get("retrieval", {}), r.get("localization", {})
        fine, centre = r.get("fine_localization", {}), r.get("positive_tile_centre", {})
        lines.append(f"| {name} | {pct(ret.get('top1'))} | {pct(ret.get('top5'))} | {pct(ret.get('top1_percent'))}"
                     f" | {pct(ret.get('hit_rate'))} | {num(loc.get('median'))} | {pct(loc.get('within', {}).get('50'))}"
                     f" | {num(fine.get('mean'))} | {num(fine.get('median'))} | {num(centre.get('mean'))} |")
    return "\n".join(lines)


def main(argv=None):
    parser = stage_argument_parser(__doc__)
    parser.add_argument("--skip-training", action="store_true", help="only evaluate existing checkpoints")
    args = parser.parse_args(argv)
    cfg = load_config(args.config, args.overrides)
    started = time.time()
    timings = {}
    if not args.skip_training:
        for stage in STAGES:
            t0 = time.time()
            print(f"== {stage.name}", flush=True)
            run_stage(stage, cfg, resume=True)
            timings[stage.name] = time.time() - t0
    out_root = os.path.join(cfg.runs_dir if os.path.isabs(cfg.runs_dir) else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), cfg.runs_dir), cfg.experiment, "evaluation")
    rows = [("chance (random descriptors)", baseline_rows(cfg, out_root))]
    for stage in STAGES:
        print(f"== evaluating {stage.name}", flush=True)
        rows.append((stage.name, evaluate_stage(cfg, stage, out_root)))
    by_stage = dict(rows[1:])
    text = "\n\n".join(part for part in (
        table(rows), claims.uncertainty_table(by_stage), claims.difficulty_table(by_stage),
        claims.side_by_side(by_stage), claims.checks_table(claims.checks(by_stage))) if part)
    print()
    print(text)
    total = time.time() - started
    print(f"\ntraining time per stage (s): {json.dumps({k: round(v, 1) for k, v in timings.items()})}; "
          f"total {total:.0f} s")
    with open(os.path.join(out_root, "summary.md"), "w") as f:
        f.write(text + "\n")
    print(f"results: {out_root}/summary.md, per-stage results.json, results.md and plots")
    return 0


if __name__ == "__main__":
    from utils.cli import run
    sys.exit(run(main))
