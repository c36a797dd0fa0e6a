"""Localization on the synthetic test split: top-1 alone vs top-k fusion, dense vs sparse
databases, spatial re-ranking, joint vs single. Prints the README's table.

    python bench/localization.py [--config configs/demo.yaml] [--checkpoint runs/demo/E_3/4] [--set key=value]

For every test city: a dense (stride 320) and a sparse (stride 640) database cut from the city's
GeoTIFF (`<city>/aerial_map.tif`), indexed with the checkpoint; every test panorama is localized
against its city's databases; errors are metres in the database's metric frame against the GPS in
the panorama's file name. Sequences of 4 panoramas 5 m apart along streets
(utils/data/synthetic_sequences.py) compare joint with single localization.
"""
import argparse
import csv
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
from utils.data.synthetic_sequences import SEQUENCE_CSV, SEQUENCE_DIR, write_sequences  # noqa: E402
from utils.localization.database import INFO_FILE, build_database, load_database  # noqa: E402
from utils.localization.index import build_index, load_index  # noqa: E402
from utils.localization.predict import LocalizationModel  # noqa: E402
from utils.localization.query import Localizer, Settings, joint_results  # noqa: E402
from utils.training import checkpoints as ckpt  # noqa: E402
from utils.training.stage import stage_dir  # noqa: E402

THRESHOLDS = (10.0, 25.0)


def database_for(root, city, stride, out, model):
    raster = os.path.join(root, city, RASTER_NAME)
    path = os.path.join(out, f"{city}_stride{stride}")
    if not os.path.exists(os.path.join(path, INFO_FILE)) or \
            json.load(open(os.path.join(path, INFO_FILE)))["raster"] != os.path.abspath(raster):
        build_database(raster, path, tile_px=640, stride_px=stride, progress=False)
    db = load_database(path)
    build_index(db, model, progress=False)
    return db


def truth_of(db, path):
    lat, lng = parse_pano_name(path)
    return db.frame.lonlat_to_metric(lng, lat)


def localize_split(localizers, paths_by_city):
    """Per query: top-1 and fused errors, whether the top-1 / any top-k tile holds the truth."""
    rows = []
    for city, paths in paths_by_city.items():
        localizer = localizers[city]
        for result in localizer.localize_all(paths, progress=False):
            truth = truth_of(localizer.db, result.path)
            tiles = [t.tile for t in result.tiles]
            rows.append({"top1": float(np.linalg.norm(result.top1.mean - truth)),
                         "fused": float(np.linalg.norm(result.fused.mean - truth)),
                         "top1_hit": bool(localizer.db.contains(tiles[0], truth)),
                         "topk_hit": bool(any(localizer.db.contains(t, truth) for t in tiles))})
    return rows


def summary(errors):
    errors = np.asarray(errors)
    return {"median": float(np.median(errors)), **{f"within_{t:g}": float(np.mean(errors <= t)) for t in THRESHOLDS}}


def joint_rows(localizers, root, cities):
    rows = []
    for city in cities:
        localizer = localizers[city]
        folder = os.path.join(root, city, SEQUENCE_DIR)
        sequences = {}
        for r in csv.DictReader(open(os.path.join(folder, SEQUENCE_CSV))):
            sequences.setdefault(r["sequence"], []).append(r)
        for members in sequences.values():
            paths = [os.path.join(folder, r["panorama"]) for r in members]
            offsets = np.array([(float(r["east_m"]), float(r["north_m"])) for r in members])
            singles = localizer.localize_all(paths, progress=False)
            joint = joint_results(singles, offsets)
            truths = [truth_of(localizer.db, p) for p in paths]
            single_err = [float(np.linalg.norm(s.fused.mean - t)) for s, t in zip(singles, truths)]
            joint_err = [float(np.linalg.norm(j.fused.mean - t)) for j, t in zip(joint, truths)]
            rows.append({"single": single_err, "joint": joint_err})
    return rows


def pct(x):
    return f"{100 * x:.1f}"


