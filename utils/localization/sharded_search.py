"""A compressed tile index written as shard files and searched one shard at a time.

One index is trained (pre-transform, coarse lists, product-quantizer codebooks); each shard file is
a copy of it holding the codes of one contiguous range of tile ids. A search opens the shards in
turn (ivfpq memory-mapped, so only the probed lists are read; hnsw read whole), keeps each shard's
best `rerank` candidates for each query (ids made global by the shard's first tile), merges them by
score, then re-ranks them exactly against the full descriptors as the single index does. Memory is
one shard plus the candidates (shards x rerank per query). The codes of a tile do not depend on
which shard holds it, so the result is the single index's. With settings.keep_shards_open each
shard is opened once and kept (ivfpq: memory-mapped), which saves reading its pre-transform and
centroids at every search.
"""
import os
from dataclasses import dataclass
from typing import Optional

import numpy as np

from utils.errors import DataError
from utils.localization.search import (IndexSettings, build_parameters, rerank_exact, set_search_parameters, shards_of,
                                       train_index, training_sample)


def _faiss():
    import faiss
    return faiss


def shard_file(number):
    return f"faiss.shard-{number:03d}.index"


def shard_ranges(tiles, shards):
    """[(first tile, tiles)] of `shards` contiguous ranges covering `tiles` (sizes differ by at most one)."""
    shards = max(1, min(int(shards), int(tiles)))
    edges = np.linspace(0, tiles, shards + 1).round().astype(np.int64)
    return [(int(a), int(b - a)) for a, b in zip(edges[:-1], edges[1:])]


def _rows_in_order(blocks):
    """The rows of consecutive blocks, handed out `count` at a time (blocks may straddle shards)."""
    pending = np.zeros((0, 0), np.float32)
    blocks = iter(blocks)

    def take(count):
        nonlocal pending
        parts = []
        while count:
            if len(pending) == 0:
                block = next(blocks, None)
                if block is None:
                    raise DataError(f"the descriptors ended {count} rows before the last shard was full")
                pending = np.asarray(block, np.float32)
            parts.append(pending[:count])
            count -= len(parts[-1])
            pending = pending[len(parts[-1]):]
        return parts
    return take


def write_shards(trained, blocks, ranges, folder):
    """Copies of the trained faiss index `trained`, the n-th filled with the rows of ranges[n] (rows
    come from `blocks`, consecutive row blocks from tile 0), written to folder/faiss.shard-NNN.index.
    Returns one record per shard: file, first tile, tiles, bytes (what a reader checks)."""
    faiss = _faiss()
    take = _rows_in_order(blocks)
    records = []
    for number, (first, count) in enumerate(ranges):
        index = faiss.clone_index(trained)
        for part in take(count):
            index.add(np.ascontiguousarray(part))
        path = os.path.join(folder, shard_file(number))
        faiss.write_index(index, path + ".partial")
        os.replace(path + ".partial", path)
        records.append({"file": shard_file(number), "first": first, "tiles": count, "bytes": os.path.getsize(path)})
        del index
    return records


def merge_candidates(scores, ids, keep):
    """Each row's best `keep` candidates by score (ties: the lower id); ids of -1 (none found) last."""
    scores = np.where(ids >= 0, scores, -np.inf)
    order = np.lexsort((np.where(ids >= 0, ids, np.iinfo(np.int64).max), -scores), axis=1)[:, :keep]
    return np.take_along_axis(scores, order, axis=1), np.take_along_axis(ids, order, axis=1)


