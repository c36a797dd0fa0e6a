"""Re-ranking by neighbourhoods (k-reciprocal, graph message passing) and the footprint graph,
each against a direct loop-based implementation written from the papers' definitions."""
import numpy as np
import pytest

from utils.localization.footprints import footprint_iou
from utils.localization.neighbourhood import gnn_scores, joint_similarities, k_reciprocal_distances


def random_similarities(count, seed):
    vectors = np.random.default_rng(seed).normal(size=(count, 6))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors @ vectors.T


def nearest(similarities, i, k):
    """N(i, k): i itself and its k most similar nodes."""
    others = sorted((j for j in range(len(similarities)) if j != i), key=lambda j: (-similarities[i][j], j))
    return [i] + others[:k]


def reciprocal(similarities, i, k):
    return {j for j in nearest(similarities, i, k) if i in nearest(similarities, j, k)}


def direct_k_reciprocal(similarities, k1, k2, lam):
    n = len(similarities)
    d = [[max(2.0 - 2.0 * similarities[i][j], 0.0) for j in range(n)] for i in range(n)]
    votes = []
    for i in range(n):
        r = reciprocal(similarities, i, k1)
        star = set(r)
        for j in r:
            rh = reciprocal(similarities, j, int(round(k1 / 2)))
            if len(r & rh) > 2.0 / 3.0 * len(rh):
                star |= rh
        v = [np.exp(-d[i][j]) if j in star else 0.0 for j in range(n)]
        votes.append([x / sum(v) for x in v])
    if k2 > 1:
        votes = [[sum(votes[m][j] for m in nearest(similarities, i, k2 - 1)) / k2 for j in range(n)]
                 for i in range(n)]
    out = []
    for j in range(n):
        jaccard = 1 - sum(min(a, b) for a, b in zip(votes[0], votes[j])) / sum(
            max(a, b) for a, b in zip(votes[0], votes[j]))
        column_max = max(d[m][j] for m in range(n))
        out.append((1 - lam) * jaccard + lam * d[0][j] / column_max)
    return np.array(out)


def direct_gnn(similarities, k1, k2, layers):
    n = len(similarities)
    h = [[1.0 if j in nearest(similarities, i, k1) else 0.0 for j in range(n)] for i in range(n)]
    for _ in range(layers):
        new = []
        for i in range(n):
            row = list(h[i])
            for m in nearest(similarities, i, k2 - 1):
                row = [a + similarities[i][m] ** 2 * b for a, b in zip(row, h[m])]
            norm = sum(x * x for x in row) ** 0.5
            new.append([x / norm for x in row])
        h = new
    return np.array([sum(a * b for a, b in zip(h[0], h[j])) for j in range(n)])


@pytest.mark.parametrize("seed,k1,k2,lam", [(0, 4, 2, 0.3), (1, 6, 3, 0.1), (2, 3, 1, 0.5)])
def test_k_reciprocal_matches_the_papers_definition(seed, k1, k2, lam):
    similarities = random_similarities(12, seed)
    assert np.allclose(k_reciprocal_distances(similarities, k1, k2, lam),
                       direct_k_reciprocal(similarities, k1, k2, lam))


@pytest.mark.parametrize("seed,k1,k2,layers", [(0, 4, 3, 2), (3, 2, 2, 1), (4, 5, 4, 3)])
def test_gnn_scores_match_loops(seed, k1, k2, layers):
    similarities = random_similarities(11, seed)
    assert np.allclose(gnn_scores(similarities, k1, k2, layers), direct_gnn(similarities, k1, k2, layers))


def test_k_reciprocal_lifts_the_tile_whose_neighbours_know_the_query():
    """Tile 1 is the query's nearest, but its look-alikes (2, 3) do not know the query; tile 4,
    second, sits in a clique (4, 5, 6) all near the query: it comes first after re-ranking."""
    s = np.full((7, 7), 0.1)
    np.fill_diagonal(s, 1.0)
    s[0, 1:] = s[1:, 0] = [0.9, 0.1, 0.1, 0.8, 0.7, 0.7]
    for a, b in ((1, 2), (1, 3), (2, 3), (4, 5), (4, 6), (5, 6)):
        s[a, b] = s[b, a] = 0.95
    distances = k_reciprocal_distances(s, k1=3, k2=1, lam=0.1)
    assert np.argmin(distances[1:]) + 1 == 4


def test_joint_similarities_put_the_query_on_the_tiles_scale():
    tiles = np.array([[1.0, 0.9, 0.8], [0.9, 1.0, 0.7], [0.8, 0.7, 1.0]])
    joint = joint_similarities(np.array([0.3, 0.2, 0.1]), tiles)
    assert np.allclose(joint[1:, 1:], tiles) and np.allclose(joint[0, 1:], joint[1:, 0])
    assert np.isclose(joint[0, 1:].mean(), 0.8) and np.isclose(joint[0, 1:].std(), np.std([0.9, 0.8, 0.7]))
    assert list(np.argsort(-joint[0, 1:])) == [0, 1, 2]


def test_footprint_iou_matches_counting_grid_cells():
    centres = np.array([[0.0, 0.0], [5.0, 0.0], [5.0, 5.0], [10.0, 0.0], [30.0, 0.0], [2.0, -3.0]])
    widths = np.array([10.0, 10.0, 10.0, 10.0, 10.0, 6.0])
    grid = np.stack(np.meshgrid(np.arange(-20, 40, 0.25) + 0.125, np.arange(-20, 20, 0.25) + 0.125), -1)
    inside = [np.all(np.abs(grid - c) < w / 2, axis=-1) for c, w in zip(centres, widths)]
    counted = np.array([[np.sum(a & b) / np.sum(a | b) for b in inside] for a in inside])
    assert np.allclose(footprint_iou(centres, widths), counted, atol=1e-9)
    assert np.isclose(footprint_iou(centres, widths)[0, 1], 1 / 3) and footprint_iou(centres, widths)[0, 3] == 0
