"""Two stages measured on the same panoramas: the per-seed differences of a measure and McNemar's
exact test on the panoramas' top-1 hits (pure numpy and scipy)."""
import os

import numpy as np
from scipy.stats import binomtest

from utils.errors import DataError


def seed_differences(before: list, after: list) -> dict:
    """after - before for each seed (None where either is missing), their mean +- std and the
    number of seeds that went up, down or stayed."""
    per_seed = [None if a is None or b is None else float(a) - float(b) for b, a in zip(before, after)]
    known = np.array([d for d in per_seed if d is not None], dtype=np.float64)
    if known.size == 0:
        return {"per_seed": per_seed, "n": 0}
    return {"per_seed": per_seed, "n": int(known.size), "mean": float(known.mean()), "std": float(known.std()),
            "up": int((known > 0).sum()), "down": int((known < 0).sum()), "equal": int((known == 0).sum())}


def mcnemar_exact(before_hits, after_hits) -> dict:
    """McNemar's exact test on paired hits (one entry per panorama, or per panorama and seed when
    pooled): on the discordant pairs, the number that only `after` hits is Binomial(n, 1/2) if the
    two are equally good. p_two_sided doubles the smaller tail; p_after_better is P(X >= only_after)."""
    before = np.asarray(before_hits, dtype=bool)
    after = np.asarray(after_hits, dtype=bool)
    if before.shape != after.shape or before.ndim != 1:
        raise DataError(f"paired hits must be two 1-D arrays of the same length, got shapes "
                          f"{before.shape} and {after.shape}: evaluate both stages on the same split")
    only_before = int((before & ~after).sum())
    only_after = int((~before & after).sum())
    discordant = only_before + only_after
    if discordant:
        p_two = binomtest(only_after, discordant, 0.5, alternative="two-sided").pvalue
        p_after = binomtest(only_after, discordant, 0.5, alternative="greater").pvalue
    else:
        p_two = p_after = 1.0
    return {"pairs": int(before.size), "both": int((before & after).sum()), "neither": int((~before & ~after).sum()),
            "only_before": only_before, "only_after": only_after,
            "p_two_sided": float(p_two), "p_after_better": float(p_after)}


def top1_hits(stage_out_dir: str) -> np.ndarray:
    """(N,) bool: whether each test panorama's positive tile came first, from report.py's per_query.npz."""
    path = os.path.join(stage_out_dir, "per_query.npz")
    if not os.path.isfile(path):
        raise DataError(f"{path}: no per-panorama results; evaluate the stage first")
    with np.load(path) as data:
        return np.asarray(data["ranks"])[:, 0] < 1
