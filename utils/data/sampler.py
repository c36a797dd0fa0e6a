"""Which panoramas and tiles go into each training batch (indices only, no images).

Follows the original DataLoader (VIGOR dataloader.py / SAMP dataloader/dataloader.py):
get_init_idx (a random tile among the tiles that are some panorama's positive, then a random
panorama it covers), check_overlap (no two panoramas of a batch share any of their 4 reference
tiles), the semi-positive column drawn uniformly from 1..3, and VIGOR's global hard-negative
mining (cal_ranking_train_limited, the second half of a batch drawn next to the first half's
hardest tiles). All randomness comes from one numpy Generator, so a saved state resumes exactly.

`covering=True` (data.positives: covering, a new option, off by default) trains on panoramas up to
their tiles' edges: each sample's positive is drawn among the four tiles that hold its panorama
(label columns 0..3, with that column's offset) and the semi-positive among the other three; a
mined sample takes the hard tile it was drawn for as its positive. Off, no draw is added to the
random stream, so the batches are the original's bit for bit.
"""
import json
from dataclasses import dataclass

import numpy as np

from utils.errors import DataError


@dataclass
class Batch:
    grd: np.ndarray                  # (B,) panorama indices
    sat: np.ndarray                  # (B,) positive tile indices, labels[grd, 0] (covering: labels[grd, positive_choice])
    semi: np.ndarray = None          # (B,) semi-positive tile indices (None in plain mode)
    semi_choice: np.ndarray = None   # (B,) label column 1..3 the semi-positive came from (covering: 0..3)
    delta: np.ndarray = None         # (B, 2) offsets of the positive
    delta_semi: np.ndarray = None    # (B, 2) offsets of the semi-positive
    mined: np.ndarray = None         # (B,) bool: drawn next to a kept hard tile of the mining pool
    positive_choice: np.ndarray = None  # (B,) label column 0..3 of the positive (covering only; None: column 0)

    def __len__(self):
        return len(self.grd)


def make_batch(index, grd, semi_choice=None, mined=None, positive_choice=None):
    grd = np.asarray(grd, dtype=np.int64)
    column = 0 if positive_choice is None else np.asarray(positive_choice, dtype=np.int64)
    batch = Batch(grd=grd, sat=index.labels[grd, column].copy(), delta=index.deltas[grd, column].copy(),
                  mined=None if mined is None else np.asarray(mined, dtype=bool),
                  positive_choice=None if positive_choice is None else column.copy())
    if semi_choice is not None:
        choice = np.asarray(semi_choice, dtype=np.int64)
        batch.semi_choice = choice
        batch.semi = index.labels[grd, choice].copy()
        batch.delta_semi = index.deltas[grd, choice].copy()
    return batch


def _as_generator(rng):
    if isinstance(rng, np.random.Generator):
        return rng
    return np.random.default_rng(rng)


def _rng_state_to_text(rng):
    return json.dumps(rng.bit_generator.state)


def _rng_state_from_text(rng, text):
    if isinstance(text, np.ndarray):
        text = text.item()
    if isinstance(text, bytes):
        text = text.decode()
    rng.bit_generator.state = json.loads(text)


