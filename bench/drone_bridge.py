"""The drone as the intermediate view: street -> satellite trained with and without the drone
branch as a bridge (University-1652's three-view training, model.bridge_view=drone), at the same
number of steps, over several training seeds, with University-1652's protocol on the test split.

    python bench/drone_bridge.py                        # 3 seeds, arms none and drone
    python bench/drone_bridge.py --arms none drone pull --set stages.U1652.epochs=60

Arms: `none` is street -> satellite as bench/drone.py trains it (two views); `drone` adds one
drone image of each row's building through the satellite's branch and the shared classifier,
its instance loss summed with the others (the baseline's three_view_net); `pull` is `drone` plus
stages.U1652.bridge_weight=1 (street and satellite descriptors pulled toward the drone's). Every
arm runs the same steps of the same batch size (8 rows); the bridge arms see 8 drone images
more per step (24 images against 16). The synthetic set and budget are bench/drone.py's
(DEFAULT_OVERRIDES); the seed varies initialisation, batch order and the drone drawn per row.
Each run trains into runs/<experiment>_<arm>_seed<N>/ (re-running continues where it stopped).
The paired difference is, per seed, the arm's figure minus the `none` arm's. Writes
drone_bridge.json and drone_bridge.md to --out; not a test. 38 min for the default (3 seeds, 2
arms) on the 2-core machine shared with other jobs (measured; docs/RESULTS.md).
"""
import os
import sys
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(BENCH))

from utils.reproducible import pin_numerics  # noqa: E402

pin_numerics()
sys.path.insert(0, BENCH)
from drone import DEFAULT_OVERRIDES  # noqa: E402  (bench/drone.py's set and budget)

import argparse  # noqa: E402
import json  # noqa: E402

import numpy as np  # noqa: E402

import train_university1652 as stage_script  # noqa: E402
from utils.config import load_config  # noqa: E402

ARMS = {"none": ["model.bridge_view=none"],
        "drone": ["model.bridge_view=drone"],
        "pull": ["model.bridge_view=drone", "stages.U1652.bridge_weight=1.0"]}
ARM_NAMES = {"none": "two views (no bridge)", "drone": "drone bridge (shared classifier)",
             "pull": "drone bridge + pull toward drone"}
TASKS = ("street -> satellite", "street -> satellite (multi-query)")
METRICS = ("R@1", "R@5", "R@10", "AP")


def run_arm(args, arm, seed):
    """({measure: value}, seconds) of one arm and seed."""
    cfg = load_config(args.config, DEFAULT_OVERRIDES + list(args.overrides) + ARMS[arm] + [
        f"seed={seed}", f"experiment={args.experiment}_{arm}_seed{seed}", "data.query_view=street"])
    print(f"== seed {seed}: {ARM_NAMES[arm]}", flush=True)
    started = time.time()
    _, table = stage_script.train_and_evaluate(cfg, resume=True, show_progress=False)
    results = {f"{task} {m}": table[task][m] for task in TASKS for m in METRICS}
    results["queries"] = table[TASKS[0]]["queries"]
    return results, time.time() - started


def mean_std(values):
    return float(np.mean(values)), float(np.std(values))


def summarise(per_seed, arms):
    """{arm: {measure: (mean, std)}} and {arm: {measure: (mean, std) of the per-seed difference to none}}."""
    summary = {arm: {name: mean_std([r[arm][name] for r in per_seed]) for name in per_seed[0][arm]} for arm in arms}
    paired = {arm: {name: mean_std([r[arm][name] - r["none"][name] for r in per_seed]) for name in per_seed[0][arm]}
              for arm in arms if arm != "none"}
    return summary, paired


def cell(pair, signed=False):
    mean, std = pair
    return f"{mean:+.2f} ± {std:.2f}" if signed else f"{mean:.2f} ± {std:.2f}"


