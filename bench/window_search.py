"""Fine localization by window search (utils/localization/fine_windows.py) on a synthetic city:
where in its positive tile each test panorama is put by the window search, against the truth and
against the checkpoint's offset head and the product of the two Gaussians. Prints markdown tables.

    python bench/window_search.py --config CFG --checkpoint CKPT [--set key=value ...]
        [--strides 20,40,80] [--temperatures 0.01,0.02,0.05,0.1,0.2,0.5] [--uncertainties all] [--out DIR]

Per test city, the window grid is cut from `<data.root>/<city>/aerial_map.tif` through a database
of the network's tile side (cut once under --out, shared by checkpoints; descriptors per checkpoint).
The stride and temperature are chosen on validation panoramas only (`<city>/validation/`, written
into data.root when missing by bench/localization.py's helper): the pair with the lowest median
error there (`--choose spread`: the pair whose predicted points spread most nearly as the true ones
do, their spread ratio nearest 1; results_<stage>_<epoch>_spread.json); then, at that pair, the
uncertainty measure (localize.fine_uncertainty, with its own softmax temperature
localize.fine_uncertainty_temperature where it reads the weights) of the highest validation
Spearman(uncertainty, error): `--uncertainties` lists the measures tried (each weighted one at every
--temperatures value), default the config's one. Offsets are within-tile statistics of
utils/evaluation/position.py's measure, in metres along the delta axes; errors against the GPS in the
panorama's file name.
"""
import argparse
import json
import os
import sys
import time

import numpy as np
from tqdm import tqdm

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.localization import ensure_heldout, validation_paths  # noqa: E402
from utils.cli import run  # noqa: E402
from utils.config import load_config, resolve_path  # noqa: E402
from utils.data.dataset import parse_pano_name  # noqa: E402
from utils.data.splits import load_splits  # noqa: E402
from utils.data.synthetic_raster import RASTER_NAME  # noqa: E402
from utils.data.synthetic_vigor import read_difficulty  # noqa: E402
from utils.errors import ConfigError  # noqa: E402
from utils.evaluation.calibration import spearman  # noqa: E402
from utils.evaluation.position import measure  # noqa: E402
from utils.localization.database import INFO_FILE, LABEL_SIDE, build_database, load_database  # noqa: E402
from utils.localization.fine_windows import (  # noqa: E402
    UNCERTAINTIES, WEIGHTED_UNCERTAINTIES, FineWindows, gaussian_product)
from utils.localization.predict import LocalizationModel  # noqa: E402
from utils.training.stage import stage_dir  # noqa: E402

STRIDES_PX = (20, 40, 80)
TEMPERATURES = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5)
CORRELATION_GOAL, MEDIAN_RATIO_GOAL, ERROR_GOAL, DIFFICULTY_GOAL = 0.5, 0.5, 0.4, 0.2
DIFFICULTY = "difficulty"             # the column of the recorded difficulty the goal reads


# ---------------------------------------------------------------- data
def city_database(root, city, out, ground_mpp, tile_px):
    """A database (no overlap) of the city's raster at the network's tile side: the windows' grid."""
    raster = os.path.join(root, city, RASTER_NAME)
    path = os.path.join(out, "databases", f"{city}_px{tile_px}")
    info = os.path.join(path, INFO_FILE)
    if not os.path.exists(info) or json.load(open(info))["raster"] != os.path.abspath(raster) or \
            json.load(open(info)).get("ground_mpp") != ground_mpp:
        build_database(raster, path, ground_mpp, tile_px=tile_px, stride_px=tile_px, progress=False)
    return load_database(path)


ALONG_DELTA = np.array([[0.0, -1.0], [-1.0, 0.0]])   # (east, north) -> (row down, column leftwards)


def along_delta(offsets_m):
    """Metric offsets (east, north) -> metres along the delta axes (row down, column leftwards)."""
    offsets_m = np.asarray(offsets_m, np.float64)
    return np.stack([-offsets_m[..., 1], -offsets_m[..., 0]], axis=-1)


