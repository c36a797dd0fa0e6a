"""Localize new panoramas against a georeferenced map: build a reference database, index it, query it.

    python localize.py build --raster MAP.tif --out DB [--ground-mpp 0.114 | --config CFG | --checkpoint CKPT]
        [--tile-px 640] [--stride-px 640|320]
    python localize.py index --checkpoint CKPT --db DB [--config configs/demo.yaml] [--set key=value]
    python localize.py query --checkpoint CKPT --db DB PANO [PANO ...] --out OUT.geojson [--figures DIR]
        [--modality street|drone|sar] [--joint OFFSETS.csv] [--config ...] [--set localize.top_k=5 ...]

build resamples the raster (any CRS rasterio reads) to the ground resolution the checkpoint was
trained on and cuts it into VIGOR-named tiles with tiles.csv / tiles.geojson;
index stores the checkpoint's tile descriptors and a faiss index (exact, or compressed above
localize.index.threshold tiles); query writes a GeoJSON in WGS84
with the top-k tiles, each tile's offset and Gaussian, and the fused position with its 1 and 2
sigma ellipses. --modality drone: the queries are square drone views and the checkpoint
University-1652's two-view network (train_university1652.py; --config its config): it has no offset
head, so each retrieved tile puts the drone's target at its centre with localize.fixed_sigma_m.
--modality sar: the queries are SpaceNet 6 SAR-Intensity tiles (4 float32 bands in dB) and the
checkpoint a SAFA network trained on SAR against optical (configs/demo_spacenet6.yaml; --config its
config); the database is built from an optical raster as for panoramas, and each retrieved tile
puts the SAR tile's centre at its own centre with localize.fixed_sigma_m.
--joint also localizes the panoramas together, from a CSV of their relative
positions (columns panorama, east_m, north_m: metres from any common point).
"""
if __name__ == "__main__":  # a Ctrl-C while TensorFlow loads: one line, exit 130 (utils/startup.py)
    from utils.startup import begin
    begin()

import argparse
import csv
import os
import sys

import numpy as np

from utils.cli import run
from utils.config import load_config
from utils.errors import DataError


DEMO_CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs", "demo.yaml")


def _config_arguments(parser):
    parser.add_argument("--config", default=DEMO_CONFIG,
                        help="the config the checkpoint was trained with (default: configs/demo.yaml)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set localize.top_k=5 (repeatable)")


def _model_arguments(parser):
    parser.add_argument("--checkpoint", required=True, help="a checkpoint directory or prefix (runs/<exp>/<stage>/<epoch>)")
    parser.add_argument("--db", required=True, help="the reference database (made by build)")
    _config_arguments(parser)


def _build_arguments(parser):
    parser.add_argument("--raster", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--ground-mpp", type=float,
                        help="ground metres per pixel of the checkpoint's 640-px tiles (default: from the config)")
    parser.add_argument("--checkpoint", help="without --config: take the config its run recorded (config.yaml)")
    _config_arguments(parser)
    parser.set_defaults(config=None)
    parser.add_argument("--tile-px", type=int, default=640, help="pixels per tile side (the ground size stays the same)")
    parser.add_argument("--stride-px", type=int, default=640, help="640: sparse (no overlap); 320: VIGOR's dense layout")


def argument_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    _build_arguments(commands.add_parser("build", help="cut a georeferenced raster into a reference database"))
    _model_arguments(commands.add_parser("index", help="compute and store the tile descriptors"))
    query = commands.add_parser("query", help="localize panoramas; write GeoJSON (and figures)")
    _model_arguments(query)
    query.add_argument("panoramas", nargs="+", metavar="PANO")
    query.add_argument("--out", required=True, help="the GeoJSON file to write")
    query.add_argument("--figures", help="a directory for the figures")
    query.add_argument("--modality", choices=("street", "drone", "sar"), default="street",
                       help="street: 2:1 equirectangular panoramas (default); drone: square drone views; "
                            "sar: SpaceNet 6 SAR-Intensity tiles")
    query.add_argument("--joint", help="CSV of relative positions (panorama, east_m, north_m): localize together")
    return parser


def read_offsets(path, panoramas):
    """(P, 2) metres east and north of each panorama relative to the first, from the CSV."""
    try:
        with open(path, newline="") as f:
            rows = {os.path.basename(r["panorama"]): (float(r["east_m"]), float(r["north_m"])) for r in csv.DictReader(f)}
    except (KeyError, ValueError, TypeError) as error:
        raise DataError(f"{path}: needs the columns panorama, east_m, north_m with numbers ({error})") from None
    missing = [p for p in panoramas if os.path.basename(p) not in rows]
    if missing:
        raise DataError(f"{path} gives no position for {', '.join(missing)}: add a row per panorama")
    offsets = np.array([rows[os.path.basename(p)] for p in panoramas])
    return offsets - offsets[0]


