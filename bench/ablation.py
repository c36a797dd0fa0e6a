"""A longer study than the demo: the chain SAFA + mining (E_1a) -> VIGOR (E_1b) and
E_1a -> SAMP E_2_1 -> E_2_2 -> E_3 on the synthetic city, over several training seeds,
reported as mean +- std next to the direction of the papers' claims.

    python bench/ablation.py                       # 3 seeds, configs/demo.yaml with longer E_2_x
    python bench/ablation.py --seeds 0 1 2 --set stages.E_2_1.epochs=32 --out runs/ablation

The city is the same for every seed (data.synthetic.seed); the seed varies initialisation, batch
order and mining. Each seed trains into runs/<experiment>_seed<N>/ (re-running continues where it
stopped). Writes ablation.json, ablation.md and ablation.png to --out.

--paired BEFORE AFTER (default E_2_2 E_3; --paired none to skip) adds a paired comparison: per seed
AFTER - BEFORE for each measure, the mean difference +- std over seeds and how many seeds moved each
way, and McNemar's exact test on the test panoramas' top-1 hits pooled over seeds
(utils/evaluation/paired.py; ablation.json's "paired", paired.md). --reuse-evaluations reads each
stage's test results from --out where they are newer than the stage's last checkpoint (seeds run
as separate processes, then summarised together). 24 min 58 s for the 3
seeds on a quiet 2-core machine (measured; the README's table); not a test.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from utils.reproducible import pin_numerics  # noqa: E402

pin_numerics()

import argparse  # noqa: E402
import json  # noqa: E402

import numpy as np  # noqa: E402

import demo  # noqa: E402
from utils.config import load_config  # noqa: E402
from utils.errors import ConfigError  # noqa: E402
from utils.evaluation import paired  # noqa: E402
from utils.evaluation.claims import UNCERTAIN_STAGES  # noqa: E402
from utils.session import checkpoints as ckpt  # noqa: E402
from utils.training.stage import stage_dir  # noqa: E402
from utils.training.trainer import run_stage  # noqa: E402

# longer than the demo where the demo is shortest (the uncertainty stages)
DEFAULT_OVERRIDES = ["stages.E_2_1.epochs=60", "stages.E_2_2.epochs=30", "stages.E_3.epochs=8"]
MEASURES = (  # (name, how to read it from one stage's results, unit)
    ("top-1 %", lambda r: 100 * r["retrieval"]["top1"]),
    ("hit rate %", lambda r: 100 * r["retrieval"]["hit_rate"]),
    ("top-1 tile median m", lambda r: r["localization"]["median"]),
    ("fine median m", lambda r: r.get("fine_localization", {}).get("median")),
    ("in 1 sigma %", lambda r: 100 * r["calibration"]["observed"]["1"] if "calibration" in r else None),
    ("Sigma / error cov.", lambda r: r.get("calibration", {}).get("fitted_scale")),
    ("rho(unc, error)", lambda r: r.get("calibration", {}).get("spearman_uncertainty_error")),
    ("rho(unc, difficulty)", lambda r: r.get("difficulty", {}).get("spearman_uncertainty", {}).get("difficulty")),
)
UNCERTAINTY_MEASURES = {"in 1 sigma %", "Sigma / error cov.", "rho(unc, error)", "rho(unc, difficulty)"}
CLAIMS = {"E_1b": "VIGOR: top-1 above E_1a", "E_3": "SAMP: top-1 above E_2_2",
          "E_2_2": "SAMP: uncertainty follows the error"}


def run_seed(args, seed):
    cfg = load_config(args.config, DEFAULT_OVERRIDES + list(args.overrides) +
                      [f"seed={seed}", f"experiment={args.experiment}_seed{seed}"])
    for stage in demo.STAGES:
        print(f"== seed {seed}: {stage.name}", flush=True)
        run_stage(stage, cfg, resume=True)
    out_root = os.path.join(args.out, f"seed{seed}")
    results = {stage.name: evaluated(cfg, stage, out_root, args.reuse_evaluations) for stage in demo.STAGES}
    hits = {stage.name: paired.top1_hits(os.path.join(out_root, stage.name)) for stage in demo.STAGES}
    return results, hits


def evaluated(cfg, stage, out_root, reuse):
    """The stage's test results: demo.evaluate_stage's, or with `reuse` the results.json (and
    difficulty.json) it wrote under out_root when newer than the stage's last checkpoint."""
    out_dir = os.path.join(out_root, stage.name)
    path = os.path.join(out_dir, "results.json")
    _, checkpoint = ckpt.last_epoch_checkpoint(stage_dir(cfg, stage.name))
    written = os.path.getmtime(ckpt.checkpoint_prefix(checkpoint) + ".index")   # resuming touches the stage folder
    if not (reuse and os.path.isfile(path) and os.path.getmtime(path) > written):
        return demo.evaluate_stage(cfg, stage, out_root)
    with open(path) as f:
        results = json.load(f)
    difficulty = os.path.join(out_dir, "difficulty.json")
    if os.path.isfile(difficulty):
        with open(difficulty) as f:
            results["difficulty"] = json.load(f)
    return results


