"""Localization on the synthetic city: settings chosen on held-out validation panoramas, then the
test split: top-1 alone vs top-k fusion, dense vs sparse databases, re-ranking (spatial, query
expansion), and joint vs single localization of sequences. Prints the README's tables (markdown).

    python bench/localization.py [--config configs/demo.yaml] [--checkpoint runs/demo/E_3/4] [--set key=value]
    python bench/localization.py --checkpoint runs/demo/E_3/4 --set localize.fine_checkpoint=CENTRED_E_1a

With localize.fine_checkpoint (e.g. an E_1a trained with data.positives=centred) the hybrid rows
are added: retrieval by the main checkpoint, the window search and the window re-ranker
(localize.rerank=windows) by the fine one, each setting chosen on validation; every other row
uses the main checkpoint alone, as without it.

For every test city: a dense (stride 320) and a sparse (stride 640) database cut from the city's
GeoTIFF (`<city>/aerial_map.tif`), indexed with the checkpoint; errors are metres in the
database's metric frame against the GPS in the panorama's file name.

Tuning never sees the test split: the fusion's temperature and min_sigma_m are chosen on fresh
validation panoramas drawn and rendered as the test split's, from another random stream
(`<city>/validation/`), and the joint settings on validation sequences (`validation_sequences/`,
seed 1). The test's sequences (`sequences/`, seed 0) are 4 panoramas 5 m apart along a street.
All are written by utils/data/synthetic_sequences.py into the dataset when missing.
"""
import argparse
import csv
import glob
import hashlib
import itertools
import json
import os
import sys
import time
from dataclasses import replace

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from utils.cli import run  # noqa: E402
from utils.config import load_config, resolve_path  # noqa: E402
from utils.data.dataset import parse_pano_name  # noqa: E402
from utils.data.splits import load_splits  # noqa: E402
from utils.data.synthetic_raster import RASTER_NAME  # noqa: E402
from utils.data.synthetic_sequences import (  # noqa: E402
    SEQUENCE_CSV,
    SEQUENCE_DIR,
    VALIDATION_DIR,
    VALIDATION_SEED,
    VALIDATION_SEQUENCE_DIR,
    write_sequences,
    write_validation_panoramas,
)
from utils.errors import CheckpointError, DataError
from utils.localization.database import INFO_FILE, build_database, load_database  # noqa: E402
from utils.localization.index import build_index, load_index  # noqa: E402
from utils.localization.output_cache import CachedModel  # noqa: E402
from utils.localization.predict import LocalizationModel, open_fine_model  # noqa: E402
from utils.localization.query import Localizer, Settings  # noqa: E402
from utils.session import checkpoints as ckpt  # noqa: E402
from utils.training.stage import stage_dir  # noqa: E402

THRESHOLDS = (10.0, 25.0)
WINDOW_RERANK_WEIGHTS = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0)   # localize.rerank=windows: tried on validation (top-1)
LENGTH, SPACING_M = 4, 5.0
TEMPERATURES = (0.02, 0.05, 0.1, 0.2, 0.5)
MIN_SIGMAS_M = (0.0, 10.0, 20.0, 40.0, 80.0)
PREFILL_CANDIDATES = 50         # each panorama's top tiles whose network outputs are cached up front
CONSENSUS = (0.0, 0.5, 0.75)
OUTLIER_SHARES = (0.0, 0.05, 0.2, 0.5)
RERANK_GRIDS = {              # re-ranking settings tried on validation (top-1 tile of the dense database)
    "k_reciprocal": [{"rerank_k1": k1, "rerank_k2": k2, "rerank_lambda": lam}
                     for k1, k2, lam in itertools.product((3, 5, 8), (1, 2), (0.3, 0.6, 0.9))],
    "gnn": [{"rerank_k1": k1, "rerank_k2": k2, "rerank_layers": layers}
            for k1, k2, layers in itertools.product((2, 4, 8), (2, 3, 5), (1, 2))],
    "footprint": [{"rerank_weight": w} for w in (0.1, 0.25, 0.5, 1.0)],
    "windows": [{"rerank_weight": w} for w in WINDOW_RERANK_WEIGHTS],
}
RERANK_NAMES = {"spatial": "spatial re-rank", "expansion": "query expansion", "k_reciprocal": "k-reciprocal",
                "gnn": "graph (GNN) re-rank", "footprint": "footprint-graph re-rank",
                "windows": "window re-rank"}   # the checkpoint's own windows (localize.fine_checkpoint: hybrid rows)
GRAPH_GRID = [{"graph_candidates": k, "graph_support": support}
              for k, support in itertools.product((5, 10, 20), (0.5, 1.0, 2.0, 5.0))]
RECUT_CANDIDATES = (1, 2, 3, 5)
FINE_TEMPERATURES = (0.02, 0.05, 0.1, 0.2, 0.5)   # localize.fine=windows: tried on validation (dense)
WINDOWS_ROW = "dense, window search (fine: windows)"
PRODUCT_ROW = "dense, head x window search (fine: product)"
HYBRID_TEMPERATURES = (0.005, 0.01, 0.02, 0.05, 0.1)   # the fine checkpoint's window search: tried on validation
HYBRID_VARIANTS = {   # retrieval by the main checkpoint; windows by localize.fine_checkpoint's network
    "hybrid: window re-rank": {"rerank": "windows", "fine": "head"},
    "hybrid: window search": {"fine": "windows"},
    "hybrid: head x window search": {"fine": "product"},
    "hybrid: window re-rank + window search": {"rerank": "windows", "fine": "windows"},
    "hybrid: window re-rank + head x window search": {"rerank": "windows", "fine": "product"},
}
HYBRID_JOINT = ("hybrid: window search", "hybrid: head x window search", "hybrid: window re-rank + window search",
                "hybrid: window re-rank + head x window search")
EDGE_BANDS = (0.0, 0.125, 0.25, 0.375)
SPARSE_GOAL, RERANK_GOAL, RECOVER_GOAL, SPOIL_GOAL, JOINT_GOAL = 1.5, 0.03, 0.25, 0.02, 0.70


# ---------------------------------------------------------------- data
def database_for(root, city, stride, out, model):
    ground_mpp = model.ground_mpp
    raster = os.path.join(root, city, RASTER_NAME)
    path = os.path.join(out, f"{city}_stride{stride}")
    if not os.path.exists(os.path.join(path, INFO_FILE)) or \
            json.load(open(os.path.join(path, INFO_FILE)))["raster"] != os.path.abspath(raster) or \
            json.load(open(os.path.join(path, INFO_FILE))).get("ground_mpp") != ground_mpp:
        build_database(raster, path, ground_mpp, tile_px=640, stride_px=stride, progress=False)
    db = load_database(path)
    try:
        load_index(db, model.checkpoint)
    except DataError:                           # missing or from another checkpoint: (re)index
        build_index(db, model, progress=False)
    return db


