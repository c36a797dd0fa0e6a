"""Images for batches: decode, resize, subtract the means, on worker threads, in order.

OpenCV's decode and resize release the GIL, so a few threads overlap image loading with each
other and with the training step. Output order is the order of the batches, whatever the
order the workers finish in.
"""
import os
import threading
from collections import OrderedDict, deque
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np

from utils.data.dataset import DATASET_HELP, truncation
from utils.errors import DataError
from utils.data.sar_raster import read_optical_tile, read_sar_tile
from utils.polar import polar_transform

BGR_MEANS = np.array([103.939, 116.779, 123.6], np.float32)


class ImageLoader:
    """cv2.imread (BGR) -> float32 -> resize INTER_AREA to (height, width) -> minus the means.

    polar: aerial images are polar-transformed (SAFA) to sat_size instead of resized.
    resized: a utils.data.resized_cache.ResizedCache whose images (the float32 pixels before the
    means are subtracted, stored exactly) replace decoding and resizing; images it does not hold
    are read from their files. sar_db_range (low, high) dB: the "grd" images are SpaceNet 6
    SAR-Intensity GeoTIFFs and "sat" GeoTIFFs PS-RGB tiles (utils/data/sar_raster.py maps SAR dB
    onto [0, 255]); None: every image is decoded by OpenCV. The `*_into` variants write into a given array (a row of a batch)
    and convert through a per-thread float32 buffer, so no full-size float image is allocated per
    call; the values are the same, bit for bit.
    """

    def __init__(self, sat_size=(320, 320), grd_size=(320, 640), polar=False, sat_cache_mb=0, resized=None,
                 sar_db_range=None):
        self.sat_size = (int(sat_size[0]), int(sat_size[1]))
        self.sar_db_range = None if sar_db_range is None else (float(sar_db_range[0]), float(sar_db_range[1]))
        self.grd_size = (int(grd_size[0]), int(grd_size[1]))
        self.polar = bool(polar)
        self.resized = resized
        self._local = threading.local()
        self._sat_cache = TileCache(sat_cache_mb)

    @staticmethod
    def read_raw(path, where=None):
        """BGR uint8 image; a missing, undecodable or truncated file is a DataError naming it."""
        image, problem = decode_image(path)
        if image is None:
            raise bad_image(path, where, problem)
        return image

    @classmethod
    def read(cls, path, where=None):
        return cls.read_raw(path, where).astype(np.float32)

    def _as_float(self, image):
        buffers = getattr(self._local, "buffers", None)
        if buffers is None:
            buffers = self._local.buffers = {}
        buffer = buffers.get(image.shape)
        if buffer is None:
            buffer = buffers[image.shape] = np.empty(image.shape, np.float32)
        np.copyto(buffer, image)
        return buffer

    def pixels_into(self, dst, image, size, polar=False):
        """dst = the decoded uint8 image as float32, resized (or polar-transformed) to size: what
        the network gets before the means are subtracted."""
        source = self._as_float(image)
        if polar:
            dst[...] = polar_transform(source, size[0], size[1])
        elif source.shape[:2] == tuple(size):
            dst[...] = source
        else:
            result = cv2.resize(source, (size[1], size[0]), dst=dst, interpolation=cv2.INTER_AREA)
            if result is not dst and not np.shares_memory(result, dst):
                dst[...] = result
        return dst

    def kind_pixels_into(self, dst, path, kind, where=None):
        """pixels_into for the file of a "sat" or "grd" image, from the resized cache when it holds it."""
        if self.resized is not None and self.resized.copy_into(dst, str(path), where):
            return dst
        if kind == "sat":
            return self.pixels_into(dst, self._read(path, kind, where), self.sat_size, self.polar)
        return self.pixels_into(dst, self._read(path, kind, where), self.grd_size)

    def _read(self, path, kind, where):
        if self.sar_db_range is None:
            return self.read_raw(path, where)
        if kind == "grd":
            return read_sar_tile(path, self.sar_db_range, where)
        if str(path).lower().endswith((".tif", ".tiff")):
            return read_optical_tile(path, where)
        return self.read_raw(path, where)

    def load_sat_into(self, dst, path, where=None):
        if self._sat_cache.copy_into(dst, str(path)):
            return dst
        subtract_means(self.kind_pixels_into(dst, path, "sat", where))
        self._sat_cache.put(str(path), dst)
        return dst

    def load_grd_into(self, dst, path, where=None):
        return subtract_means(self.kind_pixels_into(dst, path, "grd", where))

    def load_sat(self, path, where=None):
        return self.load_sat_into(np.empty(self.sat_size + (3,), np.float32), path, where)

    def load_grd(self, path, where=None):
        return self.load_grd_into(np.empty(self.grd_size + (3,), np.float32), path, where)


