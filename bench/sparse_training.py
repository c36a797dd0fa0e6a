"""Training positives against sparse reference databases: two checkpoints (trained with
data.positives central and covering) localize the synthetic city's test panoramas in a dense
(stride 320) database, a sparse one (stride 640, tiles without overlap), and the sparse one with
windows re-cut from the raster. Prints the comparison, the table by distance from the stored
tile's centre, and the goal table (markdown).

    python bench/sparse_training.py --config configs/demo.yaml --checkpoint runs/demo/E_2_1/50 \\
        --compare-checkpoint runs_covering/demo/E_2_1/50 --set data.root=<a writable copy of the city>

Settings are chosen per checkpoint on the validation panoramas only (bench/localization.py's fusion
temperature and min_sigma_m, and the fewest re-cut candidates within 1.5x the dense median); the
numbers are the test split's. Writes the validation panoramas and sequences into data.root when
missing, and each checkpoint's databases and cached network outputs under --out.
"""
import argparse
import os
import sys
import time
from dataclasses import replace

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.localization import (  # noqa: E402
    SPARSE_GOAL,
    database_for,
    database_summary,
    ensure_heldout,
    localizers_for,
    panorama_rows,
    pct,
    prefill,
    tune_fusion,
    tune_recut,
    validation_paths,
)
from utils.cli import run  # noqa: E402
from utils.config import load_config, resolve_path  # noqa: E402
from utils.data.splits import load_splits  # noqa: E402
from utils.localization.output_cache import CachedModel  # noqa: E402
from utils.localization.predict import LocalizationModel  # noqa: E402
from utils.localization.query import Settings  # noqa: E402
from utils.training.stage import stage_dir  # noqa: E402

PREFILL_CANDIDATES = 10        # each panorama's top tiles whose outputs are computed in one batch up front
DENSE, SPARSE = "dense (stride 320)", "sparse (stride 640)"


def measure(cfg, checkpoint, folder, per_city=8):
    """One checkpoint: settings on validation, then dense, sparse and sparse + re-cut on the test split."""
    root = resolve_path(cfg.data.root)
    _, test = load_splits(cfg)
    cities = sorted(set(test.grd_city))
    ensure_heldout(root, cities, per_city)
    out = os.path.join(folder, "databases")
    model = CachedModel(LocalizationModel(cfg, checkpoint), os.path.join(folder, "output_cache"))
    validation = validation_paths(root, cities)
    test_paths = {c: [str(p) for p, pc in zip(test.grd_paths, test.grd_city) if pc == c] for c in cities}
    try:
        for city in cities:
            for stride in (320, 640):
                prefill(model, database_for(root, city, stride, out, model), test_paths[city] + validation[city],
                        PREFILL_CANDIDATES)
            model.save()
        base = replace(Settings.from_config(cfg), rerank="none", predictor="fusion", recut_candidates=0)
        settings, _, _ = tune_fusion(localizers_for(model, root, cities, 320, base, out), root, cities, base)
        dense_validation = float(np.median([r["fused"] for r in panorama_rows(
            localizers_for(model, root, cities, 320, settings, out), validation)]))
        recut, _ = tune_recut(model, root, cities, settings, out, validation, dense_validation)
        m = recut["recut_candidates"]
        databases = {}
        for name, stride, changes in ((DENSE, 320, {}), (SPARSE, 640, {}),
                                      (f"sparse + raster, windows re-cut around top {m}", 640, {"recut_candidates": m})):
            localizers = localizers_for(model, root, cities, stride, settings, out, **changes)
            databases[name] = database_summary([lo.db for lo in localizers.values()],
                                               panorama_rows(localizers, test_paths), raster=bool(changes))
    finally:
        model.close()
    return {"checkpoint": checkpoint, "test_panoramas": len(test.grd_paths), "databases": databases,
            "temperature": settings.temperature, "min_sigma_m": settings.min_sigma_m, "recut": m,
            "dense_validation_median": dense_validation}


def comparison_table(results):
    lines = ["| positives | database | retrieval: top-1 tile holds it % | top-k % | top-1 tile alone median m | "
             "top-k fusion median m | <=10 m % | <=25 m % |", "|---|---|---|---|---|---|---|---|"]
    for label, r in results.items():
        for name, d in r["databases"].items():
            lines.append(f"| {label} | {name} | {pct(d['top1_hit'])} | {pct(d['topk_hit'])} | {d['top1']['median']:.1f} | "
                         f"{d['fused']['median']:.1f} | {pct(d['fused']['within_10'])} | {pct(d['fused']['within_25'])} |")
    return lines