def goals(per_seed, paired):
    """[(goal, measured, wanted, met)]: the change is measured, with its spread, for each bridge arm."""
    rows = []
    for arm, diff in paired.items():
        name = "street -> satellite R@1"
        changes = [r[arm][name] - r["none"][name] for r in per_seed]
        measured = (f"{cell(diff[name], signed=True)} points over {len(changes)} seeds "
                    f"({', '.join(f'{c:+.2f}' for c in changes)})")
        rows.append((f"{ARM_NAMES[arm]} changes street -> satellite R@1 by a measured amount with its seed spread",
                     measured, "measured, either sign, >= 3 seeds",
                     len(changes) >= 3 and all(np.isfinite(changes))))
    return rows


def markdown(summary, paired, per_seed, seeds, seconds):
    arms = list(summary)
    lines = [f"Street -> satellite, University-1652's protocol, percent, mean ± std over seeds "
             f"{', '.join(map(str, seeds))} ({int(per_seed[0]['none']['queries'])} street queries)", "",
             "| arm | task | " + " | ".join(METRICS) + " |", "|---|---|" + "---:|" * len(METRICS)]
    for arm in arms:
        for task in TASKS:
            lines.append(f"| {ARM_NAMES[arm]} | {task} | "
                         + " | ".join(cell(summary[arm][f"{task} {m}"]) for m in METRICS) + " |")
    lines += ["", "Paired difference to the two-view arm (per seed: arm minus none), points, mean ± std", "",
              "| arm | task | " + " | ".join(METRICS) + " |", "|---|---|" + "---:|" * len(METRICS)]
    for arm, diff in paired.items():
        for task in TASKS:
            lines.append(f"| {ARM_NAMES[arm]} | {task} | "
                         + " | ".join(cell(diff[f"{task} {m}"], signed=True) for m in METRICS) + " |")
    lines += ["", "Per seed, street -> satellite R@1", "", "| seed | " + " | ".join(ARM_NAMES[a] for a in arms) + " |",
              "|---:|" + "---:|" * len(arms)]
    for seed, r in zip(seeds, per_seed):
        lines.append(f"| {seed} | " + " | ".join(f"{r[a]['street -> satellite R@1']:.2f}" for a in arms) + " |")
    lines += ["", "Training and evaluation time per run, seconds (mean over seeds)", "",
              "| arm | images per step | seconds |", "|---|---:|---:|"]
    for arm in arms:
        lines.append(f"| {ARM_NAMES[arm]} | {16 if arm == 'none' else 24} | {np.mean(seconds[arm]):.0f} |")
    lines += ["", "Goals", "", "| goal | measured | goal | met |", "|---|---|---|---|"]
    lines += [f"| {g} | {measured} | {wanted} | {'yes' if met else 'NO'} |"
              for g, measured, wanted, met in goals(per_seed, paired)]
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="configs/demo_university1652.yaml")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--arms", nargs="+", default=["none", "drone"], choices=list(ARMS))
    parser.add_argument("--experiment", default="drone_bridge_bench")
    parser.add_argument("--out", default="runs/drone_bridge_bench")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    arms = ["none"] + [a for a in dict.fromkeys(args.arms) if a != "none"]
    started = time.time()
    os.makedirs(args.out, exist_ok=True)
    per_seed, seconds = [], {arm: [] for arm in arms}
    for seed in args.seeds:
        results = {}
        for arm in arms:
            results[arm], took = run_arm(args, arm, seed)
            seconds[arm].append(took)
        per_seed.append(results)
    summary, paired = summarise(per_seed, arms)
    text = markdown(summary, paired, per_seed, args.seeds, seconds)
    with open(os.path.join(args.out, "drone_bridge.json"), "w") as f:
        json.dump({"seeds": args.seeds, "arms": arms, "overrides": DEFAULT_OVERRIDES + args.overrides,
                   "summary": summary, "paired": paired, "per_seed": per_seed, "seconds": seconds}, f, indent=1)
    with open(os.path.join(args.out, "drone_bridge.md"), "w") as f:
        f.write(text)
    print(text)
    print(f"{time.time() - started:.0f} s for {len(args.seeds)} seed(s) and {len(arms)} arm(s)")
    return 0


if __name__ == "__main__":
    from utils.cli import run
    sys.exit(run(main))
