"""Soak test: the demo's E_1a killed again and again, then resumed; its final weights must equal
those of a run that was never interrupted, bit for bit.

    python bench/soak.py [--minutes 20] [--gap 10 60] [--epochs N] [--out runs/soak] [--seed 0]

For --minutes, `train_first_E_1.py --part a --resume` runs on configs/demo.yaml and gets a random
SIGKILL, SIGTERM or SIGINT every 10-60 s (--gap); after each stop it is started again. Then the
run is finished without interruption, a second run goes through uninterrupted from scratch, and
every tensor of the two final checkpoints, their sampler and mining state and their state.json
are compared. Prints (and writes OUT/soak.json) how many interrupts of each kind were survived.
Exit status 0 only if every stop was clean (SIGKILL, or an interrupt message with status 130)
and the two runs are identical. Not part of the tests (it takes minutes).
"""
import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
SIGNALS = {"SIGKILL": signal.SIGKILL, "SIGTERM": signal.SIGTERM, "SIGINT": signal.SIGINT}
SECONDS_PER_EPOCH = 8  # the demo's E_1a on 2 free cores: 20 steps and a validation


def train_command(runs_dir, epochs, resume):
    command = [sys.executable, os.path.join(REPO, "train_first_E_1.py"), "--part", "a",
               "--config", os.path.join(REPO, "configs", "demo.yaml"),
               "--set", f"runs_dir={runs_dir}", "--set", f"stages.E_1a.epochs={epochs}",
               "--set", "stages.E_1a.validate_every=1000"]  # validate only at the end
    return command + (["--resume"] if resume else [])


def start(runs_dir, epochs, resume, log):
    return subprocess.Popen(train_command(runs_dir, epochs, resume), stdout=log, stderr=subprocess.STDOUT,
                            cwd=REPO, start_new_session=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))


def interrupt_for(minutes, gap, runs_dir, epochs, rng, log):
    """Start, wait a random gap, signal, repeat until `minutes` have passed or training is done."""
    counts = {name: 0 for name in SIGNALS}
    bad_exits = []
    deadline = time.time() + 60 * minutes
    while time.time() < deadline:
        child = start(runs_dir, epochs, resume=True, log=log)
        try:
            child.wait(timeout=min(rng.uniform(*gap), max(1.0, deadline - time.time())))
            return counts, bad_exits, True  # finished on its own
        except subprocess.TimeoutExpired:
            pass
        name = rng.choice(sorted(SIGNALS))
        child.send_signal(SIGNALS[name])
        status = child.wait()
        counts[name] += 1
        clean = status == -signal.SIGKILL if name == "SIGKILL" else status in (130, -SIGNALS[name])
        print(f"{time.strftime('%H:%M:%S')} {name:7s} -> exit status {status}{'' if clean else '  (NOT CLEAN)'}",
              flush=True)
        if not clean:
            bad_exits.append((name, status))
    return counts, bad_exits, False


def finish(runs_dir, epochs, log):
    status = start(runs_dir, epochs, resume=True, log=log).wait()
    if status != 0:
        raise SystemExit(f"the run in {runs_dir} did not finish (status {status}); see its log")


def final_state(runs_dir, epochs):
    from utils.session.checkpoints import point_contents
    return point_contents(os.path.join(runs_dir, "demo", "E_1a", str(epochs)))


def differences(a, b):
    names = sorted(set(a[0]) | set(a[1]) | set(b[0]) | set(b[1]))
    differ = [n for n in names if not np.array_equal(a[0].get(n, a[1].get(n)), b[0].get(n, b[1].get(n)))]
    return differ + (["state.json"] if a[2] != b[2] else [])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=20.0, help="how long to keep interrupting (default 20)")
    parser.add_argument("--gap", type=float, nargs=2, default=(10.0, 60.0), metavar=("MIN", "MAX"),
                        help="seconds between interrupts, drawn uniformly (default 10 60)")
    parser.add_argument("--epochs", type=int, help="E_1a epochs (default: about --minutes of training)")
    parser.add_argument("--out", default=os.path.join(REPO, "runs", "soak"))
    parser.add_argument("--seed", type=int, default=0, help="seed of the signal schedule")
    args = parser.parse_args(argv)
    epochs = args.epochs or max(2, int(60 * args.minutes / SECONDS_PER_EPOCH))
    shutil.rmtree(args.out, ignore_errors=True)
    os.makedirs(args.out)
    rng = random.Random(args.seed)
    from utils.config import load_config
    from utils.data.splits import ensure_dataset
    ensure_dataset(load_config(os.path.join(REPO, "configs", "demo.yaml")))  # once, before any kill
    interrupted, reference = os.path.join(args.out, "interrupted"), os.path.join(args.out, "reference")
    started = time.time()
    with open(os.path.join(args.out, "interrupted.log"), "w") as log:
        counts, bad_exits, done = interrupt_for(args.minutes, args.gap, interrupted, epochs, rng, log)
        finish(interrupted, epochs, log)
    soak_seconds = time.time() - started
    with open(os.path.join(args.out, "reference.log"), "w") as log:
        finish(reference, epochs, log)
    differ = differences(final_state(interrupted, epochs), final_state(reference, epochs))
    report = {"minutes": round(soak_seconds / 60, 1), "epochs": epochs, "interrupts": counts,
              "survived": sum(counts.values()), "unclean_exits": bad_exits,
              "finished_while_interrupting": done, "identical_to_uninterrupted": not differ,
              "different": differ[:20]}
    with open(os.path.join(args.out, "soak.json"), "w") as f:
        json.dump(report, f, indent=1)
    print(json.dumps(report, indent=1))
    return 0 if not differ and not bad_exits else 1


if __name__ == "__main__":
    sys.exit(main())
