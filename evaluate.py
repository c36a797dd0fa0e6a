"""Evaluate cross-view descriptors (and offsets, uncertainties) against a dataset index.

    # descriptors in VIGOR's released layout (sat_global_descriptor.npy, grd_global_descriptor.npy,
    # and an offset file delta_*.npy for the retrieved tiles, as evaluate_from_npy.py reads them)
    python evaluate.py --descriptors DIR --dataset-config configs/vigor_same_area.yaml \
        [--offsets FILE] [--resolution original|corrected] --out DIR

    # a checkpoint of this project (descriptors and offsets computed by utils/evaluation/inference.py)
    python evaluate.py --checkpoint runs/vigor_same_area/E_3/150 --config configs/vigor_same_area.yaml --out DIR

Writes results.json, results.md, per_query.npz and PNG figures to --out.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import sys
from typing import Optional

import numpy as np

from utils import metrics
from utils.evaluation import plots
from utils.evaluation.retrieval import DEFAULT_MEMORY_BUDGET, search

SAT_FILE = "sat_global_descriptor.npy"
GRD_FILE = "grd_global_descriptor.npy"
MAX_QUERY_FIGURES = 8
_CONVERT_ROWS = 8192


# ----------------------------------------------------------------- the core
def evaluate_outputs(index, sat_desc, grd_desc, offsets=None, offsets_positive=None, sigma=None,
                     heatmaps=None, out_dir=None, name="", memory_budget=DEFAULT_MEMORY_BUDGET) -> dict:
    """Retrieval, metre-level localization, fine localization and calibration of one model.

    index: a SplitIndex (utils/data/dataset.py). sat_desc (S, D) / grd_desc (N, D): unit descriptors
    in the index's order. offsets (N, 2): predicted delta inside each query's top-1 tile (None:
    the tile centre, for models without regression). offsets_positive (N, 2): predicted delta
    inside the positive tile (fine localization). sigma (N, 2, 2): covariance of the
    positive-tile prediction over delta coordinates (of the top-1 prediction if
    offsets_positive is None). heatmaps: (K, H, W) for queries 0..K-1, or {query: (H, W)}.
    """
    sat = as_float32(sat_desc)
    grd = as_float32(grd_desc)
    num_refs, num_queries = len(index.sat_paths), len(index.grd_paths)
    _check_shape("sat_desc", sat, (num_refs, None))
    _check_shape("grd_desc", grd, (num_queries, sat.shape[1]))
    offsets, offsets_positive, sigma = (None if a is None else np.asarray(a, dtype=np.float64)
                                        for a in (offsets, offsets_positive, sigma))
    for label, array, shape in (("offsets", offsets, (num_queries, 2)),
                                ("offsets_positive", offsets_positive, (num_queries, 2)),
                                ("sigma", sigma, (num_queries, 2, 2))):
        if array is not None:
            _check_shape(label, array, shape)
    labels = np.asarray(index.labels, dtype=np.int64)
    resolution = np.asarray(index.meters_per_pixel, dtype=np.float64)
    grd_gps, sat_gps = np.asarray(index.grd_gps), np.asarray(index.sat_gps)

    found = search(grd, sat, labels, k=1, memory_budget=memory_budget)
    top1 = found.topk[:, 0]
    hit_ranks = found.hit_ranks if found.hit_ranks is not None else found.ranks[:, 0]
    results = {"name": name, "dataset": getattr(index, "name", ""),
               "num_queries": num_queries, "num_references": num_refs,
               "descriptor_dim": int(sat.shape[1]),
               "meters_per_pixel": _resolution_summary(resolution),
               "retrieval": metrics.retrieval_summary(found.ranks[:, 0], hit_ranks, num_refs)}
    per_query = {"top1": top1, "ranks": found.ranks, "hit_ranks": hit_ranks}

    errors = metrics.localization_errors(grd_gps, sat_gps, top1, offsets, resolution)
    results["localization"] = dict(metrics.meter_summary(errors),
                                   offsets="predicted" if offsets is not None else "zero (tile centre)")
    per_query["errors"] = errors
    curves = [(name or "top-1 tile", *metrics.distance_accuracy(errors))]
    results["curves"] = {"localization": _curve_dict(curves[0])}

    fine_errors = None
    if offsets_positive is not None:
        fine_errors = metrics.fine_localization_errors(grd_gps, sat_gps, labels, offsets_positive,
                                                       resolution)
        pixel = np.linalg.norm(offsets_positive - index.deltas[:, 0], axis=1)
        results["fine_localization"] = dict(metrics.meter_summary(fine_errors),
                                            mean_px=float(pixel.mean()),
                                            median_px=float(np.median(pixel)))
        per_query["fine_errors"] = fine_errors
        curves.append((f"{name} (positive tile given)".strip(), *metrics.distance_accuracy(fine_errors)))
        results["curves"]["fine_localization"] = _curve_dict(curves[-1])
    centre = metrics.localization_errors(grd_gps, sat_gps, labels[:, 0], None, resolution)
    results["positive_tile_centre"] = metrics.meter_summary(centre)

    if sigma is not None:
        if offsets_positive is not None:
            residual = index.deltas[:, 0] - offsets_positive
            error, about = fine_errors, "positive tile"
        elif offsets is not None:
            residual = metrics.true_offsets(grd_gps, sat_gps, top1, resolution) - offsets
            error, about = errors, "top-1 tile"
        else:
            raise ValueError("sigma needs the offsets it describes: give offsets_positive or offsets")
        results["calibration"] = dict(metrics.uncertainty_report(residual, sigma, error), tile=about)
        per_query["uncertainty"] = metrics.uncertainty_from_sigma(sigma)
        per_query["mahalanobis"] = metrics.mahalanobis_radius(residual, sigma)

    if out_dir:
        results["files"] = write_outputs(out_dir, index, results, per_query, curves, offsets_positive,
                                         sigma, heatmaps)
    return results


def as_float32(array) -> np.ndarray:
    """float32 copy of a (possibly memory-mapped float64) array, converted in row chunks."""
    if isinstance(array, np.ndarray) and array.dtype == np.float32 and not isinstance(array, np.memmap):
        return array
    out = np.empty(np.shape(array), dtype=np.float32)
    for start in range(0, out.shape[0], _CONVERT_ROWS):
        out[start:start + _CONVERT_ROWS] = array[start:start + _CONVERT_ROWS]
    return out


def _check_shape(label, array, shape):
    if array.ndim != len(shape) or any(want is not None and got != want
                                       for got, want in zip(array.shape, shape)):
        wanted = "(" + ", ".join("any" if s is None else str(s) for s in shape) + ")"
        raise ValueError(f"{label} has shape {array.shape}; the dataset index needs {wanted}")


def _resolution_summary(resolution):
    values = np.unique(resolution)
    return float(values[0]) if values.size == 1 else {"min": float(values.min()), "max": float(values.max())}


def _curve_dict(curve):
    _, thresholds, accuracy = curve
    return {"thresholds": [round(float(t), 6) for t in thresholds],
            "accuracy": [round(float(a), 6) for a in accuracy]}


# ----------------------------------------------------------------- files
def write_outputs(out_dir, index, results, per_query, curves, offsets_positive, sigma, heatmaps):
    os.makedirs(out_dir, exist_ok=True)
    files = {"json": "results.json", "markdown": "results.md", "per_query": "per_query.npz",
             "accuracy_curve": "accuracy_curve.png"}
    plots.accuracy_curve(curves, os.path.join(out_dir, files["accuracy_curve"]),
                         title=results["name"] or None)
    if "calibration" in results:
        files["calibration"] = "calibration.png"
        plots.calibration_plot(results["calibration"], os.path.join(out_dir, files["calibration"]),
                               title=results["name"] or None)
    figures = []
    for query, heatmap in _query_selection(heatmaps, len(index.grd_paths), offsets_positive, sigma):
        tile = int(index.labels[query, 0])
        file = f"query_{query}.png"
        plots.query_figure(os.path.join(out_dir, file),
                           sat_image=plots.read_rgb(str(index.sat_paths[tile])),
                           grd_image=plots.read_rgb(str(index.grd_paths[query])), heatmap=heatmap,
                           pred_delta=None if offsets_positive is None else offsets_positive[query],
                           true_delta=index.deltas[query, 0],
                           sigma=None if sigma is None else sigma[query],
                           title=f"query {query}: {os.path.basename(str(index.grd_paths[query]))}")
        figures.append(file)
    if figures:
        files["queries"] = figures
    np.savez_compressed(os.path.join(out_dir, files["per_query"]), **per_query)
    results["files"] = files
    with open(os.path.join(out_dir, files["json"]), "w") as handle:
        json.dump(_json_safe(results), handle, indent=1, allow_nan=False)
    with open(os.path.join(out_dir, files["markdown"]), "w") as handle:
        handle.write(markdown_report(results))
    return files


def _json_safe(value):
    """NaN and infinities become null (strict JSON); numpy scalars become Python numbers."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def _query_selection(heatmaps, num_queries, offsets_positive, sigma):
    """(query, heatmap or None) pairs to draw: the given heatmaps' queries, else the first few
    queries when there is a positive-tile prediction to show."""
    if isinstance(heatmaps, dict):
        return [(int(q), heatmaps[q]) for q in sorted(heatmaps)][:MAX_QUERY_FIGURES]
    if heatmaps is not None and len(heatmaps):
        return [(q, heatmaps[q]) for q in range(min(len(heatmaps), num_queries, MAX_QUERY_FIGURES))]
    if offsets_positive is not None or sigma is not None:
        return [(q, None) for q in range(min(4, num_queries))]
    return []


