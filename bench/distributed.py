"""Data-parallel training: measured steps/s with 1 and 2 replicas, communication at the paper's size.

    python bench/distributed.py                      # both parts, demo size, stage E_2_2
    python bench/distributed.py speed --replicas 2   # one measurement (a subprocess of the above)
    python bench/distributed.py volume               # bytes per step at the paper's size, and the estimate
    python bench/distributed.py drift --out DIR [--set KEY=VALUE ...]   # mirrored vs float rounding

speed: the trainer's graph (utils/training/graph.py) of a stage at the demo's sizes on random
batches of the stage's global batch, under `distribute.strategy=mirrored` with N logical CPU
devices (N=1: no strategy), timed over --steps steps after two warm-up steps.
volume: for every stage, at the paper's sizes (configs/default.yaml), the bytes all-reduced per
step (every gradient, float32) and the bytes all-gathered (the network outputs the stage's
losses read, for the whole global batch), then an ESTIMATE of the speed-up on 2, 4 and 8 GPUs
from a stated single-GPU step time and link bandwidth (ring all-reduce and all-gather, no
overlap of communication with computation).
drift: the demo stages (configs/demo.yaml with the --set overrides, e.g. fewer epochs) trained
end to end, chained as the demo chains them, four times, each in its own process with the
demo's pinned numerics: on one device; on one device with every trainable weight of E_1a's
initial weights moved by 1 ulp (np.nextafter); on one device with 1 intra-op thread instead of
2 (which splits contractions and reductions differently); mirrored on 2 logical CPU devices.
For each stage's last checkpoint it prints the relative difference ||w - w_single|| / ||w_single||
of every network variable of the checkpoint (not Adam's slots), max and median over the
variables, and the relative difference of the last epoch's loss: a variant's drift next to
what a 1-ulp change of the computation causes on one device anyway.
"""
import argparse
import json
import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

STAGE_MODULES = {"E_1a": "train_first_E_1", "E_1b": "train_first_E_1", "E_2_1": "train_second_E_2_1",
                 "E_2_2": "train_second_E_2_2", "E_3": "train_third_E_3"}


def stage_of(name):
    import importlib
    return getattr(importlib.import_module(STAGE_MODULES[name]), name)


def feed_for(parts, batch, rng):
    import numpy as np
    feed = {}
    for name in ("sat", "grd", "sat_semi", "delta", "delta_semi", "ratio"):
        placeholder = getattr(parts.inputs, name, None)
        if placeholder is not None:
            shape = [batch] + placeholder.shape.as_list()[1:]
            feed[placeholder] = rng.uniform(0.1 if name == "ratio" else -50, 1 if name == "ratio" else 50,
                                            shape).astype(np.float32)
    for tensor in parts.auxiliary.values():
        if tensor.op.type == "Placeholder":
            feed[tensor] = np.ones([batch], np.float32)
    return feed


def speed(args):
    """Steps/s of one stage with args.replicas replicas (run in its own process)."""
    from utils.cli import graph_mode
    from utils.config import load_config
    from utils.session.distribute import Distribution, ShardedSession
    graph_mode()
    overrides = [f"distribute.strategy={'mirrored' if args.replicas > 1 else 'none'}",
                 f"distribute.replicas={args.replicas}"]
    cfg = load_config(os.path.join(REPO, "configs", "demo.yaml"), overrides)
    dist = Distribution(cfg)
    import numpy as np
    from utils.training.graph import build_training_graph
    from utils.training.stage import batch_sizes
    stage = stage_of(args.stage)
    batch = batch_sizes(cfg.stages[args.stage].batch_size, stage.with_semi)
    parts = build_training_graph(stage, cfg, batch, 1e-5, dist)
    with dist.session(parts.graph) as raw:
        sess = ShardedSession(raw, dist, batch, parts.replica_placeholders) if dist.enabled else raw
        sess.run(parts.init_op)
        feeds = [feed_for(parts, batch, np.random.default_rng(i)) for i in range(args.steps + 2)]
        for feed in feeds[:2]:
            sess.run(parts.train_op, feed)
        start = time.perf_counter()
        for feed in feeds[2:]:
            sess.run(parts.train_op, feed)
        seconds = time.perf_counter() - start
    print(json.dumps({"stage": args.stage, "replicas": args.replicas, "global_batch": batch,
                      "steps_per_s": args.steps / seconds}))


