"""Every legacy baseline trained and evaluated from one command, at the demo's size on the demo
city: Siamese-VGG, SAFA without mining, SAFA + mining (E_1a) and VIGOR (E_1b, from E_1a).

    python bench/baselines.py                          # configs/demo.yaml's sizes and schedules
    python bench/baselines.py --set stages.SAFA.epochs=6 --experiment baselines_short

Each baseline trains into runs/<experiment>/<stage>/ (re-running continues where it stopped) and is
evaluated on the demo city's test split at its last epoch (the trainer's validation: top-1, top-5,
top-1 %, hit rate). Prints the table and `measured | goal | met`; writes baselines.json and
baselines.md to runs/<experiment>/. Not a test.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from utils.reproducible import pin_numerics  # noqa: E402

pin_numerics()

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402

import train_first_E_1  # noqa: E402
from utils.config import load_config, resolve_path  # noqa: E402
from utils.training.trainer import run_stage  # noqa: E402

# (baseline as VIGOR's paper names it, its stage, the command that trains it alone)
BASELINES = (
    ("Siamese-VGG", train_first_E_1.Siamese_VGG, "train_first_E_1.py --part siamese_vgg"),
    ("SAFA", train_first_E_1.SAFA, "train_first_E_1.py --part safa"),
    ("SAFA + mining", train_first_E_1.E_1a, "train_first_E_1.py --part a"),
    ("VIGOR", train_first_E_1.E_1b, "train_first_E_1.py --part b"),
)
METRICS = (("top-1", "top1"), ("top-5", "top5"), ("top-1%", "top1_percent"), ("hit", "hit_rate"))


def train_and_evaluate(cfg):
    """{baseline: its last epoch's record (with the test split's retrieval) and minutes}."""
    rows = {}
    for name, stage, _ in BASELINES:
        print(f"== {name} ({stage.name})", flush=True)
        start = time.time()
        records = run_stage(stage, cfg, resume=True)
        evaluated = [r for r in records if "top1" in r]
        rows[name] = {"stage": stage.name, "minutes": (time.time() - start) / 60,
                      **(evaluated[-1] if evaluated else {})}
    return rows


def tables(rows):
    head = ["baseline", "stage", "command", "epochs", *[label for label, _ in METRICS], "minutes"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, stage, command in BASELINES:
        r = rows[name]
        cells = [name, stage.name, f"`{command}`", str(r.get("epoch", "-"))]
        cells += ["-" if key not in r else f"{100 * r[key]:.1f}" for _, key in METRICS]
        lines.append("| " + " | ".join(cells + [f"{r['minutes']:.1f}"]) + " |")
    done = sum("top1" in r for r in rows.values())
    lines += ["", "| target | measured | goal | met |", "|---|---|---|---|",
              f"| baselines trained and evaluated from the one command | {done} of {len(BASELINES)} | "
              f"{len(BASELINES)} of {len(BASELINES)} | {'yes' if done == len(BASELINES) else 'no'} |"]
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/demo.yaml")
    parser.add_argument("--experiment", default="baselines_demo", help="runs/<experiment>/ (default: baselines_demo)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    cfg = load_config(args.config, [f"experiment={args.experiment}"] + args.overrides)
    start = time.time()
    rows = train_and_evaluate(cfg)
    table = tables(rows)
    print(f"\nLegacy baselines on the test split of {cfg.data.root} ({cfg.experiment}), "
          f"{(time.time() - start) / 60:.1f} min\n\n{table}")
    out = os.path.join(resolve_path(cfg.runs_dir), cfg.experiment)
    with open(os.path.join(out, "baselines.json"), "w") as handle:
        json.dump(rows, handle, indent=1)
    with open(os.path.join(out, "baselines.md"), "w") as handle:
        handle.write(table)
    return 0


if __name__ == "__main__":
    from utils.cli import run
    sys.exit(run(main))