def subtract_means(image):
    """image -= BGR_MEANS, in place, the same values: one row of means as long as an image row
    (broadcasting three values along the last axis is ~8x slower)."""
    if not image.flags.c_contiguous:
        image -= BGR_MEANS
        return image
    rows = image.reshape(image.shape[0], -1)
    rows -= _means_row(image.shape[1])
    return image


_MEANS_ROWS = {}


def _means_row(width):
    row = _MEANS_ROWS.get(width)
    if row is None:
        row = _MEANS_ROWS[width] = np.tile(BGR_MEANS, width)
    return row


def decode_image(path):
    """(BGR uint8 image, None), or (None, what is wrong: "is missing", "is truncated (...)", ...)."""
    data = np.fromfile(str(path), np.uint8) if os.path.exists(str(path)) else None
    if data is None or not data.size:
        problem = "is missing" if data is None else "is empty"
    else:
        problem = truncation(data[:8].tobytes(), data[-32:].tobytes())
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if problem is None else None
    return image, (problem or "cannot be decoded") if image is None else None


def bad_image(path, where, problem):
    """The DataError for an image file that cannot be used ("is missing", "is truncated (...)")."""
    listed = f" (listed in {where})" if where else ""
    return DataError(f"image {path}{listed} {problem}: restore the file, or set "
                     f"data.on_bad_sample=skip to leave such samples out; {DATASET_HELP}.")


class TileCache:
    """Aerial tiles as fed to the network (decoded, resized, means subtracted), least recently used
    first out, up to `megabytes`: each tile is read once per panorama that uses it (positive, semi-
    positives, mined negatives, every pair pass), and a 640 x 640 PNG takes ~6 ms to decode, more
    than the demo's network needs for it. 0 turns it off. Thread-safe."""

    def __init__(self, megabytes):
        self.capacity = int(float(megabytes) * 2 ** 20)
        self._images, self._bytes, self._lock = OrderedDict(), 0, threading.Lock()

    def copy_into(self, dst, path):
        with self._lock:
            image = self._images.get(path)
            if image is None:
                return False
            self._images.move_to_end(path)
        dst[...] = image
        return True

    def put(self, path, image):
        if image.nbytes > self.capacity:
            return
        with self._lock:
            if path in self._images:
                return
            self._images[path] = image.copy()
            self._bytes += image.nbytes
            while self._bytes > self.capacity:
                _, old = self._images.popitem(last=False)
                self._bytes -= old.nbytes


def _source(index, kind, i):
    """'split file:line' that listed image i, when the index knows it."""
    sources = index.sat_source if kind == "sat" else index.grd_source
    return None if sources is None else str(sources[i])


def _wrap_errors(load, path, where, dst=None):
    try:
        return load(path, where) if dst is None else load(dst, path, where)
    except DataError:
        raise
    except Exception as e:  # cv2.error, MemoryError...: name the file
        listed = f" (listed in {where})" if where else ""
        raise DataError(f"loading image {path}{listed} failed: {type(e).__name__}: {e}") from e