def open_model(args, modality=None):
    from utils.localization.database import check_matches_training, load_database
    from utils.localization.predict import LocalizationModel
    from utils.localization.query import Settings
    from utils.localization.search import IndexSettings
    cfg = load_config(args.config, args.overrides)
    settings = Settings.from_config(cfg)
    db = load_database(args.db)
    check_matches_training(db, cfg, settings.size_tolerance)
    if settings.uses_windows:
        from utils.localization.fine_windows import check_raster
        check_raster(db)                      # before the checkpoint is restored
        if settings.fine_checkpoint:
            from utils.localization.predict import fine_checkpoint_prefix
            fine_checkpoint_prefix(settings.fine_checkpoint)
    return LocalizationModel(cfg, args.checkpoint, modality), db, settings, IndexSettings.from_config(cfg)


def open_fine_model(args, settings, modality):
    """localize.fine_checkpoint's model when the settings use windows and name one, else None."""
    if not (settings.uses_windows and settings.fine_checkpoint):
        return None
    from utils.localization.predict import open_fine_model as restore
    return restore(load_config(args.config, args.overrides), settings.fine_checkpoint, modality or "street")


def ground_mpp(args):
    """--ground-mpp, else that of the config (--config, the checkpoint's run, or the demo's)."""
    from utils.localization.database import training_ground_mpp
    if args.ground_mpp is not None:
        return args.ground_mpp
    if args.config is None and args.checkpoint:
        from utils.training.records import load_run_config
        return training_ground_mpp(load_run_config(args.checkpoint, args.overrides))
    return training_ground_mpp(load_config(args.config or DEMO_CONFIG, args.overrides))


def command_build(args):
    from utils.localization.database import build_database
    info = build_database(args.raster, args.out, ground_mpp(args), tile_px=args.tile_px, stride_px=args.stride_px)
    grid = info["grid"]
    print(f"{args.out}: {info['tiles']} tiles of {args.tile_px} px = {info['tile_ground_m']:.1f} m "
          f"({grid['ground_m_per_px']:.3g} m/px in {grid['crs'].split()[0]}, resampling {grid['resampling']}) every "
          f"{args.stride_px} px; skipped {info['skipped_outside']} leaving the raster and "
          f"{info['skipped_nodata']} mostly nodata")


def command_index(args):
    from utils.localization.index import build_index, describe_index
    model, db, _, index_settings = open_model(args)
    try:
        info = build_index(db, model, index_settings)
    finally:
        model.close()
    print(f"{args.db}: {info['tiles']} descriptors of dimension {info['dimension']} ({describe_index(info)})")


def command_query(args):
    from utils.localization.figures import write_figures
    from utils.localization.geojson import write_geojson
    from utils.localization.index import load_index
    from utils.localization.query import Localizer
    model, db, settings, index_settings = open_model(args, args.modality)
    joint, fine_model = None, None
    try:
        fine_model = open_fine_model(args, settings, args.modality)
        offsets = read_offsets(args.joint, args.panoramas) if args.joint else None
        localizer = Localizer(model, db, load_index(db, model.checkpoint, index_settings), settings,
                              fine_model=fine_model)
        if offsets is None:
            results = localizer.localize_all(args.panoramas, keep_heatmaps=bool(args.figures))
        else:
            results, joint = localizer.localize_sequence(args.panoramas, offsets, keep_heatmaps=bool(args.figures))
    finally:
        model.close()
        if fine_model is not None:
            fine_model.close()
    db = localizer.results_db
    write_geojson(args.out, db, results, joint)
    if args.figures:
        write_figures(args.figures, db, joint or results)
    for result in results + (joint or []):
        lng, lat = db.frame.metric_to_lonlat(result.fused.mean)
        major = np.sqrt(np.linalg.eigvalsh(result.fused.cov)[1])
        print(f"{os.path.basename(result.path)}: {lat:.7f}, {lng:.7f} (1 sigma {major:.1f} m, "
              f"confidence {result.fused.confidence:.2f}, {result.method})")
    print(f"wrote {args.out}" + (f" and figures in {args.figures}" if args.figures else ""))


def main(argv=None):
    args = argument_parser().parse_args(argv)
    {"build": command_build, "index": command_index, "query": command_query}[args.command](args)


if __name__ == "__main__":
    sys.exit(run(main))