def volume(stage_name):
    """(bytes all-reduced, bytes all-gathered, parameters) per step of a stage at the paper's size."""
    import numpy as np
    import tensorflow.compat.v1 as tf
    from utils.cli import graph_mode
    from utils.config import load_config
    from utils.training.graph import build_training_graph
    from utils.training.stage import batch_sizes
    graph_mode()
    cfg = load_config(None, ["model.vgg16_npy=random"])
    stage = stage_of(stage_name)
    batch = batch_sizes(cfg.stages[stage_name].batch_size, stage.with_semi)
    parts = build_training_graph(stage, cfg, batch, 1e-5)
    with parts.graph.as_default():
        parameters = sum(int(np.prod(v.shape.as_list())) for g, v in parts.grads_and_vars if g is not None)
        read = [t for t in parts.net.values() if t is not None and t.dtype == tf.float32
                and tf.gradients(parts.losses["loss"], t)[0] is not None]
        read += [t for t in (parts.net["sat_global"], parts.net["grd_global"]) if t not in read]  # mining
        gathered = sum(batch * int(np.prod(t.shape.as_list()[1:])) for t in read)
    return 4 * parameters, 4 * gathered, parameters, batch


def estimate(reduced, gathered, gpus, step_s, link_gb_s):
    """Speed-up on `gpus` GPUs for a fixed global batch: compute / gpus + ring all-reduce + all-gather."""
    if gpus == 1:
        return 1.0
    traffic = 2 * (gpus - 1) / gpus * reduced + (gpus - 1) / gpus * gathered
    return step_s / (step_s / gpus + traffic / (link_gb_s * 1e9))


DRIFT_STAGES = ("E_1a", "E_1b", "E_2_1", "E_2_2", "E_3")
DRIFT_VARIANTS = {  # name: (distribute overrides, environment, 1-ulp perturbation)
    "single": ([], {}, False),
    "ulp": ([], {}, True),
    "threads1": ([], {"TF_NUM_INTRAOP_THREADS": "1"}, False),
    "mirrored": (["distribute.strategy=mirrored", "distribute.replicas=2"], {}, False),
}


def nudge_by_one_ulp(trainer, auxiliary):
    """A prepare hook: every trainable weight moves to the next float32 towards +inf."""
    import numpy as np
    with trainer.parts.graph.as_default():
        variables = [v for v in trainer.parts.graph.get_collection("trainable_variables")]
    for variable in variables:
        value = trainer.tf_session.run(variable)
        variable.load(np.nextafter(value, np.float32(np.inf)), trainer.tf_session)
    trainer.log(f"drift bench: {len(variables)} trainable variables moved by 1 ulp")


def drift_run(args):
    """One variant's chained demo stages (its own process: logical devices, thread counts)."""
    from utils.reproducible import pin_numerics
    overrides, environment, perturb = DRIFT_VARIANTS[args.variant]
    pin_numerics()
    os.environ.update(environment)
    import dataclasses
    from utils.config import load_config
    from utils.cli import graph_mode
    from utils.session.distribute import Distribution
    graph_mode()
    cfg = load_config(os.path.join(REPO, "configs", "demo.yaml"),
                      list(args.overrides) + overrides + [f"runs_dir={args.out}/{args.variant}"])
    Distribution(cfg)  # logical devices before TensorFlow starts
    from utils.training.trainer import run_stage
    for name in DRIFT_STAGES:
        stage = stage_of(name)
        if perturb and name == "E_1a":
            stage = dataclasses.replace(stage, prepare=nudge_by_one_ulp)
        started = time.perf_counter()
        metrics = run_stage(stage, cfg, resume=True, show_progress=False)
        print(f"{args.variant} {name}: loss {metrics[-1]['loss']:.6g} in {time.perf_counter() - started:.0f} s",
              flush=True)


def trained_weights(run_dir):
    """{variable: value} of the stage's last checkpoint, without Adam's slots and the step counter."""
    import tensorflow.compat.v1 as tf
    from utils.session import checkpoints as ckpt
    _, path = ckpt.last_epoch_checkpoint(run_dir)
    prefix = ckpt.checkpoint_prefix(path)
    return {name: tf.train.load_variable(prefix, name) for name, _ in tf.train.list_variables(prefix)
            if not (name.startswith("train/") or name.endswith(("/Adam", "/Adam_1")) or name == "Variable")}


