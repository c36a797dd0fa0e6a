"""Blocked cross-view retrieval: top-k references and label ranks without the N x S matrix.

Queries (ground descriptors) are processed in blocks whose similarity rows fit a memory
budget. For each block one matrix product gives the similarities to every reference; from it
we take the top-k references and, for each label column, the number of references strictly
closer than that label's reference.

"Closer" is judged exactly as the original `validate_top` judges it: on the distance
d = 2 - 2 * s computed in the descriptors' dtype, with a strict '<'. Because d is a
non-increasing function of s, {i : d_i < d_p} = {i : s_i > t} for the largest t in the dtype
whose distance is still >= d_p; `_strict_threshold` finds t, so the counting pass compares
raw similarities and never builds the distance matrix.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Iterator, Optional

import numpy as np

DEFAULT_MEMORY_BUDGET = 1 << 30  # bytes for one block of similarity rows
_TOPK_CHUNK_BYTES = 64 << 20  # argpartition scratch (int64 indices) per row chunk


@dataclass
class RetrievalResult:
    topk: np.ndarray         # (N, k) int64 reference indices, most similar first
    topk_scores: np.ndarray  # (N, k) similarities of those references
    ranks: np.ndarray        # (N, C) int64: references strictly closer than labels[:, c]
    hit_ranks: np.ndarray    # (N,) int64: non-semi-positive references strictly closer than
                             # the positive (labels[:, 1:] are the semi-positives); None if C == 1
    num_references: int


def rows_per_block(num_references: int, itemsize: int = 4,
                   memory_budget: int = DEFAULT_MEMORY_BUDGET) -> int:
    """Query rows whose similarity block (plus a boolean mask) fits `memory_budget` bytes."""
    per_row = num_references * (itemsize + 1)
    return max(1, int(memory_budget // max(per_row, 1)))


def query_blocks(num_queries: int, block_rows: int) -> Iterator[slice]:
    for start in range(0, num_queries, block_rows):
        yield slice(start, min(start + block_rows, num_queries))


def _distance(similarity: np.ndarray) -> np.ndarray:
    dtype = similarity.dtype
    return dtype.type(2) - dtype.type(2) * similarity


def _ordered_keys(values: np.ndarray) -> np.ndarray:
    """Integers ordered like the floats `values` (adjacent floats get adjacent integers)."""
    bits = values.view(np.int32 if values.dtype == np.float32 else np.int64).astype(np.int64)
    sign = np.int64(np.iinfo(bits.dtype).min if values.dtype == np.float64 else -(1 << 31))
    return np.where(bits >= 0, bits, sign - bits)


def _from_keys(keys: np.ndarray, dtype: np.dtype) -> np.ndarray:
    sign = np.int64(np.iinfo(np.int64).min if dtype == np.float64 else -(1 << 31))
    bits = np.where(keys >= 0, keys, sign - keys)
    return bits.astype(np.int32 if dtype == np.float32 else np.int64).view(dtype)


def _strict_threshold(similarity: np.ndarray) -> np.ndarray:
    """Largest t (same dtype) with 2 - 2t >= 2 - 2s, for each s.

    Rounding of 2 - 2s can merge many neighbouring similarities into one distance (near
    s = 0 the distance's spacing is far coarser than the similarity's); a reference is
    strictly closer than s exactly when its similarity exceeds t. Found by bisection on the
    floats' ordered bit patterns, since 2 - 2t is monotone in t.
    """
    values = np.array(similarity, copy=True).reshape(-1)
    dtype = values.dtype
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"similarities must be float32 or float64, not {dtype}")
    finite = np.isfinite(values)
    target = _distance(values)
    low = _ordered_keys(values)
    # 2 - 2s moves by 2 per unit of s; eight distance spacings past s is surely closer.
    spacing = np.abs(np.spacing(target))
    upper = np.where(finite, values + 4 * spacing, values)
    high = _ordered_keys(upper.astype(dtype))
    unbounded = finite & (_distance(_from_keys(high, dtype)) >= target)
    while np.any(unbounded):  # only near the largest floats; kept for safety
        high = np.where(unbounded, low + 2 * (high - low) + 1, high)
        unbounded &= _distance(_from_keys(high, dtype)) >= target
    pending = finite & (high - low > 1)
    while np.any(pending):
        middle = low + (high - low) // 2
        ok = _distance(_from_keys(middle, dtype)) >= target
        low = np.where(pending & ok, middle, low)
        high = np.where(pending & ~ok, middle, high)
        pending &= high - low > 1
    threshold = np.where(finite, _from_keys(low, dtype), values)
    return threshold.reshape(np.shape(similarity))


def _count_greater(block: np.ndarray, threshold: np.ndarray, mask: np.ndarray) -> np.ndarray:
    rows = block.shape[0]
    np.greater(block, threshold[:, None], out=mask[:rows])
    return np.count_nonzero(mask[:rows], axis=1).astype(np.int64)


def _topk_rows(block: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k columns per row, ordered by similarity then by lower index (argmax's order)."""
    rows, columns = block.shape
    if k == 1:
        index = np.argmax(block, axis=1)[:, None]
        return index.astype(np.int64), np.take_along_axis(block, index, axis=1)
    k = min(k, columns)
    index = np.empty((rows, k), dtype=np.int64)
    chunk = max(1, _TOPK_CHUNK_BYTES // (8 * columns))
    for part in query_blocks(rows, chunk):
        sub = block[part]
        candidates = np.argpartition(-sub, k - 1, axis=1)[:, :k]
        kth = np.take_along_axis(sub, candidates, axis=1).min(axis=1)
        # Ties at the k-th value: argpartition picks arbitrary members; take the lowest indices.
        for r in np.flatnonzero(np.count_nonzero(sub >= kth[:, None], axis=1) > k):
            above = np.flatnonzero(sub[r] > kth[r])
            tied = np.flatnonzero(sub[r] == kth[r])[: k - above.size]
            candidates[r] = np.concatenate([above, tied])
        scores = np.take_along_axis(sub, candidates, axis=1)
        order = np.lexsort((candidates, -scores), axis=1)
        index[part] = np.take_along_axis(candidates, order, axis=1)
    return index, np.take_along_axis(block, index, axis=1)


def _semi_closer_than_positive(label_scores: np.ndarray, labels: np.ndarray,
                               positive_threshold: np.ndarray) -> np.ndarray:
    """Distinct semi-positive references (labels[:, 1:]) strictly closer than the positive."""
    closer = label_scores[:, 1:] > positive_threshold[:, None]
    semis = labels[:, 1:]
    for c in range(1, semis.shape[1]):
        duplicate = np.any(semis[:, :c] == semis[:, c:c + 1], axis=1)
        closer[duplicate, c] = False
    return np.count_nonzero(closer, axis=1)


def _rank_labels(block, block_labels, mask, ranks, hit_ranks, rows):
    """ranks[rows] (and hit_ranks[rows]) of the labels of one block of similarity rows."""
    label_scores = np.take_along_axis(block, block_labels, axis=1)
    thresholds = _strict_threshold(label_scores)
    for c in range(block_labels.shape[1]):
        ranks[rows, c] = _count_greater(block, thresholds[:, c], mask)
    if hit_ranks is not None:
        hit_ranks[rows] = ranks[rows, 0] - _semi_closer_than_positive(label_scores, block_labels,
                                                                      thresholds[:, 0])
    _rank_non_finite_last(label_scores, ranks[rows], hit_ranks, rows, block.shape[1])


def _rank_non_finite_last(label_scores, ranks, hit_ranks, rows, num_refs):
    """A label whose similarity is NaN or infinite ranks behind every reference: never a hit.
    `ranks` is written in place (a view of the rows' ranks); `hit_ranks` at `rows`."""
    broken = ~np.isfinite(label_scores)
    if np.any(broken):
        ranks[broken] = num_refs
        if hit_ranks is not None:
            hit_ranks[rows] = np.where(broken[:, 0], num_refs, hit_ranks[rows])


def _rank_broken_queries_last(queries, label_scores, ranks, hit_ranks, num_refs):
    """Queries with a NaN or infinite label similarity: every label ranks last (never a hit); the
    others are returned, with their label similarities, for the range search."""
    broken = ~np.all(np.isfinite(label_scores), axis=1)
    ranks[queries[broken]] = num_refs
    if hit_ranks is not None:
        hit_ranks[queries[broken]] = num_refs
    return queries[~broken], label_scores[~broken]


def _as_labels(labels: Optional[np.ndarray], num_queries: int) -> Optional[np.ndarray]:
    if labels is None:
        return None
    labels = np.asarray(labels, dtype=np.int64)
    if labels.ndim == 1:
        labels = labels[:, None]
    if labels.shape[0] != num_queries:
        raise ValueError(f"labels has {labels.shape[0]} rows but there are {num_queries} queries")
    return labels


def search(grd: np.ndarray, sat: np.ndarray, labels: Optional[np.ndarray] = None, k: int = 1,
           memory_budget: int = DEFAULT_MEMORY_BUDGET, block_rows: Optional[int] = None,
           backend: str = "numpy",
           progress: Optional[Callable[[int, int], None]] = None,
           timings: Optional[dict] = None) -> RetrievalResult:
    """Top-k references of every query and the ranks of `labels` (N x C reference indices).

    `grd` (N, D) and `sat` (S, D) are unit descriptors of one float dtype (float32 or
    float64); similarities are computed in that dtype. `backend="faiss"` uses faiss'
    IndexFlatIP (only if faiss is importable); its ranks may differ from numpy's in the
    last float32 bit. `timings`, if a dict, receives the seconds spent in the matrix products
    ("product") and in everything else ("rest") of the numpy backend.
    """
    grd = np.asarray(grd)
    sat = np.asarray(sat)
    if grd.ndim != 2 or sat.ndim != 2 or grd.shape[1] != sat.shape[1]:
        raise ValueError(f"descriptor shapes do not match: grd {grd.shape}, sat {sat.shape}")
    if grd.dtype != sat.dtype:
        raise ValueError(f"descriptor dtypes differ: grd {grd.dtype}, sat {sat.dtype}")
    labels = _as_labels(labels, grd.shape[0])
    if backend == "faiss":
        return _search_faiss(grd, sat, labels, k, memory_budget, block_rows, progress)
    if backend != "numpy":
        raise ValueError(f"unknown backend {backend!r}: use 'numpy' or 'faiss'")

    num_queries, num_refs = grd.shape[0], sat.shape[0]
    if block_rows is None:
        block_rows = rows_per_block(num_refs, grd.dtype.itemsize, memory_budget)
    block_rows = max(1, min(block_rows, num_queries))
    k_eff = min(k, num_refs)
    similarity = np.empty((block_rows, num_refs), dtype=grd.dtype)
    mask = np.empty((block_rows, num_refs), dtype=bool)
    sat_t = sat.T

    topk = np.empty((num_queries, k_eff), dtype=np.int64)
    topk_scores = np.empty((num_queries, k_eff), dtype=grd.dtype)
    num_columns = 0 if labels is None else labels.shape[1]
    ranks = np.empty((num_queries, num_columns), dtype=np.int64)
    hit_ranks = np.empty(num_queries, dtype=np.int64) if num_columns > 1 else None

    product_seconds = 0.0
    started = time.perf_counter()
    for rows in query_blocks(num_queries, block_rows):
        count = rows.stop - rows.start
        block = similarity[:count]
        tick = time.perf_counter()
        np.matmul(grd[rows], sat_t, out=block)
        product_seconds += time.perf_counter() - tick
        np.copyto(block, -np.inf, where=np.isnan(block))  # a NaN is never the most similar, nor closer
        topk[rows], topk_scores[rows] = _topk_rows(block, k_eff)
        if labels is not None:
            _rank_labels(block, labels[rows], mask, ranks, hit_ranks, rows)
        if progress is not None:
            progress(rows.stop, num_queries)
    if timings is not None:
        timings["product"] = product_seconds
        timings["rest"] = time.perf_counter() - started - product_seconds
    return RetrievalResult(topk, topk_scores, ranks, hit_ranks, num_refs)


def evaluation_search(grd: np.ndarray, sat: np.ndarray, labels: np.ndarray,
                      timings: Optional[dict] = None) -> RetrievalResult:
    """The search `evaluate.py --checkpoint` runs, once (utils/evaluation/inference.py): top-1 and
    the rank of every label, numpy backend, blocks of DEFAULT_MEMORY_BUDGET; bench/eval_scale.py
    times this call."""
    return search(grd, sat, labels, k=1, timings=timings)


def _search_faiss(grd, sat, labels, k, memory_budget, block_rows, progress) -> RetrievalResult:
    """Top-k from IndexFlatIP.search; label ranks from range_search over small query groups.

    Label similarities are re-read from faiss' own range-search results, so a label is never
    counted as closer than itself because of a different summation order.
    """
    try:
        import faiss
    except ImportError as error:
        raise ImportError("backend='faiss' needs the faiss package (pip install faiss-cpu); "
                          "the default backend='numpy' does not") from error
    grd32 = np.ascontiguousarray(grd, dtype=np.float32)
    sat32 = np.ascontiguousarray(sat, dtype=np.float32)
    index = faiss.IndexFlatIP(sat32.shape[1])
    index.add(sat32)
    num_queries, num_refs = grd32.shape[0], sat32.shape[0]
    k_eff = min(k, num_refs)
    if block_rows is None:
        block_rows = rows_per_block(num_refs, 4, memory_budget)
    topk = np.empty((num_queries, k_eff), dtype=np.int64)
    topk_scores = np.empty((num_queries, k_eff), dtype=np.float32)
    num_columns = 0 if labels is None else labels.shape[1]
    ranks = np.empty((num_queries, num_columns), dtype=np.int64)
    hit_ranks = np.empty(num_queries, dtype=np.int64) if num_columns > 1 else None
    group = 64  # bounds one range_search result to group * S entries
    margin = np.float32(1e-4)
    for rows in query_blocks(num_queries, max(1, block_rows)):
        scores, found = index.search(grd32[rows], k_eff)
        topk[rows], topk_scores[rows] = found, scores
        if labels is None:
            if progress is not None:
                progress(rows.stop, num_queries)
            continue
        queries = np.arange(rows.start, rows.stop)
        approx = np.einsum("qd,qcd->qc", grd32[queries], sat32[labels[queries]])
        queries, approx = _rank_broken_queries_last(queries, approx, ranks, hit_ranks, num_refs)
        radius = approx.min(axis=1) - margin
        for members in np.array_split(queries[np.argsort(radius)], math.ceil(queries.size / group) or 1):
            if not members.size:
                continue
            limits, values, ids = index.range_search(grd32[members],
                                                     float(radius[np.searchsorted(queries, members)].min()))
            for j, q in enumerate(members):
                found_ids = ids[limits[j]:limits[j + 1]]
                found_scores = values[limits[j]:limits[j + 1]]
                own = np.array([found_scores[found_ids == r][0] for r in labels[q]],
                               dtype=np.float32)
                thresholds = _strict_threshold(own)
                ranks[q] = np.count_nonzero(found_scores[None, :] > thresholds[:, None], axis=1)
                if hit_ranks is not None:
                    hit_ranks[q] = ranks[q, 0] - _semi_closer_than_positive(
                        own[None], labels[q:q + 1], thresholds[:1])[0]
        if progress is not None:
            progress(rows.stop, num_queries)
    return RetrievalResult(topk, topk_scores, ranks, hit_ranks, num_refs)


def top_accuracies(positive_ranks: np.ndarray, hit_ranks: np.ndarray,
                   num_references: int) -> tuple[float, float, float, float]:
    """validate_top's (top1%, top1, top5, hit_rate) from ranks, as fractions."""
    positive_ranks = np.asarray(positive_ranks)
    top1_percent = int(num_references * 0.01) + 1
    return (float(np.mean(positive_ranks < top1_percent)),
            float(np.mean(positive_ranks < 1)),
            float(np.mean(positive_ranks < 5)),
            float(np.mean(np.asarray(hit_ranks) < 1)))


def validate_top_blocked(grd_descriptor, sat_descriptor, test_label, **search_options):
    """validate_top's four numbers, computed block by block."""
    grd_descriptor = np.asarray(grd_descriptor)
    sat_descriptor = np.asarray(sat_descriptor)
    dtype = np.result_type(grd_descriptor.dtype, sat_descriptor.dtype, np.float32)
    labels = np.asarray(test_label, dtype=np.int64)
    if labels.ndim == 1:
        labels = labels[:, None]
    result = search(grd_descriptor.astype(dtype, copy=False),
                    sat_descriptor.astype(dtype, copy=False), labels, k=1, **search_options)
    hit = result.hit_ranks if result.hit_ranks is not None else result.ranks[:, 0]
    return top_accuracies(result.ranks[:, 0], hit, result.num_references)


def recall_at(ranks: np.ndarray, k: int) -> float:
    return float(np.mean(np.asarray(ranks) < k))


__all__ = ["RetrievalResult", "search", "validate_top_blocked", "top_accuracies", "recall_at",
           "rows_per_block", "query_blocks", "DEFAULT_MEMORY_BUDGET", "evaluation_search"]

