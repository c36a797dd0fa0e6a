"""The search `evaluate.py --checkpoint` runs once (utils.evaluation.retrieval.evaluation_search:
top-1 and the ranks of four labels per query, blocks of the default 1 GB), at VIGOR same-area
test scale on random float32 unit descriptors.

    nice python bench/eval_scale.py              # 52,605 queries x 90,618 references x 4096
    nice python bench/eval_scale.py --scale 0.1  # 10% of the queries and references

Prints the seconds, the peak memory (process RSS and numpy allocations during the search) and
the speed relative to a plain float32 matrix product of the same size, timed on a slice of the
queries (the whole product would need 19 GB) and scaled to all of them.
"""
import argparse
import os
import resource
import sys
import time
import tracemalloc

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from utils.evaluation.retrieval import DEFAULT_MEMORY_BUDGET, evaluation_search, rows_per_block  # noqa: E402

FULL_QUERIES, FULL_REFERENCES, DIM = 52605, 90618, 4096
GB = 1024 ** 3


def random_unit(rng, rows, dim, chunk=4096):
    out = np.empty((rows, dim), dtype=np.float32)
    for start in range(0, rows, chunk):
        block = rng.standard_normal((min(chunk, rows - start), dim), dtype=np.float32)
        out[start:start + block.shape[0]] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def peak_rss_gb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GB  # Linux: kilobytes


def plain_product_seconds(grd, sat, rows):
    """Time of grd[:rows] @ sat.T (the part of the plain product that fits), best of two."""
    best = float("inf")
    for _ in range(2):
        start = time.perf_counter()
        product = grd[:rows] @ sat.T
        best = min(best, time.perf_counter() - start)
        del product
    return best


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of queries and references")
    parser.add_argument("--dim", type=int, default=DIM)
    parser.add_argument("--reference-rows", type=int, default=2048,
                        help="queries in the timed slice of the plain product")
    args = parser.parse_args(argv)

    n = max(1, int(round(FULL_QUERIES * args.scale)))
    s = max(4, int(round(FULL_REFERENCES * args.scale)))
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    sat = random_unit(rng, s, args.dim)
    grd = random_unit(rng, n, args.dim)
    labels = rng.integers(0, s, (n, 4))
    print(f"{n} queries x {s} references x {args.dim}: descriptors {grd.nbytes / GB:.2f} + "
          f"{sat.nbytes / GB:.2f} GB (made in {time.perf_counter() - t0:.0f} s); "
          f"blocks of {min(n, rows_per_block(s, 4, DEFAULT_MEMORY_BUDGET))} queries", flush=True)

    rows = min(n, args.reference_rows)
    plain = plain_product_seconds(grd, sat, rows) * n / rows
    print(f"plain float32 product (timed on {rows} queries, scaled): {plain:.1f} s", flush=True)

    tracemalloc.start()
    start = time.perf_counter()
    timings = {}
    result = evaluation_search(grd, sat, labels, timings=timings)
    seconds = time.perf_counter() - start
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert result.ranks.shape == (n, 4)

    print(f"blocked search: {seconds:.1f} s, of which {timings['product']:.1f} s in the block "
          f"products and {timings['rest']:.1f} s in top-k and rank counting")
    print(f"peak memory: process RSS {peak_rss_gb():.2f} GB; allocated during the search "
          f"{traced_peak / GB:.2f} GB (on top of the descriptors)")
    plain_after = plain_product_seconds(grd, sat, rows) * n / rows
    reference = (plain + plain_after) / 2  # the CPU is shared: average before and after
    print(f"plain float32 product again after the search: {plain_after:.1f} s")
    print(f"speed relative to the plain product: {reference / seconds:.2f} (goal >= 0.8); "
          f"share of the search spent in the products (robust to a shared CPU): "
          f"{timings['product'] / seconds:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
