"""Two stages on the same panoramas: per-seed differences and McNemar's exact test
(utils/evaluation/paired.py) against a direct count and binomial sum."""
from math import comb

import numpy as np
import pytest

from utils.errors import DataError
from utils.evaluation import paired


def binomial_tail_at_least(k, n):
    return sum(comb(n, i) for i in range(k, n + 1)) / 2 ** n


def test_mcnemar_matches_a_direct_count_and_binomial_sum():
    # 40 panoramas: 20 both hit, 6 neither, 3 only before, 11 only after, in a shuffled order
    before = np.array([1] * 20 + [0] * 6 + [1] * 3 + [0] * 11, dtype=bool)
    after = np.array([1] * 20 + [0] * 6 + [0] * 3 + [1] * 11, dtype=bool)
    order = np.random.default_rng(3).permutation(40)
    found = paired.mcnemar_exact(before[order], after[order])
    assert (found["pairs"], found["both"], found["neither"], found["only_before"], found["only_after"]) == (
        40, 20, 6, 3, 11)
    one_sided = binomial_tail_at_least(11, 14)          # P(X >= 11), X ~ Bin(14, 1/2)
    assert found["p_after_better"] == pytest.approx(one_sided, rel=1e-12)
    assert found["p_two_sided"] == pytest.approx(2 * one_sided, rel=1e-12)   # symmetric: twice the smaller tail
    assert found["p_two_sided"] == pytest.approx(0.0574, abs=1e-4)
    swapped = paired.mcnemar_exact(after, before)       # the other direction: the same two-sided p
    assert swapped["p_two_sided"] == pytest.approx(found["p_two_sided"])
    assert swapped["p_after_better"] == pytest.approx(1 - binomial_tail_at_least(12, 14), rel=1e-12)


def test_mcnemar_without_discordant_pairs_and_with_unequal_lengths():
    same = np.array([True, False, True])
    assert paired.mcnemar_exact(same, same)["p_two_sided"] == 1.0
    with pytest.raises(DataError, match="same length"):
        paired.mcnemar_exact(same, same[:2])


def test_seed_differences_and_hits_from_per_query(tmp_path):
    found = paired.seed_differences([49.0, 50.5, None, 48.0], [50.0, 50.0, 47.0, 48.0])
    assert found["per_seed"] == [1.0, -0.5, None, 0.0]
    assert found["mean"] == pytest.approx(np.mean([1.0, -0.5, 0.0]))
    assert found["std"] == pytest.approx(np.std([1.0, -0.5, 0.0]))
    assert (found["n"], found["up"], found["down"], found["equal"]) == (3, 1, 1, 1)
    ranks = np.array([[0, 3], [2, 0], [0, 1], [7, 9]])  # column 0: the positive tile's rank
    np.savez_compressed(tmp_path / "per_query.npz", ranks=ranks, top1=np.zeros(4))
    assert paired.top1_hits(str(tmp_path)).tolist() == [True, False, True, False]
    with pytest.raises(DataError, match="evaluate the stage"):
        paired.top1_hits(str(tmp_path / "missing"))