class _OpenCVThreads:
    """While any pipeline runs, OpenCV's own thread pool is set to `count` (1: the workers are the
    parallelism; nesting OpenCV's threads inside them only oversubscribes the cores). The value
    in force before the first pipeline started is restored when the last one closes."""

    lock = threading.Lock()
    users = 0
    saved = None

    @classmethod
    def acquire(cls, count):
        if count is None:
            return False
        with cls.lock:
            if cls.users == 0:
                cls.saved = cv2.getNumThreads()
                cv2.setNumThreads(int(count))
            cls.users += 1
        return True

    @classmethod
    def release(cls):
        with cls.lock:
            cls.users -= 1
            if cls.users == 0 and cls.saved is not None:
                cv2.setNumThreads(cls.saved)


class _Skips:
    """Bad images met in skip mode: counted, announced once, summarised at close."""

    def __init__(self, owner):
        self.owner = owner
        self.items = []
        self.bad_paths = set()
        self.lock = threading.Lock()

    def add(self, path, reason):
        with self.lock:
            if path in self.bad_paths:
                return
            first = not self.items
            self.bad_paths.add(path)
            self.items.append((path, reason))
        if first:
            print(f"[{self.owner}] on_bad_sample=skip: leaving out {path} ({reason}); "
                  f"a summary follows at the end", flush=True)

    def summary(self):
        if self.items:
            print(f"[{self.owner}] skipped {len(self.items)} unreadable image(s):")
            for path, reason in self.items[:10]:
                print(f"  {path}: {reason}")
            if len(self.items) > 10:
                print(f"  ... and {len(self.items) - 10} more")