def ensure_heldout(root, cities, per_city):
    """Test sequences (seed 0), validation sequences and panoramas (seed 1), written when missing."""
    def missing(folder, name):
        return not all(os.path.exists(os.path.join(root, c, folder, name)) for c in cities)
    if missing(SEQUENCE_DIR, SEQUENCE_CSV):
        write_sequences(root, per_city=per_city, length=LENGTH, spacing_m=SPACING_M)
    if missing(VALIDATION_SEQUENCE_DIR, SEQUENCE_CSV):
        write_sequences(root, per_city=per_city, length=LENGTH, spacing_m=SPACING_M, seed=VALIDATION_SEED,
                        folder=VALIDATION_SEQUENCE_DIR)
    if not all(glob.glob(os.path.join(root, c, VALIDATION_DIR, "*.jpg")) for c in cities):
        write_validation_panoramas(root, per_tile=2.0)


def read_sequences(root, city, folder):
    """[(paths, offsets (P, 2))] of one city's sequences."""
    sequences = {}
    with open(os.path.join(root, city, folder, SEQUENCE_CSV)) as f:
        for r in csv.DictReader(f):
            sequences.setdefault(r["sequence"], []).append(r)
    return [([os.path.join(root, city, folder, r["panorama"]) for r in rows],
             np.array([(float(r["east_m"]), float(r["north_m"])) for r in rows])) for rows in sequences.values()]


def truth_of(db, path):
    lat, lng = parse_pano_name(path)
    return db.frame.lonlat_to_metric(lng, lat)


def prefill(model, db, paths, candidates=PREFILL_CANDIDATES):
    """The network's outputs of every panorama in its top `candidates` tiles, in one batch (cached)."""
    index = load_index(db, model.checkpoint)
    _, ids = index.search(model.panorama_descriptors(paths), candidates)
    model.tile_outputs([db.tile_path(t) for row in ids for t in row], [p for p, row in zip(paths, ids) for _ in row])


def prefill_all(model, root, cities, test, out):
    """Test and validation panoramas and sequences against the dense and sparse databases."""
    for city in cities:
        paths = [str(p) for p, pc in zip(test.grd_paths, test.grd_city) if pc == city]
        paths += sorted(glob.glob(os.path.join(root, city, VALIDATION_DIR, "*.jpg")))
        paths += [p for folder in (SEQUENCE_DIR, VALIDATION_SEQUENCE_DIR)
                  for sequence, _ in read_sequences(root, city, folder) for p in sequence]
        for stride in (320, 640):
            prefill(model, database_for(root, city, stride, out, model), paths)
        model.save()


# ---------------------------------------------------------------- measures
def summary(errors):
    errors = np.asarray(errors)
    return {"median": float(np.median(errors)), **{f"within_{t:g}": float(np.mean(errors <= t)) for t in THRESHOLDS}}


def error(localizer, result, estimate="fused"):
    return float(np.linalg.norm(getattr(result, estimate).mean - truth_of(localizer.db, result.path)))


def rows_of(localizer, results):
    """Per panorama: top-1 and fused errors, whether the top-1 / any top-k tile holds the truth."""
    rows, db = [], localizer.results_db
    for result in results:
        truth = truth_of(db, result.path)
        tiles = [t.tile for t in result.tiles]
        rows.append({"top1": error(localizer, result, "top1"), "fused": error(localizer, result),
                     "edge": edge_distance(localizer.db, truth), "top1_hit": bool(db.contains(tiles[0], truth)),
                     "topk_hit": bool(any(db.contains(t, truth) for t in tiles))})
    return rows


def edge_distance(db, point):
    """Distance (Chebyshev, in tile widths) from the point to the centre of the stored tile nearest it:
    0 at a centre, 0.25 at the central quarter's edge, 0.5 at a tile's edge."""
    return float(np.min(np.max(np.abs(db.centres - point), axis=1) / db.width_m))


def by_edge(rows):
    """Per band of edge_distance: panoramas, top-1 hit rate and median fused error."""
    bands = []
    for low in EDGE_BANDS:
        chosen = [r for r in rows if low <= r["edge"] < low + 0.125]
        if chosen:
            bands.append({"from": low, "panoramas": len(chosen), "top1_hit": float(np.mean([r["top1_hit"] for r in chosen])),
                          "median": float(np.median([r["fused"] for r in chosen]))})
    return bands


def recoveries_against(rows, plain):
    """recoveries(), the wrong and right top-1 tiles being plain retrieval's (rows and plain: the same
    panoramas in the same order): a re-ranker's recovered share counts the tiles it put right too."""
    wrong = [r for r, p in zip(rows, plain) if not p["top1_hit"]]
    right = [(r, p) for r, p in zip(rows, plain) if p["top1_hit"]]
    recovered = sum(r["fused"] <= 25.0 for r in wrong) / max(len(wrong), 1)
    return recovered, sum(p["top1"] <= 25.0 < r["fused"] for r, p in right) / max(len(right), 1)


def recoveries(rows):
    """(share of wrong top-1 tiles whose final estimate is <= 25 m, share of right top-1 tiles
    (<= 25 m alone) that it takes beyond 25 m)."""
    wrong = [r for r in rows if not r["top1_hit"]]
    right = [r for r in rows if r["top1_hit"]]
    recovered = sum(r["fused"] <= 25.0 for r in wrong) / max(len(wrong), 1)
    return recovered, sum(r["top1"] <= 25.0 < r["fused"] for r in right) / max(len(right), 1)


