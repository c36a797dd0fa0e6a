"""From a config to the data the trainer and the evaluation use: split indexes and an image loader."""
import os

from utils.config import resolve_path
from utils.data.cache_config import open_cache
from utils.data.check import warn_on_labels
from utils.data.dataset import load_vigor
from utils.data.prefetch import ImageLoader
from utils.data.university1652 import load_university1652
from utils.data.university1652_splits import split_indexes

UNIVERSITY1652 = ("university1652", "synthetic_university1652")


def ensure_dataset(cfg):
    """The dataset root; the synthetic city is generated there on first use."""
    root = resolve_path(cfg.data.root)
    if cfg.data.dataset == "synthetic":
        from utils.data.synthetic_vigor import Ambiguity, ensure_synthetic
        s = cfg.data.synthetic
        ensure_synthetic(root, seed=s.seed, cities=s.cities, tiles_per_side=s.tiles_per_side,
                         panos_per_tile=s.panos_per_tile, pano_size=tuple(s.pano_size),
                         meters_per_pixel=s.meters_per_pixel, ambiguity=Ambiguity(**s.ambiguity))
    elif cfg.data.dataset == "synthetic_university1652" and not os.path.isdir(os.path.join(root, "train")):
        from utils.data.synthetic_university1652 import generate
        s = cfg.data.synthetic_university1652
        generate(root, seed=s.seed, places=s.places, views=s.views, size=s.size)
    elif cfg.data.dataset not in ("vigor", "cvact") + UNIVERSITY1652:
        raise ValueError(f"data.dataset is '{cfg.data.dataset}': use vigor, cvact, synthetic, "
                         f"university1652 or synthetic_university1652")
    return root


def load_university1652_tree(cfg):
    """The University1652Index of the configured root (generated first for the synthetic one); the
    images are not opened here (the loader reports a bad one as data.on_bad_sample says)."""
    return load_university1652(ensure_dataset(cfg), train_views=("satellite", cfg.data.query_view),
                               test_views=tuple(dict.fromkeys(("satellite", "drone", cfg.data.query_view))), images="none")


def load_splits(cfg, check_labels=True):
    """(train, test) SplitIndex of the configured dataset and split. check_labels: warn (once per
    process and dataset) when the label offsets do not fit the configured resolution
    (utils/data/check.py; reads no image)."""
    if cfg.data.dataset in UNIVERSITY1652:
        return split_indexes(load_university1652_tree(cfg), cfg.data.query_view)
    root = ensure_dataset(cfg)
    d = cfg.data
    train, test = load_vigor(root, same_area=d.same_area, train_cities=d.train_cities,
                             test_cities=d.test_cities, resolution=d.resolution,
                             on_bad_sample=d.on_bad_sample, labels=d.labels)
    if check_labels:
        warn_on_labels(cfg, train, test)
    return train, test


def build_loader(cfg, splits=()):
    """The ImageLoader of the config, reading the resized image cache when data.use_cache allows
    (utils/data/cache_config.py); splits: the SplitIndexes it will load, which the cache must hold."""
    return ImageLoader(sat_size=tuple(cfg.data.sat_size), grd_size=tuple(cfg.data.grd_size),
                       polar=cfg.data.polar, sat_cache_mb=cfg.data.sat_cache_mb, resized=open_cache(cfg, splits))