class CityPanoramas:
    """One city's panoramas, each with its positive tile: (paths, truth, tile centres, widths, tile ids), metric."""

    def __init__(self, paths, truth, centres, widths, tiles):
        self.paths, self.truth, self.centres, self.widths, self.tiles = paths, truth, centres, widths, tiles


def test_panoramas(test, city, db):
    rows = np.flatnonzero(test.grd_city == city)
    tiles = test.labels[rows, 0]
    truth = db.frame.lonlat_to_metric(test.grd_gps[rows, 1], test.grd_gps[rows, 0])
    centres = db.frame.lonlat_to_metric(test.sat_gps[tiles, 1], test.sat_gps[tiles, 0])
    return CityPanoramas([str(p) for p in test.grd_paths[rows]], truth, centres,
                         LABEL_SIDE * test.meters_per_pixel[tiles], tiles), rows


def validation_panoramas(paths, test, city, db):
    """Each validation panorama's positive: the city's tile whose centre is nearest (Chebyshev), as
    the split's positives (panoramas are drawn in the tiles' central quarters)."""
    own = np.flatnonzero(test.sat_city == city)
    tile_centres = db.frame.lonlat_to_metric(test.sat_gps[own, 1], test.sat_gps[own, 0])
    gps = np.array([parse_pano_name(p) for p in paths])
    truth = db.frame.lonlat_to_metric(gps[:, 1], gps[:, 0])
    nearest = np.argmin(np.abs(truth[:, None] - tile_centres[None]).max(axis=2), axis=1)
    return CityPanoramas(paths, truth, tile_centres[nearest], LABEL_SIDE * test.meters_per_pixel[own[nearest]],
                         own[nearest])


def window_similarities(fine, model, panoramas, descriptors):
    """Per panorama: (its tile's window ids, their similarities to it)."""
    inside = [fine.inside(c, w) for c, w in zip(panoramas.centres, panoramas.widths)]
    needed = np.unique(np.concatenate(inside))
    window_descriptors = np.zeros((len(fine), descriptors.shape[1]), np.float32)
    window_descriptors[needed] = fine.descriptors(model, needed, progress=True)
    return [(ids, window_descriptors[ids] @ d) for ids, d in zip(inside, descriptors)]


def window_outputs(fine, panoramas, similarities, temperature):
    """(predicted offsets (N, 2), covariances (N, 2, 2)), metric, from the tile centres."""
    estimates = [fine.estimate(ids, s, temperature) for ids, s in similarities]
    means = np.array([m for m, _ in estimates])
    return means - panoramas.centres, np.array([c for _, c in estimates])


def window_uncertainties(fine, similarities, temperature, candidate, covs):
    """Per panorama, the window search's uncertainty by candidate (measure, its temperature or None for the
    search's); covariance at the search's temperature: sqrt(trace) of covs."""
    measure, own = candidate
    if measure == "covariance" and own in (None, temperature):
        return np.sqrt(np.trace(covs, axis1=1, axis2=2))
    return np.array([fine.uncertainty(measure, ids, s, own or temperature) for ids, s in similarities])


def uncertainty_candidates(measures, temperatures, cfg):
    """(measure, temperature) pairs: measures=None: the config's one (its temperature, or None for the
    search's); else each measure that weights windows at every temperature, the others once (None)."""
    if measures is None:
        return [(str(cfg.localize.fine_uncertainty), float(cfg.localize.fine_uncertainty_temperature) or None)]
    return [(m, t) for m in measures for t in (temperatures if m in WEIGHTED_UNCERTAINTIES else [None])]


def candidate_name(candidate):
    measure, temperature = candidate
    return measure if temperature is None else f"{measure} @ T {temperature:g}"


