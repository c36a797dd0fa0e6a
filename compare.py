"""Compare several evaluations: one markdown table and one accuracy-vs-distance plot.

    python compare.py runs/a/results.json runs/b/results.json --labels SAFA SAMP --out DIR
    python compare.py --published vigor_same_area [runs/a/results.json ...] [--out DIR]

Reads the results.json files that evaluate.py writes; writes DIR/comparison.md and
DIR/accuracy_curve.png (VIGOR's figure, one line per result). --published prints, above them,
the published numbers of the setting with the source of each (utils/evaluation/published.py).
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from utils.errors import ConfigError
from utils.evaluation import plots
from utils.evaluation.published import PUBLISHED, published_setting, published_table

CURVES = ("localization", "fine_localization")


def _pct(value):
    return "-" if value is None else f"{100 * value:.2f}"


def _num(value):
    return "-" if value is None else f"{value:.2f}"


def comparison_table(rows) -> str:
    """rows: (label, results dict). Missing parts (no fine localization, no Sigma) show '-'."""
    head = ["result", "top-1", "top-5", "top-1%", "hit", "mean m", "median m", "<1 m", "<5 m",
            "<10 m", "<25 m", "<50 m", "fine mean m", "fine median m", "in 1σ", "in 2σ", "in 3σ",
            "ρ(unc, err)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, r in rows:
        ret = r.get("retrieval", {})
        loc = r.get("localization", {})
        fine = r.get("fine_localization", {})
        cal = r.get("calibration", {})
        within = loc.get("within", {})
        observed = cal.get("observed", {})
        rho = cal.get("spearman_uncertainty_error")
        cells = [label, _pct(ret.get("top1")), _pct(ret.get("top5")), _pct(ret.get("top1_percent")),
                 _pct(ret.get("hit_rate")), _num(loc.get("mean")), _num(loc.get("median"))]
        cells += [_pct(within.get(k)) for k in ("1", "5", "10", "25", "50")]
        cells += [_num(fine.get("mean")), _num(fine.get("median"))]
        cells += [_pct(observed.get(k)) for k in ("1", "2", "3")]
        cells.append("-" if rho is None else f"{rho:.3f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def read_results(paths, labels=None):
    if labels and len(labels) != len(paths):
        raise ConfigError(f"{len(labels)} labels for {len(paths)} result files")
    rows = []
    for i, path in enumerate(paths):
        with open(path) as handle:
            results = json.load(handle)
        label = labels[i] if labels else (results.get("name") or os.path.basename(os.path.dirname(path)))
        rows.append((label, results))
    return rows


def compare(paths, labels=None, out_dir=".", curve="localization", published=""):
    """published: the markdown of compare.py --published, written above the table."""
    rows = read_results(paths, labels)
    os.makedirs(out_dir, exist_ok=True)
    table = comparison_table(rows)
    curves = [(label, r["curves"][curve]["thresholds"], r["curves"][curve]["accuracy"])
              for label, r in rows if curve in r.get("curves", {})]
    figure = os.path.join(out_dir, "accuracy_curve.png")
    plots.accuracy_curve(curves, figure, title=curve.replace("_", " "))
    with open(os.path.join(out_dir, "comparison.md"), "w") as handle:
        handle.write("# Comparison\n\n" + (published + "\n## Results\n\n" if published else "") + table
                     + "\n![accuracy curve](accuracy_curve.png)\n")
    return table


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", nargs="*", help="results.json files written by evaluate.py")
    parser.add_argument("--published", metavar="SETTING",
                        help=f"print the published numbers of a setting, with their sources ({', '.join(PUBLISHED)})")
    parser.add_argument("--labels", nargs="+", help="one label per file (default: each result's name)")
    parser.add_argument("--curve", choices=CURVES, default="localization",
                        help="which accuracy curve to plot (default: top-1 tile localization)")
    parser.add_argument("--out", help="output folder (needed without --published)")
    args = parser.parse_args(argv)
    published = published_table(published_setting(args.published)) if args.published else ""
    if not args.published and not (args.results and args.out):
        parser.error("give result files and --out, or --published SETTING")
    if published:
        print(published)
    if args.results and not args.out:
        print("## Results\n\n" + comparison_table(read_results(args.results, args.labels)))
    elif args.results:
        print(compare(args.results, args.labels, args.out, args.curve, published))
        print(f"written to {args.out}/comparison.md and accuracy_curve.png")
    return 0


if __name__ == "__main__":
    from utils.cli import run
    sys.exit(run(main, tensorflow=False))