def last_record(out, variant, stage, experiment):
    path = os.path.join(out, variant, experiment, stage, "metrics.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)[-1]


def drift_table(out, experiment="demo"):
    """Rows (stage, variant, max and median relative weight difference, loss difference, top-1 of
    single and of the variant) against `single`, for the stages a variant has finished."""
    import numpy as np
    rows = []
    for stage in DRIFT_STAGES:
        reference = trained_weights(os.path.join(out, "single", experiment, stage))
        last = last_record(out, "single", stage, experiment)
        for variant in DRIFT_VARIANTS:
            other = last_record(out, variant, stage, experiment)
            if variant == "single" or other is None or other["epoch"] != last["epoch"]:
                continue  # not trained (this far) yet
            weights = trained_weights(os.path.join(out, variant, experiment, stage))
            rel = [float(np.linalg.norm(np.asarray(weights[k], np.float64) - reference[k])
                         / max(np.linalg.norm(np.asarray(reference[k], np.float64)), 1e-30)) for k in reference]
            rows.append((stage, variant, max(rel), float(np.median(rel)),
                         abs(other["loss"] - last["loss"]) / abs(last["loss"]), last.get("top1"), other.get("top1")))
    return rows


def drift(args):
    for variant in filter(None, args.variants.split(",")):
        subprocess.run([sys.executable, __file__, "drift-run", "--variant", variant, "--out", args.out] +
                       [f"--set={o}" for o in args.overrides], check=True)
    print("| stage | vs single device | max rel. weight diff | median rel. weight diff | last epoch loss rel. diff "
          "| top-1 single -> variant |")
    print("|---|---|---|---|---|---|")
    percent = lambda v: "-" if v is None else f"{100 * v:.1f}%"  # noqa: E731
    for stage, variant, worst, median, loss, top1, other_top1 in drift_table(args.out):
        print(f"| {stage} | {variant} | {worst:.2f} | {median:.1e} | {loss:.1e} "
              f"| {percent(top1)} -> {percent(other_top1)} |")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("part", nargs="?", choices=("all", "speed", "volume", "drift", "drift-run", "drift-table"),
                        default="all")
    parser.add_argument("--out", default=os.path.join(REPO, "runs", "bench_drift"), help="drift: runs folder")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="drift: overrides of configs/demo.yaml (e.g. fewer epochs)")
    parser.add_argument("--variant", choices=sorted(DRIFT_VARIANTS), help="drift-run: the one variant to train")
    parser.add_argument("--variants", default="ulp,single,mirrored,threads1",
                        help="drift: the variants to train (or continue), in this order")
    parser.add_argument("--stage", default="E_2_2", choices=sorted(STAGE_MODULES))
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--step-seconds", type=float, default=1.0,
                        help="ASSUMED time of one paper-size training step on one GPU (for the estimate)")
    parser.add_argument("--links", default="NVLink:150,PCIe 4.0 x16:25,100 Gb/s Ethernet:12.5,25 Gb/s Ethernet:3.1",
                        help="name:GB/s,... links the estimate is made for")
    args = parser.parse_args(argv)
    if args.part == "speed":
        return speed(args)
    if args.part in ("drift", "drift-run"):
        return drift(args) if args.part == "drift" else drift_run(args)
    if args.part == "drift-table":
        args.variants = ""
        return drift(args)
    if args.part == "all":
        for replicas in (1, 2):
            out = subprocess.run([sys.executable, __file__, "speed", "--replicas", str(replicas), "--stage",
                                  args.stage, "--steps", str(args.steps)], capture_output=True, text=True, check=True)
            print(out.stdout.strip().splitlines()[-1])
    print("per step at the paper's size (float32):")
    rows = {name: volume(name) for name in STAGE_MODULES}
    for name, (reduced, gathered, parameters, batch) in rows.items():
        print(f"  {name}: {parameters / 1e6:.1f} M trained parameters -> {reduced / 2 ** 20:.0f} MiB all-reduced; "
              f"{gathered / 2 ** 20:.2f} MiB gathered (global batch {batch})")
    reduced, gathered = max(r[0] for r in rows.values()), max(r[1] for r in rows.values())
    print(f"ESTIMATE (not measured): speed-up for a fixed global batch, {args.step_seconds} s per step on one GPU "
          f"assumed, no overlap of communication and computation:")
    for link in args.links.split(","):
        name, rate = link.rsplit(":", 1)
        speedups = ", ".join(f"{g} GPUs {estimate(reduced, gathered, g, args.step_seconds, float(rate)):.2f}x"
                             for g in (2, 4, 8))
        print(f"  {name} ({rate} GB/s): {speedups}")


if __name__ == "__main__":
    main()
