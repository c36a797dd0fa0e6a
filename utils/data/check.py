"""Check a dataset before days of training: do the labels fit the resolution, do the images read?

    python -m tools.check_data --config configs/vigor_same_area_corrected.yaml [--images] [--out FILE]

Labels: each label line gives, for four reference tiles, the panorama's pixel offset in the
640-pixel tile. With VIGOR's formulas (utils/data/geo.py: `Lat_Lng` scale, great circle
`gps2distance`) an offset and a resolution put the panorama at a GPS point; the panorama's file
name says where it really is. The median distance between the two, per split and city, is small
only for the resolution the offsets were computed with (VIGOR's 0.114 m/px or SliceMatch's
corrected per-city values). The check reports it for each candidate resolution, the
least-squares fit, which candidate fits, and warns when the configured one does not. Training and
evaluate.py run this part (it reads no image) when they load the splits.

Images (--images): every tile and panorama the splits use is checked, on worker threads: missing,
empty, truncated (a JPEG without its end marker, a PNG without IEND) and undecodable files.
"""
import sys

import numpy as np
from tqdm.contrib.concurrent import thread_map

from utils.data.dataset import image_problem
from utils.data.geo import CORRECTED_MPP, ORIGINAL_MPP, delta_to_gps, gps2distance, gps_to_delta

MISMATCH_RATIO = 1.5     # the configured resolution's median error over the best candidate's ...
MISMATCH_METRES = 0.25   # ... and at least this much larger: a warning
_checked = set()         # (root, labels, resolution, same_area) already checked in this process


def label_errors(index, meters_per_pixel, rows=None):
    """(n, 4) metres between the panorama's GPS and where each reference tile's label offset puts
    it at `meters_per_pixel` (a number, or (S,) per tile), for the panoramas `rows` (default all)."""
    rows = np.arange(index.num_grd) if rows is None else np.asarray(rows)
    tiles = index.labels[rows]                                   # (n, 4)
    mpp = np.broadcast_to(np.asarray(meters_per_pixel, dtype=np.float64), (index.num_sat,))[tiles]
    lat, lng = delta_to_gps(index.sat_gps[tiles, 0], index.sat_gps[tiles, 1], index.deltas[rows], mpp)
    truth = index.grd_gps[rows]
    return gps2distance(lat, lng, truth[:, None, 0], truth[:, None, 1])


def fitted_resolution(index, rows=None):
    """The one resolution that best explains the offsets (least squares in pixels)."""
    rows = np.arange(index.num_grd) if rows is None else np.asarray(rows)
    tiles = index.labels[rows]
    truth = index.grd_gps[rows]
    at_one = gps_to_delta(index.sat_gps[tiles, 0], index.sat_gps[tiles, 1], truth[:, None, 0],
                          truth[:, None, 1], 1.0)               # offsets at 1 m/px
    labelled = index.deltas[rows]
    return float(np.sum(at_one * at_one) / np.sum(at_one * labelled))


def candidates(city):
    """The resolutions a VIGOR-format label file can have been made with."""
    found = {"original": ORIGINAL_MPP}
    if city in CORRECTED_MPP:
        found["corrected"] = CORRECTED_MPP[city]
    return found


def city_fits(index, split):
    """One dict per city of a split: median label error (m) per candidate, configured and fitted."""
    fits = []
    for city in index.cities:
        rows = np.flatnonzero(index.grd_city == city)
        if not len(rows):
            continue
        configured = index.meters_per_pixel[index.labels[rows, 0]]
        named = candidates(city)
        medians = {name: float(np.median(label_errors(index, mpp, rows))) for name, mpp in named.items()}
        used = float(np.median(label_errors(index, index.meters_per_pixel, rows)))
        if all(abs(float(np.median(configured)) - mpp) > 1e-9 for mpp in named.values()):
            medians["configured"] = used    # e.g. a dataset's own meters_per_pixel.json
        best = min(medians, key=medians.get)
        fits.append({"split": split, "city": city, "panoramas": int(len(rows)), "medians": medians,
                     "best": best, "configured_mpp": float(np.median(configured)), "configured_median": used,
                     "fitted_mpp": fitted_resolution(index, rows)})
    return fits


