"""Generate the synthetic city in VIGOR's exact formats (utils/data/synthetic_vigor.py says how).

    python -m tools.synthetic_city --out data/synthetic --seed 0 [--cities 4] [--tiles-per-side 6]
        [--pano-size 256x128] [--panos-per-tile 1.5] [--meters-per-pixel 0.114] [--margin 256] [--detail 2]
"""
if __name__ == "__main__":  # a Ctrl-C while starting: one line, exit 130 (utils/startup.py)
    from utils.startup import begin
    begin()

import argparse
import sys
import time

from utils.data.synthetic_vigor import generate


def image_size(text):
    """'WIDTHxHEIGHT' -> (width, height)."""
    try:
        width, height = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not WIDTHxHEIGHT, e.g. 256x128") from None
    return width, height


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cities", type=int, default=4)
    parser.add_argument("--tiles-per-side", type=int, default=6)
    parser.add_argument("--pano-size", type=image_size, default=(256, 128), help="WIDTHxHEIGHT (2:1)")
    parser.add_argument("--panos-per-tile", type=float, default=1.5)
    parser.add_argument("--meters-per-pixel", type=float, default=0.114)
    parser.add_argument("--margin", type=int, default=256, help="map pixels drawn around the tile grid")
    parser.add_argument("--detail", type=int, default=2, choices=(1, 2, 4),
                        help="tile pixels per map pixel (1: full detail, slower)")
    args = parser.parse_args(argv)
    start = time.time()
    path = generate(args.out, seed=args.seed, cities=args.cities, tiles_per_side=args.tiles_per_side,
                    pano_size=args.pano_size, panos_per_tile=args.panos_per_tile,
                    meters_per_pixel=args.meters_per_pixel, margin=args.margin, detail=args.detail,
                    progress=True)
    print(f"wrote the synthetic city {path} in {time.time() - start:.1f} s")


if __name__ == "__main__":
    from utils.cli import run
    sys.exit(run(main, tensorflow=False, interrupted="interrupted: the city was not written (nothing half-written is kept)"))
