"""Evaluate cross-view descriptors (and offsets, uncertainties) against a dataset index.

    # descriptors in VIGOR's released layout (sat_global_descriptor.npy, grd_global_descriptor.npy,
    # and an offset file delta_*.npy for the retrieved tiles, as evaluate_from_npy.py reads them)
    python evaluate.py --descriptors DIR --dataset-config configs/vigor_same_area.yaml \
        [--offsets FILE] [--resolution original|corrected] --out DIR

    # a checkpoint of this project (descriptors and offsets computed by utils/evaluation/inference.py)
    python evaluate.py --checkpoint runs/vigor_same_area/E_3/150 [--config configs/vigor_same_area.yaml] --out DIR
    # (without --config: the config.yaml the run recorded in runs/vigor_same_area/E_3/)

Writes results.json, results.md, per_query.npz, PNG figures, config.yaml and environment.json to --out.
"""
if __name__ == "__main__":  # a Ctrl-C while TensorFlow loads: one line, exit 130 (utils/startup.py)
    from utils.startup import begin
    begin()

import argparse
import glob
import os
import sys

import numpy as np

from utils.evaluation.report import as_float32, evaluate_outputs, markdown_report
from utils.training.records import write_record

SAT_FILE = "sat_global_descriptor.npy"
GRD_FILE = "grd_global_descriptor.npy"


def load_descriptor_dir(directory, offsets_file=None):
    """(sat, grd, offsets or None, offsets file used) from VIGOR's released layout."""
    missing = [f for f in (SAT_FILE, GRD_FILE) if not os.path.exists(os.path.join(directory, f))]
    if missing:
        raise FileNotFoundError(f"{directory} lacks {', '.join(missing)}: expected VIGOR's layout "
                                f"({SAT_FILE}, {GRD_FILE}, optional delta_*.npy)")
    sat = as_float32(np.load(os.path.join(directory, SAT_FILE), mmap_mode="r"))
    grd = as_float32(np.load(os.path.join(directory, GRD_FILE), mmap_mode="r"))
    if offsets_file is None:
        candidates = sorted(glob.glob(os.path.join(directory, "delta*.npy")))
        if len(candidates) > 1:
            raise ValueError(f"several offset files in {directory}: {candidates}; choose one with --offsets")
        offsets_file = candidates[0] if candidates else None
    offsets = None if offsets_file is None else np.load(offsets_file).astype(np.float64)
    return sat, grd, offsets, offsets_file


def load_index(config_path, resolution=None, overrides=(), split="test", checkpoint=None):
    """(config, index of the split). Without config_path, the config recorded in the checkpoint's
    run folder (utils/training/records.py)."""
    from utils.config import load_config
    from utils.data.splits import load_splits
    from utils.training.records import load_run_config
    overrides = list(overrides) + ([f"data.resolution={resolution}"] if resolution else [])
    cfg = load_config(config_path, overrides) if config_path else load_run_config(checkpoint, overrides)
    train, test = load_splits(cfg)
    return cfg, (test if split == "test" else train)


def outputs_from_checkpoint(cfg, checkpoint, split, network=None):
    from utils.evaluation.inference import compute_outputs
    return compute_outputs(cfg, checkpoint, split=split, network=network)


def _optional_npy(path):
    return None if path is None else np.load(path)


def chief_or_worker(cfg):
    """None in the process that writes --out (one device, or the chief of a cluster), else its
    name ('worker 1 of 2'): under distribute.strategy=multi_worker every worker runs the same
    command and scans its share, and the chief alone writes."""
    if (cfg.get("distribute") or {}).get("strategy", "none") != "multi_worker":
        return None
    from utils.session.distribute import Distribution
    dist = Distribution(cfg)
    return None if dist.is_chief else dist.worker


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--descriptors", metavar="DIR", help="folder in VIGOR's released layout")
    source.add_argument("--checkpoint", metavar="CKPT", help="checkpoint of this project (epoch folder or prefix)")
    parser.add_argument("--dataset-config", "--config", dest="config",
                        help="YAML config naming the dataset (e.g. configs/vigor_same_area.yaml); with "
                             "--checkpoint the default is the config.yaml its run recorded")
    parser.add_argument("--offsets", help="offsets (N, 2) in the top-1 tiles; default: DIR/delta*.npy if present")
    parser.add_argument("--offsets-positive", help="offsets (N, 2) in the positive tiles (fine localization)")
    parser.add_argument("--sigma", help="covariances (N, 2, 2) over delta coordinates")
    parser.add_argument("--resolution", choices=("original", "corrected", "dataset", "auto"),
                        help="tile resolution: VIGOR's 0.114 m/px, SliceMatch's per city, the dataset's "
                             "meters_per_pixel.json, or auto (that file if present, else original); "
                             "default: the config's")
    parser.add_argument("--split", choices=("test", "train"), default="test")
    parser.add_argument("--network", choices=("siamese_vgg", "safa", "safa_offset", "samp"),
                        help="network of the checkpoint (default: read off its variable names)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--name", default="", help="label of this result in tables and plots")
    parser.add_argument("--out", required=True, help="output folder")
    args = parser.parse_args(argv)
    if not args.config and not args.checkpoint:
        parser.error("--descriptors needs --config (the dataset the descriptors were computed on)")

    cfg, index = load_index(args.config, args.resolution, args.overrides, args.split, args.checkpoint)
    worker = chief_or_worker(cfg)
    if worker is None:
        write_record(args.out, cfg)
    if args.checkpoint:
        outputs = outputs_from_checkpoint(cfg, args.checkpoint, args.split, args.network)
        name = args.name or os.path.normpath(args.checkpoint)
    else:
        sat, grd, offsets, offsets_file = load_descriptor_dir(args.descriptors, args.offsets)
        outputs = {"sat_desc": sat, "grd_desc": grd, "offsets": offsets,
                   "offsets_positive": _optional_npy(args.offsets_positive),
                   "sigma": _optional_npy(args.sigma)}
        name = args.name or os.path.basename(os.path.normpath(args.descriptors))
        print(f"offsets: {offsets_file or 'none (tile centres)'}")
    if worker is not None:  # it took part in the distributed scan; the chief writes --out
        print(f"{worker}: the chief writes the results to {args.out}")
        return 0
    results = evaluate_outputs(outputs.get("index", index), outputs["sat_desc"], outputs["grd_desc"],
                               offsets=outputs.get("offsets"),
                               offsets_positive=outputs.get("offsets_positive"),
                               sigma=outputs.get("sigma"), heatmaps=outputs.get("heatmaps"),
                               out_dir=args.out, name=name, found=outputs.get("retrieval"),
                               skipped=outputs.get("skips"))
    print(markdown_report(results))
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    from utils.cli import run
    sys.exit(run(main, interrupted="interrupted: the evaluation did not finish and --out may hold a part "
                                   "of its files; run the same evaluate.py command again"))
