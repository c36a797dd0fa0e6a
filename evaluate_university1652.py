"""University-1652's protocol on a checkpoint of train_university1652.py: Recall@1/5/10, Recall@top1%
and AP for drone -> satellite, multi-query drone -> satellite and satellite -> drone
(utils/evaluation/university1652_tasks.py).

    python evaluate_university1652.py --checkpoint runs/university1652/U1652/120 --out DIR
        [--config configs/university1652.yaml]   (default: the config.yaml its run recorded)

Writes results.json, results.md and config.yaml to --out.
"""
if __name__ == "__main__":  # a Ctrl-C while TensorFlow loads: one line, exit 130 (utils/startup.py)
    from utils.startup import begin
    begin()

import argparse
import os
import sys

from utils.config import load_config
from utils.evaluation.university1652_tasks import evaluate_checkpoint
from utils.training.records import load_run_config, write_record


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="epoch folder (or prefix) of a U1652 run")
    parser.add_argument("--config", help="YAML config naming the dataset (default: the run's config.yaml)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--name", default="", help="label of this result in the table")
    parser.add_argument("--out", required=True, help="output folder")
    args = parser.parse_args(argv)
    cfg = load_config(args.config, args.overrides) if args.config else load_run_config(args.checkpoint, args.overrides)
    write_record(args.out, cfg)
    _, text = evaluate_checkpoint(cfg, args.checkpoint, args.out, name=args.name or os.path.normpath(args.checkpoint),
                                  progress=True)
    print(text)
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    from utils.cli import run
    sys.exit(run(main, interrupted="interrupted: --out may hold a part of its files; run the same command again"))