class Prefetcher:
    """Iterator of dicts {"sat", "sat_semi", "grd", "delta", "delta_semi", "batch"} for an
    iterator of Batch; `depth` batches are decoded ahead by `workers` threads.

    A bad image raises DataError naming the file and the split line (on_bad_sample='error'), or
    (='skip') is counted and its row replaced by another random panorama that shares no tile
    with the rest of the batch, drawn by `sampler.replace_sample` (without a sampler, by a
    TrainSampler of the prefetcher's own seed); `sampler.exclude` is told about the bad panorama.
    """

    def __init__(self, loader, index, batches, workers=2, depth=4, on_bad_sample="error", sampler=None,
                 seed=0, opencv_threads=1):
        if on_bad_sample not in ("error", "skip"):
            raise ValueError(f"on_bad_sample must be 'error' or 'skip', not {on_bad_sample!r}")
        self.loader = loader
        self.index = index
        self.batches = iter(batches)
        self.depth = max(1, int(depth))
        self.on_bad_sample = on_bad_sample
        self.sampler = sampler if sampler is not None else (batches if hasattr(batches, "replace_sample") else None)
        self.seed = seed
        self.pool = ThreadPoolExecutor(max(1, int(workers)), thread_name_prefix="prefetch")
        self.inflight = deque()
        self.exhausted = False
        self.closed = False
        self.skips = _Skips("prefetch")
        self._threads_set = _OpenCVThreads.acquire(opencv_threads)

    # ---------------------------------------------------------------- plumbing
    def _jobs(self, batch):
        """(array name, row, loader function, path, where) for every image of the batch."""
        idx = self.index
        jobs = []
        for b, i in enumerate(batch.grd):
            jobs.append(("sat", b, self.loader.load_sat_into, idx.sat_paths[batch.sat[b]], _source(idx, "sat", batch.sat[b])))
            if batch.semi is not None:
                jobs.append(("sat_semi", b, self.loader.load_sat_into, idx.sat_paths[batch.semi[b]],
                             _source(idx, "sat", batch.semi[b])))
            jobs.append(("grd", b, self.loader.load_grd_into, idx.grd_paths[i], _source(idx, "grd", i)))
        return jobs

    def _submit(self, batch):
        n = len(batch.grd)
        h, w = self.loader.sat_size
        gh, gw = self.loader.grd_size
        arrays = {"sat": np.empty((n, h, w, 3), np.float32), "grd": np.empty((n, gh, gw, 3), np.float32)}
        if batch.semi is not None:
            arrays["sat_semi"] = np.empty((n, h, w, 3), np.float32)
        futures = []
        for name, row, load, path, where in self._jobs(batch):
            futures.append((name, row, path, self.pool.submit(self._load_into, arrays[name], row, load, path, where)))
        self.inflight.append((batch, arrays, futures))

    @staticmethod
    def _load_into(out, row, load, path, where):
        _wrap_errors(load, path, where, dst=out[row])

    def _fill(self):
        while not self.exhausted and len(self.inflight) < self.depth:
            try:
                batch = next(self.batches)
            except StopIteration:
                self.exhausted = True
                break
            self._submit(batch)

    def __iter__(self):
        return self

    def __next__(self):
        if self.closed:
            raise StopIteration
        self._fill()
        if not self.inflight:
            raise StopIteration
        batch, arrays, futures = self.inflight.popleft()
        self._fill()
        bad_rows = []
        for name, row, path, future in futures:
            try:
                future.result()
            except DataError as e:
                if self.on_bad_sample == "error":
                    self.close()
                    raise
                self.skips.add(str(path), str(e))
                bad_rows.append(row)
        for row in sorted(set(bad_rows)):
            batch = self._replace_row(batch, arrays, row)
        return {"sat": arrays["sat"], "sat_semi": arrays.get("sat_semi"), "grd": arrays["grd"],
                "delta": batch.delta, "delta_semi": batch.delta_semi, "batch": batch}

    # ---------------------------------------------------------------- skip mode
    def _replace_row(self, batch, arrays, row):
        if self.sampler is not None and hasattr(self.sampler, "exclude"):
            self.sampler.exclude(int(batch.grd[row]))
        for _ in range(100):
            batch = self._new_row(batch, row)
            loaded = self._load_row(batch, row)
            if loaded is not None:
                for name, image in loaded.items():
                    arrays[name][row] = image
                return batch
        raise DataError("on_bad_sample=skip: 100 replacement panoramas in a row had unreadable images; "
                        f"the dataset at {self.index.root} looks broken ({DATASET_HELP})")

    def _new_row(self, batch, row):
        if self.sampler is None:
            from utils.data.sampler import TrainSampler
            self.sampler = TrainSampler(self.index, len(batch.grd), with_semi=batch.semi is not None, seed=self.seed)
        return self.sampler.replace_sample(batch, row)

    def _load_row(self, batch, row):
        loaded = {}
        for name, b, load, path, where in self._jobs(batch):
            if b != row:
                continue
            if str(path) in self.skips.bad_paths:
                return None
            try:
                size = self.loader.grd_size if name == "grd" else self.loader.sat_size
                loaded[name] = _wrap_errors(load, path, where, dst=np.empty(size + (3,), np.float32))
            except DataError as e:
                self.skips.add(str(path), str(e))
                if self.sampler is not None and hasattr(self.sampler, "exclude"):
                    self.sampler.exclude(int(batch.grd[row]))
                return None
        return loaded

    # ---------------------------------------------------------------- shutdown
    def close(self):
        if self.closed:
            return
        self.closed = True
        for _, _, futures in self.inflight:
            for *_, future in futures:
                future.cancel()
        self.inflight.clear()
        self.pool.shutdown(wait=True, cancel_futures=True)
        if self._threads_set:
            _OpenCVThreads.release()
        self.skips.summary()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


