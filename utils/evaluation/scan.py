"""The one pass of a built network over a split: descriptors, offsets, Sigma and uncertainty.

The trainer's validation, E_3's uncertainty pass and evaluate.py all run through `Scanner`.
It feeds images from the data side's ordered scans (utils/data/prefetch.py) into a session and
fetches tensors of a network built by model/networks.py; everything after the fetch is numpy,
so the training graph (finalised) needs no extra ops.

Units: offsets in VIGOR's 640-pixel delta convention (row = 320 + d0, column = 320 - d1),
whatever the network's input size; Sigma over (d0, d1) in 640-pixel units, so that
`delta_true - delta_pred` is the error it describes; uncertainty (the sum of the ellipse axes,
as SAMP's get_uncertainty) in 640-pixel units (docs/FAITHFULNESS.md T11, T13).

A NaN or infinite value in any fetched array is a NonFiniteError naming the network (the stage, or
the checkpoint evaluated), the pass and the count: an error, never a score.

Skip mode (`data.on_bad_sample: skip`): an unreadable image is counted, its row is flagged in
`ScanResult.bad` and its values are zero. `readable_subset` then says what that means for
retrieval: a bad tile leaves the reference set, a panorama whose image or positive tile is bad
leaves the queries, and a semi-positive label that points at a bad tile is treated as absent.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
from tqdm import tqdm

from model.uncertainty import sigma_np, spatial_mean_np, uncertainty_np
from utils.data.prefetch import scan_grd, scan_pairs, scan_sat
from utils.evaluation.finite import require_finite

BRANCHES = {"positive": ("heatmap", "L"), "semi": ("heatmap_semi", "L_semi")}
NOUNS = {("tiles", "desc"): "tile descriptors", ("panoramas", "desc"): "panorama descriptors"}


def heatmap_to_delta(row, col, heatmap_side):
    """Spatial mean (heatmap pixels) -> delta (640 px): row = 320 + d0, column = 319 - d1 at 640."""
    scale = heatmap_side / 640.0
    return np.stack([row / scale - 320.0, 319.0 - col / scale], axis=-1)


def sigma_to_delta(sigma, heatmap_side):
    """Sigma over (row, column) in heatmap pixels -> over (d0, d1) in 640 px (d1 runs against columns)."""
    scale = heatmap_side / 640.0
    flip = np.array([[1.0, -1.0], [-1.0, 1.0]])
    return sigma * flip / scale ** 2


@dataclass
class ScanResult:
    values: dict                # name -> (n, ...) array in the index's order; zero on bad rows
    bad: np.ndarray             # (n,) bool: the row had an unreadable image (skip mode)
    extra: dict = field(default_factory=dict)   # e.g. the first few heatmaps

    @property
    def skipped(self) -> int:
        return int(np.count_nonzero(self.bad))


@dataclass
class ScanNetwork:
    """What a scan feeds and fetches: a session, the network's placeholders and its tensors."""
    sess: object                # tf.Session holding the network's variables
    inputs: object              # model.inputs.Inputs
    net: dict                   # sat_global, grd_global; delta (VIGOR) or heatmap/L[_semi] (SAMP)
    name: str = "network"       # what errors call it: the stage, or the checkpoint evaluated

    @property
    def localizes(self) -> bool:
        return "delta" in self.net or "heatmap" in self.net

    def sat_feed(self, sat):
        feed = {self.inputs.sat: sat}
        if self.inputs.sat_semi is not None:
            feed[self.inputs.sat_semi] = sat  # the two tile slots share nothing but the VGG weights
        return feed