def database_summary(dbs, rows, raster=False):
    """raster: the stored imagery is the raster the windows are re-cut from, not the tiles."""
    size = sum(os.path.getsize(db.info["raster"]) if raster else
               sum(os.path.getsize(db.tile_path(i)) for i in range(len(db))) for db in dbs)
    size += sum(os.path.getsize(os.path.join(db.root, "index", "descriptors.npy")) for db in dbs)
    wrong = [r for r in rows if not r["top1_hit"]]
    recovered_share, spoiled_share = recoveries(rows)
    return {"recovered_share": recovered_share, "spoiled_share": spoiled_share, "by_edge": by_edge(rows),"tiles": sum(len(db) for db in dbs), "megabytes": size / 1e6, "top1": summary([r["top1"] for r in rows]),
            "fused": summary([r["fused"] for r in rows]),
            "top1_hit": float(np.mean([r["top1_hit"] for r in rows])),
            "topk_hit": float(np.mean([r["topk_hit"] for r in rows])),
            "wrong_top1": len(wrong), "recovered": int(sum(r["fused"] <= 25.0 for r in wrong)),
            "spoiled": int(sum(r["top1_hit"] and r["top1"] <= 25.0 < r["fused"] for r in rows))}


def sequence_summary(groups):
    """groups: per sequence {"top1": [...], "single": [...], "joint": [...]} errors per panorama."""
    flat = {kind: np.concatenate([g[kind] for g in groups]) for kind in ("top1", "single", "joint")}
    return {"sequences": len(groups), **{kind: summary(flat[kind]) for kind in flat},
            "joint_better": float(np.mean(flat["joint"] < flat["single"])),
            "joint_worse": float(np.mean(flat["joint"] > flat["single"])),
            "joint_better_than_top1": float(np.mean(flat["joint"] < flat["top1"])),
            "joint_beats_each": float(np.mean([np.all(np.asarray(g["joint"]) < g["single"]) for g in groups])),
            "offset_spread_m": float(np.median([g["offset_spread_m"] for g in groups])),
            "bootstrap": sequence_bootstrap(groups),
            "by_top1": {kind: by_top1(groups, kind) for kind in ("all", "some", "none")}}


def sequence_bootstrap(groups, draws=2000):
    """95 % intervals, resampling whole sequences (their panoramas share tiles, so they are not
    independent), of the share of panoramas joint is closer for and of joint - single median (m)."""
    rng = np.random.default_rng(0)
    closer, gain = [], []
    for _ in range(draws):
        chosen = [groups[i] for i in rng.integers(0, len(groups), len(groups))]
        single, joint = (np.concatenate([g[k] for g in chosen]) for k in ("single", "joint"))
        closer.append(np.mean(joint < single))
        gain.append(np.median(joint) - np.median(single))
    return {"closer": np.percentile(closer, [2.5, 97.5]).tolist(), "median_gain_m": np.percentile(gain, [2.5, 97.5]).tolist()}


def by_top1(groups, kind):
    """The sequences whose panoramas' top-1 tiles hold the truth for all / some / none of them."""
    chosen = [g for g in groups if g["top1_right"] == kind]
    if not chosen:
        return {"sequences": 0}
    single, joint = (np.concatenate([g[k] for g in chosen]) for k in ("single", "joint"))
    return {"sequences": len(chosen), "single_median": float(np.median(single)),
            "joint_median": float(np.median(joint)), "joint_better": float(np.mean(joint < single))}


# ---------------------------------------------------------------- runs
def localizers_for(model, root, cities, stride, settings, out, fine_model=None, **changes):
    return {c: Localizer(model, db, load_index(db, model.checkpoint), replace(settings, **changes), fine_model=fine_model)
            for c in cities for db in [database_for(root, c, stride, out, model)]}


def panorama_rows(localizers, paths_of):
    """rows_of every city's panoramas (paths_of[city])."""
    return [row for c, localizer in localizers.items()
            for row in rows_of(localizer, localizer.localize_all(paths_of[c], progress=False))]


def top1_hit_rate(localizers, paths_of):
    """Share of panoramas whose first retrieved tile holds them (retrieval only, no offsets)."""
    hits = [bool(lo.db.contains(lo.retrieve(d, f)[0][0], truth_of(lo.db, p)))
            for c, lo in localizers.items()
            for p, d, f in zip(paths_of[c], lo.model.panorama_descriptors(paths_of[c]),
                               lo.fine_descriptors(paths_of[c]) if lo.settings.rerank == "windows"
                               else [None] * len(paths_of[c]))]
    return float(np.mean(hits))


def predict_sequences(localizers, root, cities, folder):
    """[(localizer, singles, prediction)] per sequence: the network runs once per sequence."""
    out = []
    for city in cities:
        localizer = localizers[city]
        for paths, offsets in read_sequences(root, city, folder):
            singles = localizer.localize_all(paths, progress=False)
            out.append((localizer, singles, localizer.predict_sequence(paths, offsets, progress=False)))
    return out


def joint_errors(predicted, settings):
    groups = []
    for localizer, singles, prediction in predicted:
        singles = [localizer.refit(r, settings) for r in singles]
        joint = localizer.joint(prediction, singles, settings)
        hits = [bool(localizer.db.contains(r.tiles[0].tile, truth_of(localizer.db, r.path))) for r in singles]
        groups.append({"top1": [error(localizer, r, "top1") for r in singles],
                       "single": [error(localizer, r) for r in singles],
                       "joint": [error(localizer, r) for r in joint],
                       "top1_right": "all" if all(hits) else "some" if any(hits) else "none",
                       "offset_spread_m": offset_spread(localizer, prediction)})
    return groups


def offset_spread(localizer, prediction):
    """Largest spread (m) between the panoramas' predicted positions in one shared tile: 0 when
    the network's offset ignores the panorama, about the panoramas' own spread when it tracks it."""
    spreads = [np.ptp([localizer.db.delta_to_metric(t, d) for d in prediction.deltas[:, k]], axis=0).max()
               for k, t in enumerate(prediction.tiles)]
    return float(max(spreads))


def tune_fusion(localizers, root, cities, settings):
    """Fusion settings by the median fused error on validation panoramas: (settings, panoramas, rows)."""
    single = [(localizer, r) for c in cities for localizer in [localizers[c]]
              for r in localizer.localize_all(sorted(glob.glob(os.path.join(root, c, VALIDATION_DIR, "*.jpg"))),
                                              progress=False)]
    fusion_rows = []
    for temperature, min_sigma in itertools.product(TEMPERATURES, MIN_SIGMAS_M):
        trial = replace(settings, temperature=temperature, min_sigma_m=min_sigma)
        errors = [error(localizer, localizer.refit(r, trial)) for localizer, r in single]
        fusion_rows.append({"temperature": temperature, "min_sigma_m": min_sigma, **summary(errors)})
    best = min(fusion_rows, key=lambda r: (r["median"], -r["within_25"]))
    return replace(settings, temperature=best["temperature"], min_sigma_m=best["min_sigma_m"]), len(single), fusion_rows