# ---------------------------------------------------------------- measures
def summary(predicted_m, true_m, tiles, uncertainty, difficulty):
    """Within-tile measure (metres along the delta axes) and the uncertainty's rank correlations."""
    m = measure(predicted_m, true_m, tiles).as_dict()
    error = np.linalg.norm(predicted_m - true_m, axis=1)
    m["spearman_error"] = spearman(uncertainty, error)
    m["spearman_difficulty"] = {k: spearman(uncertainty, v) for k, v in (difficulty or {}).items()}
    m["panoramas"] = len(error)
    return m


def combine(parts):
    """Per-city (predicted, true, tiles, uncertainty) lists concatenated."""
    return [np.concatenate(column) for column in zip(*parts)]


CHOICE_RULES = {"median": "lowest median", "spread": "spread ratio nearest 1"}


def choose(validation, rule="median"):
    """The (stride, temperature) of the lowest validation median (then the higher mean correlation); with rule
    'spread', of the validation spread ratio nearest 1 (|log ratio| to 0.01, then the lowest median)."""
    if rule == "spread":
        return min(validation, key=lambda r: (round(abs(float(np.log(r["spread_ratio"]))), 2), r["fine_median"]))
    return min(validation, key=lambda r: (round(r["fine_median"], 3), -(r["correlation_rows"] + r["correlation_cols"])))


def choose_uncertainty(candidates, by_name):
    """The candidate of the highest Spearman(uncertainty, error) (a None counts lowest; ties: listed first)."""
    return max(candidates, key=lambda c: -np.inf if by_name[candidate_name(c)] is None else by_name[candidate_name(c)])


def spearman_by_uncertainty(cities, sets, similarities, split, stride, temperature, candidates, against=None):
    """{candidate's name: Spearman(uncertainty, error)} of the window search on a split, cities pooled; with
    `against` (a value per panorama of the split's list, e.g. the recorded difficulty), Spearman with it instead."""
    errors, values, rows = [], {c: [] for c in candidates}, []
    for city in cities:
        fine, sims = similarities[stride, city, split]
        panoramas, city_rows = sets[city][split][:2]
        rows.append(city_rows)
        predicted, covs = window_outputs(fine, panoramas, sims, temperature)
        errors.append(np.linalg.norm(predicted - (panoramas.truth - panoramas.centres), axis=1))
        for c in candidates:
            values[c].append(window_uncertainties(fine, sims, temperature, c, covs))
    target = np.concatenate(errors) if against is None else np.asarray(against)[np.concatenate(rows)]
    return {candidate_name(c): spearman(np.concatenate(values[c]), target) for c in candidates}


