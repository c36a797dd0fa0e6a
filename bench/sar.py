"""SAR against optical, and adversarial modality alignment (DANN), at the demo's size over seeds.

    nice -n 10 python bench/sar.py                       # both tasks, seeds 0 1 2, DANN weight 0 and 1
    nice -n 10 python bench/sar.py --task street --weight 1 0.1   # and a second DANN weight
    nice -n 10 python bench/sar.py --task sar & nice -n 10 python bench/sar.py --task street   # the same, 2 processes
    python bench/sar.py --task sar --seeds 0 --set stages.SAFA.epochs=6

Tasks (each trained with the project's trainer, SAFA without mining, `train_first_E_1.py --part safa`):
  sar     SAR tiles -> optical tiles on the synthetic SpaceNet 6 (configs/demo_spacenet6.yaml)
  street  street panoramas -> satellite tiles on the demo city (configs/demo.yaml)
each with adversarial.weight 0 (off) and each --weight (DANN on), for every seed (`seed`: the network's
initialisation and the batches; the data set is the same). Evaluated on the test split with the
project's metrics (R@1, R@5, R@10, R@1 %: utils/evaluation/summaries.one_to_one_recalls on the
descriptors the trainer's last validation wrote). Every finished run is recorded in
<out>/sar_runs.json at once; running the command again skips them and resumes a run that was
stopped (its checkpoints in runs/<experiment>/SAFA). Prints the tables and `measured | goal | met`;
writes <out>/sar.json and sar.md. Not a test.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from utils.reproducible import pin_numerics  # noqa: E402

pin_numerics()

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

import train_first_E_1  # noqa: E402
from utils.config import load_config, resolve_path  # noqa: E402
from utils.data.splits import load_splits  # noqa: E402
from utils.evaluation.retrieval import search  # noqa: E402
from utils.evaluation.summaries import one_to_one_recalls  # noqa: E402
from utils.training.stage import stage_dir  # noqa: E402
from utils.training.trainer import run_stage  # noqa: E402

TASKS = {"sar": ("SAR -> optical", "configs/demo_spacenet6.yaml"),
         "street": ("street -> satellite", "configs/demo.yaml")}
STAGE = train_first_E_1.SAFA
RECALLS = ("r@1", "r@5", "r@10", "r@1%")
CHANCE_FACTOR = 5.0          # the goal: SAR -> optical R@1 at least 5x chance


def run_name(task, weight, seed):
    return f"bench_sar_{task}_dann{weight:g}_seed{seed}"


def evaluate(cfg):
    """Recalls of the stage's last validation (its descriptor files) on the test split."""
    _, test = load_splits(cfg, check_labels=False)
    folder = stage_dir(cfg, STAGE.name)
    sat = np.load(os.path.join(folder, "sat_global_descriptor.npy"))
    grd = np.load(os.path.join(folder, "grd_global_descriptor.npy"))
    if len(sat) != test.num_sat or len(grd) != len(test):
        raise RuntimeError(f"{folder}: descriptors of {len(grd)} queries / {len(sat)} references, the test split "
                           f"has {len(test)} / {test.num_sat}: run the stage to its end (validate_every)")
    result = search(grd.astype(np.float32), sat.astype(np.float32), test.labels[:, :1], k=1)
    recalls = one_to_one_recalls(result.ranks[:, 0], test.num_sat)
    return {**{k: recalls[k] for k in RECALLS}, "gallery": int(test.num_sat), "queries": int(len(test))}


def train_and_evaluate(task, weight, seed, overrides):
    config = TASKS[task][1]
    cfg = load_config(config, [f"experiment={run_name(task, weight, seed)}", f"seed={seed}",
                               f"adversarial.weight={weight}"] + overrides)
    start = time.time()
    records = run_stage(STAGE, cfg, resume=True)
    last = [r for r in records if "loss" in r]
    row = {"task": task, "weight": weight, "seed": seed, "minutes": (time.time() - start) / 60,
           "config": config, **evaluate(cfg)}
    if last:
        row.update({k: float(last[-1][k]) for k in ("loss", "domain_loss") if k in last[-1]})
    return row


def _mean_std(values):
    values = np.asarray(values, float)
    return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0


def summarise(rows, tasks, weights, seeds):
    """{task: {weight: {metric: (mean, std), per_seed: [...]}}} over the finished runs."""
    out = {}
    for task in tasks:
        for weight in weights:
            done = [rows[run_name(task, weight, s)] for s in seeds if run_name(task, weight, s) in rows]
            if not done:
                continue
            cell = {k: _mean_std([100 * r[k] for r in done]) for k in RECALLS}
            cell.update(per_seed_r1=[100 * r["r@1"] for r in done], seeds=[r["seed"] for r in done],
                        gallery=done[0]["gallery"], minutes=sum(r["minutes"] for r in done))
            out.setdefault(task, {})[weight] = cell
    return out