def mismatch(fit):
    """A warning line when the configured resolution fits the labels clearly worse than another."""
    best = fit["medians"][fit["best"]]
    used = fit["configured_median"]
    if used > MISMATCH_RATIO * best and used - best > MISMATCH_METRES:
        return (f"{fit['split']} {fit['city']}: the configured resolution {fit['configured_mpp']:.6g} m/px puts "
                f"the label offsets a median {used:.2f} m from the panoramas' GPS; data.resolution="
                f"{fit['best']} fits them ({best:.2f} m). Check data.resolution and data.labels.")
    return None


def label_report(train, test):
    """(markdown lines, warnings) of the label check of both splits."""
    names = sorted({name for index in (train, test) for city in index.cities for name in candidates(city)})
    lines = ["| split | city | panoramas | " + " | ".join(f"median m at {n}" for n in names)
             + " | configured m/px | median m (configured) | best | fitted m/px |",
             "|---|---|---|" + "---|" * len(names) + "---|---|---|---|"]
    warnings = []
    for split, index in (("train", train), ("test", test)):
        for fit in city_fits(index, split):
            medians = " | ".join(f"{fit['medians'][n]:.2f}" if n in fit["medians"] else "-" for n in names)
            lines.append(f"| {split} | {fit['city']} | {fit['panoramas']} | {medians} | "
                         f"{fit['configured_mpp']:.6g} | {fit['configured_median']:.2f} | {fit['best']} | "
                         f"{fit['fitted_mpp']:.6f} |")
            warning = mismatch(fit)
            if warning:
                warnings.append(warning)
    return lines, warnings


def warn_on_labels(cfg, train, test):
    """The cheap label check at the start of training and evaluation: prints its warnings once."""
    d = cfg.data
    key = (str(d.root), d.labels, str(d.resolution), bool(d.same_area))
    if key in _checked:
        return []
    _checked.add(key)
    _, warnings = label_report(train, test)
    for warning in warnings:
        print(f"[dataset check] warning: {warning} (python -m tools.check_data for the table)",
              file=sys.stderr, flush=True)
    return warnings


# ---------------------------------------------------------------- images
def image_problems(paths, workers=4, progress=True):
    """[(path, problem)] of the unreadable images among `paths`, checked on `workers` threads."""
    paths = list(dict.fromkeys(str(p) for p in paths))
    found = thread_map(image_problem, paths, max_workers=max(1, int(workers)), desc="images", unit="image",
                       disable=not progress, dynamic_ncols=True)
    return [(path, problem) for path, problem in zip(paths, found) if problem]


def _image_lines(train, test, workers, progress):
    paths = [p for index in (train, test) for p in list(index.sat_paths) + list(index.grd_paths)]
    bad = image_problems(paths, workers, progress)
    lines = ["", f"Images: {len(set(paths))} checked, {len(bad)} unreadable."]
    lines += [f"- {path} {problem}" for path, problem in bad[:50]]
    if len(bad) > 50:
        lines.append(f"- ... and {len(bad) - 50} more")
    return lines, bad


def dataset_report(title, cfg, train, test, images=False, workers=4, progress=True):
    """(markdown report, whether anything is wrong): the label fit per city and resolution and,
    with `images`, every unreadable image of the two splits."""
    d = cfg.data
    lines = [f"# Dataset check: {title}", "",
             f"root {d.root}, labels {d.labels}, resolution {d.resolution}, "
             f"{'same-area' if d.same_area else 'cross-area'}: {train.num_grd} train and {test.num_grd} "
             f"test panoramas. Median distance (m) between each panorama's GPS and where its four "
             f"label offsets put it (VIGOR's formulas), per candidate resolution:", ""]
    table, warnings = label_report(train, test)
    lines += table
    bad = []
    if images:
        image_lines, bad = _image_lines(train, test, workers, progress)
        lines += image_lines
    lines += [""] + ([f"Warning: {w}" for w in warnings] or ["The configured resolution fits the labels."])
    return "\n".join(lines) + "\n", bool(warnings or bad)