def measure_checkpoint(cfg, checkpoint, strides, temperatures, out, uncertainties=None, rule="median"):
    """uncertainties: the measures chosen among on validation (default: localize.fine_uncertainty); rule: how the
    stride and temperature are chosen on validation (CHOICE_RULES)."""
    candidates = uncertainty_candidates(uncertainties, temperatures, cfg)
    root = resolve_path(cfg.data.root)
    _, test = load_splits(cfg, check_labels=False)
    cities = sorted(set(test.grd_city))
    ensure_heldout(root, cities, 8)
    model = LocalizationModel(cfg, checkpoint, "street")
    tile_px = model.sat_px or int(LABEL_SIDE)
    validation_of = validation_paths(root, cities)
    difficulty = read_difficulty(root, test.grd_paths)
    results = {"checkpoint": model.checkpoint, "cities": cities, "test_panoramas": len(test.grd_paths),
               "validation_panoramas": sum(len(v) for v in validation_of.values())}
    try:
        dbs = {c: city_database(root, c, out, model.ground_mpp, tile_px) for c in cities}
        sets = {}
        for city in cities:
            tested, rows = test_panoramas(test, city, dbs[city])
            held = validation_panoramas(validation_of[city], test, city, dbs[city])
            sets[city] = {"test": (tested, rows, model.panorama_descriptors(tested.paths)),
                          "validation": (held, None, model.panorama_descriptors(held.paths))}
        started = time.time()
        similarities = {}
        for stride in strides:
            for city in cities:
                fine = FineWindows(dbs[city], stride, model.sat_px)
                for split in ("validation", "test"):
                    panoramas, _, descriptors = sets[city][split]
                    similarities[stride, city, split] = (fine, window_similarities(fine, model, panoramas, descriptors))
        results["windows_seconds"] = time.time() - started
        results["windows_per_city"] = {s: len(similarities[s, cities[0], "test"][0]) for s in strides}
        validation = []
        for stride in strides:
            for temperature in tqdm(temperatures, desc=f"stride {stride}", leave=False):
                parts = []
                for city in cities:
                    fine, sims = similarities[stride, city, "validation"]
                    held = sets[city]["validation"][0]
                    predicted, covs = window_outputs(fine, held, sims, temperature)
                    parts.append((along_delta(predicted), along_delta(held.truth - held.centres), held.tiles,
                                  np.sqrt(np.trace(covs, axis1=1, axis2=2))))
                predicted, true, tiles, uncertainty = combine(parts)
                validation.append({"stride_px": stride, "temperature": temperature,
                                   **summary(predicted, true, tiles, uncertainty, None)})
        results["validation"] = validation
        chosen = choose(validation, rule)
        results["chosen"] = {"stride_px": chosen["stride_px"], "temperature": chosen["temperature"], "rule": rule}
        results["uncertainty_validation"] = spearman_by_uncertainty(
            cities, sets, similarities, "validation", chosen["stride_px"], chosen["temperature"], candidates)
        results["uncertainty_test"] = spearman_by_uncertainty(
            cities, sets, similarities, "test", chosen["stride_px"], chosen["temperature"], candidates)
        if difficulty is not None and DIFFICULTY in difficulty:   # reported for every measure, chosen by the error
            results["uncertainty_test_difficulty"] = spearman_by_uncertainty(
                cities, sets, similarities, "test", chosen["stride_px"], chosen["temperature"], candidates,
                difficulty[DIFFICULTY])
        measure = choose_uncertainty(candidates, results["uncertainty_validation"])
        results["chosen"]["uncertainty"], results["chosen"]["uncertainty_temperature"] = measure
        parts, order, window_covs = [], [], []
        for city in cities:
            fine, sims = similarities[chosen["stride_px"], city, "test"]
            tested, rows, _ = sets[city]["test"]
            predicted, covs = window_outputs(fine, tested, sims, chosen["temperature"])
            parts.append((along_delta(predicted), along_delta(tested.truth - tested.centres), tested.tiles,
                          window_uncertainties(fine, sims, chosen["temperature"], measure, covs)))
            order.append(rows)
            window_covs.append(ALONG_DELTA @ covs @ ALONG_DELTA.T)
        order = np.concatenate(order)
        ordered = None if difficulty is None else {k: v[order] for k, v in difficulty.items()}
        predicted, true, tiles, uncertainty = combine(parts)
        results["windows"] = summary(predicted, true, tiles, uncertainty, ordered)
        results["head"], results["product"] = head_summaries(model, test, order, true, tiles, ordered, predicted,
                                                             np.concatenate(window_covs))
    finally:
        model.close()
    os.makedirs(out, exist_ok=True)
    epoch_dir = os.path.dirname(model.checkpoint)           # <run>/<stage>/<epoch>/model.ckpt
    name = f"{os.path.basename(os.path.dirname(epoch_dir))}_{os.path.basename(epoch_dir)}"
    suffix = "" if rule == "median" else f"_{rule}"
    with open(os.path.join(out, f"results_{name}{suffix}.json"), "w") as f:
        json.dump(results, f, indent=1, default=float)
    return results


