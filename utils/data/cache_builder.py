"""Building a resized image cache (layout: utils/data/resized_cache.py): threads decode and resize,
chunk by chunk in `<folder>.partial`; a chunk is kept once its marker is written, so a build
stopped by Ctrl-C, a kill or a full disk continues where it stopped. The folder is published
(renamed from `.partial`, manifest written just before) only when every chunk is done.
"""
import errno
import glob
import json
import os
import shutil
from collections import deque
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from tqdm import tqdm

from utils.data.pixel_codec import FLOAT32, encode, stored_bytes
from utils.data.prefetch import ImageLoader, _OpenCVThreads, decode_image
from utils.data.resized_cache import (BAD, CHUNKS, KINDS, MANIFEST, PARTIAL, ResizedCache, StaleCache, chunk_path,
                                      image_shape, source_stat)
from utils.errors import DataError

CHUNK_IMAGES = 64
ALIGN = 64
SPARE_BYTES = 16 << 20   # room asked for beyond the pixels (markers, manifest)


def build_for_config(cfg, workers=2, chunk_images=CHUNK_IMAGES, progress=True):
    """Build the resized image cache of cfg's splits (train and test, tiles and panoramas); None when
    it is complete and current already, else build's summary with the cache's "folder"."""
    from utils.data.cache_config import build_command, cache_folder, settings_of
    from utils.data.splits import load_splits
    folder, settings = cache_folder(cfg), settings_of(cfg)
    train, test = load_splits(cfg, check_labels=False)
    paths = {"sat": list(train.sat_paths) + list(test.sat_paths), "grd": list(train.grd_paths) + list(test.grd_paths)}
    try:
        ResizedCache.open(folder, settings, train.root, paths["sat"] + paths["grd"])
        return None
    except StaleCache:
        pass
    summary = build(Plan(train.root, paths, chunk_images), folder, settings, workers=workers,
                    command=build_command(cfg), progress=progress)
    return dict(summary, folder=folder)


class Plan:
    """The images to store, per kind: names relative to root (sorted) and their sources' stat."""

    def __init__(self, root, paths_by_kind, chunk_images=CHUNK_IMAGES):
        self.root = os.path.abspath(root)
        self.chunk_images = int(chunk_images)
        self.names, self.stats = {}, {}
        for kind in KINDS:
            names = sorted({os.path.relpath(os.path.normpath(str(p)), self.root) for p in paths_by_kind[kind]})
            self.names[kind] = names
            self.stats[kind] = [source_stat(os.path.join(self.root, n)) for n in names]

    def chunks(self):
        """(kind, chunk number, [(name, size, mtime)]) in order."""
        for kind in KINDS:
            rows = [[n, s[0], s[1]] for n, s in zip(self.names[kind], self.stats[kind])]
            for number, start in enumerate(range(0, len(rows), self.chunk_images)):
                yield kind, number, rows[start:start + self.chunk_images]

    @property
    def count(self):
        return sum(len(v) for v in self.names.values())


def build(plan, folder, settings, workers=2, command="the same command", progress=True):
    """Store every image of `plan` in `folder` (replacing an older cache there when done); returns
    {"images", "bytes", "bad", "reused"}. Resumes the chunks of `<folder>.partial` whose sources
    are unchanged."""
    partial = folder + PARTIAL
    if os.path.isdir(folder) and not os.path.exists(partial):
        os.rename(folder, partial)          # an out-of-date cache: its unchanged chunks are kept
    _remove(os.path.join(partial, MANIFEST))
    os.makedirs(os.path.join(partial, CHUNKS), exist_ok=True)
    for leftover in glob.glob(os.path.join(partial, CHUNKS, "*.tmp")):
        os.remove(leftover)
    loader = ImageLoader(settings["sat_size"], settings["grd_size"], polar=settings["polar"])
    writer = _ChunkWriter(partial, command)
    chunks = list(plan.chunks())
    todo = [c for c in chunks if not _done(partial, *c)]
    reused = plan.count - sum(len(rows) for _, _, rows in todo)
    writer.check_space(todo, _record_bytes(loader, plan, settings, todo))
    bar = tqdm(total=plan.count, initial=reused, unit="img", desc="resized cache", disable=not progress,
               dynamic_ncols=True)
    pool = ThreadPoolExecutor(max(1, int(workers)), thread_name_prefix="cache")
    threads_set = _OpenCVThreads.acquire(1)
    inflight = deque()
    pending = iter(todo)
    try:
        def submit():
            chunk = next(pending, None)
            if chunk is not None:
                kind, _, rows = chunk
                inflight.append((chunk, [pool.submit(_stored_image, loader, plan.root, kind, row[0]) for row in rows]))

        for _ in range(2):   # the next chunk decodes while one is written
            submit()
        while inflight:
            (kind, number, rows), futures = inflight.popleft()
            submit()
            results = []
            for future in futures:
                results.append(future.result())
                bar.update(1)
            writer.write(kind, number, rows, results, remaining=todo)
    finally:
        for _, futures in inflight:
            for future in futures:
                future.cancel()
        pool.shutdown(wait=True, cancel_futures=True)
        if threads_set:
            _OpenCVThreads.release()
        bar.close()
    manifest = _manifest(partial, plan, settings, chunks)
    writer.write_json(os.path.join(partial, MANIFEST), manifest, remaining=())
    _publish(partial, folder)
    return {"images": plan.count, "bytes": manifest["bytes"], "bad": len(manifest["problems"]), "reused": reused}


