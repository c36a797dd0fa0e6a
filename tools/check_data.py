"""Check a dataset before days of training: do the labels fit the resolution, do the images read?

    python -m tools.check_data --config configs/vigor_same_area_corrected.yaml [--images] [--out FILE]

Prints a markdown report (utils/data/check.py says what is measured); exit status 1 when the
configured resolution does not fit the labels or an image does not read. Loads no TensorFlow.
"""
if __name__ == "__main__":  # a Ctrl-C while starting: one line, exit 130 (utils/startup.py)
    from utils.startup import begin
    begin()

import argparse
import sys

from utils.config import load_config
from utils.data.check import dataset_report
from utils.data.splits import load_splits


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="the YAML config of the run to check")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--images", action="store_true", help="also check every image (reads them all)")
    parser.add_argument("--workers", type=int, default=4, help="threads for --images")
    parser.add_argument("--out", help="also write the report to this markdown file")
    args = parser.parse_args(argv)
    cfg = load_config(args.config, args.overrides)
    train, test = load_splits(cfg, check_labels=False)
    report, failed = dataset_report(args.config, cfg, train, test, images=args.images, workers=args.workers)
    print(report)
    if args.out:
        with open(args.out, "w") as handle:
            handle.write(report)
    return 1 if failed else 0


if __name__ == "__main__":
    from utils.cli import run
    sys.exit(run(main, tensorflow=False, interrupted="interrupted: the check did not finish"))
