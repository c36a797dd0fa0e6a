"""Re-ranking a query's top-K tiles by their neighbourhoods: k-reciprocal (Zhong et al., CVPR 2017)
and graph message passing (Zhang et al. 2020). Both work on one query at a time, on the small
(K + 1) x (K + 1) similarity matrix of the query and its K candidates; memory does not grow with
the database.

Cross-view adaptation: node 0 is the panorama, nodes 1..K its candidate tiles. Tile-tile
similarities come from the tile descriptors; the panorama's row comes from the other domain and
sits on another scale (tiles look more like tiles than like panoramas), so a tile would never count
the panorama among its neighbours. The panorama's similarities are therefore mapped affinely onto
the tile-tile block's mean and spread before any neighbourhood is taken (`joint_similarities`).
"""
import numpy as np


def joint_similarities(query_similarities, tile_similarities):
    """(K + 1, K + 1) similarities: node 0 the query (its row calibrated), 1..K the tiles."""
    query = np.asarray(query_similarities, np.float64)
    tiles = np.asarray(tile_similarities, np.float64)
    count = len(query)
    off_diagonal = tiles[~np.eye(count, dtype=bool)] if count > 1 else tiles.ravel()
    spread = query.std()
    scaled = (query - query.mean()) / spread * off_diagonal.std() if spread > 0 else query - query.mean()
    scaled = scaled + off_diagonal.mean()
    joint = np.empty((count + 1, count + 1))
    joint[0, 0] = max(1.0, tiles.max())
    joint[0, 1:] = joint[1:, 0] = scaled
    joint[1:, 1:] = tiles
    return joint


def ranking(similarities):
    """(N, N): rank[i, j] = position of j in i's list, most similar first (i itself first)."""
    similarities = np.array(similarities, np.float64)
    np.fill_diagonal(similarities, np.inf)
    order = np.argsort(-similarities, axis=1, kind="stable")
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(similarities.shape[1])[None], axis=1)
    return rank


def k_reciprocal_distances(similarities, k1, k2, lam):
    """d*(0, j) of Zhong et al. for node 0 against every node j of a similarity matrix.

    N(i, k): i and its k nearest; R(i, k) = {j in N(i, k): i in N(j, k)}; R* adds R(j, k1/2) of
    each j in R(i, k1) sharing at least 2/3 of it with R(i, k1); V_ij = exp(-d_ij) on R*,
    rows summing to 1, averaged over N(i, k2 - 1); d_J = 1 - sum min(V_0, V_j) / sum max(V_0, V_j);
    d* = (1 - lam) d_J + lam d, with d = 2 - 2 similarity divided by each column's largest.
    """
    rank = ranking(similarities)
    distances = np.maximum(2.0 - 2.0 * np.asarray(similarities, np.float64), 0.0)
    reciprocal = _reciprocal(rank, k1)
    half = _reciprocal(rank, int(np.around(k1 / 2)))
    shared = reciprocal.astype(np.int64) @ half.T.astype(np.int64)        # |R(i, k1) & R(j, k1/2)|
    joins = reciprocal & (shared > 2.0 / 3.0 * half.sum(axis=1)[None])
    expanded = reciprocal | ((joins.astype(np.int64) @ half.astype(np.int64)) > 0)
    votes = np.where(expanded, np.exp(-distances), 0.0)
    votes /= votes.sum(axis=1, keepdims=True)
    if k2 > 1:
        votes = ((rank < k2).astype(np.float64) @ votes) / k2
    jaccard = 1.0 - np.minimum(votes[0], votes).sum(axis=1) / np.maximum(votes[0], votes).sum(axis=1)
    original = distances[0] / np.maximum(distances.max(axis=0), 1e-12)
    return (1.0 - lam) * jaccard + lam * original


def _reciprocal(rank, k):
    near = rank <= k
    return near & near.T


def gnn_scores(similarities, k1, k2, layers):
    """Node 0's score of every node after graph message passing (Zhang et al. 2020).

    Each node starts as the indicator of itself and its k1 nearest; each layer adds to a node its
    k2 nearest nodes' features (itself included), each weighted by the squared similarity; rows
    are then unit-normalised and node 0 scores node j by the inner product of their features.
    """
    similarities = np.asarray(similarities, np.float64)
    rank = ranking(similarities)
    features = (rank <= k1).astype(np.float64)
    messages = np.where(rank < k2, similarities ** 2, 0.0)
    for _ in range(layers):
        features = features + messages @ features
        features /= np.linalg.norm(features, axis=1, keepdims=True)
    return features @ features[0]
