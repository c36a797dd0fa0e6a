"""localize.py build on a large raster: wall time and peak memory. Run by `python -m bench.raster_build`.

Writes a synthetic 20,000 x 20,000 px 3-band GeoTIFF (8-bit, tiled 512 px, deflate; a cheap
pattern written one strip at a time, in a child process so that its memory is not counted) in
EPSG:3857 at 40 N, 0.09 Mercator m/px (0.069 ground m/px): build resamples it by averaging into
the azimuthal equidistant frame at 0.114 m/px (VIGOR's 640-px tiles of 73 m). The folder is
removed at the end. The raw raster is 1,200 MB: the goal is a peak RSS below that and below 1 GB,
which holds only if the raster is read window by window.
"""
import multiprocessing
import os
import resource
import shutil
import subprocess
import tempfile
import time

import numpy as np

SIDE = 20_000
STRIP = 512
MERCATOR_MPP = 0.09
GROUND_MPP = 0.114
GOAL_RSS_MB = 1000.0
WEST, NORTH = -8237642.3, 4865942.3        # 74 W, 40 N in EPSG:3857


def pattern(top, height, width):
    """(3, height, width) uint8: blocks and stripes that compress well and are cheap to make."""
    rows = np.arange(top, top + height)[:, None]
    cols = np.arange(width)[None, :]
    base = ((rows // 37 + cols // 53) % 7 * 30 + (rows + cols) % 11).astype(np.uint8)
    return np.stack([base, base // 2 + 40, 255 - base])


def write_raster(path, side):
    import rasterio
    from rasterio.transform import from_origin
    from rasterio.windows import Window
    profile = {"driver": "GTiff", "height": side, "width": side, "count": 3, "dtype": "uint8",
               "crs": "EPSG:3857", "transform": from_origin(WEST, NORTH, MERCATOR_MPP, MERCATOR_MPP),
               "tiled": True, "blockxsize": 512, "blockysize": 512, "compress": "deflate", "zlevel": 1,
               "photometric": "RGB"}
    with rasterio.open(path, "w", **profile) as dst:
        for top in range(0, side, STRIP):
            height = min(STRIP, side - top)
            dst.write(pattern(top, height, side), window=Window(0, top, side, height))


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0     # Linux: kilobytes


def commit():
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                          cwd=os.path.dirname(os.path.abspath(__file__)))
    return done.stdout.strip() or "unknown"


def main(side=SIDE):
    from utils.localization.database import build_database
    print(f"[bench] raster build, commit {commit()}; on a shared 2-core machine (other jobs running): "
          f"the wall time is indicative", flush=True)
    folder = tempfile.mkdtemp(prefix="raster_build_")
    try:
        raster = os.path.join(folder, "map.tif")
        started = time.time()
        writer = multiprocessing.get_context("spawn").Process(target=write_raster, args=(raster, side))
        writer.start()
        writer.join()
        if writer.exitcode != 0:
            raise SystemExit(f"writing {raster} failed (exit {writer.exitcode})")
        print(f"[bench] wrote {side:,} x {side:,} px ({os.path.getsize(raster) / 1e6:.0f} MB on disk, "
              f"{3 * side * side / 1e6:,.0f} MB raw) in {time.time() - started:.0f} s", flush=True)
        rss_before = peak_rss_mb()
        started = time.time()
        info = build_database(raster, os.path.join(folder, "db"), GROUND_MPP, progress=False)
        wall = time.time() - started
        rss = peak_rss_mb()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    grid = info["grid"]
    print(f"\nbuild: {info['tiles']} tiles of 640 px ({info['tile_ground_m']:.1f} m), grid {grid['size_px'][0]:,} x "
          f"{grid['size_px'][1]:,} px at {grid['ground_m_per_px']:.4g} m/px in {grid['crs'].split(' +')[0]} ..., "
          f"resampling {grid['resampling']} (x{grid['scale']:.2f}); {info['skipped_outside']} leaving the grid, "
          f"{info['skipped_nodata']} mostly nodata\n")
    print("| measure | measured | goal | met |")
    print("|---|---|---|---|")
    print(f"| peak RSS (ru_maxrss, whole process) | {rss:,.0f} MB (before build: {rss_before:,.0f} MB) | "
          f"< {GOAL_RSS_MB:,.0f} MB (raw raster {3 * side * side / 1e6:,.0f} MB) | "
          f"{'yes' if rss < GOAL_RSS_MB else 'NO'} |")
    print(f"| wall time of build_database | {wall:.0f} s | - (shared machine) | - |")


if __name__ == "__main__":
    main()
