"""Generate SAR and optical tiles of the synthetic city in SpaceNet 6's layout
(utils/data/synthetic_spacenet6.py and utils/data/synthetic_sar.py say how).

    python -m tools.synthetic_spacenet6 --out data/synthetic_spacenet6 --seed 0 [--tiles-per-side 3]
        [--tile-px 128] [--meters-per-pixel 0.5] [--incidence 35] [--looks 4] [--sensor-side north]
"""
if __name__ == "__main__":  # a Ctrl-C while starting: one line, exit 130 (utils/startup.py)
    from utils.startup import begin
    begin()

import argparse
import sys
import time

from utils.data.synthetic_spacenet6 import generate


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tiles-per-side", type=int, default=3)
    parser.add_argument("--tile-px", type=int, default=128, help="tiles are PX x PX (SpaceNet 6: 900)")
    parser.add_argument("--meters-per-pixel", type=float, default=0.5)
    parser.add_argument("--incidence", type=float, default=35.0, help="degrees from the vertical")
    parser.add_argument("--looks", type=int, default=4, help="speckle looks (Gamma, mean 1, variance 1/looks)")
    parser.add_argument("--sensor-side", choices=("north", "south"), default="north")
    parser.add_argument("--margin", type=int, default=32, help="map pixels drawn around the tiles")
    args = parser.parse_args(argv)
    start = time.time()
    try:
        path = generate(args.out, seed=args.seed, tiles_per_side=args.tiles_per_side, tile_px=args.tile_px,
                        meters_per_pixel=args.meters_per_pixel, incidence_deg=args.incidence, looks=args.looks,
                        sensor_side=args.sensor_side, margin=args.margin)
    except ValueError as error:
        parser.error(str(error))
    print(f"wrote the synthetic SpaceNet 6 {path} in {time.time() - start:.1f} s")


if __name__ == "__main__":
    from utils.cli import run
    sys.exit(run(main, tensorflow=False, interrupted="interrupted: nothing was written (nothing half-written is kept)"))
