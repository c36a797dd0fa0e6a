"""From a config to the data the trainer and the evaluation use: split indexes and an image loader."""
from utils.config import resolve_path
from utils.data.cache_config import open_cache
from utils.data.check import warn_on_labels
from utils.data.dataset import load_vigor
from utils.data.prefetch import ImageLoader


def ensure_dataset(cfg):
    """The dataset root; the synthetic city is generated there on first use."""
    root = resolve_path(cfg.data.root)
    if cfg.data.dataset == "synthetic":
        from utils.data.synthetic_vigor import ensure_synthetic
        s = cfg.data.synthetic
        ensure_synthetic(root, seed=s.seed, cities=s.cities, tiles_per_side=s.tiles_per_side,
                         panos_per_tile=s.panos_per_tile, pano_size=tuple(s.pano_size),
                         meters_per_pixel=s.meters_per_pixel)
    elif cfg.data.dataset not in ("vigor", "cvact"):
        raise ValueError(f"data.dataset is '{cfg.data.dataset}': use vigor, cvact or synthetic")
    return root


def load_splits(cfg, check_labels=True):
    """(train, test) SplitIndex of the configured dataset and split. check_labels: warn (once per
    process and dataset) when the label offsets do not fit the configured resolution
    (utils/data/check.py; reads no image)."""
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
