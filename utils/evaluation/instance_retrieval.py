"""University-1652's retrieval protocol: a gallery image is a true match when it shows the query's
building (same id). Drone -> satellite has one true satellite per query, satellite -> drone has
about 54 true drones per query, so AP matters as much as Recall@K.

Ranking: gallery images by decreasing similarity (dot product of L2-normalised descriptors);
ties go to the lower gallery index first (a stable sort). The baseline's evaluate_gpu.py sorts
with `np.argsort(score)[::-1]`, which leaves the order of tied scores to numpy's quicksort;
ties only arise between identical descriptors.

Recall@K: share of queries whose first true match is among the first K. AP as evaluate_gpu.py's
`compute_mAP` computes it: the trapezoidal area under the precision-recall curve, i.e. for the
i-th true match (i = 1..n) at 0-based rank r_i, add (1/n) * (p_{i-1} + p_i) / 2 with
p_i = i / (r_i + 1) and p_{i-1} = (i - 1) / r_i (1 when r_i = 0). So a single true match at
rank r > 0 scores 1 / (2 (r + 1)), half the usual AP: numbers compare with the paper's, not with
other benchmarks'. Recall@top1%: Recall@K with
K = round(0.01 * gallery size) + 1, the baseline's `CMC[round(len(gallery) * 0.01)]`.

Multi-query (the paper's drone -> satellite with all drone images of a place as one query):
`pool_by_building` averages a building's L2-normalised descriptors and re-normalises.

Similarities are computed for a block of queries at a time (utils.evaluation.retrieval's
memory budget); the full query x gallery matrix is never held.
"""
from dataclasses import dataclass

import numpy as np

from utils.evaluation.finite import require_finite
from utils.evaluation.retrieval import DEFAULT_MEMORY_BUDGET, query_blocks, rows_per_block

RECALL_KS = (1, 5, 10)


@dataclass
class InstanceRetrievalResult:
    recall: dict                 # K -> share of queries with a true match in the first K
    recall_top1_percent: float
    mean_ap: float
    first_ranks: np.ndarray      # (Q,) int64 0-based rank of each query's first true match
    average_precision: np.ndarray   # (Q,) float64

    def summary(self):
        recalls = "  ".join(f"R@{k} {100 * v:.2f}" for k, v in self.recall.items())
        return f"{recalls}  R@top1% {100 * self.recall_top1_percent:.2f}  AP {100 * self.mean_ap:.2f}"


def l2_normalize(descriptors):
    descriptors = np.asarray(descriptors, np.float64)
    norms = np.linalg.norm(descriptors, axis=1, keepdims=True)
    return descriptors / np.maximum(norms, 1e-12)


def pool_by_building(descriptors, labels):
    """One descriptor per building: the mean of its L2-normalised descriptors, L2-normalised.
    Returns (pooled (B, D) float64, labels (B,) sorted)."""
    labels = np.asarray(labels)
    buildings, inverse = np.unique(labels, return_inverse=True)
    sums = np.zeros((len(buildings), np.shape(descriptors)[1]), np.float64)
    np.add.at(sums, inverse, l2_normalize(descriptors))
    counts = np.bincount(inverse, minlength=len(buildings))[:, None]
    return l2_normalize(sums / counts), buildings


def true_match_ranks(similarity_row, is_match):
    """Sorted 0-based ranks of the true matches in one query's ranking (ties: lower index first)."""
    order = np.argsort(-similarity_row, kind="stable")
    position = np.empty_like(order)
    position[order] = np.arange(len(order))
    return np.sort(position[is_match])


def average_precision(ranks):
    """evaluate_gpu.py's trapezoidal AP from the sorted 0-based ranks of all true matches."""
    ranks = np.asarray(ranks, np.float64)
    i = np.arange(1, len(ranks) + 1, dtype=np.float64)
    precision = i / (ranks + 1.0)
    before = np.where(ranks > 0, (i - 1.0) / np.maximum(ranks, 1.0), 1.0)
    return float(np.mean((before + precision) / 2.0))


def evaluate_instance_retrieval(query, query_labels, gallery, gallery_labels, ks=RECALL_KS,
                                memory_budget=DEFAULT_MEMORY_BUDGET, block_rows=None):
    """Recall@K, Recall@top1% and mean AP of queries against a gallery (descriptors are
    L2-normalised here). Every query must have at least one true match in the gallery."""
    require_finite({"query descriptors": query, "gallery descriptors": gallery}, "instance retrieval")
    query, gallery = l2_normalize(query), l2_normalize(gallery)
    query_labels, gallery_labels = np.asarray(query_labels), np.asarray(gallery_labels)
    if len(query_labels) != len(query) or len(gallery_labels) != len(gallery):
        raise ValueError(f"{len(query)} queries with {len(query_labels)} labels, "
                         f"{len(gallery)} gallery items with {len(gallery_labels)} labels")
    absent = np.setdiff1d(query_labels, gallery_labels)
    if len(absent):
        raise ValueError(f"{len(absent)} query buildings (e.g. {absent[0]}) have no true match in the gallery")
    rows = block_rows or rows_per_block(len(gallery), itemsize=8, memory_budget=memory_budget)
    first = np.empty(len(query), np.int64)
    ap = np.empty(len(query), np.float64)
    for block in query_blocks(len(query), rows):
        similarity = query[block] @ gallery.T
        matches = query_labels[block][:, None] == gallery_labels[None, :]
        for offset, (row, is_match) in enumerate(zip(similarity, matches)):
            ranks = true_match_ranks(row, is_match)
            first[block.start + offset] = ranks[0]
            ap[block.start + offset] = average_precision(ranks)
    top1_percent = int(round(0.01 * len(gallery))) + 1
    return InstanceRetrievalResult(recall={k: float(np.mean(first < k)) for k in ks},
                                   recall_top1_percent=float(np.mean(first < top1_percent)),
                                   mean_ap=float(np.mean(ap)), first_ranks=first, average_precision=ap)
