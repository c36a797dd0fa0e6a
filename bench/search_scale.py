"""Tile search at scale: the compressed index `localize.py index` builds above localize.index.threshold
tiles, against exact search, on synthetic descriptors of the model's dimension.

    nice python bench/search_scale.py                        # 1e5 and 1e6 tiles, dimension 4096
    nice python bench/search_scale.py --sizes 1e7            # ten million tiles (about 25 min here)
    nice python bench/search_scale.py --sizes 1e5 --dim 512 --set localize.index.nprobe=64
    nice python bench/search_scale.py --sizes 1e6 --shards 4   # also written as 4 shard files, searched in turn

Synthetic descriptors (deterministic from --seed, any row computable on its own, so the database is
generated shard by shard and never held in memory):

    latent   z_i = centre[c_i] + 0.5 * u_i in 64 dimensions: c_i one of 1024 clusters (centres
             standard normal), u_i a standard normal vector (a row of a bank of 2^20, with random
             signs per coordinate)
    tile     x_i = unit(z_i A + e_i): A a fixed random (64, D) map, e_i isotropic noise of 25 % of the
             signal's norm (a row of a bank of 4096 Gaussian vectors, circularly shifted by a random
             offset and signed: 2^25 distinct noise vectors)
    query    q_j = unit(x_s + m_j), s a random tile and m_j fresh Gaussian noise of norm 0.5
             (a panorama's descriptor near its tile's, as the network is trained to make it)

Ground truth: the exact inner-product top-10 of each query over every tile, computed shard by shard
in the same pass that adds the shard to the index (float32 products, 200 queries by default).
recall@k: the share of queries whose exact top-1 is among the index's first k results.

The exact re-ranking reads the re-ranked candidates' full descriptors; a 1e7 x 4096 float32 file
would be 164 GB, more than this machine's disk, so here they are recomputed from the generator
(about the cost of reading 100 rows of a memory-mapped file from the page cache; a cold disk read
costs more). Times are one query at a time (the service's case), on one thread (OMP_NUM_THREADS=1
unless set: on this machine's 2 shared vCPUs more threads were slower).
Memory: the process's peak RSS (shard buffers and the training sample included) and the index's
serialized size. The machine is shared with other jobs: times are upper bounds.

--shards N (N > 1): the same trained index is also written as N shard files (in --shard-dir, a
temporary folder unless given; removed at the end) in the same pass, and searched as `localize.py
query` searches them (utils/localization/sharded_search.py): one query at a time (every shard opened
per query) and the whole query set at once (each shard opened once). The single index is then
dropped from memory, so the sharded search's peak RSS (the process's high-water mark reset just
before each search) holds one shard at a time; the single index's is measured the same way.
"""
import argparse
import dataclasses
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")  # one thread: the 2 shared vCPUs scale like one core, and
                                           # idle threads spinning on a busy machine cost 10x (measured)
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from utils.config import load_config  # noqa: E402
from utils.localization.search import (IndexSettings, SearchIndex, add_shards, build_parameters,  # noqa: E402
                                       describe, recall_against_exact, train_index)
from utils.localization.sharded_search import ShardedSearchIndex, shard_ranges, write_shards  # noqa: E402

GB = 1024 ** 3
LATENT, CLUSTERS, SPREAD, NOISE, QUERY_NOISE = 64, 1024, 0.5, 0.25, 0.5
LATENT_BANK, NOISE_BANK = 1 << 20, 4096
GOALS = {"recall@1 vs exact": (0.95, ">="), "ms per query": (10.0, "<"), "peak RSS GB": (8.0, "<")}


def splitmix64(values):
    """A 64-bit mix of each value (uint64 in, uint64 out): a counter-based random stream."""
    with np.errstate(over="ignore"):
        z = values + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