def edge_table(results):
    lines = ["| positives | database | distance from the nearest stored tile's centre (tile widths) | panoramas | "
             "top-1 tile holds it % | fused median m |", "|---|---|---|---|---|---|"]
    for label, r in results.items():
        for name, d in r["databases"].items():
            for band in d["by_edge"]:
                lines.append(f"| {label} | {name} | {band['from']:.3f}-{band['from'] + 0.125:.3f} | {band['panoramas']} | "
                             f"{pct(band['top1_hit'])} | {band['median']:.1f} |")
    return lines


def goal_table(results, reference, compared):
    """The plain sparse database within SPARSE_GOAL x the dense median, for each checkpoint and for the
    compared one against the reference's dense median too (a ratio is also met by a worse dense
    database); and what the compared checkpoint costs the dense database (median, top-1)."""
    rows = []
    for label in (compared, reference):
        d = results[label]["databases"]
        dense, sparse = d[DENSE]["fused"]["median"], d[SPARSE]["fused"]["median"]
        rows.append((f"plain sparse median ({label})", f"{sparse:.1f} m", f"<= {SPARSE_GOAL * dense:.1f} m "
                     f"({SPARSE_GOAL:g} x dense {dense:.1f} m)", sparse <= SPARSE_GOAL * dense))
    ref, new = results[reference]["databases"][DENSE], results[compared]["databases"][DENSE]
    sparse = results[compared]["databases"][SPARSE]["fused"]["median"]
    rows.insert(1, (f"plain sparse median ({compared}) against {reference}'s dense", f"{sparse:.1f} m",
                    f"<= {SPARSE_GOAL * ref['fused']['median']:.1f} m ({SPARSE_GOAL:g} x {reference}'s dense "
                    f"{ref['fused']['median']:.1f} m)", sparse <= SPARSE_GOAL * ref["fused"]["median"]))
    rows.append((f"dense median ({compared})", f"{new['fused']['median']:.1f} m",
                 f"<= {ref['fused']['median']:.1f} m ({reference})", new["fused"]["median"] <= ref["fused"]["median"]))
    rows.append((f"dense top-1 tile holds it ({compared})", f"{pct(new['top1_hit'])} %",
                 f">= {pct(ref['top1_hit'])} % ({reference})", new["top1_hit"] >= ref["top1_hit"]))
    return ["| goal (test split; settings chosen on validation) | measured | goal | met |", "|---|---|---|---|"] + \
        [f"| {name} | {measured} | {goal} | {'yes' if met else 'no'} |" for name, measured, goal, met in rows]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=resolve_path("configs/demo.yaml"))
    parser.add_argument("--checkpoint", required=True, help="the reference checkpoint (data.positives central)")
    parser.add_argument("--compare-checkpoint", required=True, help="the checkpoint compared (e.g. covering)")
    parser.add_argument("--labels", default="central,covering", help="names of the two checkpoints in the tables")
    parser.add_argument("--out", help="databases and cached outputs, one folder per label "
                                      "(default: <runs_dir>/<experiment>/sparse_training)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--sequences", type=int, default=8, help="sequences per city written with the validation set")
    args = parser.parse_args(argv)
    cfg = load_config(args.config, args.overrides)
    reference, compared = args.labels.split(",")
    out = args.out or os.path.join(os.path.dirname(stage_dir(cfg, "E_1a")), "sparse_training")
    started = time.time()
    results = {label: measure(cfg, checkpoint, os.path.join(out, label), args.sequences)
               for label, checkpoint in ((reference, args.checkpoint), (compared, args.compare_checkpoint))}
    chosen = "; ".join(f"{label}: {r['checkpoint']}, temperature {r['temperature']:g}, min_sigma_m "
                       f"{r['min_sigma_m']:g}, re-cut top {r['recut']}" for label, r in results.items())
    print(f"{results[reference]['test_panoramas']} test panoramas; {chosen}; {time.time() - started:.0f} s\n")
    print("\n".join(goal_table(results, reference, compared) + ["", ""] + comparison_table(results)
                    + ["", ""] + edge_table(results)))


if __name__ == "__main__":
    sys.exit(run(main))