def head_summaries(model, test, order, true, tiles, difficulty, windows, window_covs):
    """The offset head's numbers on the same panoramas, and those of the product of its Gaussian with the
    window search's (where the head has a Sigma); (None, None) for a checkpoint without a head."""
    if not model.restored.localizes:
        return None, None
    tile_ids = test.labels[order, 0]
    deltas, sigmas, _ = model.tile_outputs(list(test.sat_paths[tile_ids]), list(test.grd_paths[order]), 0, True)
    mpp = test.meters_per_pixel[tile_ids]
    if sigmas is None:
        return summary(deltas * mpp[:, None], true, tiles, np.zeros(len(mpp)), difficulty), None
    head_covs = sigmas * (mpp ** 2)[:, None, None]
    head = summary(deltas * mpp[:, None], true, tiles, np.sqrt(np.trace(head_covs, axis1=1, axis2=2)), difficulty)
    means, covs = gaussian_product(deltas * mpp[:, None], head_covs, windows, window_covs)
    return head, summary(means, true, tiles, np.sqrt(np.trace(covs, axis1=1, axis2=2)), difficulty)


# ---------------------------------------------------------------- tables
def fmt(x, digits=2):
    return "-" if x is None else f"{x:.{digits}f}"


def validation_table(results):
    lines = [f"Validation ({results['validation_panoramas']} panoramas): window search by stride (640-px "
             f"convention) and temperature; chosen: stride {results['chosen']['stride_px']}, temperature "
             f"{results['chosen']['temperature']:g} ({CHOICE_RULES[results['chosen'].get('rule', 'median')]})", "",
             "| stride px | temperature | median m | correlation rows | correlation cols | spread ratio |",
             "|---|---|---|---|---|---|"]
    for r in results["validation"]:
        lines.append(f"| {r['stride_px']} | {r['temperature']:g} | {r['fine_median']:.1f} | "
                     f"{fmt(r['correlation_rows'])} | {fmt(r['correlation_cols'])} | {fmt(r['spread_ratio'])} |")
    return lines


def test_table(results):
    rows = [("window search", results["windows"])] + ([("offset head", results["head"])] if results["head"] else []) \
        + ([("product: head x window search", results["product"])] if results.get("product") else [])
    columns = sorted({k for _, r in rows for k in r["spearman_difficulty"]})
    lines = [f"Test ({results['test_panoramas']} panoramas, their positive tiles; metres)", "",
             "| estimate | correlation rows | correlation cols | spread ratio | fine median | tile-centre median | "
             "blind median | Spearman(unc, error) | " + " | ".join(f"Spearman(unc, {c})" for c in columns) + " |",
             "|---|---|---|---|---|---|---|---|" + "---|" * len(columns)]
    for name, r in rows:
        lines.append(f"| {name} | {fmt(r['correlation_rows'])} | {fmt(r['correlation_cols'])} | "
                     f"{fmt(r['spread_ratio'])} | {r['fine_median']:.1f} | {r['centre_median']:.1f} | "
                     f"{r['blind_median']:.1f} | {fmt(r['spearman_error'])} | "
                     + " | ".join(fmt(r["spearman_difficulty"].get(c)) for c in columns) + " |")
    return lines


def chosen_name(results):
    return candidate_name((results["chosen"]["uncertainty"], results["chosen"]["uncertainty_temperature"]))


def uncertainty_table(results):
    by_validation, by_test = results["uncertainty_validation"], results["uncertainty_test"]
    by_difficulty = results.get("uncertainty_test_difficulty")
    lines = [(f"Uncertainty measures at the chosen stride and temperature (localize.fine_uncertainty); chosen on "
              f"validation: {chosen_name(results)}"), "",
             "| measure | Spearman(unc, error), validation | Spearman(unc, error), test |"
             + (f" Spearman(unc, {DIFFICULTY}), test |" if by_difficulty else ""),
             "|---|---|---|" + ("---|" if by_difficulty else "")]
    return lines + [f"| {m} | {fmt(by_validation[m])} | {fmt(by_test[m])} |"
                    + (f" {fmt(by_difficulty[m])} |" if by_difficulty else "") for m in by_validation]