@dataclass
class ShardedSearchIndex:
    folder: str
    shards: list                   # write_shards' records, in tile order
    parameters: dict               # build_parameters of the whole database
    settings: IndexSettings        # search-time values: nprobe, ef_search, rerank
    descriptors: Optional[object] = None   # full descriptors for exact re-ranking (may be memory-mapped)

    def __post_init__(self):
        for record in self.shards:
            self._check_file(record)
        self._kept = {}

    def _path(self, record):
        return os.path.join(self.folder, record["file"])

    def _check_file(self, record):
        path = self._path(record)
        if not os.path.exists(path):
            raise DataError(f"{path}: shard file missing: rebuild the index (python localize.py index)")
        size = os.path.getsize(path)
        if size != record["bytes"]:
            raise DataError(f"{path}: shard file has {size} bytes, {record['bytes']} were written (truncated or "
                            f"replaced): rebuild the index (python localize.py index)")

    @property
    def ntotal(self):
        return sum(record["tiles"] for record in self.shards)

    @property
    def exact(self):
        return self.parameters["kind"] == "flat"

    def open_shard(self, record):
        """The shard's faiss index (ivfpq: its lists memory-mapped), set for searching."""
        faiss = _faiss()
        self._check_file(record)
        path = self._path(record)
        flags = faiss.IO_FLAG_MMAP if self.parameters["kind"] == "ivfpq" else 0
        try:
            index = faiss.read_index(path, flags)
        except RuntimeError as error:
            reason = str(error).strip().splitlines()[-1] if str(error).strip() else "unreadable"
            raise DataError(f"{path}: unreadable shard file ({reason[:120]}): rebuild the index "
                            f"(python localize.py index)") from None
        if index.ntotal != record["tiles"]:
            raise DataError(f"{path}: shard holds {index.ntotal} tiles, {record['tiles']} were written: rebuild the "
                            f"index (python localize.py index)")
        set_search_parameters(index, self.parameters, self.settings)
        if flags:
            lists = faiss.downcast_InvertedLists(faiss.extract_index_ivf(index).invlists)
            lists.prefetch_nthread = 0   # faiss's default starts 32 threads to prefetch pages at every search:
                                         # 3 ms per shard per query here, where the search itself takes 0.2
        return index

    def candidates(self, queries, wanted):
        """(scores, global ids) of each query's best `wanted` tiles by the compressed scores, the shards
        searched one at a time (kept: each shard's best `wanted`, merged once at the end)."""
        scores, ids = [], []
        for record in self.shards:
            index = self._kept[record["file"]] if record["file"] in self._kept else self.open_shard(record)
            if self.settings.keep_shards_open:
                self._kept[record["file"]] = index
            found_scores, found = index.search(queries, min(wanted, record["tiles"]))
            del index
            scores.append(found_scores)
            ids.append(np.where(found >= 0, found + record["first"], -1))
        return merge_candidates(np.concatenate(scores, axis=1), np.concatenate(ids, axis=1), wanted)

    def search(self, queries, k):
        """(similarities (N, k), ids (N, k)), best first: the single index's answer."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        k = min(int(k), self.ntotal)
        if self.exact or self.descriptors is None or self.settings.rerank <= k:
            similarities, ids = self.candidates(queries, k)
            return similarities.astype(np.float64), ids
        _, candidates = self.candidates(queries, min(self.settings.rerank, self.ntotal))
        similarities, ids = rerank_exact(queries, candidates, self.descriptors, k)
        return similarities.astype(np.float64), ids.astype(np.int64)


def build_sharded_index(descriptors, settings, folder, shards=None):
    """A ShardedSearchIndex over `descriptors` (T, D) in settings.shards files under `folder`: trained on
    a sample, filled `shard_size` rows at a time (`shards`: the row blocks in order; default: blocks of
    settings.shard_size). A flat (exact) index is not sharded: use build_search_index."""
    tiles, dimension = descriptors.shape
    if tiles == 0:
        raise DataError("no descriptors to index: the reference database is empty")
    parameters = build_parameters(tiles, dimension, settings)
    if parameters["kind"] == "flat":
        raise DataError(f"{tiles} tiles make an exact (flat) index, which is one file: localize.index.shards "
                        f"applies to ivfpq and hnsw")
    trained = train_index(parameters, training_sample(descriptors, parameters["train_size"]))
    blocks = shards if shards is not None else shards_of(descriptors, settings.shard_size)
    records = write_shards(trained, blocks, shard_ranges(tiles, settings.shards), folder)
    return ShardedSearchIndex(folder=folder, shards=records, parameters=dict(parameters, shards=records),
                              settings=settings, descriptors=descriptors)


__all__ = ["ShardedSearchIndex", "build_sharded_index", "write_shards", "shard_ranges", "shard_file", "merge_candidates"]
