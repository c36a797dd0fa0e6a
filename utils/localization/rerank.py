"""Re-ranking retrieved tiles: by spatial consistency on the reference graph (neighbour lists, or
the candidates' footprint overlaps), or by query expansion.

Spatial consistency: the graph links tiles whose footprints overlap or touch (centres at most one tile width apart
along each axis). A tile whose neighbours also look like the panorama is more likely right than
an isolated look-alike: its score becomes similarity + weight * (mean of its neighbours' best
`support` similarities to the panorama).

Query expansion (alpha-weighted average query expansion): the panorama's descriptor plus its
top-n tiles' descriptors, each weighted by its similarity to the power alpha (alpha = 0: the plain
average), renormalised, is searched again. Tiles that look like the panorama's best matches rise.

Windows: a candidate tile scores (its similarity + weight x the panorama's best similarity to a
tile-sized window (cut from the raster, localize.fine_stride_px apart) centred in its footprint) /
(1 + weight), the windows described by localize.fine_checkpoint's network: a descriptor trained on
windows centred on the panorama fires where the panorama is, so a look-alike tile whose windows all
miss it sinks. The score replaces the similarity in the mixture's weights too.

Consensus (several panoramas a few metres apart): the tiles are ranked by the panoramas' mean
similarity, and each panorama's score of a tile mixes its own similarity with the others' mean.
"""
import numpy as np

from utils.localization.footprints import footprint_iou


def reference_graph(centres, width_m):
    """Neighbour lists: for each tile, the ids of the tiles within one width (Chebyshev) of it."""
    from scipy.spatial import cKDTree
    centres = np.asarray(centres, np.float64)
    radius = 1.01 * float(np.max(width_m))
    found = cKDTree(centres).query_ball_point(centres, r=radius, p=np.inf)
    return [np.array(sorted(set(ids) - {i}), dtype=np.int64) for i, ids in enumerate(found)]


def spatial_rerank(candidates, similarities, neighbours, similarity_to, weight, support=3):
    """Candidates re-ordered by similarity + weight * neighbour support; returns (ids, scores).

    similarity_to(ids) gives the panorama's similarity to any tiles (from the stored descriptors).
    """
    candidates = np.asarray(candidates)
    scores = np.asarray(similarities, np.float64).copy()
    for n, tile in enumerate(candidates):
        around = neighbours[tile]
        if len(around):
            best = np.sort(similarity_to(around))[::-1][:support]
            scores[n] += weight * float(best.mean())
    order = np.argsort(-scores, kind="stable")
    return candidates[order], scores[order]


def expanded_query(descriptor, index, tiles, alpha):
    """Unit descriptor: descriptor + sum over its top `tiles` of max(similarity, 0)^alpha x tile descriptor."""
    similarities, ids = index.search(descriptor[None], tiles)
    weights = np.maximum(similarities[0], 0.0) ** float(alpha)
    query = np.asarray(descriptor, np.float64) + weights @ index.descriptors[ids[0]].astype(np.float64)
    return (query / max(np.linalg.norm(query), 1e-12)).astype(np.float32)


def consensus_tiles(similarity_to, candidates, top_k):
    """(shared tile ids (k,), similarities (P, k)) for P panoramas with candidate lists `candidates`:
    the top_k of all candidates by the panoramas' mean similarity. similarity_to(ids) gives the
    (P, len(ids)) similarities of all panoramas to any tiles."""
    pooled = np.unique(np.concatenate([np.asarray(c, np.int64) for c in candidates]))
    similarities = np.asarray(similarity_to(pooled), np.float64)
    order = np.argsort(-similarities.mean(axis=0), kind="stable")[:top_k]
    return pooled[order], similarities[:, order]


def consensus_scores(similarities, consensus):
    """(P, k): (1 - consensus) x each panorama's own similarity + consensus x the others' mean."""
    similarities = np.asarray(similarities, np.float64)
    count = len(similarities)
    if count == 1:
        return similarities
    others = (similarities.sum(axis=0, keepdims=True) - similarities) / (count - 1)
    return (1.0 - consensus) * similarities + consensus * others


def footprint_rerank(similarities, centres, widths, weight):
    """Order of candidates by similarity + weight x the IoU-weighted mean similarity of the
    candidates whose footprints overlap theirs (0 for a candidate no other overlaps)."""
    similarities = np.asarray(similarities, np.float64)
    edges = footprint_iou(centres, widths) * (1.0 - np.eye(len(similarities)))
    total = edges.sum(axis=1)
    support = np.divide(edges @ similarities, total, out=np.zeros_like(similarities), where=total > 0)
    return np.argsort(-(similarities + float(weight) * support), kind="stable")


def window_rerank(similarities, window_best, weight):
    """(order, scores): candidates by (similarity + weight x the best similarity of a window centred in
    their footprint) / (1 + weight), a similarity on the retrieval's scale that the mixture weighs by
    (arrays (..., K): along the last axis)."""
    scores = (np.asarray(similarities, np.float64) + float(weight) * np.asarray(window_best, np.float64)) / (1.0 + float(weight))
    return np.argsort(-scores, axis=-1, kind="stable"), scores