def tune(localizers, root, cities, settings):
    """Fusion settings by the median fused error on validation panoramas, then joint settings by
    the median joint error on validation sequences. Returns (settings, the tables' rows)."""
    settings, panoramas, fusion_rows = tune_fusion(localizers, root, cities, settings)
    predicted = predict_sequences(localizers, root, cities, VALIDATION_SEQUENCE_DIR)
    joint_rows = []
    for consensus, outlier in itertools.product(CONSENSUS, OUTLIER_SHARES):
        trial = replace(settings, joint_consensus=consensus, joint_outlier_share=outlier)
        joint_rows.append({"consensus": consensus, "outlier_share": outlier,
                           **sequence_summary(joint_errors(predicted, trial))})
    best = min(joint_rows, key=lambda r: (r["joint"]["median"], -r["joint_better"]))
    settings = replace(settings, joint_consensus=best["consensus"], joint_outlier_share=best["outlier_share"])
    return settings, {"validation_panoramas": panoramas, "fusion": fusion_rows,
                      "validation_sequences": len(predicted), "joint": joint_rows}


# ---------------------------------------------------------------- tables
def pct(x):
    return f"{100 * x:.1f}"


def tuning_table(tuning, settings):
    lines = [f"Validation ({tuning['validation_panoramas']} panoramas, dense): median m of top-k fusion by "
             f"temperature (rows) and min_sigma_m (columns); chosen: temperature {settings.temperature:g}, "
             f"min_sigma_m {settings.min_sigma_m:g}", "",
             "| temperature | " + " | ".join(f"{s:g} m" for s in MIN_SIGMAS_M) + " |",
             "|---|" + "---|" * len(MIN_SIGMAS_M)]
    for t in TEMPERATURES:
        cells = [f"{r['median']:.1f}" for r in tuning["fusion"] if r["temperature"] == t]
        lines.append(f"| {t:g} | " + " | ".join(cells) + " |")
    lines += ["", f"Validation ({tuning['validation_sequences']} sequences): joint localization by consensus and "
              f"outlier share; chosen: consensus {settings.joint_consensus:g}, outlier share "
              f"{settings.joint_outlier_share:g}", "",
              "| consensus | outlier share | joint median m | <=10 m % | <=25 m % | joint closer than fused single % |",
              "|---|---|---|---|---|---|"]
    for r in tuning["joint"]:
        j = r["joint"]
        lines.append(f"| {r['consensus']:g} | {r['outlier_share']:g} | {j['median']:.1f} | {pct(j['within_10'])} | "
                     f"{pct(j['within_25'])} | {pct(r['joint_better'])} |")
    return lines


