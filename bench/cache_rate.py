"""The resized image cache at VIGOR's real sizes: per-core rate with and without it, the waiting share
of a training loop, its size, and its two candidate formats. Run by `python -m bench.input_pipeline --cache`.

Images: one synthetic city re-encoded at VIGOR's sizes (2048 x 1024 JPEG panoramas, 640 x 640
PNG tiles, with pixel noise so that they cost what real photographs cost to decode), in a
temporary folder removed at the end. A sample is what E_1 feeds per panorama: the panorama, its
positive tile and a semi-positive tile.
"""
import glob
import os
import shutil
import tempfile
import time

import cv2
import numpy as np

from utils.config import load_config
from utils.data import synthetic_vigor as sv
from utils.data.cache_builder import build_for_config
from utils.data.pixel_codec import FIXED16, FIXED16_STEP
from utils.data.prefetch import ImageLoader, Prefetcher
from utils.data.sampler import make_batch
from utils.data.splits import build_loader, load_splits

VIGOR_PANORAMAS, VIGOR_TILES = 105_214, 90_618
E1_BATCH = 14                      # the paper's E_1 batch: 14 panoramas, 14 positives, 14 semi-positives
STEP_GFLOP = 1736                  # a batch-2 E_2_2 step, forward + backward
STEP_BATCH = 2
H100_TF32_DENSE_TFLOPS = 494.7     # H100 SXM, TF32 tensor cores, dense
GOAL_RATIO, GOAL_WAIT = 10.0, 0.05


def full_size_city(folder, tiles_per_side=8, panos_per_tile=1.0, seed=0):
    root = sv.generate(os.path.join(folder, "city"), seed=seed, cities=1, tiles_per_side=tiles_per_side,
                       pano_size=(256, 128), panos_per_tile=panos_per_tile, margin=128)
    rng = np.random.default_rng(seed)
    for pattern, size, params in (("panorama/*.jpg", (2048, 1024), [cv2.IMWRITE_JPEG_QUALITY, 90]),
                                  ("satellite/*.png", (640, 640), [cv2.IMWRITE_PNG_COMPRESSION, 1])):
        for path in glob.glob(os.path.join(root, "*", pattern)):
            big = cv2.resize(cv2.imread(path), size, interpolation=cv2.INTER_CUBIC)
            noisy = np.clip(big.astype(np.int16) + rng.integers(-12, 13, big.shape), 0, 255).astype(np.uint8)
            cv2.imwrite(path, noisy, params)
    return root


def e1_batches(index, count, seed=0):
    """E_1-sized batches of random panoramas with their positive and a semi-positive (no tile-sharing
    rule: the loading cost is the same, and a small city could not satisfy it)."""
    rng = np.random.default_rng(seed)
    return [make_batch(index, rng.choice(len(index), E1_BATCH), semi_choice=rng.integers(1, 4, E1_BATCH))
            for _ in range(count)]


def per_core_rate(loader, index, batches):
    """Samples per CPU-second with one worker (the process's CPU time, every thread)."""
    cpu = time.process_time()
    with Prefetcher(loader, index, iter(batches), workers=1, depth=2) as prefetch:
        for _ in prefetch:
            pass
    return sum(len(b) for b in batches) / (time.process_time() - cpu)


def waiting_share(loader, index, batches, step_s, workers=2):
    """Share of a training loop's wall time spent waiting for batches, the step being a sleep; from
    the first batch on (the wait for the first one is paid once per run, as the graph's start)."""
    with Prefetcher(loader, index, iter(batches), workers=workers, depth=4) as prefetch:
        next(prefetch)
        start, waited = time.perf_counter(), 0.0
        while True:
            time.sleep(step_s)
            t = time.perf_counter()
            if next(prefetch, None) is None:
                break
            waited += time.perf_counter() - t
    return waited / (time.perf_counter() - start)


