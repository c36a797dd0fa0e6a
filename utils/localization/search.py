"""Nearest-tile search chosen by the database's size: exact below a threshold, compressed above it.

    flat   faiss IndexFlatIP: exact inner product; 4 D bytes per tile in memory
    ivfpq  an uncentred PCA to `pretransform_dim` and a random rotation (or an OPQ rotation), an inverted
           file of `nlist` lists, product-quantized codes of `pq_bytes` bytes per tile
    hnsw   the same PCA, then an HNSW graph over the reduced vectors (4 pretransform_dim bytes per tile)

The approximate kinds return `rerank` candidates, re-ranked exactly against the full descriptors
when they are given (any array-like indexed by sorted tile ids: a memory-mapped .npy keeps them on
disk). Descriptors are added shard by shard, so a database need never be in memory at once; the
trained index and its codes are one faiss index here, or `shards` files searched one at a time
(utils/localization/sharded_search.py).
"""
from dataclasses import dataclass
from typing import Iterable, Optional

import numpy as np

from utils.errors import ConfigError, DataError

KINDS = ("auto", "flat", "ivfpq", "hnsw")
PRETRANSFORMS = ("none", "pca", "opq")


@dataclass(frozen=True)
class IndexSettings:                 # the `localize.index:` section of the config (configs/default.yaml)
    kind: str = "auto"
    threshold: int = 100000
    nlist: Optional[int] = None
    pq_bytes: int = 32
    pretransform: str = "pca"
    pretransform_dim: int = 128
    train_size: int = 131072
    shard_size: int = 100000
    shards: int = 1
    keep_shards_open: bool = False
    nprobe: int = 32
    rerank: int = 100
    hnsw_m: int = 32
    ef_search: int = 128

    @classmethod
    def from_config(cls, cfg):
        section = dict(cfg.localize.index)
        settings = cls(**section)
        settings.check()
        return settings

    def check(self):
        """A ConfigError naming the first value that cannot make an index."""
        if self.kind not in KINDS:
            raise ConfigError(f"localize.index.kind is '{self.kind}': use one of {', '.join(KINDS)}")
        if self.pretransform not in PRETRANSFORMS:
            raise ConfigError(f"localize.index.pretransform is '{self.pretransform}': use one of "
                              f"{', '.join(PRETRANSFORMS)}")
        positive = ("threshold", "pq_bytes", "pretransform_dim", "train_size", "shard_size", "shards", "nprobe",
                    "hnsw_m", "ef_search")
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"localize.index.{name} must be >= 1, not {getattr(self, name)}")
        if self.nlist is not None and self.nlist < 1:
            raise ConfigError(f"localize.index.nlist must be null (automatic) or >= 1, not {self.nlist}")
        if self.rerank < 0:
            raise ConfigError(f"localize.index.rerank must be >= 0 (0: no exact re-ranking), not {self.rerank}")
        if self.pretransform_dim % self.pq_bytes:
            raise ConfigError(f"localize.index.pq_bytes ({self.pq_bytes}) must divide "
                              f"localize.index.pretransform_dim ({self.pretransform_dim})")


def choose_kind(tiles, settings):
    """The kind of index for a database of `tiles` tiles: settings.kind unless it is auto."""
    if settings.kind != "auto":
        return settings.kind
    return "flat" if tiles < settings.threshold else "ivfpq"


def automatic_nlist(tiles):
    """About sqrt(tiles) lists, a power of two: 256 at 1e5, 1024 at 1e6, 4096 at 1e7."""
    return int(2 ** np.clip(np.round(np.log2(np.sqrt(max(tiles, 1)))), 4, 16))


def build_parameters(tiles, dimension, settings):
    """What the index is made of, recorded next to it (index.json)."""
    kind = choose_kind(tiles, settings)
    parameters = {"kind": kind, "tiles": int(tiles), "dimension": int(dimension)}
    if kind == "flat":
        return parameters
    reduced = min(settings.pretransform_dim, dimension) if settings.pretransform != "none" else dimension
    parameters.update(pretransform=settings.pretransform, pretransform_dim=int(reduced),
                      train_size=int(min(settings.train_size, tiles)))
    if kind == "ivfpq":
        if reduced % settings.pq_bytes:
            raise ConfigError(f"localize.index.pq_bytes ({settings.pq_bytes}) must divide the searched "
                              f"dimension ({reduced})")
        parameters.update(nlist=int(settings.nlist or automatic_nlist(tiles)), pq_bytes=settings.pq_bytes)
    else:
        parameters.update(hnsw_m=settings.hnsw_m)
    return parameters


