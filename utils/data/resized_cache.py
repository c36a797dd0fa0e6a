"""The resized image cache: every image of a dataset decoded and resized once, read back by memory map.

Layout of a cache folder (one per set of pixel settings, `folder_name`):
    manifest.json              written last: settings, and per image its source's size and
                               modification time, chunk, offset, codec (utils/data/pixel_codec.py)
    chunks/<kind>-<n>.bin      the stored pixels of up to CHUNK_IMAGES images, 64-byte aligned
    chunks/<kind>-<n>.json     that chunk's entries; its presence marks the chunk done
It is built in `<folder>.partial` (utils/data/cache_builder.py) and renamed when complete, so a
folder without `.partial` always holds a whole cache. Stored are the float32 pixels before the
means are subtracted, bit for bit; a source that could not be read is stored as its problem, so
that the loader raises the same DataError as without the cache.
"""
import glob
import json
import os
import threading

import cv2
import numpy as np

from utils.data.pixel_codec import decode_into
from utils.data.prefetch import bad_image

FORMAT = 1
MANIFEST = "manifest.json"
PARTIAL = ".partial"
CHUNKS = "chunks"
KINDS = ("sat", "grd")
BAD = -1              # codec of an image whose source could not be read


class StaleCache(Exception):
    """A cache that is missing, half-built or does not match the sources; the message says which.
    `absent`: there is no cache at all, not even a half-built one."""

    def __init__(self, message, absent=False):
        super().__init__(message)
        self.absent = absent


def pixel_settings(sat_size, grd_size, polar):
    """Everything that changes the stored pixels (a new OpenCV may decode or resize differently)."""
    return {"format": FORMAT, "sat_size": [int(v) for v in sat_size], "grd_size": [int(v) for v in grd_size],
            "polar": bool(polar), "resize": "cv2.INTER_AREA on float32", "opencv": cv2.__version__}


def folder_name(settings):
    sat, grd = settings["sat_size"], settings["grd_size"]
    return f"sat{sat[0]}x{sat[1]}_grd{grd[0]}x{grd[1]}" + ("_polar" if settings["polar"] else "")


def source_stat(path):
    """(size, modification time in ns) of a source image; (-1, -1) when it is missing."""
    try:
        st = os.stat(path)
    except OSError:
        return -1, -1
    return int(st.st_size), int(st.st_mtime_ns)


def read_manifest(folder):
    try:
        with open(os.path.join(folder, MANIFEST)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def image_shape(settings, kind):
    return tuple(settings["sat_size" if kind == "sat" else "grd_size"]) + (3,)


class ResizedCache:
    """Reads the stored pixels of the images of a complete, current cache folder (see `open`).
    Thread-safe; chunk files are mapped on first use."""

    def __init__(self, folder, manifest, root):
        self.folder = folder
        self.settings = manifest["settings"]
        self.root = os.path.abspath(root)
        self.images = manifest["images"]
        self.problems = manifest.get("problems", {})
        self.where = {}
        for kind in KINDS:
            for i, name in enumerate(self.images[kind]["names"]):
                self.where[os.path.normpath(os.path.join(self.root, name))] = (kind, i)
        self._maps = {}
        self._lock = threading.Lock()

    @classmethod
    def open(cls, folder, settings, root, needed=()):
        """The cache in `folder` if it is complete and current for `settings`, the sources under
        `root` and the `needed` image paths; else StaleCache saying why."""
        manifest = read_manifest(folder)
        if manifest is None:
            if os.path.isdir(folder + PARTIAL):
                raise StaleCache(f"the resized image cache at {folder} is half-built (in {folder + PARTIAL})")
            others = sorted(glob.glob(os.path.join(os.path.dirname(folder), "*", MANIFEST)))
            if others:
                raise StaleCache(f"no resized image cache at {folder} (the one at "
                                 f"{os.path.dirname(others[0])} is for other sizes)")
            raise StaleCache(f"no resized image cache at {folder}", absent=True)
        if manifest.get("settings") != settings:
            raise StaleCache(f"the resized image cache at {folder} was made with other settings "
                             f"({_difference(manifest.get('settings') or {}, settings)})")
        cache = cls(folder, manifest, root)
        changed = cache.changed_sources()
        if changed:
            raise StaleCache(f"the resized image cache at {folder} is out of date: {len(changed)} source "
                             f"image(s) changed since it was built, e.g. {changed[0]}")
        missing = [p for p in needed if os.path.normpath(str(p)) not in cache.where]
        if missing:
            raise StaleCache(f"the resized image cache at {folder} does not hold {len(missing)} image(s) "
                             f"of the configured splits, e.g. {missing[0]}")
        return cache

    def changed_sources(self):
        changed = []
        for kind in KINDS:
            entries = self.images[kind]
            for name, size, mtime in zip(entries["names"], entries["sizes"], entries["mtimes"]):
                path = os.path.join(self.root, name)
                if source_stat(path) != (size, mtime):
                    changed.append(path)
        return changed

    def __contains__(self, path):
        return os.path.normpath(str(path)) in self.where

    def copy_into(self, dst, path, where=None):
        """Fill dst with the stored pixels of `path` and return True; False if the cache does not hold it."""
        found = self.where.get(os.path.normpath(path))
        if found is None:
            return False
        kind, i = found
        entries = self.images[kind]
        codec = entries["codecs"][i]
        if codec == BAD:
            raise bad_image(path, where, self.problems[f"{kind}/{entries['names'][i]}"])
        chunk, offset = entries["chunks"][i], entries["offsets"][i]
        raw = self._map(kind, chunk)[offset:offset + entries["nbytes"][i]]
        decode_into(dst, codec, raw)
        return True

    def _map(self, kind, chunk):
        key = (kind, chunk)
        mapped = self._maps.get(key)
        if mapped is None:
            with self._lock:
                mapped = self._maps.get(key)
                if mapped is None:
                    mapped = np.memmap(chunk_path(self.folder, kind, chunk, ".bin"), np.uint8, mode="r")
                    self._maps[key] = mapped
        return mapped


def chunk_path(folder, kind, chunk, suffix):
    return os.path.join(folder, CHUNKS, f"{kind}-{chunk:05d}{suffix}")


def _difference(found, wanted):
    keys = [k for k in sorted(set(found) | set(wanted)) if found.get(k) != wanted.get(k)]
    return ", ".join(f"{k} {found.get(k)} instead of {wanted.get(k)}" for k in keys)