def format_candidates(cache, paths, folder):
    """{name: (bytes per image, load ms per image)} of (a) the memory-mapped cache and (b) 16-bit
    lossless PNG of the same exact fixed-point values, for images stored as FIXED16."""
    os.makedirs(folder, exist_ok=True)
    memmap_bytes, memmap_s, png_bytes, png_s = [], 0.0, [], 0.0
    for n, path in enumerate(paths):
        kind, i = cache.where[os.path.normpath(path)]
        entries = cache.images[kind]
        if entries["codecs"][i] != FIXED16:
            continue
        shape = tuple(cache.settings["sat_size" if kind == "sat" else "grd_size"]) + (3,)
        dst = np.empty(shape, np.float32)
        t = time.perf_counter()
        cache.copy_into(dst, path)
        memmap_s += time.perf_counter() - t
        memmap_bytes.append(entries["nbytes"][i])
        png = os.path.join(folder, f"{n}.png")
        cv2.imwrite(png, np.round(dst / FIXED16_STEP).astype(np.uint16), [cv2.IMWRITE_PNG_COMPRESSION, 1])
        png_bytes.append(os.path.getsize(png))
        t = time.perf_counter()
        np.multiply(cv2.imread(png, cv2.IMREAD_UNCHANGED), FIXED16_STEP, out=dst)
        png_s += time.perf_counter() - t
    count = max(1, len(memmap_bytes))
    return {"(a) uint16 memory map": (np.mean(memmap_bytes), 1000 * memmap_s / count),
            "(b) 16-bit PNG": (np.mean(png_bytes), 1000 * png_s / count)}


def _config(root, folder, sat_size, grd_size):
    return load_config(None, [f"data.root={root}", "data.resolution=auto", "data.train_cities=[NewYork]",
                              "data.test_cities=[NewYork]", f"data.cache_dir={folder}", "data.sat_cache_mb=0",
                              f"data.sat_size=[{sat_size[0]},{sat_size[1]}]",
                              f"data.grd_size=[{grd_size[0]},{grd_size[1]}]"])