class MiningPool:
    """VIGOR's global mining: the latest descriptor of every training tile and panorama, and for
    every panorama the `keep` most similar tiles among `pool_size` random ones.

    `kept[i]` is in the original's `mining_save` layout: ascending similarity, so `kept[i, -1]`
    is the most similar tile. `ready` is set by the caller (the original starts mining after
    `mining_start` epochs); `refresh` only recomputes `kept`.
    """

    def __init__(self, num_sat, num_grd, dim, pool_size=10000, keep=100, dtype=np.float32, chunk=2048):
        self.num_sat, self.num_grd, self.dim = int(num_sat), int(num_grd), int(dim)
        self.pool_size = int(pool_size)
        self.keep = int(keep)
        self.chunk = int(chunk)
        self.sat_desc = np.zeros((self.num_sat, self.dim), dtype)
        self.grd_desc = np.zeros((self.num_grd, self.dim), dtype)
        self.kept = np.zeros((self.num_grd, min(self.keep, self.effective_pool_size)), np.int64)
        self.ready = False

    @property
    def effective_pool_size(self):
        # the original asserts pool_size < number of tiles; we use every tile instead
        return min(self.pool_size, self.num_sat)

    def update(self, grd_idx, sat_idx, grd_desc, sat_desc):
        grd_idx = np.asarray(grd_idx, dtype=np.int64)
        sat_idx = np.asarray(sat_idx, dtype=np.int64)
        if len(grd_desc) != len(grd_idx) or len(sat_desc) != len(sat_idx):
            raise ValueError(f"MiningPool.update: {len(grd_idx)} panoramas / {len(sat_idx)} tiles but "
                             f"{len(grd_desc)} / {len(sat_desc)} descriptors")
        self.grd_desc[grd_idx] = grd_desc
        self.sat_desc[sat_idx] = sat_desc

    def refresh(self, rng=None):
        """Draw the random pool (without replacement) and keep each panorama's most similar tiles."""
        rng = _as_generator(rng)
        pool = rng.choice(self.num_sat, size=self.effective_pool_size, replace=False)
        keep = self.kept.shape[1]
        pool_desc = np.ascontiguousarray(self.sat_desc[pool].T)
        for start in range(0, self.num_grd, self.chunk):
            product = self.grd_desc[start:start + self.chunk] @ pool_desc
            top = np.argpartition(product, product.shape[1] - keep, axis=1)[:, -keep:]
            order = np.argsort(np.take_along_axis(product, top, axis=1), axis=1, kind="stable")
            self.kept[start:start + self.chunk] = pool[np.take_along_axis(top, order, axis=1)]
        return pool

    def state_dict(self):
        return {"sat_desc": self.sat_desc, "grd_desc": self.grd_desc, "kept": self.kept,
                "ready": np.array(self.ready)}

    def load_state_dict(self, state):
        for name in ("sat_desc", "grd_desc", "kept"):
            value = np.asarray(state[name])
            current = getattr(self, name)
            if value.shape != current.shape:
                raise ValueError(f"MiningPool state '{name}' has shape {value.shape}, expected {current.shape}: "
                                 f"it was saved for another dataset or descriptor size")
            setattr(self, name, value.astype(current.dtype, copy=True))
        self.ready = bool(np.asarray(state["ready"]))

def steps_per_epoch(num_panoramas, nominal_batch, configured=None):
    """The original's break_iter, int(N / nominal batch) (14 even where the batch holds 10), unless configured."""
    steps = configured or int(num_panoramas / nominal_batch)
    if steps < 1:
        raise ValueError(f"{num_panoramas} training panoramas give no full batch of {nominal_batch}: "
                         "lower the stage's batch_size")
    return steps


