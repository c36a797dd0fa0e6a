"""Centred positives against VIGOR's: is a descriptor trained on windows centred on the panorama
(data.positives=centred, CVUSA's pairing) centre-sensitive enough to place the panorama inside its
tile by window search, where one trained on VIGOR's central-quarter positives is not?

    python bench/positives.py                                   # 64 px inputs, 1,000 E_1a steps each way
    python bench/positives.py --sizes 64 128 --easy-root data/synthetic_easy
    python bench/positives.py --variants centred --pooled positives_seed0 positives_seed1   # seeds' table, mean

For each input size, E_1a is trained twice on the easy city (bench/ladder.py's: none of the four
ambiguity sources, full overlap) with the same schedule (configs/demo.yaml's E_1a: lr 1e-4, 20
steps per epoch, batch 14, mining from epoch 2), once with data.positives=central (the original's)
and once with centred; finished runs are reused. Each last checkpoint is then measured on the
regular test split (VIGOR's labels; data.positives=central for both, so the numbers compare):
- window search (bench/window_search.py, the city's raster cut into tile-sized windows; stride and
  temperature chosen on held-out validation panoramas, then the uncertainty measure and its
  temperature, localize.fine_uncertainty): within-tile correlation of the predicted and true points
  (rows, cols), spread ratio, fine median against the tile-centre median, Spearman(uncertainty, error);
- retrieval top-1 of the test panoramas among the split's tiles (the tile whose central quarter
  holds the panorama is the hit, as the trainer's validation of the central run counts it).
Records go to <runs-dir>/<experiment>/positives.json (a re-run measures only what is missing, or the
window search again with --remeasure); a run's study time is its first pass's (training and measures).
Not a test.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from utils.reproducible import pin_numerics  # noqa: E402

pin_numerics()

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from bench.ladder import EASY_CITY, LARGE_INPUTS, train  # noqa: E402  (pins numerics too, before TensorFlow)
import train_first_E_1  # noqa: E402
from utils.cli import run  # noqa: E402
from utils.config import load_config, resolve_path  # noqa: E402
from utils.data.splits import build_loader, load_splits  # noqa: E402
from utils.errors import ConfigError  # noqa: E402
from utils.evaluation.inference import restore_network  # noqa: E402
from utils.evaluation.retrieval import validate_top_blocked  # noqa: E402
from utils.evaluation.scan import Scanner, descriptor_pass  # noqa: E402
from utils.session import checkpoints as ckpt  # noqa: E402
from utils.training.stage import stage_dir  # noqa: E402

VARIANTS = ("central", "centred")
INPUTS = {64: [], 128: LARGE_INPUTS}
GOAL_CORRELATION = 0.5
GOAL_FINE_OVER_CENTRE = 0.5
GOAL_SPEARMAN_ERROR = 0.4
GOAL_STUDY_MINUTES = 60


def variant_config(args, size, positives, extra=()):
    """The run's config: the easy city at `size` px, E_1a for `args.steps` steps, the given positives."""
    base = load_config(args.config, args.overrides)
    per_epoch = int(base.stages.E_1a.steps_per_epoch)
    epochs = -(-args.steps // per_epoch)
    overrides = list(args.overrides) + EASY_CITY + INPUTS[size] + [
        f"data.root={args.easy_root}", f"runs_dir={os.path.join(args.runs_dir, args.experiment)}",
        f"experiment=easy_{size}_{positives}", f"data.positives={positives}",
        f"stages.E_1a.epochs={epochs}", f"stages.E_1a.validate_every={epochs}", *extra]
    return load_config(args.config, overrides)


def retrieval(cfg, checkpoint):
    """validate_top's numbers of a SAFA checkpoint on cfg's test split."""
    _, test = load_splits(cfg, check_labels=False)
    network = restore_network(cfg, ckpt.checkpoint_prefix(checkpoint), "safa")
    try:
        scan = descriptor_pass(Scanner(network, build_loader(cfg, (test,)), test, int(cfg.validation.scan_batch),
                                       workers=int(cfg.data.workers), progress=True))
    finally:
        network.sess.close()
    top1_percent, top1, top5, hit = validate_top_blocked(scan.readable_grd, scan.readable_sat, scan.readable.labels)
    return {"top1": top1, "top5": top5, "top1_percent": top1_percent, "hit_rate": hit}


def window_search(cfg, checkpoint, out):
    """bench/window_search.py's measure of a checkpoint (its 'windows' summary and the chosen settings)."""
    try:
        from bench.window_search import STRIDES_PX, TEMPERATURES, measure_checkpoint
        from utils.localization.fine_windows import UNCERTAINTIES
    except ImportError as e:
        raise ConfigError(f"bench/window_search.py cannot be imported ({e}): this bench measures with it") from None
    results = measure_checkpoint(cfg, checkpoint, list(STRIDES_PX), list(TEMPERATURES), out, list(UNCERTAINTIES))
    return {**results["windows"], **results["chosen"], "uncertainty_validation": results["uncertainty_validation"],
            "uncertainty_test": results["uncertainty_test"]}


def measure_variant(args, size, positives, record):
    cfg = variant_config(args, size, positives)
    train(cfg, train_first_E_1.E_1a, record.setdefault("training", {}))
    epoch, checkpoint = ckpt.last_epoch_checkpoint(stage_dir(cfg, "E_1a"))
    record["checkpoint"], record["steps"] = checkpoint, epoch * int(cfg.stages.E_1a.steps_per_epoch)
    regular = variant_config(args, size, positives, ["data.positives=central"])   # VIGOR's labels for both
    if "retrieval" not in record:
        record["retrieval"] = retrieval(regular, checkpoint)
    if "windows" not in record or args.remeasure:
        started = time.time()
        record["windows"] = window_search(regular, checkpoint, os.path.join(stage_dir(cfg, "E_1a"), "window_search"))
        record["windows"]["seconds"] = time.time() - started
    trained = [r for r in _metrics(cfg) if "top1" in r]
    if trained:   # the trainer's validation: the regular split (central) or the centred windows (one-to-one)
        record["validation"] = {k: trained[-1][k] for k in ("top1", "r@1") if k in trained[-1]}


def _metrics(cfg):
    path = os.path.join(stage_dir(cfg, "E_1a"), "metrics.json")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return json.load(f)


def comparison_table(results):
    lines = ["| inputs | positives | E_1a steps | corr. rows | corr. cols | spread ratio | fine median m | "
             "centre median m | fine / centre | stride px, T | retrieval top-1, regular split | "
             "trainer's validation top-1 |", "|" + "---|" * 12]
    for name, r in results.items():
        w, v = r["windows"], r.get("validation", {})
        validation = (f"{100 * v['top1']:.1f} % ({'its windows' if r['positives'] == 'centred' else 'regular'})"
                      if v else "-")
        lines.append(f"| {r['inputs']} | {r['positives']} | {r['steps']} | {w['correlation_rows']:.3f} | "
                     f"{w['correlation_cols']:.3f} | {w['spread_ratio']:.3f} | {w['fine_median']:.2f} | "
                     f"{w['centre_median']:.2f} | {w['fine_median'] / w['centre_median']:.3f} | "
                     f"{w['stride_px']}, {w['temperature']:g} | {100 * r['retrieval']['top1']:.1f} % | {validation} |")
    return lines


def goal_rows(w, study_seconds=None):
    """(what, measured, goal, met) of one window-search record; the study's minutes when given."""
    ratio = w["fine_median"] / w["centre_median"]
    spearman = w.get("spearman_error")
    measure = w.get("uncertainty", "covariance")
    if w.get("uncertainty_temperature") is not None:
        measure += f" @ T {w['uncertainty_temperature']:g}"
    rows = [("correlation, rows", f"{w['correlation_rows']:.3f}", f">= {GOAL_CORRELATION}",
             w["correlation_rows"] >= GOAL_CORRELATION),
            ("correlation, cols", f"{w['correlation_cols']:.3f}", f">= {GOAL_CORRELATION}",
             w["correlation_cols"] >= GOAL_CORRELATION),
            ("fine median / centre median", f"{ratio:.3f}", f"<= {GOAL_FINE_OVER_CENTRE}",
             ratio <= GOAL_FINE_OVER_CENTRE),
            (f"Spearman(uncertainty, error) ({measure})", "-" if spearman is None else f"{spearman:.3f}",
             f">= {GOAL_SPEARMAN_ERROR}", spearman is not None and spearman >= GOAL_SPEARMAN_ERROR)]
    if study_seconds is not None:
        rows.append(("study time, min (training and measures)", f"{study_seconds / 60:.1f}",
                     f"<= {GOAL_STUDY_MINUTES}", study_seconds / 60 <= GOAL_STUDY_MINUTES))
    return rows


def goal_table(results):
    lines = ["| goal (window search, test split) | measured | goal | met |", "|---|---|---|---|"]
    for name, r in results.items():
        for what, value, goal, met in goal_rows(r["windows"], r.get("study_seconds")):
            lines.append(f"| {name}: {what} | {value} | {goal} | {'yes' if met else 'no'} |")
    return lines


def pooled_table(args):
    """Each experiment's (seed's) goal rows for the variants, and their mean (of the measured values)."""
    lines = ["| run | goal (window search, test split) | measured | goal | met |", "|---|---|---|---|---|"]
    keys = ("correlation_rows", "correlation_cols", "fine_over_centre", "spearman_error", "study_seconds")
    for size in args.sizes:
        for positives in args.variants:
            name, values = f"easy_{size}_{positives}", []
            for experiment in args.pooled:
                path = os.path.join(args.runs_dir, experiment, "positives.json")
                if not os.path.exists(path):
                    raise ConfigError(f"{path} does not exist: run the bench with --experiment {experiment} first")
                with open(path) as f:
                    r = json.load(f).get(name)
                if r is None or "windows" not in r:
                    raise ConfigError(f"{path} has no measured {name}: run the bench with --experiment {experiment}")
                w = r["windows"]
                values.append([w["correlation_rows"], w["correlation_cols"], w["fine_median"] / w["centre_median"],
                               w.get("spearman_error"), r.get("study_seconds")])
                for what, value, goal, met in goal_rows(w, r.get("study_seconds")):
                    lines.append(f"| {experiment}: {name} | {what} | {value} | {goal} | {'yes' if met else 'no'} |")
            mean = {k: None if any(v[i] is None for v in values) else float(np.mean([v[i] for v in values]))
                    for i, k in enumerate(keys)}
            minutes = None if mean["study_seconds"] is None else mean["study_seconds"] / 60
            for what, value, sign, goal in (
                    ("correlation, rows", mean["correlation_rows"], ">=", GOAL_CORRELATION),
                    ("correlation, cols", mean["correlation_cols"], ">=", GOAL_CORRELATION),
                    ("fine median / centre median", mean["fine_over_centre"], "<=", GOAL_FINE_OVER_CENTRE),
                    ("Spearman(uncertainty, error) (each run's measure)", mean["spearman_error"], ">=",
                     GOAL_SPEARMAN_ERROR),
                    ("study time, min", minutes, "<=", GOAL_STUDY_MINUTES)):
                shown = "-" if value is None else f"{value:.1f}" if what.endswith("min") else f"{value:.3f}"
                ok = value is not None and (value >= goal if sign == ">=" else value <= goal)
                lines.append(f"| mean of {len(values)}: {name} | {what} | {shown} | {sign} {goal} | "
                             f"{'yes' if ok else 'no'} |")
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=resolve_path("configs/demo.yaml"))
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--sizes", type=int, nargs="+", default=[64], choices=sorted(INPUTS),
                        help="satellite input side: 64 (64 x 64 / 64 x 128) or 128 (128 x 128 / 128 x 256)")
    parser.add_argument("--steps", type=int, default=1000, help="E_1a steps of each run")
    parser.add_argument("--easy-root", default="data/synthetic_easy",
                        help="the easy city (generated there if missing; centred windows are written into it)")
    parser.add_argument("--runs-dir", default="runs")
    parser.add_argument("--experiment", default="positives")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS,
                        help="which positives to train and measure (default: both)")
    parser.add_argument("--remeasure", action="store_true", help="measure the window search again (trained runs)")
    parser.add_argument("--pooled", nargs="+", metavar="EXPERIMENT",
                        help="print the goal table of these measured experiments (e.g. seeds) and their mean; no run")
    args = parser.parse_args(argv)
    if args.pooled:
        print("\n".join(pooled_table(args)))
        return 0
    path = os.path.join(args.runs_dir, args.experiment, "positives.json")
    results = {}
    if os.path.exists(path):
        with open(path) as f:
            results = json.load(f)
    for size in args.sizes:
        for positives in args.variants:
            name = f"easy_{size}_{positives}"
            record = results.setdefault(name, {"inputs": f"{size} x {size} / {size} x {2 * size}",
                                               "positives": positives})
            print(f"== {name}", flush=True)
            started = time.time()
            measure_variant(args, size, positives, record)
            record.setdefault("study_seconds", time.time() - started)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w") as f:
                json.dump(results, f, indent=1, default=float)
    print("\n".join(comparison_table(results) + ["", ""] + goal_table(results)))


if __name__ == "__main__":
    sys.exit(run(main))
