"""Blocked retrieval equals the plain full-matrix computation (validate_top's semantics)."""
import numpy as np
import pytest

from utils.evaluation.retrieval import (
    _distance,
    _strict_threshold,
    rows_per_block,
    search,
    top_accuracies,
    validate_top_blocked,
)


def _unit(rng, n, d, dtype=np.float32):
    x = rng.standard_normal((n, d)).astype(dtype)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _plain(grd, sat, labels, k):
    """Full distance matrix and per-query loops, as the original does it."""
    dist = 2 - 2 * np.matmul(grd, sat.T)
    sim = np.matmul(grd, sat.T)
    n, s = dist.shape
    ranks = np.zeros(labels.shape, dtype=np.int64)
    hit = np.zeros(n, dtype=np.int64)
    for i in range(n):
        for c in range(labels.shape[1]):
            ranks[i, c] = np.sum(dist[i] < dist[i, labels[i, c]])
        keep = np.ones(s)
        keep[labels[i, 1:]] = 0
        hit[i] = np.sum((dist[i] < dist[i, labels[i, 0]]) * keep)
    columns = np.tile(np.arange(s), (n, 1))
    topk = np.lexsort((columns, -sim), axis=1)[:, :k]
    return ranks, hit, topk


@pytest.fixture
def tied_data():
    rng = np.random.default_rng(0)
    n, s, d = 120, 300, 8
    grd, sat = _unit(rng, n, d), _unit(rng, s, d)
    sat[11] = sat[10]                  # exact ties between references
    sat[20:26] = sat[20]
    grd[30] = sat[40]                  # a query identical to a reference
    labels = rng.integers(0, s, (n, 4))
    labels[:5, 1] = labels[:5, 0]      # semi-positive equal to the positive
    labels[5:10, 3] = labels[5:10, 2]  # repeated semi-positive
    labels[10:20, 0], labels[10:20, 1] = 20, 21  # positive tied with a semi-positive
    labels[30, 0] = 40
    return grd, sat, labels


@pytest.mark.parametrize("block_rows", [1, 7, 64, 120, 1000])
@pytest.mark.parametrize("k", [1, 5])
def test_blocked_equals_plain(tied_data, block_rows, k):
    grd, sat, labels = tied_data
    result = search(grd, sat, labels, k=k, block_rows=block_rows)
    ranks, hit, topk = _plain(grd, sat, labels, k)
    np.testing.assert_array_equal(result.ranks, ranks)
    np.testing.assert_array_equal(result.hit_ranks, hit)
    np.testing.assert_array_equal(result.topk, topk)
    np.testing.assert_array_equal(result.topk[:, 0], np.argmax(grd @ sat.T, axis=1))


def test_memory_budget_sets_block_rows(tied_data):
    grd, sat, labels = tied_data
    tiny_budget = 5 * sat.shape[0] * 3  # three rows of similarities and mask
    assert rows_per_block(sat.shape[0], 4, tiny_budget) == 3
    small = search(grd, sat, labels, memory_budget=tiny_budget)
    full = search(grd, sat, labels)
    np.testing.assert_array_equal(small.ranks, full.ranks)


def test_float64_descriptors_stay_float64(tied_data):
    grd, sat, labels = (a.astype(np.float64) if a.dtype.kind == "f" else a for a in tied_data)
    result = search(grd, sat, labels)
    ranks, hit, _ = _plain(grd, sat, labels, 1)
    assert result.topk_scores.dtype == np.float64
    np.testing.assert_array_equal(result.ranks, ranks)
    np.testing.assert_array_equal(result.hit_ranks, hit)


def test_rounding_ties_at_low_similarity():
    # 0.1 and the next float32 above it have the same distance 1.8 in float32: not closer.
    low = np.float32(0.1)
    sat = np.array([[low, 0.0], [np.nextafter(low, np.float32(1)), 0.0], [0.2, 0.0]],
                   dtype=np.float32)
    grd = np.array([[1.0, 0.0]], dtype=np.float32)
    result = search(grd, sat, np.array([[0, 1, 2, 2]]))
    assert result.ranks.tolist() == [[1, 1, 0, 0]]
    assert result.hit_ranks.tolist() == [0]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_strict_threshold_is_the_boundary(dtype):
    rng = np.random.default_rng(1)
    s = np.concatenate([rng.uniform(-1, 1, 5000), rng.uniform(-1e-3, 1e-3, 500),
                        [0.0, 1.0, -1.0, 0.5, 0.25]]).astype(dtype)
    t = _strict_threshold(s)
    assert np.all(_distance(t) >= _distance(s))
    assert np.all(_distance(np.nextafter(t, dtype(np.inf))) < _distance(s))


def test_validate_top_blocked_matches_loop(tied_data):
    grd, sat, labels = tied_data
    ranks, hit, _ = _plain(grd, sat, labels, 1)
    expected = top_accuracies(ranks[:, 0], hit, sat.shape[0])
    for block_rows in (3, 50):
        assert validate_top_blocked(grd, sat, labels, block_rows=block_rows) == expected


def test_faiss_backend_matches_numpy(tied_data):
    grd, sat, labels = tied_data
    a = search(grd, sat, labels, k=3, backend="faiss")
    b = search(grd, sat, labels, k=3)
    np.testing.assert_array_equal(a.ranks, b.ranks)
    np.testing.assert_array_equal(a.hit_ranks, b.hit_ranks)
    np.testing.assert_array_equal(a.topk[:, 0], b.topk[:, 0])


def test_mismatched_inputs_raise():
    rng = np.random.default_rng(2)
    with pytest.raises(ValueError, match="shapes"):
        search(_unit(rng, 3, 4), _unit(rng, 5, 6))
    with pytest.raises(ValueError, match="rows"):
        search(_unit(rng, 3, 4), _unit(rng, 5, 4), labels=np.zeros((2, 4), int))
    with pytest.raises(ValueError, match="backend"):
        search(_unit(rng, 3, 4), _unit(rng, 5, 4), backend="annoy")