def _paired(off, on):
    """R@1 with DANN minus without, seed by seed (the seeds both have)."""
    without = dict(zip(off["seeds"], off["per_seed_r1"]))
    return [r1 - without[seed] for seed, r1 in zip(on["seeds"], on["per_seed_r1"]) if seed in without]


def tables(summary, dann_weights):
    head = ["task", "adversarial.weight", "seeds", "R@1", "R@5", "R@10", "R@1%", "chance R@1", "R@1 per seed"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for task, cells in summary.items():
        for w, c in cells.items():
            lines.append("| " + " | ".join([TASKS[task][0], f"{w:g}", str(len(c["seeds"])),
                                            *[f"{c[k][0]:.2f} ± {c[k][1]:.2f}" for k in RECALLS],
                                            f"{100 / c['gallery']:.2f} (1/{c['gallery']})",
                                            ", ".join(f"{v:.1f}" for v in c["per_seed_r1"])]) + " |")
    lines += ["", "| goal | measured | goal | met |", "|---|---|---|---|"]
    sar = summary.get("sar", {})
    if 0.0 in sar:
        r1, chance = sar[0.0]["r@1"][0], 100 / sar[0.0]["gallery"]
        lines.append(f"| SAR -> optical R@1 >= {CHANCE_FACTOR:g} x chance (DANN off) | {r1:.2f} "
                     f"({r1 / chance:.1f} x chance) | >= {CHANCE_FACTOR * chance:.2f} | "
                     f"{'yes' if r1 >= CHANCE_FACTOR * chance else 'no'} |")
    for task, weight in ((t, w) for t in summary for w in dann_weights):
        cells = summary[task]
        if 0.0 in cells and weight in cells:
            (off, off_std), (on, on_std) = cells[0.0]["r@1"], cells[weight]["r@1"]
            spread = max(off_std, on_std)
            paired = _paired(cells[0.0], cells[weight])
            lines.append(f"| DANN (weight {weight:g}) effect on {TASKS[task][0]} R@1, with its seed spread | "
                         f"{on - off:+.2f} ({on:.2f} ± {on_std:.2f} vs {off:.2f} ± {off_std:.2f}; per seed "
                         f"{', '.join(f'{d:+.1f}' for d in paired)}) | measured "
                         f"over 3 seeds, either sign | {'yes' if len(cells[weight]['seeds']) >= 3 else 'no'} "
                         f"({'within' if abs(on - off) <= spread else 'beyond'} the seeds' std {spread:.2f}) |")
    return "\n".join(lines) + "\n"


def _recorded(runs_file):
    if not os.path.exists(runs_file):
        return {}
    with open(runs_file) as f:
        return json.load(f)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", choices=("sar", "street", "all"), default="all")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--weight", type=float, nargs="+", default=[1.0],
                        help="adversarial.weight of the DANN runs (several: one set of runs each)")
    parser.add_argument("--out", default="docs/sar", help="folder of sar_runs.json, sar.json, sar.md")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="applied to every run, e.g. --set stages.SAFA.epochs=6")
    args = parser.parse_args(argv)
    tasks = ("sar", "street") if args.task == "all" else (args.task,)
    weights = (0.0, *args.weight)
    out = resolve_path(args.out)
    os.makedirs(out, exist_ok=True)
    runs_file = os.path.join(out, "sar_runs.json")
    rows = _recorded(runs_file)
    start = time.time()
    for task in tasks:
        for seed in args.seeds:
            for weight in weights:
                name = run_name(task, weight, seed)
                if name in rows:
                    continue
                print(f"== {name}", flush=True)
                row = train_and_evaluate(task, weight, seed, args.overrides)
                rows = _recorded(runs_file)        # another --task may have added runs meanwhile
                rows[name] = row
                with open(runs_file + f".{os.getpid()}.tmp", "w") as f:
                    json.dump(rows, f, indent=1)
                os.replace(runs_file + f".{os.getpid()}.tmp", runs_file)
    summary = summarise(rows, tasks, weights, args.seeds)
    table = tables(summary, args.weight)
    print(f"\nSAR against optical, and DANN, {(time.time() - start) / 60:.1f} min this call\n\n{table}")
    with open(os.path.join(out, "sar.json"), "w") as f:
        json.dump({t: {f"{w:g}": c for w, c in cells.items()} for t, cells in summary.items()}, f, indent=1)
    with open(os.path.join(out, "sar.md"), "w") as f:
        f.write(table)
    return 0


if __name__ == "__main__":
    from utils.cli import run
    sys.exit(run(main))