# ---------------------------------------------------------------- scans of a whole split
def _ordered_scan(jobs_per_chunk, shapes, workers, depth, on_bad_sample, owner, opencv_threads=1):
    """Yield, chunk by chunk in order, a tuple of float32 arrays filled by (slot, row, load, path, where) jobs.

    Each chunk comes with a (n,) bool array of its rows that hold an unreadable image: in skip
    mode such a row is left at zero and flagged (scans keep every row so that indices stay
    aligned with the index); in error mode the first one raises.
    """
    pool = ThreadPoolExecutor(max(1, int(workers)), thread_name_prefix=owner)
    threads_set = _OpenCVThreads.acquire(opencv_threads)
    skips = _Skips(owner)
    inflight = deque()
    chunks = iter(jobs_per_chunk)

    def submit():
        try:
            n, jobs = next(chunks)
        except StopIteration:
            return False
        arrays = tuple(np.zeros((n,) + shape + (3,), np.float32) for shape in shapes)
        futures = [(row, path, pool.submit(Prefetcher._load_into, arrays[slot], row, load, path, where))
                   for slot, row, load, path, where in jobs]
        inflight.append((arrays, futures))
        return True

    try:
        while len(inflight) < depth and submit():
            pass
        while inflight:
            arrays, futures = inflight.popleft()
            submit()
            bad = np.zeros(len(arrays[0]), bool)
            for row, path, future in futures:
                try:
                    future.result()
                except DataError as e:
                    if on_bad_sample == "error":
                        raise
                    skips.add(str(path), str(e))
                    bad[row] = True
            yield arrays, bad
    finally:
        for _, futures in inflight:
            for *_, future in futures:
                future.cancel()
        pool.shutdown(wait=True, cancel_futures=True)
        if threads_set:
            _OpenCVThreads.release()
        skips.summary()


def _chunks(count, batch_size):
    for start in range(0, count, int(batch_size)):
        yield np.arange(start, min(start + int(batch_size), count))


def scan_sat(loader, index, batch_size, workers=2, depth=2, on_bad_sample="error", with_bad=False):
    """Every tile of the split in order, batch_size at a time: (b, H, W, 3) float32 arrays
    (with_bad: (array, (b,) bool rows whose image was unreadable and left at zero))."""
    def chunks():
        for rows in _chunks(len(index.sat_paths), batch_size):
            yield len(rows), [(0, r, loader.load_sat_into, index.sat_paths[j], _source(index, "sat", j))
                              for r, j in enumerate(rows)]
    for (sat,), bad in _ordered_scan(chunks(), [loader.sat_size], workers, depth, on_bad_sample, "scan_sat"):
        yield (sat, bad) if with_bad else sat


def scan_grd(loader, index, batch_size, workers=2, depth=2, on_bad_sample="error", with_bad=False):
    """Every panorama of the split in order: (b, H, W, 3) float32 arrays (with_bad: as scan_sat)."""
    def chunks():
        for rows in _chunks(len(index.grd_paths), batch_size):
            yield len(rows), [(0, r, loader.load_grd_into, index.grd_paths[i], _source(index, "grd", i))
                              for r, i in enumerate(rows)]
    for (grd,), bad in _ordered_scan(chunks(), [loader.grd_size], workers, depth, on_bad_sample, "scan_grd"):
        yield (grd, bad) if with_bad else grd


def scan_pairs(loader, index, sat_order, batch_size, workers=2, depth=2, on_bad_sample="error",
               with_bad=False):
    """(sat, grd) batches: panorama i with tile sat_order[i], in panorama order (the original's
    next_pair_scan_order, e.g. with the retrieved or the positive tile of each panorama).
    with_bad: ((sat, grd), (b,) bool pairs with an unreadable image)."""
    sat_order = np.asarray(sat_order, dtype=np.int64)
    if len(sat_order) != len(index.grd_paths):
        raise ValueError(f"sat_order has {len(sat_order)} entries for {len(index.grd_paths)} panoramas")

    def chunks():
        for rows in _chunks(len(index.grd_paths), batch_size):
            jobs = []
            for r, i in enumerate(rows):
                j = sat_order[i]
                jobs.append((0, r, loader.load_sat_into, index.sat_paths[j], _source(index, "sat", j)))
                jobs.append((1, r, loader.load_grd_into, index.grd_paths[i], _source(index, "grd", i)))
            yield len(rows), jobs
    for arrays, bad in _ordered_scan(chunks(), [loader.sat_size, loader.grd_size], workers, depth,
                                     on_bad_sample, "scan_pairs"):
        yield (arrays, bad) if with_bad else arrays