def goal_table(results):
    w = results["windows"]
    difficulty = w["spearman_difficulty"].get(DIFFICULTY)
    ratio = w["fine_median"] / w["centre_median"]
    rows = [("within-tile correlation, rows", fmt(w["correlation_rows"], 3), f">= {CORRELATION_GOAL}",
             w["correlation_rows"] >= CORRELATION_GOAL),
            ("within-tile correlation, cols", fmt(w["correlation_cols"], 3), f">= {CORRELATION_GOAL}",
             w["correlation_cols"] >= CORRELATION_GOAL),
            ("fine median / tile-centre median", f"{ratio:.3f} ({w['fine_median']:.1f} / {w['centre_median']:.1f} m)",
             f"<= {MEDIAN_RATIO_GOAL}", ratio <= MEDIAN_RATIO_GOAL),
            (f"Spearman(uncertainty, error) ({chosen_name(results)})", fmt(w["spearman_error"], 3), f">= {ERROR_GOAL}",
             w["spearman_error"] is not None and w["spearman_error"] >= ERROR_GOAL),
            (f"Spearman(uncertainty, recorded difficulty) ({chosen_name(results)})",
             "not recorded" if difficulty is None else fmt(difficulty, 3), f">= {DIFFICULTY_GOAL}",
             None if difficulty is None else difficulty >= DIFFICULTY_GOAL)]
    met = {None: "-", True: "yes", False: "no"}
    return ["| goal (test split; window search, settings chosen on validation) | measured | goal | met |",
            "|---|---|---|---|"] + [f"| {n} | {m} | {g} | {met[ok]} |" for n, m, g, ok in rows]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=resolve_path("configs/demo.yaml"))
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--strides", default=",".join(map(str, STRIDES_PX)),
                        help="window strides tried on validation (pixels at the 640-px convention)")
    parser.add_argument("--temperatures", default=",".join(map(str, TEMPERATURES)))
    parser.add_argument("--uncertainties", help="uncertainty measures chosen among on validation, comma-separated, "
                        f"or 'all' ({', '.join(UNCERTAINTIES)}); default: localize.fine_uncertainty")
    parser.add_argument("--choose", default="median", choices=sorted(CHOICE_RULES),
                        help="stride and temperature chosen on validation by: median (the lowest median error) or "
                        "spread (the predicted points' spread nearest the true one's)")
    parser.add_argument("--out", help="databases, windows and results (default: runs/<experiment>/window_search)")
    args = parser.parse_args(argv)
    cfg = load_config(args.config, args.overrides)
    out = args.out or os.path.join(os.path.dirname(stage_dir(cfg, "E_3")), "window_search")
    measures = None if not args.uncertainties else \
        list(UNCERTAINTIES) if args.uncertainties == "all" else args.uncertainties.split(",")
    unknown = [m for m in measures or [] if m not in UNCERTAINTIES]
    if unknown:
        raise ConfigError(f"--uncertainties names '{unknown[0]}': use 'all' or some of {', '.join(UNCERTAINTIES)}")
    started = time.time()
    results = measure_checkpoint(cfg, args.checkpoint, [int(s) for s in args.strides.split(",")],
                                 [float(t) for t in args.temperatures.split(",")], out, measures, args.choose)
    print(f"checkpoint {results['checkpoint']}; {len(results['cities'])} cities; window descriptors "
          f"{results['windows_seconds']:.0f} s; windows per city by stride {results['windows_per_city']}; "
          f"{time.time() - started:.0f} s\n")
    print("\n".join(goal_table(results) + ["", ""] + test_table(results) + ["", ""] + uncertainty_table(results)
                    + ["", ""] + validation_table(results)))


if __name__ == "__main__":
    sys.exit(run(main))