def table(results):
    lines = ["| database | tiles | MB | retrieval: top-1 tile holds it % | top-k % | estimate | median m | <=10 m % | <=25 m % |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, r in results["databases"].items():
        for kind in ("top1", "fused"):
            s = r[kind]
            label = "top-1 tile alone" if kind == "top1" else "top-k fusion"
            lines.append(f"| {name} | {r['tiles']} | {r['megabytes']:.1f} | {pct(r['top1_hit'])} | {pct(r['topk_hit'])} | "
                         f"{label} | {s['median']:.1f} | {pct(s['within_10'])} | {pct(s['within_25'])} |")
    lines.append("")
    lines.append("| database | wrong top-1 (tile misses the truth) | fusion recovers (<=25 m) | fusion spoils a right top-1 (>25 m) |")
    lines.append("|---|---|---|---|")
    for name, r in results["databases"].items():
        lines.append(f"| {name} | {r['wrong_top1']} | {r['recovered']} ({pct(r['recovered'] / max(r['wrong_top1'], 1))} %) | "
                     f"{r['spoiled']} |")
    j = results["joint"]
    lines.append("")
    lines.append(f"| {j['sequences']} sequences x {j['length']} panoramas, {j['spacing_m']:g} m apart (dense) | median m | "
                 f"<=10 m % | <=25 m % |")
    lines.append("|---|---|---|---|")
    for kind in ("single", "joint"):
        s = j[kind]
        lines.append(f"| {kind} (top-k fusion{' of all panoramas' if kind == 'joint' else ''}) | {s['median']:.1f} | "
                     f"{pct(s['within_10'])} | {pct(s['within_25'])} |")
    lines.append(f"\njoint closer than single for {pct(j['joint_better'])} % of the panoramas; "
                 f"joint closer for every panorama of the sequence in {pct(j['joint_beats_each'])} % of the sequences")
    return "\n".join(lines)


def database_summary(dbs, rows):
    size = sum(os.path.getsize(db.tile_path(i)) for db in dbs for i in range(len(db)))
    size += sum(os.path.getsize(os.path.join(db.root, "index", "descriptors.npy")) for db in dbs)
    wrong = [r for r in rows if not r["top1_hit"]]
    return {"tiles": sum(len(db) for db in dbs), "megabytes": size / 1e6, "top1": summary([r["top1"] for r in rows]),
            "fused": summary([r["fused"] for r in rows]),
            "top1_hit": float(np.mean([r["top1_hit"] for r in rows])),
            "topk_hit": float(np.mean([r["topk_hit"] for r in rows])),
            "wrong_top1": len(wrong), "recovered": sum(r["fused"] <= 25.0 for r in wrong),
            "spoiled": sum(r["top1_hit"] and r["top1"] <= 25.0 < r["fused"] for r in rows)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=resolve_path("configs/demo.yaml"))
    parser.add_argument("--checkpoint", help="default: the last epoch of the config's E_3 run")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--sequences", type=int, default=8, help="sequences per test city")
    args = parser.parse_args(argv)
    cfg = load_config(args.config, args.overrides)
    started = time.time()
    _, test = load_splits(cfg)                  # (re)generates the synthetic city, with its GeoTIFFs
    root = resolve_path(cfg.data.root)
    checkpoint = args.checkpoint or ckpt.last_epoch_checkpoint(stage_dir(cfg, "E_3"))[1]
    if checkpoint is None:
        raise ckpt.CheckpointError(f"no E_3 checkpoint in {stage_dir(cfg, 'E_3')}: run python demo.py first")
    out = os.path.join(os.path.dirname(stage_dir(cfg, "E_3")), "localization")
    cities = sorted(set(test.grd_city))
    paths_by_city = {c: [str(p) for p, pc in zip(test.grd_paths, test.grd_city) if pc == c] for c in cities}
    settings = Settings.from_config(cfg)
    model = LocalizationModel(cfg, checkpoint)
    results = {"checkpoint": model.checkpoint, "settings": vars(settings), "databases": {}}
    try:
        for stride, rerank in ((320, "none"), (640, "none"), (320, "spatial")):
            name = f"{'dense' if stride == 320 else 'sparse'} (stride {stride})" + (", re-ranked" if rerank != "none" else "")
            localizers = {}
            for city in cities:
                db = database_for(root, city, stride, os.path.join(out, "databases"), model)
                localizers[city] = Localizer(model, db, load_index(db, model.checkpoint), replace(settings, rerank=rerank))
            rows = localize_split(localizers, paths_by_city)
            results["databases"][name] = database_summary([l.db for l in localizers.values()], rows)
            if stride == 320 and rerank == "none":
                dense = localizers
        length, spacing = 4, 5.0
        if not all(os.path.exists(os.path.join(root, c, SEQUENCE_DIR, SEQUENCE_CSV)) for c in cities):
            write_sequences(root, per_city=args.sequences, length=length, spacing_m=spacing)
        sequences = joint_rows(dense, root, cities)
    finally:
        model.close()
    single = [e for s in sequences for e in s["single"]]
    joint = [e for s in sequences for e in s["joint"]]
    results["joint"] = {"sequences": len(sequences), "length": length, "spacing_m": spacing,
                        "single": summary(single), "joint": summary(joint),
                        "joint_better": float(np.mean(np.array(joint) < np.array(single))),
                        "joint_beats_each": float(np.mean([all(np.array(s["joint"]) < s["single"]) for s in sequences]))}
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    print(f"{len(test.grd_paths)} test panoramas of {len(cities)} cities; checkpoint {checkpoint}; "
          f"top_k {settings.top_k}, temperature {settings.temperature}; {time.time() - started:.0f} s\n")
    print(table(results))


if __name__ == "__main__":
    sys.exit(run(main))