def _stored_image(loader, root, kind, name):
    """(codec, bytes) of one image, or (BAD, problem) when its file cannot be read."""
    size = loader.sat_size if kind == "sat" else loader.grd_size
    image, problem = decode_image(os.path.join(root, name))
    if image is None:
        return BAD, problem
    pixels = loader.pixels_into(np.empty(size + (3,), np.float32), image, size, loader.polar and kind == "sat")
    return encode(pixels)


def _record_bytes(loader, plan, settings, todo):
    """Bytes per image of each kind still to store, from its first image's codec."""
    sizes = {}
    for kind in {k for k, _, _ in todo}:
        shape = image_shape(settings, kind)
        for name in plan.names[kind][:8]:
            codec, data = _stored_image(loader, plan.root, kind, name)
            if codec != BAD:
                sizes[kind] = stored_bytes(codec, shape)
                break
        sizes.setdefault(kind, stored_bytes(FLOAT32, shape))
    return sizes


def _remove(path):
    if os.path.exists(path):
        os.remove(path)


def _done(partial, kind, number, rows):
    marker = _read_json(chunk_path(partial, kind, number, ".json"))
    if marker is None or marker.get("sources") != rows:
        return False
    try:
        return os.path.getsize(chunk_path(partial, kind, number, ".bin")) == marker["bytes"]
    except OSError:
        return False


def _read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


class _ChunkWriter:
    """Writes chunk files through `.tmp` names; a full disk is one DataError saying how much is needed."""

    def __init__(self, partial, command):
        self.partial = partial
        self.command = command
        self.record_bytes = {}
        self.written = set()

    def check_space(self, todo, record_bytes):
        self.record_bytes = record_bytes
        needed = self._needed(todo)
        free = shutil.disk_usage(self.partial).free
        if needed and free < needed:
            raise self._full(needed, free)

    def _needed(self, todo):
        pixels = sum(len(rows) * (self.record_bytes.get(kind, 0) + ALIGN) for kind, number, rows in todo
                     if (kind, number) not in self.written)
        return pixels + SPARE_BYTES if pixels else 0

    def _full(self, needed, free):
        return DataError(f"not enough free space in {self.partial}: the resized image cache needs about "
                         f"{needed:,} bytes more, {free:,} are free; free some space (or set data.cache_dir "
                         f"to a larger disk) and run `{self.command}` again to continue")

    def write(self, kind, number, rows, results, remaining):
        data, codecs, offsets, nbytes, problems = bytearray(), [], [], [], {}
        for (name, _, _), (codec, payload) in zip(rows, results):
            codecs.append(codec)
            if codec == BAD:
                problems[name] = payload
                offsets.append(0)
                nbytes.append(0)
                continue
            data.extend(b"\0" * (-len(data) % ALIGN))
            offsets.append(len(data))
            nbytes.append(len(payload))
            data.extend(payload)
        self._write(chunk_path(self.partial, kind, number, ".bin"), bytes(data), remaining)
        marker = {"sources": rows, "codecs": codecs, "offsets": offsets, "nbytes": nbytes,
                  "problems": problems, "bytes": len(data)}
        self.write_json(chunk_path(self.partial, kind, number, ".json"), marker, remaining)
        self.written.add((kind, number))

    def write_json(self, path, value, remaining):
        self._write(path, json.dumps(value).encode(), remaining)

    def _write(self, path, data, remaining):
        tmp = path + ".tmp"
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException as error:   # a full disk, Ctrl-C: no half-written file stays
            if os.path.exists(tmp):
                os.remove(tmp)
            if isinstance(error, OSError) and error.errno == errno.ENOSPC:
                raise self._full(max(self._needed(remaining), len(data)),
                                 shutil.disk_usage(self.partial).free) from None
            raise


def _manifest(partial, plan, settings, chunks):
    images = {kind: {"names": [], "sizes": [], "mtimes": [], "chunks": [], "offsets": [], "codecs": [],
                     "nbytes": []} for kind in KINDS}
    problems, total = {}, 0
    for kind, number, rows in chunks:
        marker = _read_json(chunk_path(partial, kind, number, ".json"))
        entries = images[kind]
        for (name, size, mtime), codec, offset, nbytes in zip(rows, marker["codecs"], marker["offsets"],
                                                               marker["nbytes"]):
            entries["names"].append(name)
            entries["sizes"].append(size)
            entries["mtimes"].append(mtime)
            entries["chunks"].append(number)
            entries["offsets"].append(offset)
            entries["codecs"].append(codec)
            entries["nbytes"].append(nbytes)
        problems.update({f"{kind}/{name}": problem for name, problem in marker["problems"].items()})
        total += marker["bytes"]
    return {"settings": settings, "images": images, "problems": problems, "bytes": total}


def _publish(partial, folder):
    """Replace `folder` by the complete `partial` (two renames; the old cache is removed after)."""
    old = None
    if os.path.exists(folder):
        old = f"{folder}.old-{os.getpid()}"
        os.rename(folder, old)
    os.rename(partial, folder)
    if old:
        shutil.rmtree(old, ignore_errors=True)
