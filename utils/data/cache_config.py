"""From a config to its resized image cache: where it lives, whether the loader uses it, how to build it.

    data.cache_dir   null: <data.root>/.resized_cache; the cache of given pixel settings is the
                     sub-folder named by them, e.g. sat320x320_grd320x640 (polar: ..._polar)
    data.use_cache   auto: used when complete and current, else the source files (one line says so,
                     unless no cache was ever built there)
                     never: always the source files | require: a missing or stale cache is an error
"""
import json
import os
import shlex

from utils.config import load_config, resolve_path
from utils.data.resized_cache import ResizedCache, StaleCache, folder_name, pixel_settings
from utils.errors import DataError

DEFAULT_SUBDIR = ".resized_cache"
BUILD_MODULE = "tools.build_cache"
# keys that decide which images are cached and their pixels: a rebuild command repeats them
BUILD_KEYS = ("dataset", "root", "same_area", "train_cities", "test_cities", "labels", "sat_size", "grd_size",
              "polar", "cache_dir", "synthetic")


def settings_of(cfg):
    return pixel_settings(cfg.data.sat_size, cfg.data.grd_size, cfg.data.polar)


def cache_folder(cfg):
    base = cfg.data.cache_dir
    base = resolve_path(base) if base else os.path.join(resolve_path(cfg.data.root), DEFAULT_SUBDIR)
    return os.path.join(base, folder_name(settings_of(cfg)))


def build_command(cfg):
    """The command line that builds this config's cache: its config file, and --set for what differs."""
    path = cfg.get("config_path")
    words = ["python", "-m", BUILD_MODULE]
    if path:
        relative = os.path.relpath(path)
        words += ["--config", path if relative.startswith("..") else relative]
    file_data = load_config(path).data if path else None
    for key in BUILD_KEYS:
        value = cfg.data[key]
        if file_data is None or file_data[key] != value:
            words += ["--set", f"data.{key}={_yaml_value(value)}"]
    return " ".join(shlex.quote(w) for w in words)


def _yaml_value(value):
    if hasattr(value, "to_dict"):
        value = value.to_dict()
    return json.dumps(value).replace(" ", "") if not isinstance(value, str) else value


def open_cache(cfg, splits=()):
    """The ResizedCache the loader reads (None: decode the sources), per data.use_cache. splits:
    SplitIndexes whose every image the cache must hold."""
    mode = cfg.data.use_cache
    if mode == "never":
        return None
    folder = cache_folder(cfg)
    needed = [p for index in splits for paths in (index.sat_paths, index.grd_paths) for p in paths]
    try:
        return ResizedCache.open(folder, settings_of(cfg), resolve_path(cfg.data.root), needed)
    except StaleCache as why:
        if mode == "require":
            raise DataError(f"{why} (data.use_cache=require): build it with `{build_command(cfg)}`") from None
        if not why.absent:
            print(f"[cache] {why}: decoding the source images instead (build it with `{build_command(cfg)}`)",
                  flush=True)
        return None