class SyntheticDescriptors:
    """Unit descriptors whose row i is a function of (seed, i) alone (module docstring)."""

    def __init__(self, tiles, dimension, seed=0):
        rng = np.random.default_rng(seed)
        self.shape = (int(tiles), int(dimension))
        with np.errstate(over="ignore"):
            self.key = np.uint64(seed) * np.uint64(0x632BE59BD9B4E019)
        self.centres = rng.standard_normal((CLUSTERS, LATENT), dtype=np.float32)
        self.latent_bank = rng.standard_normal((LATENT_BANK, LATENT), dtype=np.float32)
        self.mixing = rng.standard_normal((LATENT, dimension), dtype=np.float32) / np.float32(np.sqrt(dimension))
        bank = rng.standard_normal((NOISE_BANK, dimension), dtype=np.float32)
        self.noise_bank = np.concatenate([bank, bank], axis=1)   # a shifted row is a window of this
        self.noise_scale = np.float32(NOISE * np.sqrt(LATENT * (1 + SPREAD ** 2) / dimension))

    def __len__(self):
        return self.shape[0]

    def __getitem__(self, ids):
        if isinstance(ids, slice):
            ids = np.arange(*ids.indices(len(self)))
        return self.rows(np.asarray(ids, np.int64))

    def latents(self, first_hash):
        second = splitmix64(first_hash)
        signs = 1 - 2 * ((second[:, None] >> np.arange(LATENT, dtype=np.uint64)) & np.uint64(1)).astype(np.float32)
        offsets = self.latent_bank[(first_hash >> np.uint64(20)) % np.uint64(LATENT_BANK)] * signs
        return self.centres[first_hash % np.uint64(CLUSTERS)] + np.float32(SPREAD) * offsets

    def add_noise(self, x, first_hash):
        """x += the rows' noise, in place (one (rows, D) temporary)."""
        third = splitmix64(splitmix64(first_hash) ^ np.uint64(0xA5A5A5A5))
        dimension = self.shape[1]
        rows = (third % np.uint64(NOISE_BANK)).astype(np.int64)
        shifts = ((third >> np.uint64(16)) % np.uint64(dimension)).astype(np.int64)
        windows = np.lib.stride_tricks.sliding_window_view(self.noise_bank, dimension, axis=1)
        noise = windows[rows, shifts]
        noise *= np.where((third >> np.uint64(63)) == 1, -1, 1).astype(np.float32)[:, None] * self.noise_scale
        x += noise

    def rows(self, ids, chunk=16384):
        """(len(ids), D) float32 unit descriptors of tiles `ids`, made `chunk` rows at a time."""
        out = np.empty((len(ids), self.shape[1]), np.float32)
        for start in range(0, len(ids), chunk):
            first = splitmix64(ids[start:start + chunk].astype(np.uint64) ^ self.key)
            x = out[start:start + len(first)]
            np.matmul(self.latents(first), self.mixing, out=x)
            self.add_noise(x, first)
            x /= np.linalg.norm(x, axis=1, keepdims=True)
        return out

    def shards(self, shard_size):
        for start in range(0, len(self), shard_size):
            yield self.rows(np.arange(start, min(start + shard_size, len(self))))

    def queries(self, count, seed):
        """(queries, their source tiles): noisy copies of random tiles."""
        rng = np.random.default_rng(seed + 1)
        sources = rng.choice(len(self), count, replace=False)
        noise = rng.standard_normal((count, self.shape[1]), dtype=np.float32)
        noise *= np.float32(QUERY_NOISE) / np.linalg.norm(noise, axis=1, keepdims=True)
        queries = self.rows(sources) + noise
        return queries / np.linalg.norm(queries, axis=1, keepdims=True), sources


