"""Tile descriptors of a reference database, stored next to it, and nearest-tile search.

    DB/index/descriptors.npy   (T, D) float32 unit descriptors in tiles.csv's order
    DB/index/index.json        the checkpoint and network they come from
    DB/index/faiss.index       the faiss index: exact (flat) for small databases, compressed (ivfpq)
                               above localize.index.threshold tiles (utils/localization/search.py)
    DB/index/faiss.shard-NNN.index  instead of faiss.index when localize.index.shards > 1 (compressed
                               only): one trained index, each file a contiguous range of tiles
                               (utils/localization/sharded_search.py)

The descriptors are read memory-mapped for an approximate index: they stay on disk, and only the
candidates re-ranked exactly (localize.index.rerank) and the tiles a query asks about are read.
"""
import json
import os
from dataclasses import dataclass
from typing import Optional

import numpy as np

from utils.errors import DataError
from utils.localization.search import IndexSettings, SearchIndex, build_parameters, build_search_index, describe
from utils.localization.sharded_search import ShardedSearchIndex, build_sharded_index

INDEX_DIR = "index"
DESCRIPTORS = "descriptors.npy"
INDEX_INFO = "index.json"
FAISS_FILE = "faiss.index"


def _faiss():
    try:
        import faiss
    except ImportError:
        return None
    return faiss


def build_index(db, model, settings=None, progress=True):
    """Compute the tile descriptors with `model` (a LocalizationModel), store them in DB/index and
    index them as `settings` (IndexSettings; default: the config's defaults) say."""
    settings = settings or IndexSettings()
    paths = [db.tile_path(i) for i in range(len(db))]
    descriptors = model.tile_descriptors(paths, progress=progress)
    out = os.path.join(db.root, INDEX_DIR)
    os.makedirs(out, exist_ok=True)
    np.save(os.path.join(out, DESCRIPTORS), descriptors)
    del descriptors
    stored = np.load(os.path.join(out, DESCRIPTORS), mmap_mode="r")
    faiss = _faiss()
    search = None
    if faiss is not None:
        _remove_faiss_files(out)
        sharded = settings.shards > 1 and build_parameters(*stored.shape, settings)["kind"] != "flat"
        if sharded:
            search = build_sharded_index(stored, settings, out)
        else:
            search = build_search_index(stored, settings)
            faiss.write_index(search.index, os.path.join(out, FAISS_FILE))
    info = {"checkpoint": model.checkpoint, "network": model.network, "tiles": len(db),
            "dimension": int(stored.shape[1]), "faiss": faiss is not None,
            "search": search.parameters if search is not None else {"kind": "numpy"}}
    with open(os.path.join(out, INDEX_INFO), "w") as f:
        json.dump(info, f, indent=1)
    return info


def _remove_faiss_files(out):
    """The faiss files of an earlier build (one index or shards), so none is read with the new ones."""
    for name in os.listdir(out):
        if name == FAISS_FILE or (name.startswith("faiss.shard-") and name.endswith((".index", ".partial"))):
            os.remove(os.path.join(out, name))


def describe_index(info):
    """One line for the command line: what index was written."""
    if not info["faiss"]:
        return "faiss not installed: exact numpy search"
    return f"faiss index written ({describe(info['search'])})"


@dataclass
class TileIndex:
    descriptors: np.ndarray       # (T, D) unit
    info: dict
    searcher: Optional[object] = None   # SearchIndex or ShardedSearchIndex (exact or compressed); None: numpy

    def search(self, queries, k):
        """(similarities (N, k), tile ids (N, k)), best first, by inner product of unit descriptors."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        k = min(int(k), len(self.descriptors))
        if self.searcher is not None:
            return self.searcher.search(queries, k)
        scores = queries @ self.descriptors.T
        ids = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(scores, ids, axis=1).astype(np.float64), ids

    def similarity(self, queries, tiles):
        """(N, len(tiles)) similarities of queries to the given tiles."""
        return np.asarray(queries, np.float32) @ self.descriptors[np.asarray(tiles)].T


def _read_info(out, redo, db):
    if not os.path.exists(os.path.join(out, INDEX_INFO)):
        raise DataError(f"reference database {db.root} has no descriptors yet: {redo}")
    with open(os.path.join(out, INDEX_INFO)) as f:
        return json.load(f)


def _read_searcher(out, info, descriptors, settings):
    """The stored faiss index as a SearchIndex (its kind from index.json: older ones are exact)."""
    faiss = _faiss()
    parameters = info.get("search", {"kind": "flat", "tiles": info["tiles"], "dimension": info["dimension"]})
    if faiss is not None and "shards" in parameters:
        return ShardedSearchIndex(folder=out, shards=parameters["shards"], parameters=parameters, settings=settings,
                                  descriptors=descriptors)
    if faiss is None or not os.path.exists(os.path.join(out, FAISS_FILE)):
        return None
    return SearchIndex(index=faiss.read_index(os.path.join(out, FAISS_FILE)), parameters=parameters,
                       settings=settings, descriptors=descriptors)


def load_index(db, checkpoint, settings=None):
    """The stored descriptors of db; DataError if missing or computed with another checkpoint.
    `settings` (IndexSettings) gives the search-time values (nprobe, ef_search, rerank)."""
    out = os.path.join(db.root, INDEX_DIR)
    redo = f"run `python localize.py index --checkpoint {checkpoint} --db {db.root}`"
    info = _read_info(out, redo, db)
    if os.path.abspath(info["checkpoint"]) != os.path.abspath(checkpoint):
        raise DataError(f"the descriptors of {db.root} come from checkpoint {info['checkpoint']}, not "
                        f"{checkpoint}: {redo}")
    approximate = info.get("search", {}).get("kind", "flat") not in ("flat", "numpy")
    descriptors = np.load(os.path.join(out, DESCRIPTORS), mmap_mode="r" if approximate else None)
    if len(descriptors) != len(db):
        raise DataError(f"{db.root}: {len(descriptors)} descriptors for {len(db)} tiles (rebuilt since?): {redo}")
    searcher = _read_searcher(out, info, descriptors, settings or IndexSettings())
    return TileIndex(descriptors=descriptors, info=info, searcher=searcher)
