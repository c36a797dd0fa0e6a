"""Generate aerial/panorama pairs of the synthetic city in CVUSA's layout, as SAFA reads it
(utils/data/synthetic_cvusa.py says how).

    python -m tools.synthetic_cvusa --out data/synthetic_cvusa --seed 0 [--pairs 40] [--aerial-size 256]
        [--pano-width 616] [--meters-per-pixel 0.25] [--val-fraction 0.2] [--polar]
"""
if __name__ == "__main__":  # a Ctrl-C while starting: one line, exit 130 (utils/startup.py)
    from utils.startup import begin
    begin()

import argparse
import sys
import time

from utils.data.synthetic_cvusa import generate


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pairs", type=int, default=40, help="aerial/panorama pairs (CVUSA has 35,532 + 8,884)")
    parser.add_argument("--aerial-size", type=int, default=256, help="aerial images are SIZE x SIZE (CVUSA: 750)")
    parser.add_argument("--pano-width", type=int, default=616, help="panorama width; height is 224/1232 of it")
    parser.add_argument("--meters-per-pixel", type=float, default=0.25, help="of the map and the aerial images")
    parser.add_argument("--val-fraction", type=float, default=0.2, help="share of pairs in val-19zl.csv")
    parser.add_argument("--polar", action="store_true", help="also write SAFA's polarmap/19/<id>.png")
    args = parser.parse_args(argv)
    start = time.time()
    try:
        path = generate(args.out, seed=args.seed, pairs=args.pairs, aerial_size=args.aerial_size,
                        pano_width=args.pano_width, meters_per_pixel=args.meters_per_pixel,
                        val_fraction=args.val_fraction, polar=args.polar)
    except ValueError as error:
        parser.error(str(error))
    print(f"wrote the synthetic CVUSA {path} in {time.time() - start:.1f} s")


if __name__ == "__main__":
    from utils.cli import run
    sys.exit(run(main, tensorflow=False, interrupted="interrupted: nothing was written (nothing half-written is kept)"))
