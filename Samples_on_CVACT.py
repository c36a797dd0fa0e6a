"""Re-sample CVACT's aerial images into VIGOR-style tiles, as SAMP's Samples_on_CVACT.py.

    python Samples_on_CVACT.py --cvact data/CVACT --out data/CVACT_resampled --seed 0

For every aerial image (1200 x 1200) four 600 x 600 crops: one with the camera inside the crop's
central quarter (positive), three with it outside (semi-positives), drawn with the original's
random scheme from numpy's RandomState(seed). Writes the original's centers.txt
(<out>/sampled_CVACT_dataset/) and a VIGOR-format tree that `configs/cvact.yaml` trains on:
<out>/CVACT/satellite/satellite_<lat>_<lng>.png (crops resized to 640, named by the crop centre's
GPS), <out>/CVACT/panorama/<id>,<lat>,<lng>,.jpg, <out>/splits/CVACT/ (satellite_list.txt,
same_area_balanced_train.txt from trainSet, same_area_balanced_test.txt from valSet,
pano_label_balanced.txt) and <out>/meters_per_pixel.json. See data/DATASET.md.
"""
import argparse
import sys
import time

from utils.data.cvact import CANBERRA_UTM_ZONE, DEFAULT_AERIAL_MPP, TILE, resample_cvact
from utils.errors import DataError


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cvact", required=True, help="CVACT folder: ACT_data.mat, [ANU_data_small/]satview_polish/, streetview/")
    parser.add_argument("--out", required=True, help="output folder (VIGOR-format tree)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--city", default="CVACT", help="name of the single 'city' of the tree")
    parser.add_argument("--aerial-mpp", type=float, default=DEFAULT_AERIAL_MPP,
                        help="metres per pixel of the 1200-px aerial images")
    parser.add_argument("--utm-zone", type=int, default=CANBERRA_UTM_ZONE)
    parser.add_argument("--northern", action="store_true", help="UTM coordinates are in the northern hemisphere")
    parser.add_argument("--panoramas", choices=("symlink", "copy", "hardlink"), default="symlink")
    parser.add_argument("--write-crops", action="store_true", help="also write the original's 600-px crops")
    parser.add_argument("--tile-size", type=int, default=TILE, help="side of the written tiles (640 as VIGOR)")
    parser.add_argument("--sat-ext", choices=("png", "jpg"), default="png")
    parser.add_argument("--on-bad-sample", choices=("error", "skip"), default="error")
    parser.add_argument("--limit", type=int, default=None, help="only the first N panoramas of the .mat")
    args = parser.parse_args(argv)
    start = time.time()
    try:
        summary = resample_cvact(args.cvact, args.out, seed=args.seed, city=args.city, aerial_mpp=args.aerial_mpp,
                                 utm_zone=args.utm_zone, south=not args.northern, panoramas=args.panoramas,
                                 write_crops=args.write_crops, tile_size=args.tile_size, sat_ext=args.sat_ext,
                                 on_bad_sample=args.on_bad_sample, limit=args.limit, progress=True)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"[cvact] {summary['panoramas']} panoramas ({summary['train']} train, {summary['test']} test), "
          f"{summary['tiles']} tiles, {len(summary['skipped'])} skipped, in {time.time() - start:.1f} s -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
