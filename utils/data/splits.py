"""From a config to the data the trainer and the evaluation use: split indexes and an image loader."""
import os

from utils.config import resolve_path
from utils.data.cache_config import open_cache
from utils.data.centred import centred_split
from utils.data.check import warn_on_labels
from utils.data.cvusa import load_cvusa
from utils.data.dataset import load_vigor
from utils.data.prefetch import ImageLoader
from utils.data.sar_raster import check_db_range
from utils.data.university1652 import load_university1652
from utils.data.university1652_splits import split_indexes
from utils.errors import ConfigError

UNIVERSITY1652 = ("university1652", "synthetic_university1652")
CVUSA = ("cvusa", "synthetic_cvusa")
SPACENET6 = ("spacenet6", "synthetic_spacenet6")     # SAR queries against optical tiles


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
    elif cfg.data.dataset == "synthetic_cvusa":
        from utils.data.synthetic_cvusa import ensure
        s = cfg.data.synthetic_cvusa
        ensure(root, seed=s.seed, pairs=s.pairs, aerial_size=s.aerial_size, pano_width=s.pano_width,
               meters_per_pixel=s.meters_per_pixel, val_fraction=s.val_fraction)
    elif cfg.data.dataset == "synthetic_spacenet6":
        from utils.data.synthetic_spacenet6 import ensure_generated
        s = cfg.data.synthetic_spacenet6
        ensure_generated(root, seed=s.seed, tiles_per_side=s.tiles_per_side, tile_px=s.tile_px,
                         meters_per_pixel=s.meters_per_pixel, incidence_deg=s.incidence_deg, looks=s.looks,
                         sensor_side=s.sensor_side)
    elif cfg.data.dataset not in ("vigor", "cvact") + UNIVERSITY1652 + CVUSA + SPACENET6:
        raise ValueError(f"data.dataset is '{cfg.data.dataset}': use vigor, cvact, synthetic, "
                         f"university1652, synthetic_university1652, cvusa, synthetic_cvusa, spacenet6 "
                         f"or synthetic_spacenet6")
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
    if cfg.data.positives == "centred" and cfg.data.dataset not in ("vigor", "synthetic", "cvact"):
        raise ConfigError(f"data.positives=centred cuts windows from a VIGOR-format city's aerial_map.tif; "
                          f"data.dataset {cfg.data.dataset} has none: set data.positives=central")
    if cfg.data.dataset in UNIVERSITY1652:
        return split_indexes(load_university1652_tree(cfg), cfg.data.query_view)
    if cfg.data.dataset in CVUSA:  # no GPS, no resolution: nothing for the label check to compare
        return load_cvusa(ensure_dataset(cfg))
    if cfg.data.dataset in SPACENET6:
        from utils.data.spacenet6 import load_spacenet6
        from utils.data.spacenet6_splits import split_by_area
        aoi = os.path.join(ensure_dataset(cfg), cfg.data.spacenet6.aoi)
        return split_by_area(load_spacenet6(aoi), cfg.data.spacenet6.test_fraction)
    root = ensure_dataset(cfg)
    d = cfg.data
    train, test = load_vigor(root, same_area=d.same_area, train_cities=d.train_cities,
                             test_cities=d.test_cities, resolution=d.resolution,
                             on_bad_sample=d.on_bad_sample, labels=d.labels)
    if check_labels:
        warn_on_labels(cfg, train, test)
    if d.positives == "centred":          # one-to-one: each panorama's own window (utils/data/centred.py)
        return centred_split(train), centred_split(test)
    return train, test


def build_loader(cfg, splits=()):
    """The ImageLoader of the config, reading the resized image cache when data.use_cache allows
    (utils/data/cache_config.py); splits: the SplitIndexes it will load, which the cache must hold."""
    if cfg.data.dataset in SPACENET6:     # GeoTIFFs read by rasterio, not held by the resized cache
        if cfg.data.use_cache == "require":
            raise ConfigError("data.use_cache is require, but the resized image cache does not hold SpaceNet 6's "
                              "GeoTIFFs (they are read as they are): set data.use_cache to auto or never")
        return ImageLoader(sat_size=tuple(cfg.data.sat_size), grd_size=tuple(cfg.data.grd_size), polar=cfg.data.polar,
                           sat_cache_mb=cfg.data.sat_cache_mb, sar_db_range=check_db_range(cfg.data.spacenet6.db_range))
    return ImageLoader(sat_size=tuple(cfg.data.sat_size), grd_size=tuple(cfg.data.grd_size),
                       polar=cfg.data.polar, sat_cache_mb=cfg.data.sat_cache_mb, resized=open_cache(cfg, splits))
