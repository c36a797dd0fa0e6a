"""Input pipeline throughput: the threaded Prefetcher against the original's one-by-one loading.

    python -m bench.input_pipeline [--root DIR] [--batches 12] [--batch-size 10] [--workers 2]
                                   [--step-ms 400] [--full-size]
    python -m bench.input_pipeline --cache     # the resized image cache at VIGOR's sizes (bench/cache_rate.py)

Without --root a small synthetic city is generated (data/synthetic_bench); --full-size (default)
re-encodes its panoramas at VIGOR's 2048 x 1024 so that decoding costs what it costs on VIGOR.
Each batch is the continuous mode's: batch-size panoramas, their positives and semi-positives.
Reported: images/s of both loaders, their ratio (goal >= 1.8 on 2 cores), and with a simulated
training step of --step-ms (a sleep, as when the step runs on a GPU) the share of the wall time
spent waiting for data. Not part of the tests.
"""
import argparse
import os
import shutil
import sys
import time

import cv2
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from utils.data.dataset import load_index_from_root
from utils.data.prefetch import ImageLoader, Prefetcher
from utils.data.sampler import TrainSampler
from utils.data.synthetic_vigor import ensure_synthetic

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def original_load(path, size):
    img = cv2.imread(str(path)).astype(np.float32)
    img = cv2.resize(img, (size[1], size[0]), interpolation=cv2.INTER_AREA)
    img[:, :, 0] -= 103.939
    img[:, :, 1] -= 116.779
    img[:, :, 2] -= 123.6
    return img


def one_by_one(index, batch, sat_size, grd_size):
    """The original get_next_batch: every image read in turn in the training thread."""
    n = len(batch.grd)
    sat = np.zeros((2 * n, sat_size[0], sat_size[1], 3), np.float32)
    grd = np.zeros((n, grd_size[0], grd_size[1], 3), np.float32)
    for b in range(n):
        sat[b] = original_load(index.sat_paths[batch.sat[b]], sat_size)
        grd[b] = original_load(index.grd_paths[batch.grd[b]], grd_size)
        sat[n + b] = original_load(index.sat_paths[batch.semi[b]], sat_size)
    return sat, grd


def full_size_copy(root, target):
    """A copy of `root` whose panoramas are re-encoded at 2048 x 1024 (tiles are linked)."""
    marker = os.path.join(target, ".full_size_done")
    if os.path.exists(marker):
        return target
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(os.path.join(root, "splits"), os.path.join(target, "splits"))
    for name in os.listdir(root):
        if name.endswith(".json"):
            shutil.copy(os.path.join(root, name), target)
    for city in os.listdir(os.path.join(root, "splits")):
        os.makedirs(os.path.join(target, city), exist_ok=True)
        os.symlink(os.path.join(root, city, "satellite"), os.path.join(target, city, "satellite"))
        src, dst = os.path.join(root, city, "panorama"), os.path.join(target, city, "panorama")
        os.makedirs(dst)
        for name in os.listdir(src):
            big = cv2.resize(cv2.imread(os.path.join(src, name)), (2048, 1024), interpolation=cv2.INTER_CUBIC)
            cv2.imwrite(os.path.join(dst, name), big, [cv2.IMWRITE_JPEG_QUALITY, 90])
    open(marker, "w").close()
    return target


def warm_cache(index, batches):
    for batch in batches:
        for path in list(index.sat_paths[batch.sat]) + list(index.sat_paths[batch.semi]) + list(index.grd_paths[batch.grd]):
            with open(path, "rb") as f:
                f.read()


def decode_ceiling(index, batches, workers):
    """Speed-up of plain cv2.imread on `workers` threads right now: the ceiling any loader can reach
    on this machine at this moment (other processes share the cores)."""
    from concurrent.futures import ThreadPoolExecutor
    paths = [str(index.grd_paths[i]) for b in batches for i in b.grd][:60]
    start = time.perf_counter()
    for p in paths:
        cv2.imread(p)
    alone = time.perf_counter() - start
    with ThreadPoolExecutor(workers) as pool:
        start = time.perf_counter()
        list(pool.map(cv2.imread, paths))
        together = time.perf_counter() - start
    return alone / together