def paired_comparison(per_seed: list, hits: list, before: str, after: str) -> dict:
    """after - before per seed for every measure, and McNemar's test on top-1 hits pooled over seeds."""
    differences = {}
    for name, read in MEASURES:
        if name in UNCERTAINTY_MEASURES and not {before, after} <= set(UNCERTAIN_STAGES):
            continue
        found = paired.seed_differences([read(r[before]) for r in per_seed], [read(r[after]) for r in per_seed])
        if found["n"]:
            differences[name] = found
    pooled = paired.mcnemar_exact(np.concatenate([h[before] for h in hits]),
                                  np.concatenate([h[after] for h in hits]))
    per_seed_tests = [paired.mcnemar_exact(h[before], h[after]) for h in hits]
    return {"before": before, "after": after, "differences": differences, "mcnemar_pooled": pooled,
            "mcnemar_per_seed": per_seed_tests}


def paired_markdown(comparison: dict, seeds: list) -> str:
    before, after = comparison["before"], comparison["after"]
    lines = [f"| {after} − {before} | " + " | ".join(f"seed {s}" for s in seeds) + " | mean ± std | seeds up / down |",
             "|---" * (len(seeds) + 3) + "|"]
    for name, d in comparison["differences"].items():
        cells = ["-" if v is None else f"{v:+.2f}" for v in d["per_seed"]]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {d['mean']:+.2f} ± {d['std']:.2f} | "
                     f"{d['up']} / {d['down']} |")
    header = (f"| top-1 hits, McNemar exact | panoramas | both | neither | only {before} | only {after} "
              f"| p two-sided | p ({after} better) |")
    lines += ["", header, "|---|---|---|---|---|---|---|---|"]
    rows = [(f"seed {s}", t) for s, t in zip(seeds, comparison["mcnemar_per_seed"])]
    for label, t in rows + [("pooled over seeds", comparison["mcnemar_pooled"])]:
        lines.append(f"| {label} | {t['pairs']} | {t['both']} | {t['neither']} | {t['only_before']} | "
                     f"{t['only_after']} | {t['p_two_sided']:.3g} | {t['p_after_better']:.3g} |")
    return "\n".join(lines) + "\n"


def summarise(per_seed: list) -> dict:
    """{stage: {measure: (mean, std, n)}} over the seeds that have the measure."""
    summary = {}
    for stage in per_seed[0]:
        summary[stage] = {}
        for name, read in MEASURES:
            if name in UNCERTAINTY_MEASURES and stage not in UNCERTAIN_STAGES:
                continue   # E_2_1 has Cholesky heads too, but nothing trains them there
            values = [read(results[stage]) for results in per_seed]
            values = [v for v in values if v is not None]
            if values:
                summary[stage][name] = (float(np.mean(values)), float(np.std(values)), len(values))
    return summary


# the stage a claim compares with, and the measure it is about (higher is the claimed direction)
CLAIM_BASELINE = {"E_1b": ("E_1a", "top-1 %"), "E_3": ("E_2_2", "top-1 %"), "E_2_2": (None, "rho(unc, error)")}


