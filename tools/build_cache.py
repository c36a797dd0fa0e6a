"""Decode and resize every image of a config's splits once, into its resized image cache.

    python -m tools.build_cache --config configs/vigor_same_area.yaml [--set data.cache_dir=/fast/disk]

The loader then reads the stored pixels instead of decoding (data.use_cache; utils/data/cache_config.py).
Stopped (Ctrl-C, a kill, a full disk), the same command continues where it stopped.
"""
if __name__ == "__main__":  # a Ctrl-C while starting: one line, exit 130 (utils/startup.py)
    from utils.startup import begin
    begin()

import argparse
import os
import sys
import time

from utils import cli
from utils.config import REPO_ROOT, load_config

INTERRUPTED = "interrupted; the images stored so far are kept: run the same command again to continue"


def main(argv=None):
    from utils.data.cache_builder import CHUNK_IMAGES, build_for_config
    from utils.data.cache_config import cache_folder

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=os.path.join(REPO_ROOT, "configs", "default.yaml"), help="YAML config")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set data.root=/data/VIGOR (repeatable)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="decoding threads")
    parser.add_argument("--chunk-images", type=int, default=CHUNK_IMAGES,
                        help="images per chunk file (what a stop can lose)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    cfg = load_config(args.config, args.overrides)
    start = time.time()
    summary = build_for_config(cfg, workers=args.workers, chunk_images=args.chunk_images, progress=not args.quiet)
    if summary is None:
        print(f"[cache] {cache_folder(cfg)} is complete and current: nothing to do")
        return 0
    print(f"[cache] {summary['images']} images ({summary['reused']} kept from before, {summary['bad']} unreadable, "
          f"recorded as such), {summary['bytes'] / 2 ** 20:.1f} MiB, in {time.time() - start:.1f} s "
          f"-> {summary['folder']}")
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main, tensorflow=False, interrupted=INTERRUPTED))