def test_table(databases):
    lines = ["| database | tiles | MB | retrieval: top-1 tile holds it % | top-k % | estimate | median m | <=10 m % | <=25 m % |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, r in databases.items():
        for kind, label in (("top1", "top-1 tile alone"), ("fused", "top-k fusion")):
            s = r[kind]
            lines.append(f"| {name} | {r['tiles']} | {r['megabytes']:.1f} | {pct(r['top1_hit'])} | {pct(r['topk_hit'])} | "
                         f"{label} | {s['median']:.1f} | {pct(s['within_10'])} | {pct(s['within_25'])} |")
    lines += ["", "| database | wrong top-1 (tile misses the truth) | fusion recovers (<=25 m) | fusion spoils a right top-1 (>25 m) |",
              "|---|---|---|---|"]
    for name, r in databases.items():
        lines.append(f"| {name} | {r['wrong_top1']} | {r['recovered']} ({pct(r['recovered'] / max(r['wrong_top1'], 1))} %) | "
                     f"{r['spoiled']} |")
    return lines


def joint_table(j):
    lines = [f"| {j['sequences']} test sequences x {LENGTH} panoramas, {SPACING_M:g} m apart (dense) | median m | "
             f"<=10 m % | <=25 m % |", "|---|---|---|---|"]
    for kind, label in (("top1", "single: top-1 tile alone"), ("single", "single: top-k fusion"),
                        ("joint", "joint: product over shared tiles")):
        s = j[kind]
        lines.append(f"| {label} | {s['median']:.1f} | {pct(s['within_10'])} | {pct(s['within_25'])} |")
    lines += ["", f"joint closer than the fused single estimate for {pct(j['joint_better'])} % of the panoramas "
              f"(farther for {pct(j['joint_worse'])} %), closer than the top-1 tile alone for "
              f"{pct(j['joint_better_than_top1'])} %; closer for every panorama of the sequence in "
              f"{pct(j['joint_beats_each'])} % of the sequences", "",
              "resampling whole sequences (95 %): joint closer for {:.1f}-{:.1f} % of the panoramas; joint median - "
              "fused single median {:+.1f} to {:+.1f} m".format(*(100 * np.array(j["bootstrap"]["closer"])),
                                                               *j["bootstrap"]["median_gain_m"]), "",
              "| test sequences whose top-1 tiles hold the truth for | sequences | single median m | joint median m | "
              "joint closer % |", "|---|---|---|---|---|"]
    for kind, label in (("all", "all panoramas"), ("some", "some panoramas"), ("none", "no panorama")):
        k = j["by_top1"][kind]
        if k["sequences"]:
            lines.append(f"| {label} | {k['sequences']} | {k['single_median']:.1f} | {k['joint_median']:.1f} | "
                         f"{pct(k['joint_better'])} |")
    lines += ["", f"median over sequences of the largest spread between the panoramas' predicted positions in one "
              f"shared tile: {j['offset_spread_m']:.2f} m (the panoramas themselves span "
              f"{SPACING_M * (LENGTH - 1):g} m; 0 means the offset head ignores the panorama)"]
    return lines


def methods_table(tuning, chosen):
    """Validation: each re-ranking's best top-1 hit rate, the graph predictor's grid, the re-cut's."""
    r = tuning["rerank"]
    lines = [f"Validation (dense): top-1 tile holds the panorama % by re-ranking, each at its best setting; "
             f"plain {pct(r['none'])} %", "", "| re-ranking | setting chosen | top-1 % |", "|---|---|---|"]
    for method, name in RERANK_NAMES.items():
        setting = ", ".join(f"{k.replace('rerank_', '')} {v:g}" for k, v in chosen["rerank"][method].items()) or "config"
        lines.append(f"| {name} | {setting} | {pct(r[method])} |")
    p = tuning["predictor"]
    lines += ["", "Validation (dense): the graph predictor by candidates and support; wrong top-1 recovered "
              "(<= 25 m) and right top-1 spoiled (> 25 m); chosen: most recovered with <= "
              f"{pct(SPOIL_GOAL)} % spoiled", "", "| predictor | candidates | support | median m | recovered % | "
              "spoiled % |", "|---|---|---|---|---|---|",
              f"| top-k fusion | - | - | {p['fusion']['median']:.1f} | {pct(p['fusion']['recovered'])} | "
              f"{pct(p['fusion']['spoiled'])} |"]
    for t in p["graph"]:
        lines.append(f"| graph | {t['graph_candidates']} | {t['graph_support']:g} | {t['median']:.1f} | "
                     f"{pct(t['recovered'])} | {pct(t['spoiled'])} |")
    lines += ["", "Validation (sparse): windows re-cut around each panorama's top m stored tiles; chosen: the "
              f"fewest within {SPARSE_GOAL:g}x the dense median ({p['fusion']['median']:.1f} m)", "",
              "| m | windows searched (at most) | fused median m |", "|---|---|---|"]
    for t in tuning["recut"]:
        lines.append(f"| {t['recut_candidates']} | {9 * t['recut_candidates']} | {t['median']:.1f} |")
    return lines


def edge_table(databases):
    """Why the sparse database fails: top-1 hit and error by the panorama's distance from the centre
    of the stored tile nearest it (the network was trained on panoramas in the central quarter)."""
    lines = ["| database | distance from the nearest stored tile's centre (tile widths) | panoramas | "
             "top-1 tile holds it % | fused median m |", "|---|---|---|---|---|"]
    for name, r in databases.items():
        if name.startswith(("dense (", "sparse")):
            for band in r["by_edge"]:
                lines.append(f"| {name} | {band['from']:.3f}-{band['from'] + 0.125:.3f} | {band['panoramas']} | "
                             f"{pct(band['top1_hit'])} | {band['median']:.1f} |")
    return lines


def goal_table(results):
    """measured | goal | met, on the test split, for settings chosen on validation."""
    d, j = results["databases"], results["joint"]
    dense, graph = d["dense (stride 320)"], d["dense, graph predictor"]
    best_name, best = max(((n, r) for n, r in d.items() if n.startswith("dense, ") and n not in ("dense, graph predictor", WINDOWS_ROW)),
                          key=lambda item: item[1]["top1_hit"])
    recut = next(r for n, r in d.items() if n.startswith("sparse + raster"))
    sparse_goal = SPARSE_GOAL * dense["fused"]["median"]
    rows = [("re-ranking top-1 (dense)", f"{pct(best['top1_hit'])} % ({best_name[7:]}; plain {pct(dense['top1_hit'])} %)",
             f">= {pct(dense['top1_hit'] + RERANK_GOAL)} %", best["top1_hit"] >= dense["top1_hit"] + RERANK_GOAL),
            ("wrong top-1 recovered <= 25 m (graph predictor)", f"{pct(graph['recovered_share'])} % "
             f"(top-k fusion {pct(dense['recovered_share'])} %)", f">= {pct(RECOVER_GOAL)} %",
             graph["recovered_share"] >= RECOVER_GOAL),
            ("right top-1 spoiled > 25 m (graph predictor)", f"{pct(graph['spoiled_share'])} % "
             f"(top-k fusion {pct(dense['spoiled_share'])} %)", f"<= {pct(SPOIL_GOAL)} %",
             graph["spoiled_share"] <= SPOIL_GOAL),
            ("sparse median, re-cut windows", f"{recut['fused']['median']:.1f} m (plain sparse "
             f"{d['sparse (stride 640)']['fused']['median']:.1f} m)", f"<= {sparse_goal:.1f} m "
             f"({SPARSE_GOAL:g} x dense {dense['fused']['median']:.1f} m)", recut["fused"]["median"] <= sparse_goal),
            ("joint median (sequences)", f"{j['joint']['median']:.1f} m", f"< {j['single']['median']:.1f} m "
             "(fused single)", j["joint"]["median"] < j["single"]["median"]),
            ("joint closer than fused single", f"{pct(j['joint_better'])} %", f">= {pct(JOINT_GOAL)} %",
             j["joint_better"] >= JOINT_GOAL)]
    return ["| goal (test split; settings chosen on validation) | measured | goal | met |", "|---|---|---|---|"] + \
        [f"| {name} | {measured} | {goal} | {'yes' if met else 'no'} |" for name, measured, goal, met in rows]


# ---------------------------------------------------------------- tuning the new methods (validation only)
def tune_reranks(model, root, cities, settings, out, validation):
    """Each re-ranking's settings with the highest top-1 hit rate on the validation panoramas (dense)."""
    def rate(**changes):
        return top1_hit_rate(localizers_for(model, root, cities, 320, settings, out, **changes), validation)
    rows, chosen = {"none": rate(rerank="none")}, {}
    for method in RERANK_NAMES:
        trials = [(rate(rerank=method, **trial), trial) for trial in RERANK_GRIDS.get(method, [{}])]
        rows[method], chosen[method] = max(trials, key=lambda t: t[0])
    return chosen, rows


def tune_predictor(model, root, cities, settings, out, validation):
    """The graph predictor's setting recovering most wrong top-1 tiles on validation while spoiling
    at most SPOIL_GOAL of the right ones (else the one spoiling least); fusion's row for comparison."""
    def trial(**changes):
        rows = panorama_rows(localizers_for(model, root, cities, 320, settings, out, **changes), validation)
        recovered, spoiled = recoveries(rows)
        return {**changes, "median": float(np.median([r["fused"] for r in rows])), "recovered": recovered,
                "spoiled": spoiled}
    fusion = trial(predictor="fusion")
    trials = [trial(predictor="graph", **t) for t in GRAPH_GRID]
    allowed = [t for t in trials if t["spoiled"] <= SPOIL_GOAL]
    best = max(allowed, key=lambda t: (t["recovered"], -t["median"])) if allowed else \
        min(trials, key=lambda t: (t["spoiled"], -t["recovered"]))
    return best, {"fusion": fusion, "graph": trials}


def tune_recut(model, root, cities, settings, out, validation, dense_median):
    """The fewest stored tiles to re-cut around whose validation median is within SPARSE_GOAL x the
    dense database's (else the lowest median)."""
    trials = []
    for m in RECUT_CANDIDATES:
        rows = panorama_rows(localizers_for(model, root, cities, 640, settings, out, recut_candidates=m), validation)
        trials.append({"recut_candidates": m, "median": float(np.median([r["fused"] for r in rows]))})
    good = [t for t in trials if t["median"] <= SPARSE_GOAL * dense_median]
    return (good[0] if good else min(trials, key=lambda t: t["median"])), trials


# ---------------------------------------------------------------- main
def validation_paths(root, cities):
    return {c: sorted(glob.glob(os.path.join(root, c, VALIDATION_DIR, "*.jpg"))) for c in cities}


def tune_fine(model, root, cities, settings, out, validation, fine_model=None, temperatures=FINE_TEMPERATURES):
    """localize.fine=windows: the window temperature with the lowest median fused error on the
    validation panoramas (dense database, the fusion's settings as chosen for the offset head)."""
    trials = []
    for temperature in temperatures:
        rows = panorama_rows(localizers_for(model, root, cities, 320, settings, out, fine_model, fine="windows",
                                            fine_temperature=temperature), validation)
        recovered, spoiled = recoveries(rows)
        trials.append({"fine_temperature": temperature, "median": float(np.median([r["fused"] for r in rows])),
                       "recovered": recovered, "spoiled": spoiled})
    return min(trials, key=lambda t: t["median"]), trials


def tune_hybrid(model, fine_model, root, cities, settings, out, validation):
    """The hybrid rows' settings, on validation only: the window temperature (lowest median fused
    error, fine: windows), the window re-rank weight (highest top-1 hit rate), the variant for the
    recovery goals (most wrong top-1 tiles of plain retrieval recovered with at most SPOIL_GOAL of the
    right ones spoiled, else the one spoiling least) and the one for the joint goal (joint closer than
    fused single most often on the validation sequences)."""
    temperature, temperatures = tune_fine(model, root, cities, settings, out, validation, fine_model,
                                          HYBRID_TEMPERATURES)
    chosen = {"fine_temperature": temperature["fine_temperature"]}
    weights = [{"rerank_weight": w, "top1_hit": top1_hit_rate(localizers_for(
        model, root, cities, 320, settings, out, fine_model, rerank="windows", rerank_weight=w, **chosen), validation)}
        for w in WINDOW_RERANK_WEIGHTS]
    chosen["rerank_weight"] = max(weights, key=lambda t: t["top1_hit"])["rerank_weight"]
    plain = panorama_rows(localizers_for(model, root, cities, 320, settings, out), validation)
    variants = []
    for name, changes in HYBRID_VARIANTS.items():
        rows = panorama_rows(localizers_for(model, root, cities, 320, settings, out, fine_model, **chosen, **changes),
                             validation)
        recovered, spoiled = recoveries_against(rows, plain)
        variants.append({"name": name, "median": float(np.median([r["fused"] for r in rows])), "recovered": recovered,
                         "spoiled": spoiled, "top1_hit": float(np.mean([r["top1_hit"] for r in rows]))})
    allowed = [t for t in variants if t["spoiled"] <= SPOIL_GOAL]
    chosen["recovery_variant"] = (max(allowed, key=lambda t: (t["recovered"], -t["median"])) if allowed else
                                  min(variants, key=lambda t: (t["spoiled"], -t["recovered"])))["name"]
    joints = []
    for name in HYBRID_JOINT:
        variant = replace(settings, **chosen_hybrid(chosen), **HYBRID_VARIANTS[name])
        localizers = localizers_for(model, root, cities, 320, variant, out, fine_model)
        j = sequence_summary(joint_errors(predict_sequences(localizers, root, cities, VALIDATION_SEQUENCE_DIR), variant))
        joints.append({"name": name, "joint_median": j["joint"]["median"], "single_median": j["single"]["median"],
                       "joint_better": j["joint_better"]})
    chosen["joint_variant"] = max(joints, key=lambda t: (t["joint_better"], -t["joint_median"]))["name"]
    return chosen, {"fine": temperatures, "rerank": weights, "variants": variants, "joint": joints}


def chosen_hybrid(chosen):
    return {k: chosen[k] for k in ("fine_temperature", "rerank_weight")}


def measure_hybrid(model, fine_model, root, cities, settings, out, validation, test_paths, results):
    """The hybrid rows on the test split (results["databases"], results["joint_hybrid"])."""
    chosen, results["tuning"]["hybrid"] = tune_hybrid(model, fine_model, root, cities, settings, out, validation)
    results["chosen"]["hybrid"] = chosen
    plain = panorama_rows(localizers_for(model, root, cities, 320, settings, out), test_paths)
    for name, changes in HYBRID_VARIANTS.items():
        localizers = localizers_for(model, root, cities, 320, settings, out, fine_model, **chosen_hybrid(chosen),
                                    **changes)
        rows = panorama_rows(localizers, test_paths)
        row = database_summary([lo.db for lo in localizers.values()], rows)
        row["recovered_vs_plain"], row["spoiled_vs_plain"] = recoveries_against(rows, plain)
        results["databases"][name] = row
    results["joint_hybrid"] = {}
    for name in HYBRID_JOINT:
        variant = replace(settings, **chosen_hybrid(chosen), **HYBRID_VARIANTS[name])
        localizers = localizers_for(model, root, cities, 320, variant, out, fine_model)
        results["joint_hybrid"][name] = sequence_summary(
            joint_errors(predict_sequences(localizers, root, cities, SEQUENCE_DIR), variant))


def hybrid_table(results):
    """Validation choices and test rows of retrieval by the main checkpoint, windows by the fine one."""
    t, c = results["tuning"]["hybrid"], results["chosen"]["hybrid"]
    lines = [f"Hybrid: retrieval by {results['checkpoint']}, windows by {results['fine_checkpoint']}", "",
             (f"Validation (dense): the window search by the fine checkpoint by temperature; chosen: "
              f"{c['fine_temperature']:g} (lowest median)"), "",
             "| window temperature | fused median m | wrong top-1 recovered % | right top-1 spoiled % |", "|---|---|---|---|"]
    lines += [f"| {r['fine_temperature']:g} | {r['median']:.1f} | {pct(r['recovered'])} | {pct(r['spoiled'])} |"
              for r in t["fine"]]
    lines += ["", (f"Validation (dense): the window re-rank by weight (score = similarity + weight x best window "
                   f"similarity in the footprint); plain {pct(results['tuning']['rerank']['none'])} %; chosen: "
                   f"{c['rerank_weight']:g} (highest top-1)"), "", "| weight | top-1 tile holds it % |", "|---|---|"]
    lines += [f"| {r['rerank_weight']:g} | {pct(r['top1_hit'])} |" for r in t["rerank"]]
    lines += ["", (f"Validation (dense): the hybrid variants; wrong / right top-1 as plain retrieval's; chosen for the "
                   f"recovery goals: {c['recovery_variant']} (most recovered with <= {pct(SPOIL_GOAL)} % spoiled, else "
                   "the least spoiling)"), "", "| variant | top-1 % | fused median m | wrong top-1 recovered % | right top-1 spoiled % |",
              "|---|---|---|---|---|"]
    lines += [f"| {r['name']} | {pct(r['top1_hit'])} | {r['median']:.1f} | {pct(r['recovered'])} | {pct(r['spoiled'])} |"
              for r in t["variants"]]
    lines += ["", f"Validation (sequences): chosen for the joint goal: {c['joint_variant']}", "",
              "| variant | joint median m | fused single median m | joint closer % |", "|---|---|---|---|"]
    lines += [f"| {r['name']} | {r['joint_median']:.1f} | {r['single_median']:.1f} | {pct(r['joint_better'])} |"
              for r in t["joint"]]
    d = results["databases"]
    lines += ["", ("| test (dense) | top-1 tile holds it % | fused median m | <=10 m % | wrong top-1 recovered % | "
                   "right top-1 spoiled % | same, own top-1: recovered % | spoiled % |"), "|---|---|---|---|---|---|---|---|"]
    for name in ["dense (stride 320)", "dense, window re-rank", WINDOWS_ROW, PRODUCT_ROW, *HYBRID_VARIANTS]:
        r = d.get(name)
        if r is None:
            continue
        vs_plain = (r.get("recovered_vs_plain", r["recovered_share"]), r.get("spoiled_vs_plain", r["spoiled_share"]))
        lines.append(f"| {name} | {pct(r['top1_hit'])} | {r['fused']['median']:.1f} | {pct(r['fused']['within_10'])} | "
                     f"{pct(vs_plain[0])} | {pct(vs_plain[1])} | {pct(r['recovered_share'])} | {pct(r['spoiled_share'])} |")
    lines += ["", ("| test sequences (dense) | joint median m | fused single median m | joint closer % | spread in one "
                   "shared tile m |"), "|---|---|---|---|---|"]
    joints = {"offset head (main checkpoint)": results["joint"], "window search (main checkpoint)": results["joint_windows"],
              "head x window search (main checkpoint)": results.get("joint_product"), **results["joint_hybrid"]}
    for name, j in joints.items():
        if j is not None:
            lines.append(f"| {name} | {j['joint']['median']:.1f} | {j['single']['median']:.1f} | {pct(j['joint_better'])} | "
                         f"{j['offset_spread_m']:.2f} |")
    return lines


def hybrid_goal_table(results):
    """The issue's goals for the hybrid rows, each variant as chosen on validation."""
    d, c = results["databases"], results["chosen"]["hybrid"]
    plain, rerank = d["dense (stride 320)"], d["hybrid: window re-rank"]
    recovery, joint = d[c["recovery_variant"]], results["joint_hybrid"][c["joint_variant"]]
    rows = [(f"re-ranking top-1 (dense), window re-rank (weight {c['rerank_weight']:g})",
             f"{pct(rerank['top1_hit'])} % (plain {pct(plain['top1_hit'])} %)", f">= {pct(plain['top1_hit'] + RERANK_GOAL)} %",
             rerank["top1_hit"] >= plain["top1_hit"] + RERANK_GOAL),
            (f"wrong top-1 recovered <= 25 m ({c['recovery_variant']})", f"{pct(recovery['recovered_vs_plain'])} %",
             f">= {pct(RECOVER_GOAL)} %", recovery["recovered_vs_plain"] >= RECOVER_GOAL),
            (f"right top-1 spoiled > 25 m ({c['recovery_variant']})", f"{pct(recovery['spoiled_vs_plain'])} %",
             f"<= {pct(SPOIL_GOAL)} %", recovery["spoiled_vs_plain"] <= SPOIL_GOAL),
            (f"joint median (sequences; {c['joint_variant']})", f"{joint['joint']['median']:.1f} m",
             f"< {joint['single']['median']:.1f} m (fused single)", joint["joint"]["median"] < joint["single"]["median"]),
            (f"joint closer than fused single ({c['joint_variant']})", f"{pct(joint['joint_better'])} %",
             f">= {pct(JOINT_GOAL)} %", joint["joint_better"] >= JOINT_GOAL)]
    return ["| goal, hybrid (test split; settings and variants chosen on validation) | measured | goal | met |",
            "|---|---|---|---|"] + [f"| {name} | {m} | {g} | {'yes' if met else 'no'} |" for name, m, g, met in rows]


def fine_table(results):
    """The offset head against the window search (localize.fine) on the dense database and the sequences."""
    t = results["tuning"]["fine"]
    lines = [f"Validation (dense): the window search (stride {results['settings']['fine_stride_px']} px at 640) by "
             f"temperature; chosen: {results['chosen']['fine']['fine_temperature']:g} (lowest median)", "",
             "| window temperature | fused median m | wrong top-1 recovered % | right top-1 spoiled % |",
             "|---|---|---|---|"]
    lines += [f"| {r['fine_temperature']:g} | {r['median']:.1f} | {pct(r['recovered'])} | {pct(r['spoiled'])} |"
              for r in t]
    lines += ["", "| fine localization (test) | dense fused median m | <=10 m % | wrong top-1 recovered % | "
              "right top-1 spoiled % | sequences: joint median m | joint closer than fused single % | spread of the "
              "panoramas' points in one shared tile m |", "|---|---|---|---|---|---|---|---|"]
    for name, row, joint in (("offset head", results["databases"]["dense (stride 320)"], results["joint"]),
                             ("window search", results["databases"][WINDOWS_ROW], results["joint_windows"]),
                             ("product: head x window search (the window temperature above)",
                              results["databases"].get(PRODUCT_ROW), results.get("joint_product"))):
        if row is None or joint is None:     # a checkpoint without a Sigma head has no product
            continue
        lines.append(f"| {name} | {row['fused']['median']:.1f} | {pct(row['fused']['within_10'])} | "
                     f"{pct(row['recovered_share'])} | {pct(row['spoiled_share'])} | {joint['joint']['median']:.1f} | "
                     f"{pct(joint['joint_better'])} | {joint['offset_spread_m']:.2f} |")
    return lines


def test_variants(settings, chosen, sigma_head=True):
    """(name, stride, settings changes) of every test row (the product only with a Sigma head)."""
    base = {"rerank": "none", "predictor": "fusion", "recut_candidates": 0, "fine": "head"}
    variants = [("dense (stride 320)", 320, base), ("sparse (stride 640)", 640, base),
                (f"sparse + raster, windows re-cut around top {chosen['recut']['recut_candidates']}", 640,
                 {**base, "recut_candidates": chosen["recut"]["recut_candidates"]})]
    variants += [(f"dense, {name}", 320, {**base, "rerank": method, **chosen["rerank"].get(method, {})})
                 for method, name in RERANK_NAMES.items()]
    graph = {k: chosen["predictor"][k] for k in ("graph_candidates", "graph_support")}
    return variants + [("dense, graph predictor", 320, {**base, "predictor": "graph", **graph}),
                       (WINDOWS_ROW, 320, {**base, "fine": "windows", **chosen_fine(chosen)})] + (
        [(PRODUCT_ROW, 320, {**base, "fine": "product", **chosen_fine(chosen)})] if sigma_head else [])


def chosen_fine(chosen):
    return {"fine_temperature": chosen["fine"]["fine_temperature"]}


def measure(cfg, checkpoint, per_city):
    root = resolve_path(cfg.data.root)
    _, test = load_splits(cfg)                  # (re)generates the synthetic city, with its GeoTIFFs
    cities = sorted(set(test.grd_city))
    ensure_heldout(root, cities, per_city)
    out = os.path.join(os.path.dirname(stage_dir(cfg, "E_3")), "localization", "databases")
    model = CachedModel(LocalizationModel(cfg, checkpoint), os.path.join(os.path.dirname(out), "output_cache"))
    fine_checkpoint = Settings.from_config(cfg).fine_checkpoint
    fine_model = None
    if fine_checkpoint:
        fine = open_fine_model(cfg, fine_checkpoint)
        digest = hashlib.sha1(fine.checkpoint.encode()).hexdigest()[:12]
        fine_model = CachedModel(fine, os.path.join(os.path.dirname(out), f"output_cache_fine_{digest}"))
    prefill_all(model, root, cities, test, out)
    results = {"checkpoint": model.checkpoint, "test_panoramas": len(test.grd_paths), "cities": cities,
               "fine_checkpoint": fine_model.checkpoint if fine_model else None}
    validation = validation_paths(root, cities)
    test_paths = {c: [str(p) for p, pc in zip(test.grd_paths, test.grd_city) if pc == c] for c in cities}
    try:
        dense = localizers_for(model, root, cities, 320, Settings.from_config(cfg), out, rerank="none", fine="head")
        settings, results["tuning"] = tune(dense, root, cities, Settings.from_config(cfg))
        settings = replace(settings, rerank="none", predictor="fusion", recut_candidates=0, fine="head")
        results["settings"] = vars(settings)
        chosen = {}
        chosen["rerank"], results["tuning"]["rerank"] = tune_reranks(model, root, cities, settings, out, validation)
        chosen["predictor"], results["tuning"]["predictor"] = tune_predictor(model, root, cities, settings, out,
                                                                             validation)
        chosen["recut"], results["tuning"]["recut"] = tune_recut(model, root, cities, settings, out, validation,
                                                                 results["tuning"]["predictor"]["fusion"]["median"])
        chosen["fine"], results["tuning"]["fine"] = tune_fine(model, root, cities, settings, out, validation)
        results["chosen"] = chosen
        results["databases"] = {}
        sigma_head = model.network == "samp"           # a Sigma head (SAMP; at E_2_1 not trained yet)
        for name, stride, changes in test_variants(settings, chosen, sigma_head):
            localizers = localizers_for(model, root, cities, stride, settings, out, **changes)
            results["databases"][name] = database_summary([lo.db for lo in localizers.values()],
                                                          panorama_rows(localizers, test_paths),
                                                          raster=changes.get("recut_candidates", 0) > 0)
        dense = localizers_for(model, root, cities, 320, settings, out)
        results["joint"] = sequence_summary(joint_errors(predict_sequences(dense, root, cities, SEQUENCE_DIR),
                                                         settings))
        windows = replace(settings, fine="windows", **chosen_fine(chosen))
        dense = localizers_for(model, root, cities, 320, windows, out)
        results["joint_windows"] = sequence_summary(joint_errors(predict_sequences(dense, root, cities, SEQUENCE_DIR),
                                                                 windows))
        if sigma_head:
            product = replace(settings, fine="product", **chosen_fine(chosen))
            dense = localizers_for(model, root, cities, 320, product, out)
            results["joint_product"] = sequence_summary(
                joint_errors(predict_sequences(dense, root, cities, SEQUENCE_DIR), product))
        if fine_model is not None:
            measure_hybrid(model, fine_model, root, cities, settings, out, validation, test_paths, results)
    finally:
        model.close()
        if fine_model is not None:
            fine_model.close()
    with open(os.path.join(os.path.dirname(out), "results.json"), "w") as f:
        json.dump(results, f, indent=1, default=float)
    return results, settings


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=resolve_path("configs/demo.yaml"))
    parser.add_argument("--checkpoint", help="default: the last epoch of the config's E_3 run")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--sequences", type=int, default=8, help="sequences per city (test, and validation)")
    args = parser.parse_args(argv)
    cfg = load_config(args.config, args.overrides)
    started = time.time()
    checkpoint = args.checkpoint or ckpt.last_epoch_checkpoint(stage_dir(cfg, "E_3"))[1]
    if checkpoint is None:
        raise CheckpointError(f"no E_3 checkpoint in {stage_dir(cfg, 'E_3')}: run python demo.py first")
    results, settings = measure(cfg, checkpoint, args.sequences)
    print(f"{results['test_panoramas']} test panoramas of {len(results['cities'])} cities; checkpoint {checkpoint}; "
          f"top_k {settings.top_k}; {time.time() - started:.0f} s\n")
    print("\n".join(goal_table(results) + ["", ""] + tuning_table(results["tuning"], settings) + ["", ""]
                    + methods_table(results["tuning"], results["chosen"]) + ["", ""] + test_table(results["databases"])
                    + ["", ""] + edge_table(results["databases"])
                    + ["", ""] + joint_table(results["joint"]) + ["", ""] + fine_table(results)))
    if results.get("fine_checkpoint"):
        print("\n".join(["", ""] + hybrid_goal_table(results) + ["", ""] + hybrid_table(results)))


if __name__ == "__main__":
    sys.exit(run(main))