def seen(summary: dict, stage: str) -> str:
    """Whether the mean moved the way the paper claims, and by how much against the seeds' spread."""
    if stage not in CLAIM_BASELINE:
        return ""
    base, name = CLAIM_BASELINE[stage]
    mean, std, _ = summary[stage][name]
    if base is None:
        return f"{name} {mean:.2f} ± {std:.2f}: " + ("positive" if mean - std > 0 else "not clearly positive")
    base_mean, base_std, _ = summary[base][name]
    diff = mean - base_mean
    direction = "higher" if diff > 0 else "lower" if diff < 0 else "equal"
    spread = max(std, base_std)
    return f"{direction} by {abs(diff):.2f} (seeds' std {spread:.2f})"


def markdown(summary: dict) -> str:
    names = [name for name, _ in MEASURES]
    lines = ["| stage | " + " | ".join(names) + " | paper's claim | seen here |", "|---" * (len(names) + 3) + "|"]
    for stage, measures in summary.items():
        cells = [f"{measures[n][0]:.2f} ± {measures[n][1]:.2f}" if n in measures else "-" for n in names]
        lines.append(f"| {stage} | " + " | ".join(cells) + f" | {CLAIMS.get(stage, '')} | {seen(summary, stage)} |")
    return "\n".join(lines) + "\n"


def per_seed_values(per_seed: list) -> dict:
    """{stage: {measure: [value of each seed]}}, for the JSON."""
    return {stage: {name: [read(results[stage]) for results in per_seed] for name, read in MEASURES}
            for stage in per_seed[0]}


def figure(summary: dict, path: str):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    panels = ["top-1 %", "fine median m", "rho(unc, error)", "rho(unc, difficulty)"]
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.6))
    for axis, name in zip(axes, panels):
        stages = [s for s in summary if name in summary[s]]
        means = [summary[s][name][0] for s in stages]
        stds = [summary[s][name][1] for s in stages]
        axis.bar(stages, means, yerr=stds, capsize=4, color="tab:blue")
        axis.set_title(name)
        axis.grid(axis="y", linestyle="dotted")
    fig.suptitle("synthetic city, mean ± std over seeds")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="configs/demo.yaml")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--experiment", default="ablation")
    parser.add_argument("--out", default="runs/ablation")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--reuse-evaluations", action="store_true",
                        help="read each stage's results under --out when newer than its last checkpoint")
    parser.add_argument("--paired", nargs="+", default=["E_2_2", "E_3"], metavar="STAGE",
                        help="BEFORE AFTER: the paired comparison (default E_2_2 E_3); 'none' to skip")
    args = parser.parse_args(argv)
    stage_names = [stage.name for stage in demo.STAGES]
    if args.paired != ["none"] and (len(args.paired) != 2 or not set(args.paired) <= set(stage_names)):
        raise ConfigError(f"--paired takes two of {', '.join(stage_names)} (before, after) or 'none', "
                          f"got {' '.join(args.paired)}")
    os.makedirs(args.out, exist_ok=True)
    runs = [run_seed(args, seed) for seed in args.seeds]
    per_seed, hits = [r for r, _ in runs], [h for _, h in runs]
    summary = summarise(per_seed)
    report = {"seeds": args.seeds, "overrides": DEFAULT_OVERRIDES + args.overrides, "summary": summary,
              "per_seed": per_seed_values(per_seed)}
    text = markdown(summary)
    if args.paired != ["none"]:
        report["paired"] = paired_comparison(per_seed, hits, *args.paired)
        paired_text = paired_markdown(report["paired"], args.seeds)
        with open(os.path.join(args.out, "paired.md"), "w") as f:
            f.write(paired_text)
        text += "\n" + paired_text
    with open(os.path.join(args.out, "ablation.json"), "w") as f:
        json.dump(report, f, indent=1)
    with open(os.path.join(args.out, "ablation.md"), "w") as f:
        f.write(text)
    figure(summary, os.path.join(args.out, "ablation.png"))
    print(text)
    return 0


if __name__ == "__main__":
    from utils.cli import run
    sys.exit(run(main))