class ExactTopK:
    """The exact inner-product top-k of fixed queries over tiles seen one shard at a time."""

    def __init__(self, queries, k):
        self.queries, self.k = np.asarray(queries, np.float32), k
        self.scores = np.full((len(queries), 0), -np.inf, np.float32)
        self.ids = np.zeros((len(queries), 0), np.int64)
        self.seen = 0

    def add(self, shard):
        scores = self.queries @ np.asarray(shard, np.float32).T
        ids = np.broadcast_to(np.arange(self.seen, self.seen + len(shard)), scores.shape)
        self.seen += len(shard)
        scores = np.concatenate([self.scores, scores], axis=1)
        ids = np.concatenate([self.ids, ids], axis=1)
        order = np.lexsort((ids, -scores), axis=1)[:, :self.k]  # ties: the lower id first
        self.scores, self.ids = np.take_along_axis(scores, order, axis=1), np.take_along_axis(ids, order, axis=1)
        return shard


def peak_rss_gb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GB


def reset_peak_rss():
    """Start a new high-water mark of this process's RSS (Linux: /proc/self/clear_refs)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def current_rss_gb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024 / GB
    raise OSError("no VmRSS in /proc/self/status")


def peak_rss_since_reset_gb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024 / GB
    raise OSError("no VmHWM in /proc/self/status")


def index_bytes(index):
    import faiss
    return faiss.serialize_index(index).nbytes


def time_queries(searcher, queries, k):
    """(found ids (N, k), ms per query) searching one query at a time."""
    found = np.empty((len(queries), k), np.int64)
    started = time.perf_counter()
    for j, query in enumerate(queries):
        found[j] = searcher.search(query[None], k)[1][0]
    return found, 1000 * (time.perf_counter() - started) / len(queries)


def measure(tiles, dimension, settings, num_queries, seed, shards=1, shard_dir=None):
    """One database size: build (train + add, ground truth and shard files in the same pass), then search."""
    started = time.perf_counter()
    data = SyntheticDescriptors(tiles, dimension, seed)
    queries, _ = data.queries(num_queries, seed)
    parameters = build_parameters(tiles, dimension, settings)
    sample_ids = np.sort(np.random.default_rng(seed + 2).choice(tiles, parameters.get("train_size", 1), replace=False))
    tick = time.perf_counter()
    index = train_index(parameters, data.rows(sample_ids) if parameters["kind"] != "flat" else None)
    train_s = time.perf_counter() - tick
    exact = ExactTopK(queries, 10)
    blocks = (exact.add(shard) for shard in data.shards(settings.shard_size))
    tick = time.perf_counter()
    if shards > 1:
        import faiss
        empty = faiss.clone_index(index)
        records = write_shards(empty, (index.add(block) or block for block in blocks), shard_ranges(tiles, shards),
                               shard_dir)
        del empty
    else:
        add_shards(index, blocks)
    add_and_truth_s = time.perf_counter() - tick
    rss_before = current_rss_gb()
    reset_peak_rss()
    searcher = SearchIndex(index=index, parameters=parameters, settings=settings, descriptors=data)
    found, ms = time_queries(searcher, queries, 10)
    compressed = SearchIndex(index=index, parameters=parameters, settings=settings, descriptors=None)
    found_compressed, ms_compressed = time_queries(compressed, queries, 10)
    result = {"tiles": tiles, "parameters": parameters, "train_s": train_s, "add_and_truth_s": add_and_truth_s,
              "recall1": recall_against_exact(found, exact.ids, 1), "recall10": recall_against_exact(found, exact.ids, 10),
              "recall1_compressed": recall_against_exact(found_compressed, exact.ids, 1),
              "ms": ms, "ms_compressed": ms_compressed, "index_gb": index_bytes(index) / GB, "peak_rss_gb": peak_rss_gb(),
              "search_rss_gb": peak_rss_since_reset_gb(), "rss_before_gb": rss_before}
    if shards > 1:
        del searcher, compressed, index
        result["sharded"] = measure_sharded(records, parameters, settings, data, queries, exact, found, shard_dir)
    result["total_s"] = time.perf_counter() - started
    return result


def ms_to_open(sharded, repeats=20):
    """ms to open (memory-map) every shard once and close it again."""
    started = time.perf_counter()
    for _ in range(repeats):
        for record in sharded.shards:
            index = sharded.open_shard(record)
            del index
    return 1000 * (time.perf_counter() - started) / repeats


def measure_sharded(records, parameters, settings, data, queries, exact, single_found, shard_dir):
    """The shard files searched one at a time, against exact search and the single index's answers."""
    rss_before = current_rss_gb()
    reset_peak_rss()
    sharded = ShardedSearchIndex(folder=shard_dir, shards=records, parameters=parameters, settings=settings,
                                 descriptors=data)
    found, ms_one_at_a_time = time_queries(sharded, queries, 10)
    search_rss = peak_rss_since_reset_gb()
    compressed = ShardedSearchIndex(folder=shard_dir, shards=records, parameters=parameters, settings=settings)
    found_compressed, ms_compressed = time_queries(compressed, queries, 10)
    kept = dataclasses.replace(settings, keep_shards_open=True)
    found_kept, ms_kept = time_queries(ShardedSearchIndex(folder=shard_dir, shards=records, parameters=parameters,
                                                          settings=kept, descriptors=data), queries, 10)
    _, ms_kept_compressed = time_queries(ShardedSearchIndex(folder=shard_dir, shards=records, parameters=parameters,
                                                            settings=kept), queries, 10)
    tick = time.perf_counter()
    found_together = compressed.search(queries, 10)[1]
    ms_together = 1000 * (time.perf_counter() - tick) / len(queries)
    return {"shards": len(records), "recall1": recall_against_exact(found, exact.ids, 1),
            "recall10": recall_against_exact(found, exact.ids, 10),
            "recall1_compressed": recall_against_exact(found_compressed, exact.ids, 1),
            "same_as_single": int(np.sum(np.all(found == single_found, axis=1))),
            "same_together": int(np.sum(np.all(found_together == found_compressed, axis=1))),
            "ms": ms_one_at_a_time, "ms_compressed": ms_compressed, "ms_together": ms_together,
            "ms_kept": ms_kept, "ms_kept_compressed": ms_kept_compressed,
            "same_kept": int(np.sum(np.all(found_kept == found, axis=1))),
            "ms_open": ms_to_open(compressed), "rss_before_gb": rss_before, "search_rss_gb": search_rss,
            "largest_shard_gb": max(r["bytes"] for r in records) / GB,
            "all_shards_gb": sum(r["bytes"] for r in records) / GB}


