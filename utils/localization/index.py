"""Tile descriptors of a reference database, stored next to it, and nearest-tile search.

    DB/index/descriptors.npy   (T, D) float32 unit descriptors in tiles.csv's order
    DB/index/index.json        the checkpoint and network they come from
    DB/index/faiss.index       an exact inner-product faiss index, where faiss is installed
"""
import json
import os
from dataclasses import dataclass
from typing import Optional

import numpy as np

from utils.errors import DataError

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


def build_index(db, model, progress=True):
    """Compute the tile descriptors with `model` (a LocalizationModel) and store them in DB/index."""
    paths = [db.tile_path(i) for i in range(len(db))]
    descriptors = model.tile_descriptors(paths, progress=progress)
    out = os.path.join(db.root, INDEX_DIR)
    os.makedirs(out, exist_ok=True)
    np.save(os.path.join(out, DESCRIPTORS), descriptors)
    faiss = _faiss()
    if faiss is not None:
        index = faiss.IndexFlatIP(descriptors.shape[1])
        index.add(descriptors)
        faiss.write_index(index, os.path.join(out, FAISS_FILE))
    info = {"checkpoint": model.checkpoint, "network": model.network, "tiles": len(db),
            "dimension": int(descriptors.shape[1]), "faiss": faiss is not None}
    with open(os.path.join(out, INDEX_INFO), "w") as f:
        json.dump(info, f, indent=1)
    return info


@dataclass
class TileIndex:
    descriptors: np.ndarray       # (T, D) unit
    info: dict
    faiss_index: Optional[object] = None

    def search(self, queries, k):
        """(similarities (N, k), tile ids (N, k)), best first, by inner product of unit descriptors."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        k = min(int(k), len(self.descriptors))
        if self.faiss_index is not None:
            similarities, ids = self.faiss_index.search(queries, k)
            return similarities.astype(np.float64), ids.astype(np.int64)
        scores = queries @ self.descriptors.T
        ids = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(scores, ids, axis=1).astype(np.float64), ids

    def similarity(self, queries, tiles):
        """(N, len(tiles)) similarities of queries to the given tiles."""
        return np.asarray(queries, np.float32) @ self.descriptors[np.asarray(tiles)].T


def load_index(db, checkpoint):
    """The stored descriptors of db; DataError if missing or computed with another checkpoint."""
    out = os.path.join(db.root, INDEX_DIR)
    redo = f"run `python localize.py index --checkpoint {checkpoint} --db {db.root}`"
    if not os.path.exists(os.path.join(out, INDEX_INFO)):
        raise DataError(f"reference database {db.root} has no descriptors yet: {redo}")
    with open(os.path.join(out, INDEX_INFO)) as f:
        info = json.load(f)
    if os.path.abspath(info["checkpoint"]) != os.path.abspath(checkpoint):
        raise DataError(f"the descriptors of {db.root} come from checkpoint {info['checkpoint']}, not "
                        f"{checkpoint}: {redo}")
    descriptors = np.load(os.path.join(out, DESCRIPTORS))
    if len(descriptors) != len(db):
        raise DataError(f"{db.root}: {len(descriptors)} descriptors for {len(db)} tiles (rebuilt since?): {redo}")
    faiss = _faiss()
    faiss_index = None
    if faiss is not None and os.path.exists(os.path.join(out, FAISS_FILE)):
        faiss_index = faiss.read_index(os.path.join(out, FAISS_FILE))
    return TileIndex(descriptors=descriptors, info=info, faiss_index=faiss_index)