def _pct(value):
    return "-" if value is None else f"{100 * value:.2f}"


def _num(value):
    return "-" if value is None or not np.isfinite(value) else f"{value:.2f}"


def markdown_report(results: dict) -> str:
    r = results["retrieval"]
    lines = [f"# {results['name'] or 'Evaluation'}", "",
             f"{results['dataset']}: {results['num_queries']} panoramas, "
             f"{results['num_references']} tiles, descriptors of {results['descriptor_dim']}; "
             f"resolution {results['meters_per_pixel']} m/px.", "",
             "## Retrieval (%)", "",
             "| top-1 | top-5 | top-1% | hit rate | recall@10 | median rank |",
             "|---|---|---|---|---|---|",
             f"| {_pct(r['top1'])} | {_pct(r['top5'])} | {_pct(r['top1_percent'])} | "
             f"{_pct(r['hit_rate'])} | {_pct(r['recall'].get('10'))} | {r['median_rank']:g} |", "",
             "## Localization (m)", "",
             "| protocol | mean | median | <1 m | <5 m | <10 m | <25 m | <50 m |",
             "|---|---|---|---|---|---|---|---|"]
    predicted = results["localization"]["offsets"] == "predicted"
    rows = [("top-1 tile, " + ("predicted offset" if predicted else "tile centre"), results["localization"])]
    if "fine_localization" in results:
        rows.append(("positive tile given, predicted offset", results["fine_localization"]))
    rows.append(("positive tile centre (reference)", results["positive_tile_centre"]))
    for label, summary in rows:
        within = summary["within"]
        lines.append(f"| {label} | {_num(summary['mean'])} | {_num(summary['median'])} | "
                     + " | ".join(_pct(within.get(k)) for k in ("1", "5", "10", "25", "50")) + " |")
    if "calibration" in results:
        c = results["calibration"]
        lines += ["", f"## Calibration ({c['tile']})", "",
                  "| | 1 sigma | 2 sigma | 3 sigma |", "|---|---|---|---|",
                  "| observed (%) | " + " | ".join(_pct(c["observed"][k]) for k in ("1", "2", "3")) + " |",
                  "| expected (%) | " + " | ".join(_pct(c["expected"][k]) for k in ("1", "2", "3")) + " |",
                  "", f"Spearman(uncertainty, error) = {_num(c['spearman_uncertainty_error'])}", "",
                  "| uncertainty quantile | uncertainty (px) | mean error (m) | median error (m) |",
                  "|---|---|---|---|"]
        for i, row in enumerate(c["error_by_uncertainty_quantile"], 1):
            lines.append(f"| Q{i} | {row['uncertainty_min']:.1f}-{row['uncertainty_max']:.1f} | "
                         f"{row['error_mean']:.2f} | {row['error_median']:.2f} |")
    files = results.get("files", {})
    figures = [files.get("accuracy_curve"), files.get("calibration")] + files.get("queries", [])
    figures = [f for f in figures if f]
    if figures:
        lines += ["", "## Figures", ""] + [f"![{f}]({f})" for f in figures]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------- inputs from files
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