def print_row(r):
    print(f"| {r['tiles']:.0e} | {r['recall1']:.3f} | {r['recall10']:.3f} | {r['recall1_compressed']:.3f} | "
          f"{r['ms']:.2f} | {r['ms_compressed']:.2f} | {1000 / r['ms']:.0f} | {r['train_s']:.0f} | {r['add_and_truth_s']:.0f} | "
          f"{r['index_gb']:.3f} | {r['peak_rss_gb']:.2f} | {r['total_s'] / 60:.1f} |", flush=True)


SHARDED_HEADER = ("\n| tiles | index | recall@1 | recall@10 | recall@1 without re-ranking | top-10 as the single index | "
                  "ms/query | ms/query without re-ranking | ms/query without re-ranking, all queries at once | "
                  "ms to open every shard | RSS GB before search -> search peak | index file GB (largest) |\n"
                  "|---|---|---|---|---|---|---|---|---|---|---|---|")


def print_sharded_rows(r, queries):
    s = r["sharded"]
    print(f"| {r['tiles']:.0e} | single | {r['recall1']:.3f} | {r['recall10']:.3f} | {r['recall1_compressed']:.3f} | - | "
          f"{r['ms']:.2f} | {r['ms_compressed']:.2f} | - | - | {r['rss_before_gb']:.2f} -> {r['search_rss_gb']:.2f} | "
          f"{r['index_gb']:.3f} |")
    print(f"| {r['tiles']:.0e} | {s['shards']} shards | {s['recall1']:.3f} | {s['recall10']:.3f} | "
          f"{s['recall1_compressed']:.3f} | {s['same_as_single']} of {queries} | {s['ms']:.2f} | {s['ms_compressed']:.2f} | "
          f"{s['ms_together']:.2f} ({s['same_together']} of {queries} as one at a time) | {s['ms_open']:.2f} | "
          f"{s['rss_before_gb']:.2f} -> {s['search_rss_gb']:.2f} | {s['all_shards_gb']:.3f} "
          f"({s['largest_shard_gb']:.3f}) |")
    print(f"| {r['tiles']:.0e} | {s['shards']} shards kept open | - | - | - | {s['same_kept']} of {queries} as above | "
          f"{s['ms_kept']:.2f} | {s['ms_kept_compressed']:.2f} | - | - | - | - |", flush=True)


