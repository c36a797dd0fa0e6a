"""Generate drone, satellite and street views of the synthetic city in University-1652's layout
(utils/data/synthetic_university1652.py says how).

    python -m tools.synthetic_university1652 --out data/synthetic_university1652 --seed 0 [--places 20]
        [--views 6] [--size 256] [--map-metres 800] [--meters-per-pixel 0.5] [--radius 180] [--fov 40]
        [--satellite-metres 160] [--streets 2]
"""
if __name__ == "__main__":  # a Ctrl-C while starting: one line, exit 130 (utils/startup.py)
    from utils.startup import begin
    begin()

import argparse
import sys
import time

from utils.data.synthetic_university1652 import generate


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--places", type=int, default=20, help="buildings (University-1652 has 1,652)")
    parser.add_argument("--views", type=int, default=6, help="drone views per place (University-1652 has 54)")
    parser.add_argument("--size", type=int, default=256, help="drone and satellite images are SIZE x SIZE")
    parser.add_argument("--map-metres", type=float, default=800.0, help="side of the city map")
    parser.add_argument("--meters-per-pixel", type=float, default=0.5)
    parser.add_argument("--radius", type=float, default=180.0, help="metres from the place to the drone's circle")
    parser.add_argument("--fov", type=float, default=40.0, help="drone camera's horizontal field of view, degrees")
    parser.add_argument("--satellite-metres", type=float, default=160.0, help="side of the satellite tile")
    parser.add_argument("--streets", type=int, default=2, help="street panoramas per place (and per test set)")
    args = parser.parse_args(argv)
    start = time.time()
    try:
        path = generate(args.out, progress=True, seed=args.seed, places=args.places, views=args.views,
                        size=args.size, map_metres=args.map_metres, meters_per_pixel=args.meters_per_pixel,
                        radius=args.radius, fov_deg=args.fov, satellite_metres=args.satellite_metres,
                        streets=args.streets)
    except ValueError as error:
        parser.error(str(error))
    print(f"wrote the synthetic University-1652 {path} in {time.time() - start:.1f} s")


if __name__ == "__main__":
    from utils.cli import run
    sys.exit(run(main, tensorflow=False, interrupted="interrupted: nothing was written (nothing half-written is kept)"))