def _faiss():
    import faiss
    return faiss


def uncentred_pca(sample, dimension):
    """(D, dimension) float32: the top right singular vectors of `sample`, the subspace keeping inner
    products best (no mean is subtracted: a centred PCA would change the order of inner products)."""
    from scipy.linalg import eigh
    sample = np.asarray(sample, np.float32)
    second_moment = (sample.T @ sample).astype(np.float64) / len(sample)
    full = second_moment.shape[0]
    _, vectors = eigh(second_moment, subset_by_index=[full - dimension, full - 1])
    return np.ascontiguousarray(vectors[:, ::-1], dtype=np.float32)


def random_rotation(dimension, seed=0):
    """(dimension, dimension) float32 random orthogonal matrix: spreads the PCA's variance (largest
    in its first components) evenly over the product quantizer's sub-vectors."""
    q, r = np.linalg.qr(np.random.default_rng(seed).standard_normal((dimension, dimension)))
    return (q * np.sign(np.diag(r))).astype(np.float32)


def _linear_transform(basis):
    faiss = _faiss()
    dimension_in, dimension_out = basis.shape
    transform = faiss.LinearTransform(dimension_in, dimension_out, False)
    faiss.copy_array_to_vector(np.ascontiguousarray(basis.T).ravel(), transform.A)
    transform.is_trained = True
    return transform


def _empty_index(parameters):
    faiss = _faiss()
    reduced = parameters.get("pretransform_dim", parameters["dimension"])
    if parameters["kind"] == "flat":
        return faiss.IndexFlatIP(parameters["dimension"])
    if parameters["kind"] == "hnsw":
        return faiss.IndexHNSWFlat(reduced, parameters["hnsw_m"], faiss.METRIC_INNER_PRODUCT)
    quantizer = faiss.IndexFlatIP(reduced)
    index = faiss.IndexIVFPQ(quantizer, reduced, parameters["nlist"], parameters["pq_bytes"], 8,
                             faiss.METRIC_INNER_PRODUCT)
    index.own_fields = True
    quantizer.this.disown()
    return index


def train_index(parameters, sample):
    """An empty faiss index made by `parameters` (build_parameters), trained on `sample` (rows, D)."""
    faiss = _faiss()
    index = _empty_index(parameters)
    if parameters["kind"] == "flat":
        return index
    sample = np.ascontiguousarray(sample, dtype=np.float32)
    wrapped = faiss.IndexPreTransform(index)
    if parameters["pretransform"] == "opq":
        wrapped.prepend_transform(faiss.OPQMatrix(parameters["pretransform_dim"], parameters["pq_bytes"]))
    if parameters["pretransform"] != "none":
        basis = uncentred_pca(sample, parameters["pretransform_dim"])
        if parameters["pretransform"] == "pca":
            basis = basis @ random_rotation(basis.shape[1])
        wrapped.prepend_transform(_linear_transform(basis))
    wrapped.train(sample)
    return wrapped


def add_shards(index, shards: Iterable[np.ndarray]):
    """Add descriptors shard by shard (tile ids follow the order of the rows); returns the index."""
    for shard in shards:
        index.add(np.ascontiguousarray(shard, dtype=np.float32))
    return index


def shards_of(descriptors, shard_size):
    """Consecutive row blocks of an array (a memory-mapped .npy is read one block at a time)."""
    for start in range(0, len(descriptors), shard_size):
        yield descriptors[start:start + shard_size]


def training_sample(descriptors, size, seed=0):
    """`size` rows of `descriptors` at random (sorted, so a memory-mapped file is read in order)."""
    if size >= len(descriptors):
        return np.asarray(descriptors, np.float32)
    rows = np.sort(np.random.default_rng(seed).choice(len(descriptors), size, replace=False))
    return np.asarray(descriptors[rows], np.float32)