class Scanner:
    """Scans of one split through one network, batch_size images at a time, in index order."""

    def __init__(self, network: ScanNetwork, loader, index, batch_size, workers=2,
                 on_bad_sample="error", progress=False):
        self.network, self.loader, self.index = network, loader, index
        self.batch_size, self.workers = int(batch_size), int(workers)
        self.on_bad_sample, self.progress = on_bad_sample, progress

    def over(self, index):
        """The same scan over another index (e.g. the readable subset)."""
        return Scanner(self.network, self.loader, index, self.batch_size, self.workers,
                       self.on_bad_sample, self.progress)

    def _run(self, batches, total, desc, step):
        parts, bads = {}, []
        chunks = tqdm(batches, total=-(-total // self.batch_size), desc=desc, leave=False,
                      disable=not self.progress, dynamic_ncols=True)
        for images, bad in chunks:
            for name, value in step(images).items():
                value = np.asarray(value)
                value[bad] = 0
                parts.setdefault(name, []).append(value)
            bads.append(bad)
        values = {k: np.concatenate(v) for k, v in parts.items()}
        require_finite({NOUNS.get((desc, k), k): v for k, v in values.items()}, f"{self.network.name}, {desc}")
        return ScanResult(values, np.concatenate(bads))

    def _options(self):
        return dict(workers=self.workers, on_bad_sample=self.on_bad_sample, with_bad=True)

    def tiles(self) -> ScanResult:
        """values['desc']: (S, D) float32 global descriptors of every tile."""
        n = self.network
        batches = scan_sat(self.loader, self.index, self.batch_size, **self._options())
        return self._run(batches, self.index.num_sat, "tiles",
                         lambda sat: {"desc": n.sess.run(n.net["sat_global"], n.sat_feed(sat))})

    def panoramas(self) -> ScanResult:
        """values['desc']: (N, D) float32 global descriptors of every panorama."""
        n = self.network
        batches = scan_grd(self.loader, self.index, self.batch_size, **self._options())
        return self._run(batches, self.index.num_grd, "panoramas",
                         lambda grd: {"desc": n.sess.run(n.net["grd_global"], {n.inputs.grd: grd})})

    def pairs(self, sat_order, branch="positive", keep_heatmaps=0, desc="pairs", offsets=True) -> ScanResult:
        """Panorama i located in tile sat_order[i]: values 'offsets' (N, 2) and, for SAMP,
        'sigma' (N, 2, 2) and 'uncertainty' (N,); extra['heatmaps'] the first keep_heatmaps.

        branch 'positive' reads the positive head (heatmap, L; VIGOR's offset MLP), 'semi' the
        semi-positive head (heatmap_semi, L_semi) with the tile fed to the semi slot.
        offsets=False (SAMP): only 'sigma' and 'uncertainty', without running the heatmap decoder.
        """
        if not self.network.localizes:
            raise ValueError("this network has no offset head: pair scans need SAFA_delta (VIGOR or SAMP)")
        kept = []

        def step(images):
            out = self._pair_step(*images, branch, offsets)
            heatmap = out.pop("heatmap", None)
            if heatmap is not None and sum(len(h) for h in kept) < keep_heatmaps:
                kept.append(heatmap)
            return out

        batches = scan_pairs(self.loader, self.index, sat_order, self.batch_size, **self._options())
        result = self._run(batches, self.index.num_grd, desc, step)
        if kept:
            result.extra["heatmaps"] = np.concatenate(kept)[:keep_heatmaps]
        return result

    def _pair_step(self, sat, grd, branch, offsets=True):
        n = self.network
        feed = n.sat_feed(sat)
        feed[n.inputs.grd] = grd
        if "heatmap" not in n.net:  # VIGOR's offset MLP: delta / 320 at 640 px
            if branch != "positive":
                raise ValueError("VIGOR's offset MLP has only the positive branch")
            return {"offsets": n.sess.run(n.net["delta"], feed).astype(np.float64) * 320.0}
        heatmap_name, cholesky_name = BRANCHES[branch]
        side = int(n.net[heatmap_name].shape[1])
        if not offsets:   # the Cholesky head reads the bottleneck, not the heatmap: the decoder is not run
            L = n.sess.run(n.net[cholesky_name], feed)
            return {"sigma": sigma_to_delta(sigma_np(L), side), "uncertainty": uncertainty_np(L) * (640.0 / side)}
        heatmap, L = n.sess.run([n.net[heatmap_name], n.net[cholesky_name]], feed)
        row, col = spatial_mean_np(heatmap)
        return {"offsets": heatmap_to_delta(row, col, side),
                "sigma": sigma_to_delta(sigma_np(L), side),
                "uncertainty": uncertainty_np(L) * (640.0 / side),
                "heatmap": heatmap[..., 0]}


# ---------------------------------------------------------------- what skipped images mean
def readable_subset(index, sat_bad, grd_bad):
    """(sub_index, sat_rows, grd_rows): the split without unreadable images.

    Tiles with a bad image leave the references; panoramas with a bad image, or whose positive
    tile is bad, leave the queries. A semi-positive label on a bad tile is replaced by the
    positive (a tile that is not there is never closer than the positive, which is exactly how a
    duplicate of the positive counts in the hit rate). Returns the index itself when nothing
    is bad.
    """
    sat_bad = np.asarray(sat_bad, bool)
    grd_bad = np.asarray(grd_bad, bool)
    if not sat_bad.any() and not grd_bad.any():
        return index, np.arange(index.num_sat), np.arange(index.num_grd)
    sat_rows = np.flatnonzero(~sat_bad)
    grd_rows = np.flatnonzero(~grd_bad & ~sat_bad[index.labels[:, 0]])
    if len(sat_rows) == 0 or len(grd_rows) == 0:
        from utils.errors import DataError
        raise DataError(f"{index.name}: no readable panorama with a readable positive tile is left "
                        f"({int(sat_bad.sum())} tiles, {int(grd_bad.sum())} panoramas unreadable)")
    new_position = np.full(index.num_sat, -1, np.int64)
    new_position[sat_rows] = np.arange(len(sat_rows))
    labels = new_position[index.labels[grd_rows]]
    deltas = index.deltas[grd_rows].copy()
    missing = labels < 0
    labels[missing] = np.broadcast_to(labels[:, :1], labels.shape)[missing]
    deltas[missing] = np.broadcast_to(deltas[:, :1], deltas.shape)[missing]
    subset = replace(
        index, sat_paths=index.sat_paths[sat_rows], sat_gps=index.sat_gps[sat_rows],
        sat_city=index.sat_city[sat_rows], meters_per_pixel=index.meters_per_pixel[sat_rows],
        sat_source=None if index.sat_source is None else index.sat_source[sat_rows],
        grd_paths=index.grd_paths[grd_rows], grd_gps=index.grd_gps[grd_rows],
        grd_city=index.grd_city[grd_rows], labels=labels, deltas=deltas,
        grd_source=None if index.grd_source is None else index.grd_source[grd_rows],
        sat_building=None if index.sat_building is None else index.sat_building[sat_rows],
        grd_building=None if index.grd_building is None else index.grd_building[grd_rows],
        skipped=list(index.skipped))
    return subset, sat_rows, grd_rows


@dataclass
class Descriptors:
    """Global descriptors of a split, and the readable part retrieval is measured on."""
    sat: np.ndarray             # (S, D) float32, index order; zero rows for unreadable tiles
    grd: np.ndarray             # (N, D) float32, index order; zero rows for unreadable panoramas
    readable: object            # SplitIndex without unreadable images (the index itself if none)
    sat_rows: np.ndarray        # rows of `sat` in `readable`
    grd_rows: np.ndarray        # rows of `grd` in `readable`
    skips: dict                 # unreadable_tiles, unreadable_panoramas, queries_left_out

    @property
    def readable_sat(self):
        return self.sat[self.sat_rows]

    @property
    def readable_grd(self):
        return self.grd[self.grd_rows]


def descriptor_pass(scanner: Scanner) -> Descriptors:
    """Tiles then panoramas of the scanner's split, with the readable subset for retrieval."""
    tiles, panoramas = scanner.tiles(), scanner.panoramas()
    index = scanner.index
    readable, sat_rows, grd_rows = readable_subset(index, tiles.bad, panoramas.bad)
    skips = {"unreadable_tiles": tiles.skipped, "unreadable_panoramas": panoramas.skipped,
             "queries_left_out": int(index.num_grd - len(grd_rows))}
    return Descriptors(tiles.values["desc"].astype(np.float32), panoramas.values["desc"].astype(np.float32),
                       readable, sat_rows, grd_rows, skips)