def load_index(config_path, resolution=None, overrides=(), split="test"):
    from utils.config import load_config
    try:
        from utils.data.splits import load_splits
    except ImportError as error:
        raise ImportError(f"cannot load the dataset index ({error}); utils/data/dataset.py is needed") from error
    overrides = list(overrides) + ([f"data.resolution={resolution}"] if resolution else [])
    cfg = load_config(config_path, overrides)
    train, test = load_splits(cfg)
    return cfg, (test if split == "test" else train)


def outputs_from_checkpoint(cfg, checkpoint, split, stage=None):
    try:
        from utils.evaluation.inference import compute_outputs
    except ImportError as error:
        raise SystemExit(f"--checkpoint needs utils/evaluation/inference.py (compute_outputs): {error}")
    return compute_outputs(cfg, checkpoint, split=split, stage=stage)


def _optional_npy(path):
    return None if path is None else np.load(path)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--descriptors", metavar="DIR", help="folder in VIGOR's released layout")
    source.add_argument("--checkpoint", metavar="CKPT", help="checkpoint of this project (epoch folder or prefix)")
    parser.add_argument("--dataset-config", "--config", dest="config", required=True,
                        help="YAML config naming the dataset (e.g. configs/vigor_same_area.yaml)")
    parser.add_argument("--offsets", help="offsets (N, 2) in the top-1 tiles; default: DIR/delta*.npy if present")
    parser.add_argument("--offsets-positive", help="offsets (N, 2) in the positive tiles (fine localization)")
    parser.add_argument("--sigma", help="covariances (N, 2, 2) over delta coordinates")
    parser.add_argument("--resolution", choices=("original", "corrected"),
                        help="tile resolution: VIGOR's 0.114 m/px or SliceMatch's per city (default: the config's)")
    parser.add_argument("--split", choices=("test", "train"), default="test")
    parser.add_argument("--stage", help="stage of the checkpoint (E_1a, E_1b, E_2_1, E_2_2, E_3)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--name", default="", help="label of this result in tables and plots")
    parser.add_argument("--out", required=True, help="output folder")
    args = parser.parse_args(argv)

    cfg, index = load_index(args.config, args.resolution, args.overrides, args.split)
    if args.checkpoint:
        outputs = outputs_from_checkpoint(cfg, args.checkpoint, args.split, args.stage)
        name = args.name or os.path.normpath(args.checkpoint)
    else:
        sat, grd, offsets, offsets_file = load_descriptor_dir(args.descriptors, args.offsets)
        outputs = {"sat_desc": sat, "grd_desc": grd, "offsets": offsets,
                   "offsets_positive": _optional_npy(args.offsets_positive),
                   "sigma": _optional_npy(args.sigma)}
        name = args.name or os.path.basename(os.path.normpath(args.descriptors))
        print(f"offsets: {offsets_file or 'none (tile centres)'}")
    results = evaluate_outputs(index, outputs["sat_desc"], outputs["grd_desc"],
                               offsets=outputs.get("offsets"),
                               offsets_positive=outputs.get("offsets_positive"),
                               sigma=outputs.get("sigma"), heatmaps=outputs.get("heatmaps"),
                               out_dir=args.out, name=name)
    print(markdown_report(results))
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    from utils.cli import run
    sys.exit(run(main))
