"""Checkpoint files of a stage: atomic per-epoch saves, the resume point, restoring by name.

Layout of runs/<experiment>/<stage>/ (the original's <epoch>/model.ckpt, plus our state):
    <epoch>/model.ckpt.*      weights, Adam slots, global step (tf.train.Saver)
    <epoch>/state.json        epoch, step in epoch, meters
    <epoch>/sampler.npz       sampler random state and the mining pool
    interrupted/              the same files, written on Ctrl-C / SIGTERM in the middle of an epoch
A directory only gets its final name once every file is written (rename of a .partial dir).
"""
import json
import os
import re
import shutil

import numpy as np
import tensorflow.compat.v1 as tf

CKPT_NAME = "model.ckpt"
INTERRUPTED = "interrupted"


class CheckpointError(RuntimeError):
    pass


def epoch_dirs(run_dir):
    """Complete per-epoch checkpoint directories, sorted by epoch: [(epoch, path)]."""
    if not os.path.isdir(run_dir):
        return []
    found = []
    for name in os.listdir(run_dir):
        path = os.path.join(run_dir, name)
        if re.fullmatch(r"\d+", name) and os.path.exists(os.path.join(path, CKPT_NAME + ".index")):
            found.append((int(name), path))
    return sorted(found)


def last_epoch_checkpoint(run_dir):
    dirs = epoch_dirs(run_dir)
    return dirs[-1] if dirs else (None, None)


def checkpoint_prefix(path):
    """Accept a directory holding model.ckpt, or a checkpoint prefix; return the prefix."""
    if os.path.isdir(path):
        path = os.path.join(path, CKPT_NAME)
    if not os.path.exists(path + ".index"):
        raise CheckpointError(f"no checkpoint at {path} (expected {path}.index): "
                              "run the stage that writes it first, or fix the path in the config")
    return path


def save_point(sess, saver, run_dir, name, state, arrays):
    """Write weights + state under run_dir/name atomically (a half-written save never has the name)."""
    final = os.path.join(run_dir, name)
    partial = final + ".partial"
    shutil.rmtree(partial, ignore_errors=True)
    os.makedirs(partial)
    saver.save(sess, os.path.join(partial, CKPT_NAME), write_meta_graph=False, write_state=False)
    with open(os.path.join(partial, "state.json"), "w") as f:
        json.dump(state, f, indent=1)
    np.savez(os.path.join(partial, "sampler.npz"), **arrays)
    if os.path.exists(final):
        old = final + ".old"
        shutil.rmtree(old, ignore_errors=True)
        os.rename(final, old)
        os.rename(partial, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(partial, final)
    return final


def load_point(path):
    with open(os.path.join(path, "state.json")) as f:
        state = json.load(f)
    with np.load(os.path.join(path, "sampler.npz"), allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    return state, arrays


def resume_point(run_dir):
    """The latest saved point of a stage (a complete epoch, or a newer interrupted one), or None."""
    candidates = []
    epoch, path = last_epoch_checkpoint(run_dir)
    if path is not None and os.path.exists(os.path.join(path, "state.json")):
        candidates.append(path)
    interrupted = os.path.join(run_dir, INTERRUPTED)
    if os.path.exists(os.path.join(interrupted, "state.json")):
        candidates.append(interrupted)
    best, best_key = None, None
    for path in candidates:
        with open(os.path.join(path, "state.json")) as f:
            state = json.load(f)
        key = (state["next_epoch"], state["next_step"])
        if best_key is None or key > best_key:
            best, best_key = path, key
    return best


def discard_interrupted(run_dir):
    shutil.rmtree(os.path.join(run_dir, INTERRUPTED), ignore_errors=True)


def prune_epochs(run_dir, keep):
    if not keep:
        return
    for _, path in epoch_dirs(run_dir)[:-keep]:
        shutil.rmtree(path, ignore_errors=True)


def select_variables(variables, include=None, exclude=None):
    """Variables whose name starts with one of `include` (tf-slim's rule) and contains none of `exclude`."""
    chosen = []
    for v in variables:
        name = v.op.name
        if include is not None and not any(name.startswith(p) for p in include):
            continue
        if exclude is not None and any(s in name for s in exclude):
            continue
        chosen.append(v)
    return chosen


def restore_by_name(sess, variables, checkpoint, saver=None):
    """Restore `variables` from `checkpoint`, checking names and shapes first with a clear error.

    Pass a `saver` over exactly these variables when the graph is already finalized."""
    prefix = checkpoint_prefix(checkpoint)
    stored = dict(tf.train.list_variables(prefix))
    missing = [v.op.name for v in variables if v.op.name not in stored]
    wrong = [(v.op.name, stored[v.op.name], v.shape.as_list()) for v in variables
             if v.op.name in stored and list(stored[v.op.name]) != v.shape.as_list()]
    if missing or wrong:
        lines = [f"cannot restore from {prefix}:"]
        if missing:
            lines.append(f"  {len(missing)} variables are not in the checkpoint, e.g. {missing[:5]}")
        for name, have, want in wrong[:5]:
            lines.append(f"  {name}: checkpoint shape {have}, graph shape {want}")
        lines.append("  (was it written by another stage or with other image sizes / widths in the config?)")
        raise CheckpointError("\n".join(lines))
    if variables:
        (saver or tf.train.Saver(variables)).restore(sess, prefix)
    return len(variables)
