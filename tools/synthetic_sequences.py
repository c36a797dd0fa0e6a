"""Held-out synthetic panoramas for localization (utils/data/synthetic_sequences.py says how).

    python -m tools.synthetic_sequences --root data/synthetic [--per-city 8] [--length 4] [--spacing 5]
        [--seed 0] [--folder sequences] [--validation-per-tile 0]
"""
if __name__ == "__main__":  # a Ctrl-C while starting: one line, exit 130 (utils/startup.py)
    from utils.startup import begin
    begin()

import argparse
import sys

from utils.data.synthetic_sequences import SEQUENCE_DIR, write_sequences, write_validation_panoramas


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", required=True, help="a synthetic dataset (python -m tools.synthetic_city)")
    parser.add_argument("--per-city", type=int, default=8)
    parser.add_argument("--length", type=int, default=4, help="panoramas per sequence")
    parser.add_argument("--spacing", type=float, default=5.0, help="metres between neighbours")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--folder", default=SEQUENCE_DIR, help="written under each city's folder")
    parser.add_argument("--validation-per-tile", type=float, default=0.0,
                        help="also write this many validation panoramas per tile into <city>/validation/")
    args = parser.parse_args(argv)
    write_sequences(args.root, args.per_city, args.length, args.spacing, args.seed, progress=True, folder=args.folder)
    if args.validation_per_tile > 0:
        paths = write_validation_panoramas(args.root, args.validation_per_tile)
        print(f"[validation] {len(paths)} panoramas", flush=True)


if __name__ == "__main__":
    from utils.cli import run
    sys.exit(run(main, tensorflow=False, interrupted="interrupted: the panoramas written so far are kept"))