def goal_table(r, label=""):
    measured = {"recall@1 vs exact": r["recall1"], "ms per query": r["ms"], "peak RSS GB": r["peak_rss_gb"]}
    print(f"\nGoals at {r['tiles']:.0e} tiles{label}:\n\n| | measured | goal | met |\n|---|---|---|---|")
    for name, (goal, sense) in GOALS.items():
        met = measured[name] >= goal if sense == ">=" else measured[name] < goal
        print(f"| {name} | {measured[name]:.3f} | {sense} {goal:g} | {'yes' if met else 'NO'} |")


def commit():
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=os.path.dirname(os.path.abspath(__file__))).stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def argument_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1e5,1e6", help="tile counts, comma-separated (e.g. 1e5,1e6,1e7)")
    parser.add_argument("--dim", type=int, default=4096, help="descriptor dimension (the model's: 4096)")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--shards", type=int, default=None,
                        help="also write the index as this many shard files and search them one at a time "
                             "(default: localize.index.shards)")
    parser.add_argument("--shard-dir", default=None, help="where the shard files go (default: a temporary folder)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a localize.index value, e.g. --set localize.index.nprobe=64")
    return parser


def main(argv=None):
    args = argument_parser().parse_args(argv)
    settings = IndexSettings.from_config(load_config(None, args.overrides))
    args.shards = settings.shards if args.shards is None else args.shards
    print(f"bench/search_scale.py at commit {commit()}: dimension {args.dim}, {args.queries} queries, seed "
          f"{args.seed}; {os.cpu_count()} vCPUs SHARED with other jobs (times are upper bounds); {settings}")
    print("\n| tiles | recall@1 | recall@10 | recall@1 without re-ranking | ms/query | ms/query without re-ranking | queries/s | train s | "
          "add + ground truth s | index GB | peak RSS GB | total min |\n|---|---|---|---|---|---|---|---|---|---|---|---|")
    results = []
    shard_dir = args.shard_dir or tempfile.mkdtemp(prefix="search_scale_shards_")
    os.makedirs(shard_dir, exist_ok=True)
    try:
        for size in args.sizes.split(","):
            results.append(measure(int(float(size)), args.dim, settings, args.queries, args.seed, args.shards, shard_dir))
            print_row(results[-1])
    finally:
        if args.shard_dir is None:
            shutil.rmtree(shard_dir, ignore_errors=True)
    for r in results:
        print(f"{r['tiles']:.0e}: {describe(r['parameters'])}")
    if args.shards > 1:
        print(SHARDED_HEADER)
        for r in results:
            print_sharded_rows(r, args.queries)
        print("(RSS: the whole process (generator banks included) just before the searches, and its high-water mark "
              "reset then, over the one-at-a-time searches with re-ranking; the single index is in memory during "
              "its search and freed before the shards are searched, one open at a time)")
    goal_table(results[-1])
    if args.shards > 1:
        last = results[-1]
        goal_table(dict(last["sharded"], tiles=last["tiles"], peak_rss_gb=last["peak_rss_gb"]),
                   f", {last['sharded']['shards']} shard files searched one at a time, one query at a time "
                   f"(peak RSS: the whole run's)")


if __name__ == "__main__":
    main()
