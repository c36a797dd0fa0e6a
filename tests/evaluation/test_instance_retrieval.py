"""University-1652's Recall@K and AP against a loop over each query's ranking, ties included."""
import numpy as np
import pytest

from utils.evaluation import instance_retrieval as ir


def _loop_metrics(similarity, query_labels, gallery_labels, ks):
    """From the definitions: rank by (-similarity, index), walk the list, precision at each match."""
    recalls = {k: 0 for k in ks}
    aps = []
    for q in range(similarity.shape[0]):
        ranking = sorted(range(similarity.shape[1]), key=lambda g: (-similarity[q, g], g))
        hits = [r for r, g in enumerate(ranking) if gallery_labels[g] == query_labels[q]]
        for k in ks:
            recalls[k] += hits[0] < k
        area = 0.0
        for i, r in enumerate(hits, start=1):
            before = (i - 1) / r if r else 1.0
            area += (before + i / (r + 1)) / 2 / len(hits)
        aps.append(area)
    n = similarity.shape[0]
    return {k: v / n for k, v in recalls.items()}, float(np.mean(aps))


def _unit(rows):
    rows = np.asarray(rows, np.float64)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_hand_made_ranking():
    # one query, gallery scores 0.9 (other), 0.8 (match), 0.7 (other), 0.6 (match)
    angles = np.arccos([0.9, 0.8, 0.7, 0.6])
    gallery = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    result = ir.evaluate_instance_retrieval([[1.0, 0.0]], [7], gallery, [1, 7, 2, 7], ks=(1, 2, 3))
    assert list(result.first_ranks) == [1]
    assert result.recall == {1: 0.0, 2: 1.0, 3: 1.0}
    # matches at ranks 1 and 3: (0 + 1/2)/2 / 2 + (1/3 + 2/4)/2 / 2
    assert result.mean_ap == pytest.approx(0.125 + (1 / 3 + 0.5) / 4)


def test_ties_go_to_the_lower_gallery_index():
    gallery = _unit([[1, 0], [0, 1], [0, 1]])          # items 1 and 2 tie
    query = _unit([[0, 1]])
    # a single match at rank 1: the baseline's trapezoid gives (0 + 1/2) / 2
    later = ir.evaluate_instance_retrieval(query, [5], gallery, [0, 4, 5], ks=(1,))
    earlier = ir.evaluate_instance_retrieval(query, [4], gallery, [0, 4, 5], ks=(1,))
    assert list(later.first_ranks) == [1] and later.recall[1] == 0.0 and later.mean_ap == pytest.approx(0.25)
    assert list(earlier.first_ranks) == [0] and earlier.recall[1] == 1.0 and earlier.mean_ap == 1.0


@pytest.mark.parametrize("block_rows", [1, 3, None])
def test_matches_the_loop_on_random_rankings_with_ties(block_rows):
    rng = np.random.default_rng(0)
    gallery_labels = rng.integers(0, 6, 150)
    query_labels = rng.choice(np.unique(gallery_labels), 11)
    # unit vectors whose norms and dot products are exact in binary (entries 0, +-1/2, +-1): many exact ties
    directions = np.concatenate([np.eye(4), -np.eye(4), rng.choice([-0.5, 0.5], (6, 4))])
    gallery = directions[rng.integers(0, len(directions), 150)]
    query = directions[rng.integers(0, len(directions), 11)]
    result = ir.evaluate_instance_retrieval(query, query_labels, gallery, gallery_labels, ks=(1, 5, 10),
                                            block_rows=block_rows)
    similarity = ir.l2_normalize(query) @ ir.l2_normalize(gallery).T
    recalls, mean_ap = _loop_metrics(similarity, query_labels, gallery_labels, (1, 5, 10, 3))
    assert result.recall == pytest.approx({k: recalls[k] for k in (1, 5, 10)})
    assert result.recall_top1_percent == pytest.approx(recalls[3])     # K = round(1.5) + 1
    assert result.mean_ap == pytest.approx(mean_ap)


def test_query_without_a_true_match_is_an_error():
    with pytest.raises(ValueError, match="no true match"):
        ir.evaluate_instance_retrieval([[1.0, 0.0]], [3], [[1.0, 0.0]], [4])


def test_multi_query_pooling():
    descriptors = np.array([[3.0, 0.0], [0.0, 0.5], [1.0, 1.0], [2.0, 0.0]])
    pooled, buildings = ir.pool_by_building(descriptors, [8, 8, 2, 8])
    assert list(buildings) == [2, 8]
    np.testing.assert_allclose(pooled[0], _unit([[1, 1]])[0])
    np.testing.assert_allclose(pooled[1], _unit([[2.0 / 3, 1.0 / 3]])[0])    # mean of (1,0), (0,1), (1,0)
    np.testing.assert_allclose(np.linalg.norm(pooled, axis=1), 1.0)