def run(sat_size=(320, 320), grd_size=(320, 640), batches=25, uncached_batches=4):
    folder = tempfile.mkdtemp(prefix="cache_rate_")
    try:
        print("[bench] writing a city at VIGOR's image sizes ...", flush=True)
        cfg = _config(full_size_city(folder), os.path.join(folder, "cache"), sat_size, grd_size)
        train, test = load_splits(cfg, check_labels=False)
        t = time.perf_counter()
        summary = build_for_config(cfg, workers=2, progress=False)
        build_s = time.perf_counter() - t
        cached = build_loader(cfg, (train, test))
        decoded = ImageLoader(sat_size, grd_size)
        work = e1_batches(train, batches)
        report(cfg, train, cached, decoded, work, work[:uncached_batches], summary, build_s, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def report(cfg, train, cached, decoded, work, few, summary, build_s, folder):
    rate_decoded = per_core_rate(decoded, train, few)
    rate_cached = per_core_rate(cached, train, work)
    waits = {step: waiting_share(cached, train, work, step / 1000) for step in (20, 100)}
    wait_decoded = waiting_share(decoded, train, few, 0.1)
    images = cached.resized.images
    per_grd = float(np.mean(images["grd"]["nbytes"]))
    per_sat = float(np.mean(images["sat"]["nbytes"]))
    formats = format_candidates(cached.resized, list(train.grd_paths[:8]) + list(train.sat_paths[:8]),
                                os.path.join(folder, "png"))

    print(f"\nresized image cache at VIGOR's image sizes (2048 x 1024 JPEG panoramas, 640 x 640 PNG tiles -> "
          f"grd {tuple(cfg.data.grd_size)}, sat {tuple(cfg.data.sat_size)}); {os.cpu_count()} cores; "
          f"2 vCPUs that scale like about one core\n")
    print(f"built: {summary['images']} images in {build_s:.1f} s on 2 threads "
          f"({1000 * build_s * 2 / summary['images']:.0f} core-ms per image)")
    print(f"samples/s per core (1 panorama + 2 tiles): decoding {rate_decoded:.1f}, cache {rate_cached:.1f} "
          f"({rate_cached / rate_decoded:.1f}x; the cache read from the page cache)")
    print(f"waiting share, E_1 batch ({E1_BATCH} + {E1_BATCH} + {E1_BATCH} images), 2 workers: cache "
          f"{100 * waits[20]:.1f} % at a 20 ms step, {100 * waits[100]:.1f} % at 100 ms; decoding "
          f"{100 * wait_decoded:.1f} % at 100 ms")
    step_ms = STEP_GFLOP / (H100_TF32_DENSE_TFLOPS / 3)     # GFLOP / (TFLOP/s) = ms
    print(f"GPU rate (ESTIMATE, not measured): a batch-{STEP_BATCH} E_2_2 step is {STEP_GFLOP:,} GFLOP (forward + backward); at a third "
          f"of an H100's dense TF32 peak, {H100_TF32_DENSE_TFLOPS} / 3 = {H100_TF32_DENSE_TFLOPS / 3:.0f} TFLOP/s, "
          f"that is {STEP_GFLOP:,} / {H100_TF32_DENSE_TFLOPS / 3:.0f} = {step_ms:.1f} ms; at 10-20 ms per step the "
          f"GPU takes {STEP_BATCH / 0.020:.0f}-{STEP_BATCH / 0.010:.0f} panoramas/s and "
          f"{2 * STEP_BATCH / 0.020:.0f}-{2 * STEP_BATCH / 0.010:.0f} tiles/s, i.e. "
          f"{STEP_BATCH / 0.020 / rate_cached:.2f}-{STEP_BATCH / 0.010 / rate_cached:.2f} cores with the cache, "
          f"{STEP_BATCH / 0.020 / rate_decoded:.1f}-{STEP_BATCH / 0.010 / rate_decoded:.1f} cores decoding")
    need_mb = STEP_BATCH / 0.020 * (per_grd + 2 * per_sat) / 1e6
    print(f"disk reads at 100 samples/s: {need_mb:.0f} MB/s (when the cache is larger than the page cache)")
    print("\ncandidate formats (exact values, at the sizes above)")
    for name, (size, ms) in formats.items():
        print(f"  {name:<24}{size / 1e6:>8.3f} MB/image {ms:>8.2f} ms/image load")
    per_10k_grd, per_10k_sat = 1e4 * per_grd / 1e9, 1e4 * per_sat / 1e9
    vigor = (VIGOR_PANORAMAS * per_grd + VIGOR_TILES * per_sat) / 1e9
    size_text = f"{per_10k_grd:.1f} GB/10k panoramas, {per_10k_sat:.1f} GB/10k tiles, VIGOR {vigor:.0f} GB"
    ratio = rate_cached / rate_decoded
    rows = [("per-core rate, cache / decoding", f"{ratio:.1f}x", f">= {GOAL_RATIO:.0f}x", ratio >= GOAL_RATIO),
            ("waiting share, 100 ms step, E_1, 2 cores", f"{100 * waits[100]:.1f} %", f"<= {100 * GOAL_WAIT:.0f} %",
             waits[100] <= GOAL_WAIT),
            ("cache size", size_text, "stated", True)]
    print(f"\nVIGOR: {VIGOR_PANORAMAS:,} panoramas x {per_grd / 1e6:.3f} MB + {VIGOR_TILES:,} tiles x "
          f"{per_sat / 1e6:.3f} MB = {vigor:.0f} GB")
    print(f"\n{'':<42}{'measured':<58}| {'goal':<8}| met")
    for name, measured, goal, met in rows:
        print(f"{name:<42}{measured:<58}| {goal:<8}| {'yes' if met else 'no'}")
    return rows