def run_sequential(index, batches, sat_size, grd_size, step):
    start, waited = time.perf_counter(), 0.0
    for batch in batches:
        t = time.perf_counter()
        one_by_one(index, batch, sat_size, grd_size)
        waited += time.perf_counter() - t
        if step:
            time.sleep(step)
    return time.perf_counter() - start, waited


def run_prefetch(index, batches, loader, workers, depth, step):
    start, waited = time.perf_counter(), 0.0
    with Prefetcher(loader, index, iter(batches), workers=workers, depth=depth) as prefetch:
        while True:
            t = time.perf_counter()
            try:
                next(prefetch)
            except StopIteration:
                break
            waited += time.perf_counter() - t
            if step:
                time.sleep(step)
    return time.perf_counter() - start, waited


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", help="a dataset in VIGOR's format (default: a generated synthetic one)")
    parser.add_argument("--batches", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=10, help="panoramas per batch (+ as many tiles and semi-positives)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--sat-size", type=int, nargs=2, default=(320, 320))
    parser.add_argument("--grd-size", type=int, nargs=2, default=(320, 640))
    parser.add_argument("--step-ms", type=float, default=400.0, help="simulated training step")
    parser.add_argument("--no-full-size", action="store_true", help="keep the synthetic panoramas' small size")
    parser.add_argument("--repeats", type=int, default=3, help="best of N interleaved timings")
    parser.add_argument("--cache", action="store_true",
                        help="instead: the resized image cache against decoding, at VIGOR's image sizes")
    args = parser.parse_args(argv)
    if args.cache:
        from bench.cache_rate import run
        return run(tuple(args.sat_size), tuple(args.grd_size))

    root = args.root
    if root is None:
        root = ensure_synthetic(os.path.join(REPO, "data", "synthetic_bench"), seed=0, cities=4, tiles_per_side=6,
                                pano_size=(256, 128), panos_per_tile=1.5, progress=True)
        if not args.no_full_size:
            root = full_size_copy(root, os.path.join(REPO, "data", "synthetic_bench_fullsize"))
    train, _ = load_index_from_root(root)
    sampler = TrainSampler(train, args.batch_size, with_semi=True, seed=0)
    batches = [sampler.next_batch() for _ in range(args.batches)]
    images = 3 * args.batch_size * args.batches
    loader = ImageLoader(tuple(args.sat_size), tuple(args.grd_size))
    warm_cache(train, batches)

    ceiling = decode_ceiling(train, batches, args.workers)
    seq_times, pre_times, seq_cpu = [], [], 0.0
    for _ in range(args.repeats):          # interleaved, best of each: robust to other processes' bursts
        cpu = time.process_time()
        seq_times.append(run_sequential(train, batches, args.sat_size, args.grd_size, 0)[0])
        seq_cpu += time.process_time() - cpu
        pre_times.append(run_prefetch(train, batches, loader, args.workers, args.depth, 0)[0])
    seq, pre = min(seq_times), min(pre_times)
    cpu_per_image = seq_cpu / (args.repeats * images)
    step = args.step_ms / 1000.0
    seq_total, seq_wait = run_sequential(train, batches, args.sat_size, args.grd_size, step)
    pre_total, pre_wait = run_prefetch(train, batches, loader, args.workers, args.depth, step)

    print(f"\ninput pipeline on {root}: {args.batches} batches x {3 * args.batch_size} images "
          f"(sat {args.sat_size}, grd {args.grd_size}), {os.cpu_count()} cores\n")
    print(f"{'loader':<28}{'images/s':>10}{'  waiting share with a ' + str(int(args.step_ms)) + ' ms step':>38}")
    print(f"{'one by one (original)':<28}{images / seq:>10.1f}{100 * seq_wait / seq_total:>37.1f}%")
    print(f"{'Prefetcher, ' + str(args.workers) + ' workers':<28}{images / pre:>10.1f}{100 * pre_wait / pre_total:>37.1f}%")
    print(f"\nratio Prefetcher / one by one: {seq / pre:.2f}x (goal >= 1.8x on 2 cores)")
    print(f"CPU time per image (one by one): {1000 * cpu_per_image:.1f} ms; "
          f"{args.workers}-thread speed-up of bare cv2.imread right now: {ceiling:.2f}x "
          f"(below {args.workers} means other processes hold the cores)")
    return seq / pre


if __name__ == "__main__":
    main()
