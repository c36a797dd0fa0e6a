"""SpaceNet 6 (utils/data/spacenet6.py) as a train and a test SplitIndex.

SpaceNet 6 releases its SAR-optical pairs for one AOI only (its test tiles have no optical pair),
so both splits come from that AOI, cut by area so that no test tile's ground is seen in training:
the tiles are ordered by the easting of their centre (longitude, ties by latitude) and the
eastmost `test_fraction` of them are the test split. Each split's labels point into its own
optical tiles: the test split's gallery is its test tiles alone (chance R@1 = 1 / its size).
"""
import numpy as np

from utils.data.dataset import SplitIndex
from utils.errors import DataError


def subset(index, rows, name):
    """The pairs `rows` of a one-to-one SplitIndex (query i's positive is tile i) as a SplitIndex."""
    rows = np.asarray(rows, np.int64)
    if not np.array_equal(index.labels[:, 0], np.arange(len(index))):
        raise ValueError("subset() takes a one-to-one index (labels[:, 0] = row)")
    n = len(rows)
    local = np.arange(n, dtype=np.int64)

    def pick(values):
        return None if values is None else values[rows]
    return SplitIndex(sat_paths=index.sat_paths[rows], sat_gps=index.sat_gps[rows], sat_city=index.sat_city[rows],
                      grd_paths=index.grd_paths[rows], grd_gps=index.grd_gps[rows], grd_city=index.grd_city[rows],
                      labels=np.repeat(local[:, None], 4, axis=1), deltas=np.zeros((n, 4, 2)),
                      meters_per_pixel=index.meters_per_pixel[rows], name=name, grd_source=pick(index.grd_source),
                      sat_source=pick(index.sat_source), root=index.root, cities=index.cities)


def split_by_area(index, test_fraction):
    """(train, test): the eastmost round(test_fraction x tiles) pairs are the test split."""
    if not 0.0 < float(test_fraction) < 1.0:
        raise ValueError(f"data.spacenet6.test_fraction must be in (0, 1), not {test_fraction!r}")
    n = len(index)
    n_test = int(round(float(test_fraction) * n))
    if n_test < 1 or n_test >= n:
        raise DataError(f"{index.root}: {n} tile pair(s) cannot be split into train and test at test_fraction "
                        f"{test_fraction}: add tiles or change data.spacenet6.test_fraction")
    order = np.lexsort((index.sat_gps[:, 0], index.sat_gps[:, 1]))       # by longitude, then latitude
    train_rows, test_rows = np.sort(order[:n - n_test]), np.sort(order[n - n_test:])
    return (subset(index, train_rows, f"{index.name} train (west)"),
            subset(index, test_rows, f"{index.name} test (east)"))
