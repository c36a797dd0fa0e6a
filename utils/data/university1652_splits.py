"""University-1652 (utils/data/university1652.py) as the project's SplitIndex, so that the one
trainer, sampler and scan read it unchanged.

* "grd" rows: the query view's images (drone by default, or street); "sat" rows: satellite images.
* labels[:, 0]: the row of the building's satellite image. There are no semi-positives: columns
  1-3 repeat the positive. The sampler's overlap rule (utils/data/sampler.py: no two rows of a
  batch share any of their 4 label columns) then keeps two images of one building out of a batch,
  whose other rows are the in-batch negatives. No stage with semi-positives reads columns 1-3 here.
* deltas zero, GPS zero, meters_per_pixel NaN: a building has no position in the released set.
* sat_building, grd_building: the building id (folder name) of every row: the instance loss's
  classes (`building_classes`) and the evaluation's true matches.

Splits: train = train/<query view> against train/satellite; test = test/query_<query view>
against test/gallery_satellite (distractor buildings included). `satellite_to_drone_index` holds
what the satellite -> drone task scans: the query satellites and the drone gallery.
"""
import os

import numpy as np

from utils.data.dataset import SplitIndex
from utils.errors import DataError

QUERY_VIEWS = ("drone", "street")
NAME = "University-1652"


def _rows_of(sat_building, buildings, where):
    """Row of each building's satellite image among sat_building (one image per building)."""
    order = np.argsort(sat_building, kind="stable")
    found = np.searchsorted(sat_building[order], buildings)
    found = np.minimum(found, len(order) - 1)
    absent = sat_building[order][found] != buildings
    if absent.any():
        raise DataError(f"{where}: building {buildings[absent][0]} has no satellite image "
                        f"({int(absent.sum())} images without one); see data/DATASET.md")
    if len(np.unique(sat_building)) != len(sat_building):
        raise DataError(f"{where}: a building has several satellite images; University-1652 has one per building")
    return order[found]


def as_split_index(sat, grd, name, root):
    """SplitIndex of `grd` images (queries) against `sat` images (references), University1652's ViewImages."""
    positives = _rows_of(sat.building_ids, grd.building_ids, name)
    n, s = len(grd), len(sat)
    return SplitIndex(
        sat_paths=sat.paths, sat_gps=np.zeros((s, 2)), sat_city=np.full(s, NAME), grd_paths=grd.paths,
        grd_gps=np.zeros((n, 2)), grd_city=np.full(n, NAME), labels=np.repeat(positives[:, None], 4, axis=1),
        deltas=np.zeros((n, 4, 2)), meters_per_pixel=np.full(s, np.nan), name=name, root=root, cities=(NAME,),
        sat_building=sat.building_ids, grd_building=grd.building_ids)


def split_indexes(index, query_view="drone"):
    """(train, test) SplitIndex of a University1652Index for `query_view` queries."""
    if query_view not in QUERY_VIEWS:
        raise ValueError(f"query_view must be one of {QUERY_VIEWS}, not {query_view!r}")
    base = os.path.basename(index.root)
    train = as_split_index(index.train["satellite"], index.train[query_view],
                           f"{base} train {query_view}->satellite", index.root)
    test = as_split_index(index.gallery["satellite"], index.query[query_view],
                          f"{base} test {query_view}->satellite", index.root)
    return train, test


def satellite_to_drone_index(index):
    """(SplitIndex, number of satellite queries) of the satellite -> drone task: sat rows are
    test/query_satellite's images (the queries, first), then test/gallery_satellite's images of the
    buildings no satellite query shows, so that every drone of test/gallery_drone (the gallery,
    the grd rows) has its building's satellite row."""
    queries, gallery = index.query["satellite"], index.gallery["satellite"]
    others = ~np.isin(gallery.building_ids, queries.building_ids)
    sat = type(queries)(paths=np.concatenate([queries.paths, gallery.paths[others]]),
                        labels=np.concatenate([queries.labels, gallery.labels[others]]),
                        building_ids=np.concatenate([queries.building_ids, gallery.building_ids[others]]))
    name = f"{os.path.basename(index.root)} test satellite->drone"
    return as_split_index(sat, index.gallery["drone"], name, index.root), len(queries)


def building_classes(split):
    """(S,) int64 class of every satellite row: its building's position among the split's sorted
    buildings (the baseline's ImageFolder numbering); a grd row's class is that of labels[:, 0]."""
    return np.searchsorted(np.unique(split.sat_building), split.sat_building).astype(np.int64)