def set_search_parameters(index, parameters, settings):
    """nprobe (ivfpq) or efSearch (hnsw) from `settings`: search-time values need no rebuild."""
    faiss = _faiss()
    if parameters["kind"] == "ivfpq":
        faiss.extract_index_ivf(index).nprobe = settings.nprobe
    elif parameters["kind"] == "hnsw":
        faiss.downcast_index(faiss.downcast_index(index).index).hnsw.efSearch = settings.ef_search


def rerank_exact(queries, candidates, descriptors, k):
    """(similarities, ids) of the best k of each row's candidates, by exact inner product with the
    full descriptors; ids of -1 (fewer candidates found than asked) stay last."""
    found = candidates >= 0
    unique, inverse = np.unique(np.where(found, candidates, 0), return_inverse=True)
    rows = np.asarray(descriptors[unique], np.float32)[inverse.reshape(candidates.shape)]
    scores = np.einsum("nd,ncd->nc", queries, rows)
    scores[~found] = -np.inf
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    ids = np.take_along_axis(candidates, order, axis=1)
    return np.take_along_axis(scores, order, axis=1), ids


@dataclass
class SearchIndex:
    index: object                  # a faiss index
    parameters: dict               # build_parameters: kind and what it was built with
    settings: IndexSettings        # search-time values: nprobe, ef_search, rerank
    descriptors: Optional[object] = None   # full descriptors for exact re-ranking (may be memory-mapped)

    def __post_init__(self):
        set_search_parameters(self.index, self.parameters, self.settings)

    @property
    def exact(self):
        return self.parameters["kind"] == "flat"

    def search(self, queries, k):
        """(similarities (N, k), ids (N, k)), best first."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        k = min(int(k), self.index.ntotal)
        if self.exact or self.descriptors is None or self.settings.rerank <= k:
            similarities, ids = self.index.search(queries, k)
            return similarities.astype(np.float64), ids.astype(np.int64)
        _, candidates = self.index.search(queries, min(self.settings.rerank, self.index.ntotal))
        similarities, ids = rerank_exact(queries, candidates, self.descriptors, k)
        return similarities.astype(np.float64), ids.astype(np.int64)


def build_search_index(descriptors, settings, shards=None):
    """A SearchIndex over `descriptors` (T, D), trained on a sample of them and filled shard by shard
    (`shards`: an iterable of row blocks in order; default: blocks of settings.shard_size)."""
    tiles, dimension = descriptors.shape
    if tiles == 0:
        raise DataError("no descriptors to index: the reference database is empty")
    parameters = build_parameters(tiles, dimension, settings)
    sample = None if parameters["kind"] == "flat" else training_sample(descriptors, parameters["train_size"])
    index = train_index(parameters, sample)
    add_shards(index, shards if shards is not None else shards_of(descriptors, settings.shard_size))
    return SearchIndex(index=index, parameters=parameters, settings=settings, descriptors=descriptors)


def recall_against_exact(found_ids, exact_ids, k):
    """Share of queries whose exact top-1 is among the first k found ids (recall@k against exact
    search; at k = 1: the approximate top-1 is the exact top-1)."""
    found_ids, exact_ids = np.asarray(found_ids), np.asarray(exact_ids)
    if len(found_ids) != len(exact_ids):
        raise DataError(f"{len(found_ids)} found rows for {len(exact_ids)} exact rows")
    return float(np.mean(np.any(found_ids[:, :k] == exact_ids[:, :1], axis=1)))


def describe(parameters):
    """One line: the kind and its build parameters (shard files: how many)."""
    return ", ".join(f"{key} {len(value) if key == 'shards' else value}" for key, value in parameters.items())


__all__ = ["IndexSettings", "SearchIndex", "build_search_index", "train_index", "add_shards", "shards_of",
           "training_sample", "choose_kind", "build_parameters", "rerank_exact", "recall_against_exact",
           "automatic_nlist", "uncentred_pca", "describe", "set_search_parameters"]