class TrainSampler:
    """Batches of training panoramas as the original's get_next_batch / get_next_batch_E_3.

    batch_size is the number of panoramas per batch (the continuous loaders' reduced size); how
    many batches make an epoch is `steps_per_epoch`'s answer.
    """

    def __init__(self, index, batch_size, with_semi=False, mining=None, seed=0, max_tries=100000,
                 covering=False):
        self.index = index
        self.labels = np.asarray(index.labels, dtype=np.int64)
        self.batch_size = int(batch_size)
        self.with_semi = bool(with_semi)
        self.covering = bool(covering)
        self.mining = mining
        self.max_tries = int(max_tries)
        self.rng = np.random.default_rng(seed)
        self.batches_drawn = 0
        self.excluded = []
        self._build_cover()
        if self.batch_size < 1:
            raise ValueError("batch_size must be at least 1")

    def _build_cover(self):
        cover = {}
        excluded = set(self.excluded)
        for i, tile in enumerate(self.labels[:, 0].tolist()):
            if i not in excluded:
                cover.setdefault(tile, []).append(i)
        if not cover:
            raise DataError(f"{self.index.name}: no panorama left to sample")
        self.cover = {tile: np.array(panos, dtype=np.int64) for tile, panos in cover.items()}
        self.cover_tiles = np.array(list(self.cover), dtype=np.int64)   # first-appearance order
        if self.covering:
            self._build_holders(excluded)

    def _build_holders(self, excluded):
        """covering: tile -> (panorama, label column) of every panorama the tile holds (any column)."""
        holders = {}
        for i, row in enumerate(self.labels.tolist()):
            if i not in excluded:
                for column, tile in enumerate(row):
                    holders.setdefault(tile, []).append((i, column))
        self.holders = {tile: np.array(pairs, dtype=np.int64) for tile, pairs in holders.items()}

    # ---------------------------------------------------------------- the original's helpers
    def random_panorama(self):
        """get_init_idx: a random covered tile, then a random panorama it covers."""
        tile = self.cover_tiles[self.rng.integers(len(self.cover_tiles))]
        panos = self.cover[int(tile)]
        return int(panos[self.rng.integers(len(panos))])

    def overlaps(self, used_tiles, i):
        """check_overlap, negated: does panorama i share a reference tile with the batch so far?"""
        return not used_tiles.isdisjoint(self.labels[i].tolist())

    def _draw_free(self, used_tiles):
        for _ in range(self.max_tries):
            i = self.random_panorama()
            if not self.overlaps(used_tiles, i):
                return i
        raise DataError(f"{self.index.name}: could not find a panorama whose 4 reference tiles are not "
                        f"already in the batch after {self.max_tries} tries; the dataset is too small for "
                        f"batches of {self.batch_size}: lower the batch size")

    def _draw_mined(self, anchor, used_tiles):
        """A panorama whose positive is one of the anchor's kept hard tiles (falls back to random).

        Returns (panorama, from_pool, positive column): the column is the hard tile's among the
        panorama's labels under covering, 0 otherwise, or None where the draw fell back to random."""
        kept = self.mining.kept[anchor]
        n_keep = len(kept)
        tries = 0
        for _ in range(self.max_tries):
            column = None
            if tries <= n_keep:
                tile = int(kept[-1 - self.rng.integers(n_keep)])
                if self.covering:
                    pairs = self.holders.get(tile)
                    if pairs is None:
                        tries += 1
                        continue
                    i, column = (int(v) for v in pairs[self.rng.integers(len(pairs))])
                else:
                    panos = self.cover.get(tile)
                    if panos is None:
                        tries += 1
                        continue
                    i = int(panos[self.rng.integers(len(panos))])
                    column = 0
                from_pool = True
            else:
                i = self.random_panorama()
                from_pool = False
            tries += 1
            if not self.overlaps(used_tiles, i):
                return i, from_pool, column
        raise DataError(f"{self.index.name}: no non-overlapping panorama found for a mined batch after "
                        f"{self.max_tries} tries: lower the batch size")

    def _semi_column(self, positive_column=0):
        """The original: uniform over 1..3; covering: uniform over the three columns but the positive's."""
        if not self.covering:
            return int(self.rng.integers(1, 4))
        column = int(self.rng.integers(0, 3))
        return column + (column >= positive_column)

    def _positive_column(self, column=None):
        """covering: uniform over 0..3 unless a mined draw fixed it; otherwise column 0, no draw."""
        if not self.covering:
            return 0
        return int(self.rng.integers(0, 4)) if column is None else int(column)

    # ---------------------------------------------------------------- batches
    def next_batch(self):
        grd, choice, mined, positive = [], [], [], []
        used = set()

        def add(i, from_pool, column=None):
            grd.append(i)
            used.update(self.labels[i].tolist())
            mined.append(from_pool)
            positive.append(self._positive_column(column))
            if self.with_semi:
                choice.append(self._semi_column(positive[-1]))

        mining = self.mining is not None and self.mining.ready
        random_count = max(1, self.batch_size // 2) if mining else self.batch_size
        for _ in range(random_count):
            add(self._draw_free(used), False)
        if mining:
            for b in range(self.batch_size - random_count):
                add(*self._draw_mined(grd[b % random_count], used))
        self.batches_drawn += 1
        return make_batch(self.index, grd, choice if self.with_semi else None, mined,
                          positive if self.covering else None)

    def replace_sample(self, batch, pos):
        """Put a fresh random panorama at row `pos` of `batch` (used when an image turns out bad)."""
        used = set()
        for b, i in enumerate(batch.grd):
            if b != pos:
                used.update(self.labels[i].tolist())
        i = self._draw_free(used)
        grd = batch.grd.copy()
        grd[pos] = i
        positive = None
        if self.covering:
            positive = (batch.positive_choice if batch.positive_choice is not None
                        else np.zeros(len(grd), np.int64)).copy()
            positive[pos] = self._positive_column()
        choice = None
        if batch.semi_choice is not None:
            choice = batch.semi_choice.copy()
            choice[pos] = self._semi_column(0 if positive is None else positive[pos])
        mined = None if batch.mined is None else batch.mined.copy()
        if mined is not None:
            mined[pos] = False
        return make_batch(self.index, grd, choice, mined, positive)

    def exclude(self, grd_idx):
        """Never draw panorama grd_idx again (its image or one of its tiles is bad)."""
        if int(grd_idx) not in self.excluded:
            self.excluded.append(int(grd_idx))
            self._build_cover()

    def epoch(self, num_batches):
        for _ in range(num_batches):
            yield self.next_batch()

    def __iter__(self):
        return self

    def __next__(self):
        return self.next_batch()

    def state_dict(self):
        return {"rng_state": np.array(_rng_state_to_text(self.rng)),
                "batches_drawn": np.array(self.batches_drawn, dtype=np.int64),
                "excluded": np.array(self.excluded, dtype=np.int64)}

    def load_state_dict(self, state):
        _rng_state_from_text(self.rng, state["rng_state"])
        self.batches_drawn = int(np.asarray(state.get("batches_drawn", 0)))
        excluded = [int(i) for i in np.asarray(state.get("excluded", np.zeros(0, np.int64))).ravel()]
        if excluded != self.excluded:
            self.excluded = excluded
            self._build_cover()
