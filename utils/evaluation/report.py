"""The evaluation of one model: retrieval, localization in metres, calibration; results.json,
results.md, per_query.npz and figures.

evaluate.py (descriptor files or a checkpoint), demo.py and the trainer's users call
`evaluate_outputs` with a dataset index and the model's outputs.
"""
import json
import os

import numpy as np

from utils.evaluation import calibration, plots, summaries
from utils.evaluation.retrieval import DEFAULT_MEMORY_BUDGET, search

MAX_QUERY_FIGURES = 8
_CONVERT_ROWS = 8192


def evaluate_outputs(index, sat_desc, grd_desc, offsets=None, offsets_positive=None, sigma=None,
                     heatmaps=None, out_dir=None, name="", memory_budget=DEFAULT_MEMORY_BUDGET,
                     found=None, skipped=None) -> dict:
    """Retrieval, metre-level localization, fine localization and calibration of one model.

    index: a SplitIndex (utils/data/dataset.py). sat_desc (S, D) / grd_desc (N, D): unit descriptors
    in the index's order. offsets (N, 2): predicted delta inside each query's top-1 tile (None:
    the tile centre, for models without regression). offsets_positive (N, 2): predicted delta
    inside the positive tile (fine localization). sigma (N, 2, 2): covariance of the
    positive-tile prediction over delta coordinates (of the top-1 prediction if
    offsets_positive is None). heatmaps: (K, H, W) for queries 0..K-1, or {query: (H, W)}.
    found: the RetrievalResult of these descriptors (k >= 1) when the caller has searched already.
    skipped: counts of unreadable images left out of `index` (utils/evaluation/scan.py,
    readable_subset), reported next to the figures.
    """
    sat, grd = as_float32(sat_desc), as_float32(grd_desc)
    offsets, offsets_positive, sigma = _checked_inputs(index, sat, grd, offsets, offsets_positive, sigma)
    if found is None:
        found = search(grd, sat, index.labels, k=1, memory_budget=memory_budget)
    results, per_query = _retrieval(index, sat, found, name)
    if skipped and any(skipped.values()):
        results["unreadable"] = dict(skipped)
    if not _has_gps(index):  # CVUSA: no GPS, no resolution; metres and Sigma's calibration have no meaning
        results["curves"] = {}
        if out_dir:
            results["files"] = write_outputs(out_dir, index, results, per_query, [], None, None, None)
        return results
    curves = _localization(index, per_query["top1"], offsets, offsets_positive, name, results, per_query)
    if sigma is not None:
        _calibration(index, offsets, offsets_positive, sigma, results, per_query)
    if out_dir:
        results["files"] = write_outputs(out_dir, index, results, per_query, curves, offsets_positive,
                                         sigma, heatmaps)
    return results


def _checked_inputs(index, sat, grd, offsets, offsets_positive, sigma):
    num_refs, num_queries = len(index.sat_paths), len(index.grd_paths)
    _check_shape("sat_desc", sat, (num_refs, None))
    _check_shape("grd_desc", grd, (num_queries, sat.shape[1]))
    arrays = [None if a is None else np.asarray(a, dtype=np.float64) for a in (offsets, offsets_positive, sigma)]
    for label, array, shape in zip(("offsets", "offsets_positive", "sigma"), arrays,
                                   ((num_queries, 2), (num_queries, 2), (num_queries, 2, 2))):
        if array is not None:
            _check_shape(label, array, shape)
    return arrays


def _retrieval(index, sat, found, name):
    num_refs = len(index.sat_paths)
    hit_ranks = found.hit_ranks if found.hit_ranks is not None else found.ranks[:, 0]
    results = {"name": name, "dataset": getattr(index, "name", ""),
               "num_queries": len(index.grd_paths), "num_references": num_refs,
               "descriptor_dim": int(sat.shape[1]),
               "meters_per_pixel": _resolution_summary(np.asarray(index.meters_per_pixel, dtype=np.float64)),
               "retrieval": summaries.retrieval_summary(found.ranks[:, 0], hit_ranks, num_refs)}
    if summaries.is_one_to_one(index.labels, num_refs):  # SAFA's protocol (CVUSA)
        results["retrieval"]["one_to_one"] = summaries.one_to_one_recalls(found.ranks[:, 0], num_refs)
    per_query = {"top1": found.topk[:, 0], "ranks": found.ranks, "hit_ranks": hit_ranks}
    return results, per_query


def _has_gps(index):
    return bool(np.isfinite(np.asarray(index.grd_gps, dtype=np.float64)).all()
                and np.isfinite(np.asarray(index.sat_gps, dtype=np.float64)).all())


