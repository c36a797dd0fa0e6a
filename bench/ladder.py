"""Does the panorama move the point? SAMP's chain (E_1a -> E_2_1) on a ladder of settings from an
easy one to the demo's, each measured by where in its tile each test panorama is predicted.

    python bench/ladder.py                                  # every rung, configs/demo.yaml underneath
    python bench/ladder.py --rungs demo_city --demo-runs runs/demo   # the demo city and checkpoints of python demo.py

A rung is a city (the demo's, or the easy one: none of the four ambiguity sources and full
overlap, data.synthetic.ambiguity.*), input sizes and VGG width; along each rung E_2_1 is measured
after each of several step counts (E_2_1's learning rate is constant, so the checkpoint after n
steps of a longer run is the run of n steps). Rungs with their own sizes train their own short
E_1a (the demo's schedule); the demo-city rung at the demo's sizes can start E_2_1 from the
demo's E_1a (--demo-runs), which is the checkpoint its own E_1a would write, and its point at the
demo's E_2_1 step count is the demo's E_2_1 checkpoint (the same config), measured, not retrained.

Each point: on the test split, each panorama with its positive tile, the within-tile correlation
of predicted and true points (rows, columns), the spread ratio (predicted spread / true spread
about each tile's mean) and the fine median against the tile-centre median and the panorama-blind
median (each panorama at its tile's mean prediction); utils/evaluation/position.py. Re-running
continues where it stopped (finished points are read from ladder.json). Writes runs/<experiment>/
ladder.json and ladder.md. Not a test.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from utils.reproducible import pin_numerics  # noqa: E402

pin_numerics()

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402

import train_first_E_1  # noqa: E402
import train_second_E_2_1  # noqa: E402
from utils.config import load_config, resolve_path  # noqa: E402
from utils.data import synthetic_vigor  # noqa: E402
from utils.data.splits import build_loader, load_splits  # noqa: E402
from utils.errors import ConfigError  # noqa: E402
from utils.evaluation import position  # noqa: E402
from utils.evaluation.inference import restore_network  # noqa: E402
from utils.session import checkpoints as ckpt  # noqa: E402
from utils.training.stage import stage_dir  # noqa: E402
from utils.training.trainer import run_stage  # noqa: E402

EASY_CITY = ["data.synthetic.ambiguity.heading_error=false", "data.synthetic.ambiguity.camera_rise=false",
             "data.synthetic.ambiguity.foreground=false", "data.synthetic.ambiguity.repeated_lots=false",
             "data.synthetic.ambiguity.full_overlap=true"]
LARGE_INPUTS = ["data.sat_size=[128,128]", "data.grd_size=[128,256]"]
GOAL_CORRELATION = 0.5
GOAL_FINE_OVER_CENTRE = 0.5
GOAL_MINUTES = 60.0


@dataclass(frozen=True)
class Rung:
    name: str
    easing: str                 # what this rung has that the next one down does not
    overrides: tuple            # --set overrides over the base config
    steps: tuple                # E_2_1 step counts measured (increasing)
    demo_e1a: bool = False      # may start from the demo's E_1a (--demo-runs)


RUNGS = (
    Rung("easy_128_w050", "VGG width 0.5", tuple(EASY_CITY + LARGE_INPUTS + ["model.vgg_width=0.5"]), (1000,)),
    Rung("easy_128_w025", "128 x 128 / 128 x 256 inputs", tuple(EASY_CITY + LARGE_INPUTS), (1000,)),
    Rung("easy_64_w025", "the easy city", tuple(EASY_CITY), (1000, 2000, 3000)),
    Rung("demo_city", "(the demo's setting at 1,000 steps)", (), (1000, 3000), demo_e1a=True),
)


def rung_config(args, rung, e2_1_steps):
    """The rung's config with E_2_1 running to `e2_1_steps` (whole epochs of the base's steps_per_epoch)."""
    base = load_config(args.config, args.overrides)
    per_epoch = int(base.stages.E_2_1.steps_per_epoch)
    overrides = list(args.overrides) + list(rung.overrides) + [
        f"runs_dir={os.path.join(args.runs_dir, args.experiment)}", f"experiment={rung.name}",
        f"stages.E_2_1.epochs={-(-e2_1_steps // per_epoch)}", f"stages.E_2_1.validate_every={10 ** 6}"]
    if rung.name != "demo_city" or not args.demo_root:
        if "data.synthetic.ambiguity.full_overlap=true" in rung.overrides:
            overrides.append(f"data.root={args.easy_root}")
    else:
        overrides.append(f"data.root={args.demo_root}")
    if rung.demo_e1a and args.demo_runs:
        _, e1a = ckpt.last_epoch_checkpoint(os.path.join(args.demo_runs, "E_1a"))
        overrides.append(f"stages.E_2_1.init_from.path={e1a}")
    cfg = load_config(args.config, overrides)
    if rung.name == "demo_city" and args.demo_root:
        refuse_to_regenerate(cfg)
    return cfg, per_epoch


def refuse_to_regenerate(cfg):
    """A city given with --demo-root is read, never replaced: its manifest must match the config."""
    s = cfg.data.synthetic
    wanted = synthetic_vigor._parameters(s.seed, s.cities, s.tiles_per_side, s.pano_size, s.panos_per_tile,
                                         s.meters_per_pixel, 256, 2, synthetic_vigor.Ambiguity(**s.ambiguity))
    manifest = synthetic_vigor.read_manifest(resolve_path(cfg.data.root))
    if manifest is None or manifest.get("parameters") != wanted:
        raise ConfigError(f"--demo-root {cfg.data.root}: its {synthetic_vigor.MANIFEST} does not match the config's "
                          f"data.synthetic (the stages would generate a new city over it); check --config and --set")


def trained_epochs(cfg, stage_name):
    epoch, _ = ckpt.last_epoch_checkpoint(stage_dir(cfg, stage_name))
    return epoch or 0


def train(cfg, stage, log):
    """Run (or continue) a stage; the seconds and steps it took now go to `log`."""
    wanted = int(cfg.stages[stage.name].epochs)
    done = trained_epochs(cfg, stage.name)
    if done >= wanted:
        return
    start = time.time()
    run_stage(stage, cfg, resume=done > 0)
    log["seconds"] = log.get("seconds", 0.0) + time.time() - start
    log["steps"] = log.get("steps", 0) + (wanted - done) * int(cfg.stages[stage.name].steps_per_epoch)


def measure(cfg, path=None):
    """position.WithinTile of an E_2_1 checkpoint (default: the rung's last epoch) on the test split,
    positive tiles."""
    _, test = load_splits(cfg)
    if path is None:
        _, path = ckpt.last_epoch_checkpoint(stage_dir(cfg, "E_2_1"))
    network = restore_network(cfg, ckpt.checkpoint_prefix(path), "samp")
    try:
        _, offsets, _, _ = position.positive_pairs(network, build_loader(cfg), test, int(cfg.validation.scan_batch))
    finally:
        network.sess.close()
    return position.measure(offsets, test.deltas[:, 0, :], test.labels[:, 0]).as_dict()


def run_rung(args, rung, results):
    record = results.setdefault(rung.name, {"easing": rung.easing, "overrides": list(rung.overrides),
                                            "training": {}, "points": {}})
    for steps in args.steps or rung.steps:
        if str(steps) in record["points"]:
            continue
        cfg, per_epoch = rung_config(args, rung, steps)
        demo_epoch, demo_e2_1 = (ckpt.last_epoch_checkpoint(os.path.join(args.demo_runs, "E_2_1"))
                                 if rung.demo_e1a and args.demo_runs else (None, None))
        if demo_epoch is not None and demo_epoch * per_epoch == steps:
            # the demo's own E_2_1: this rung's config at this step count, already trained
            print(f"== {rung.name}: the demo's E_2_1 ({demo_e2_1})", flush=True)
            start = time.time()
            point = measure(cfg, demo_e2_1)
            point.update(measure_seconds=time.time() - start, e2_1_steps=steps, checkpoint=demo_e2_1)
            record["points"][str(steps)] = point
            save(args, results)
            print(rung_line(rung.name, steps, point), flush=True)
            continue
        if not (rung.demo_e1a and args.demo_runs):
            print(f"== {rung.name}: E_1a", flush=True)
            train(cfg, train_first_E_1.E_1a, record["training"].setdefault("E_1a", {}))
        print(f"== {rung.name}: E_2_1 to {steps} steps", flush=True)
        train(cfg, train_second_E_2_1.E_2_1, record["training"].setdefault("E_2_1", {}))
        start = time.time()
        point = measure(cfg)
        point["measure_seconds"] = time.time() - start
        point["e2_1_steps"] = trained_epochs(cfg, "E_2_1") * per_epoch
        record["points"][str(steps)] = point
        save(args, results)
        print(rung_line(rung.name, steps, point), flush=True)


def rung_line(name, steps, p):
    return (f"{name} @ {steps}: correlation {p['correlation_rows']:.2f} / {p['correlation_cols']:.2f}, "
            f"spread ratio {p['spread_ratio']:.3g}, fine {p['fine_median']:.1f} px, "
            f"centre {p['centre_median']:.1f} px, blind {p['blind_median']:.1f} px")


def works(p):
    return (p["correlation_rows"] >= GOAL_CORRELATION and p["correlation_cols"] >= GOAL_CORRELATION
            and p["fine_median"] <= GOAL_FINE_OVER_CENTRE * p["centre_median"])


def training_minutes(record, steps):
    """Minutes of training up to E_2_1 step `steps` (E_1a whole, E_2_1 pro rata to the steps)."""
    total = record["training"].get("E_1a", {}).get("seconds", 0.0)
    e2_1 = record["training"].get("E_2_1", {})
    if e2_1.get("steps"):
        total += e2_1["seconds"] * steps / e2_1["steps"]
    return total / 60


def ladder_table(results):
    lines = ["| rung | easing it adds over the next | E_1a steps | E_2_1 steps | corr. rows | corr. cols | "
             "spread ratio | fine median px | centre median px | blind median px | fine / centre | "
             "training min (shared) | works |",
             "|" + "---|" * 13]
    for name, record in results.items():
        e1a = record["training"].get("E_1a", {}).get("steps", "demo's")
        for steps, p in record["points"].items():
            lines.append(
                f"| {name} | {record['easing']} | {e1a} | {steps} | {p['correlation_rows']:.3f} | "
                f"{p['correlation_cols']:.3f} | {p['spread_ratio']:.3g} | {p['fine_median']:.1f} | "
                f"{p['centre_median']:.1f} | {p['blind_median']:.1f} | {p['fine_median'] / p['centre_median']:.2f} | "
                f"{training_minutes(record, int(steps)):.1f} | {'yes' if works(p) else 'no'} |")
    return "\n".join(lines)


def goal_table(results, study_minutes):
    points = [(training_minutes(r, int(s)), name, s, p) for name, r in results.items() for s, p in r["points"].items()]
    working = sorted(x for x in points if works(x[3]))
    if working:
        _, name, steps, p = working[0]
        label = f"cheapest working rung ({name} @ {steps})"
    else:   # none works: the best one by its weaker correlation
        _, name, steps, p = max(points, key=lambda x: min(x[3]["correlation_rows"], x[3]["correlation_cols"]))
        label = f"no rung works; best ({name} @ {steps})"
    ratio = p["fine_median"] / p["centre_median"]
    rows = [(f"{label}: correlation, rows", f"{p['correlation_rows']:.3f}", f">= {GOAL_CORRELATION}",
             p["correlation_rows"] >= GOAL_CORRELATION),
            (f"{label}: correlation, columns", f"{p['correlation_cols']:.3f}", f">= {GOAL_CORRELATION}",
             p["correlation_cols"] >= GOAL_CORRELATION),
            (f"{label}: fine median / centre median", f"{ratio:.2f}", f"<= {GOAL_FINE_OVER_CENTRE}",
             ratio <= GOAL_FINE_OVER_CENTRE),
            ("study's training and measuring time, min (shared machine)", f"{study_minutes:.1f}",
             f"<= {GOAL_MINUTES:.0f} (quiet)", study_minutes <= GOAL_MINUTES)]
    lines = ["| goal | measured | goal | met |", "|---|---|---|---|"]
    lines += [f"| {name} | {value} | {goal} | {'yes' if met else 'no'} |" for name, value, goal, met in rows]
    return "\n".join(lines)


def study_minutes(results):
    seconds = 0.0
    for record in results.values():
        seconds += sum(stage.get("seconds", 0.0) for stage in record["training"].values())
        seconds += sum(p.get("measure_seconds", 0.0) for p in record["points"].values())
    return seconds / 60


def out_dir(args):
    return os.path.join(resolve_path(args.runs_dir), args.experiment)


def load(args):
    path = os.path.join(out_dir(args), "ladder.json")
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    return {}


def save(args, results):
    os.makedirs(out_dir(args), exist_ok=True)
    with open(os.path.join(out_dir(args), "ladder.json.tmp"), "w") as f:
        json.dump(results, f, indent=1)
    os.replace(os.path.join(out_dir(args), "ladder.json.tmp"), os.path.join(out_dir(args), "ladder.json"))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/demo.yaml")
    parser.add_argument("--experiment", default="ladder", help="runs/<experiment>/<rung>/<stage> (default: ladder)")
    parser.add_argument("--runs-dir", default="runs")
    parser.add_argument("--rungs", nargs="+", choices=[r.name for r in RUNGS],
                        default=[r.name for r in reversed(RUNGS)], help="run in this order (default: the cheapest first)")
    parser.add_argument("--easy-root", default="data/synthetic_easy", help="where the easy city is generated")
    parser.add_argument("--demo-root", help="the demo city (default: the config's data.root)")
    parser.add_argument("--demo-runs", help="a demo run's folder (runs/demo): E_2_1 of the demo-city rung starts "
                                            "from its E_1a instead of training one")
    parser.add_argument("--steps", type=int, nargs="+", help="E_2_1 step counts for every rung (default: each rung's)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    results = load(args)
    by_name = {rung.name: rung for rung in RUNGS}
    for name in args.rungs:   # in the order given; by default the cheapest first
        run_rung(args, by_name[name], results)
    ordered = {r.name: results[r.name] for r in RUNGS if r.name in results}
    minutes = study_minutes(ordered)
    text = (ladder_table(ordered) + "\n\n" + goal_table(ordered, minutes) + "\n")
    with open(os.path.join(out_dir(args), "ladder.md"), "w") as f:
        f.write(text)
    print("\n" + text)
    return 0


if __name__ == "__main__":
    from utils.cli import run
    sys.exit(run(main))
