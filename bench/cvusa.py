"""SAFA on the synthetic CVUSA with SAFA's protocol: polar-transformed aerials against plain ones,
over several training seeds, reported as mean ± std of r@1, r@5, r@10, r@1% with chance and the goals.

    python bench/cvusa.py                              # seeds 0 1 2, configs/demo_cvusa.yaml
    python bench/cvusa.py --seeds 0 --set stages.SAFA.epochs=6 --experiment cvusa_short

Both arms train SAFA without mining (`train_first_E_1.py --part safa`) on the same synthetic CVUSA
(configs/demo_cvusa.yaml: generated on first use, the same for every seed); the seed varies the
initialisation and the batch order. polar: the aerial is polar-transformed (data.polar, SAFA's
transform) to the panorama's size; none: the aerial resized to a square of about as many pixels
(SAFA: 112 x 616 polar, 256 x 256 plain; here both at 2/7). Each run trains into
runs/<experiment>_<arm>_seed<N>/ (re-running continues where it stopped, and a finished run is
read back). The recalls are the trainer's validation at the last epoch on val-19zl.csv
(utils.evaluation.summaries.one_to_one_recalls). Chance: r@K of a random ranking, K / gallery.
Writes cvusa.json and cvusa.md to --out; not a test. Prints wall and CPU seconds (CPU: every thread of
the process, the better measure on a shared machine; on 2 quiet cores the wall time lies between
half of it and all of it).
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

import train_first_E_1  # noqa: E402
from utils.config import load_config  # noqa: E402
from utils.data.splits import load_splits  # noqa: E402
from utils.errors import DataError  # noqa: E402
from utils.evaluation.summaries import ONE_TO_ONE  # noqa: E402
from utils.training.trainer import run_stage  # noqa: E402

ARMS = {"polar": ["data.polar=true", "data.sat_size=[32, 176]"],
        "none": ["data.polar=false", "data.sat_size=[72, 72]"]}
GOAL_FACTOR = 10.0


def run_arm(args, arm, seed):
    """{r@K: percent} of one arm and seed (trained, or read back when finished), and seconds spent."""
    cfg = load_config(args.config, list(args.overrides) + ARMS[arm] + [
        f"seed={seed}", f"experiment={args.experiment}_{arm}_seed{seed}"])
    print(f"== {arm}, seed {seed}", flush=True)
    started, cpu = time.time(), time.process_time()
    records = run_stage(train_first_E_1.SAFA, cfg, resume=True, show_progress=args.progress)
    last = records[-1] if records else {}
    if ONE_TO_ONE[0] not in last:
        raise DataError(f"{cfg.experiment}: the last epoch has no validation (r@1); delete its last epoch "
                        f"folder and run the bench again")
    return {name: 100.0 * last[name] for name in ONE_TO_ONE}, (time.time() - started, time.process_time() - cpu)


def chance(cfg):
    """{r@K: percent} of a random ranking: K / gallery (r@1%: K = int(0.01 gallery), at least 1)."""
    gallery = len(load_splits(cfg)[1].sat_paths)
    ks = {"r@1": 1, "r@5": 5, "r@10": 10, "r@1%": max(1, int(0.01 * gallery))}
    return {name: 100.0 * min(k, gallery) / gallery for name, k in ks.items()}, gallery


def mean_std(values):
    return float(np.mean(values)), float(np.std(values))


def cell(pair):
    return f"{pair[0]:.2f} ± {pair[1]:.2f}"


def goals(per_seed, chance_r1):
    """[(goal, measured, wanted, met)]: each arm's r@1 against 10 x chance (on the means), and polar
    against none (the paired per-seed difference: met when its mean exceeds its spread)."""
    rows = []
    for arm in ARMS:
        r1 = float(np.mean([run[arm]["r@1"] for run in per_seed]))
        rows.append((f"{arm}: r@1 >= {GOAL_FACTOR:g} x chance", f"{r1:.2f}", f">= {GOAL_FACTOR * chance_r1:.2f}",
                     r1 >= GOAL_FACTOR * chance_r1))
    difference = mean_std([run["polar"]["r@1"] - run["none"]["r@1"] for run in per_seed])
    rows.append(("polar - none, r@1 (SAFA's claim: polar helps)", cell(difference), "> 0 beyond the seed spread",
                 difference[0] - difference[1] > 0))
    return rows


def markdown(per_seed, seeds, chance_row, gallery):
    lines = [f"SAFA on the synthetic CVUSA, {gallery} test pairs (gallery {gallery}); percent, mean ± std over "
             f"seeds {', '.join(map(str, seeds))}", "",
             "| aerial | " + " | ".join(ONE_TO_ONE) + " |", "|---|" + "---:|" * len(ONE_TO_ONE)]
    for arm in ARMS:
        lines.append(f"| {arm} | " + " | ".join(cell(mean_std([run[arm][k] for run in per_seed])) for k in ONE_TO_ONE)
                     + " |")
    lines.append("| chance (K / gallery) | " + " | ".join(f"{chance_row[k]:.2f}" for k in ONE_TO_ONE) + " |")
    lines += ["", "Per seed, r@1: " + "; ".join(
        f"{arm} " + ", ".join(f"{run[arm]['r@1']:.1f}" for run in per_seed) for arm in ARMS), "",
              "| goal | measured | goal | met |", "|---|---|---|---|"]
    lines += [f"| {g} | {measured} | {wanted} | {'yes' if met else 'NO'} |"
              for g, measured, wanted, met in goals(per_seed, chance_row["r@1"])]
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="configs/demo_cvusa.yaml")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--experiment", default="cvusa_bench")
    parser.add_argument("--out", default="runs/cvusa_bench")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--progress", action="store_true", help="show each run's tqdm bars")
    args = parser.parse_args(argv)
    started, cpu = time.time(), time.process_time()
    os.makedirs(args.out, exist_ok=True)
    chance_row, gallery = chance(load_config(args.config, list(args.overrides)))
    per_seed, seconds = [], {}
    for seed in args.seeds:
        run = {}
        for arm in ARMS:
            run[arm], seconds[f"{arm} seed {seed}"] = run_arm(args, arm, seed)
        per_seed.append(run)
    text = markdown(per_seed, args.seeds, chance_row, gallery)
    with open(os.path.join(args.out, "cvusa.json"), "w") as f:
        json.dump({"seeds": args.seeds, "config": args.config, "overrides": args.overrides, "arms": ARMS,
                   "gallery": gallery, "chance": chance_row, "per_seed": per_seed, "seconds": seconds}, f, indent=1)
    with open(os.path.join(args.out, "cvusa.md"), "w") as f:
        f.write(text)
    print(text)
    print(f"{time.time() - started:.0f} s wall, {time.process_time() - cpu:.0f} s CPU (all threads) for "
          f"{len(args.seeds)} seed(s) x {len(ARMS)} arms; runs (wall / CPU): "
          + ", ".join(f"{k} {wall:.0f} / {used:.0f} s" for k, (wall, used) in seconds.items()))
    return 0


if __name__ == "__main__":
    from utils.cli import run
    sys.exit(run(main))