def _localization(index, top1, offsets, offsets_positive, name, results, per_query):
    """Metres with the top-1 tile, with the positive tile given, and at the positive tile's centre."""
    resolution = np.asarray(index.meters_per_pixel, dtype=np.float64)
    grd_gps, sat_gps, labels = np.asarray(index.grd_gps), np.asarray(index.sat_gps), np.asarray(index.labels)
    errors = summaries.localization_errors(grd_gps, sat_gps, top1, offsets, resolution)
    results["localization"] = dict(summaries.meter_summary(errors),
                                   offsets="predicted" if offsets is not None else "zero (tile centre)")
    per_query["errors"] = errors
    curves = [(name or "top-1 tile", *summaries.distance_accuracy(errors))]
    results["curves"] = {"localization": _curve_dict(curves[0])}
    if offsets_positive is not None:
        fine_errors = summaries.fine_localization_errors(grd_gps, sat_gps, labels, offsets_positive,
                                                            resolution)
        pixel = np.linalg.norm(offsets_positive - index.deltas[:, 0], axis=1)
        results["fine_localization"] = dict(summaries.meter_summary(fine_errors),
                                            mean_px=float(pixel.mean()), median_px=float(np.median(pixel)))
        per_query["fine_errors"] = fine_errors
        curves.append((f"{name} (positive tile given)".strip(), *summaries.distance_accuracy(fine_errors)))
        results["curves"]["fine_localization"] = _curve_dict(curves[-1])
    centre = summaries.localization_errors(grd_gps, sat_gps, labels[:, 0], None, resolution)
    results["positive_tile_centre"] = summaries.meter_summary(centre)
    return curves


def _calibration(index, offsets, offsets_positive, sigma, results, per_query):
    """How well Sigma describes the error of the prediction it belongs to."""
    if offsets_positive is not None:
        residual = index.deltas[:, 0] - offsets_positive
        error, about = per_query["fine_errors"], "positive tile"
    elif offsets is not None:
        resolution = np.asarray(index.meters_per_pixel, dtype=np.float64)
        residual = summaries.true_offsets(index.grd_gps, index.sat_gps, per_query["top1"], resolution) - offsets
        error, about = per_query["errors"], "top-1 tile"
    else:
        raise ValueError("sigma needs the offsets it describes: give offsets_positive or offsets")
    results["calibration"] = dict(calibration.uncertainty_report(residual, sigma, error), tile=about)
    per_query["uncertainty"] = calibration.uncertainty_from_sigma(sigma)
    per_query["mahalanobis"] = calibration.mahalanobis_radius(residual, sigma)


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
    if curves:
        plots.accuracy_curve(curves, os.path.join(out_dir, files["accuracy_curve"]),
                             title=results["name"] or None)
    else:
        del files["accuracy_curve"]
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
             f"{results['num_references']} tiles, descriptors of {results['descriptor_dim']}"
             + ("." if "localization" not in results else f"; resolution {results['meters_per_pixel']} m/px."), ""]
    if "unreadable" in results:
        u = results["unreadable"]
        lines += [f"Unreadable images left out (data.on_bad_sample=skip): {u['unreadable_tiles']} tiles, "
                  f"{u['unreadable_panoramas']} panoramas; {u['queries_left_out']} queries not scored.", ""]
    lines += ["## Retrieval (%)", "",
             "| top-1 | top-5 | top-1% | hit rate | recall@10 | median rank |",
             "|---|---|---|---|---|---|",
             f"| {_pct(r['top1'])} | {_pct(r['top5'])} | {_pct(r['top1_percent'])} | "
             f"{_pct(r['hit_rate'])} | {_pct(r['recall'].get('10'))} | {r['median_rank']:g} |", ""]
    if "one_to_one" in r:
        o = r["one_to_one"]
        lines += [f"SAFA's protocol (one-to-one; r@1% counts fewer than {o['top1_percent_k']} closer references):", "",
                  "| r@1 | r@5 | r@10 | r@1% |", "|---|---|---|---|",
                  "| " + " | ".join(_pct(o[k]) for k in summaries.ONE_TO_ONE) + " |", ""]
    if "localization" not in results:
        lines += ["No localization in metres: the dataset carries no GPS (CVUSA's splits name image files only)."]
        return "\n".join(lines) + "\n"
    lines += ["## Localization (m)", "",
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
        lines += ["", f"## Calibration ({c['tile']})", ""] + calibration.coverage_markdown(c)
        lines += ["", f"Spearman(uncertainty, error) = {_num(c['spearman_uncertainty_error'])}", "",
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
