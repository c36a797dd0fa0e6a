"""Checkpoint files of a stage: atomic per-epoch saves, the resume point, restoring by name.

Layout of runs/<experiment>/<stage>/ (the original's <epoch>/model.ckpt, plus our state):
    <epoch>/model.ckpt.*      weights, Adam slots, global step (tf.train.Saver)
    <epoch>/state.json        epoch, step in epoch, meters
    <epoch>/sampler.npz       sampler random state and the mining pool
    interrupted/              the same files, written on Ctrl-C / SIGTERM in the middle of an epoch
A directory only gets its final name once every file is written (rename of a .partial dir).
A checkpoint is verified when it is chosen (resume, init_from, evaluation): an empty or unreadable
.index, a missing or truncated .data-* file is a CheckpointError naming the file. TensorFlow is
imported where it is used, so that the stage folder's lock (utils/training/run_folder.py) loads without it.
"""
import errno
import glob
import json
import os
import re
import shutil

import numpy as np

from utils.errors import CheckpointError

CKPT_NAME = "model.ckpt"
INTERRUPTED = "interrupted"
SAVE_MARGIN_BYTES = 1 << 20  # index, state.json and file-system blocks on top of the tensors


def _tf():
    import tensorflow.compat.v1 as tf
    return tf


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


def damage(prefix):
    """Why the checkpoint at `prefix` cannot be restored (a sentence naming the file), or None.

    Reads the index only: every .data-* shard must exist and hold at least the bytes of the
    tensors the index lists (a save cut short leaves fewer). Corruption inside a complete file is
    caught by TensorFlow's checksums when restoring (see restore_by_name)."""
    index = prefix + ".index"
    if not os.path.isfile(index):
        return f"{index} is missing"
    if os.path.getsize(index) == 0:
        return f"{index} is empty (0 bytes)"
    tf = _tf()
    try:
        reader = tf.train.load_checkpoint(prefix)
        shapes, dtypes = reader.get_variable_to_shape_map(), reader.get_variable_to_dtype_map()
    except (tf.errors.OpError, ValueError) as error:
        return f"{index} cannot be read ({_first_line(error)})"
    shards = glob.glob(glob.escape(prefix) + ".data-?????-of-?????")
    expected = int(shards[0].rsplit("-of-", 1)[1]) if shards else 1
    if len(shards) != expected:
        return f"{prefix}.data-*: {len(shards)} of {expected} data files are present"
    have = sum(os.path.getsize(f) for f in shards)
    need = sum(int(np.prod(shape)) * dtypes[name].size for name, shape in shapes.items()
               if dtypes[name] != tf.string)
    if have < need:
        name = shards[0] if len(shards) == 1 else prefix + ".data-*"
        return f"{name} is truncated: {have:,} bytes, its index lists {need:,} bytes of tensors"
    return None


def verified_prefix(path, advice):
    """checkpoint_prefix(path), or a CheckpointError naming the damaged file and `advice`."""
    prefix = checkpoint_prefix(path)
    problem = damage(prefix)
    if problem:
        raise CheckpointError(f"damaged checkpoint: {problem}; {advice}")
    return prefix


def _first_line(error):
    text = getattr(error, "message", None) or str(error)
    return text.strip().splitlines()[0] if text.strip() else type(error).__name__


def variables_bytes(graph):
    """Bytes of every global variable of `graph`: the size of a checkpoint's tensors."""
    return sum(int(np.prod(v.shape.as_list())) * v.dtype.base_dtype.size
               for v in graph.get_collection("variables"))


def ensure_free_space(folder, needed, what):
    """A clear CheckpointError when `folder`'s file system has fewer than `needed` bytes free."""
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise CheckpointError(f"not enough free space in {folder}: {what} needs {needed:,} bytes, "
                              f"{free:,} are free. Free some space (or lower checkpoints.keep), "
                              f"then continue with --resume")


def save_point(sess, saver, run_dir, name, state, arrays):
    """Write weights + state under run_dir/name atomically (a half-written save never has the name).

    The free space is checked first (the size is known: the graph's variables and the arrays);
    a full disk is one CheckpointError naming the folder and the bytes needed, and leaves no
    partial files."""
    final = os.path.join(run_dir, name)
    partial = final + ".partial"
    shutil.rmtree(partial, ignore_errors=True)
    needed = variables_bytes(sess.graph) + sum(np.asarray(a).nbytes for a in arrays.values()) + SAVE_MARGIN_BYTES
    ensure_free_space(run_dir, needed, f"saving {name}")
    tf = _tf()
    try:
        os.makedirs(partial)
        saver.save(sess, os.path.join(partial, CKPT_NAME), write_meta_graph=False, write_state=False)
        with open(os.path.join(partial, "state.json"), "w") as f:
            json.dump(state, f, indent=1)
        np.savez(os.path.join(partial, "sampler.npz"), **arrays)
    except (OSError, tf.errors.OpError) as error:
        shutil.rmtree(partial, ignore_errors=True)
        full = getattr(error, "errno", None) == errno.ENOSPC or isinstance(error, tf.errors.ResourceExhaustedError)
        reason = "the disk is full" if full else _first_line(error)
        raise CheckpointError(f"saving {final} failed: {reason} (it needs about {needed:,} bytes in "
                              f"{run_dir}); free some space, then continue with --resume") from None
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


def point_contents(path):
    """(every tensor, the sampler and mining arrays, state.json without its time) of a saved point:
    all that two runs which did the same work must have equal, bit for bit."""
    tf = _tf()
    prefix = checkpoint_prefix(path)
    tensors = {name: tf.train.load_variable(prefix, name) for name, _ in tf.train.list_variables(prefix)}
    state, arrays = load_point(path)
    state.pop("time", None)
    return tensors, arrays, state


def _saved_points(run_dir):
    """Every saved point of a stage (epochs and the interrupted one), newest first: [(key, path)].
    A point whose state.json cannot be read sorts first, so that it is verified and reported."""
    paths = [path for _, path in epoch_dirs(run_dir)]
    if os.path.exists(os.path.join(run_dir, INTERRUPTED, CKPT_NAME + ".index")):
        paths.append(os.path.join(run_dir, INTERRUPTED))
    points = []
    for path in paths:
        try:
            with open(os.path.join(path, "state.json")) as f:
                state = json.load(f)
            key = (int(state["next_epoch"]), int(state["next_step"]))
        except (OSError, ValueError, KeyError, TypeError):
            key = (float("inf"), 0)
        points.append((key, path))
    return sorted(points, key=lambda point: point[0], reverse=True)


def _point_damage(path):
    problem = damage(os.path.join(path, CKPT_NAME))
    if problem:
        return problem
    try:
        load_point(path)
    except (OSError, ValueError, KeyError) as error:
        return f"its state (state.json, sampler.npz) cannot be read: {_first_line(error)}"
    return None


def choose_resume_point(run_dir):
    """(the newest saved point that verifies, or None if the stage saved nothing; [damaged points
    passed over, as 'path: why']). Every saved point damaged is a CheckpointError."""
    skipped = []
    for _, path in _saved_points(run_dir):
        problem = _point_damage(path)
        if problem is None:
            return path, skipped
        skipped.append(f"{path}: {problem}")
    if skipped:
        raise CheckpointError(f"no saved point of {run_dir} can be resumed: " + "; ".join(skipped)
                              + ". Start the stage again with --overwrite")
    return None, skipped


def discard_interrupted(run_dir):
    shutil.rmtree(os.path.join(run_dir, INTERRUPTED), ignore_errors=True)


def prune_epochs(run_dir, keep):
    if not keep:
        return
    for _, path in epoch_dirs(run_dir)[:-keep]:
        shutil.rmtree(path, ignore_errors=True)


RESTORE_ADVICE = ("write it again by re-running the stage that saved it, or choose another checkpoint "
                  "(init_from.epoch / init_from.path in the config, or another epoch folder)")


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
    tf = _tf()
    prefix = verified_prefix(checkpoint, RESTORE_ADVICE)
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
        try:
            (saver or tf.train.Saver(variables)).restore(sess, prefix)
        except tf.errors.OpError as error:
            raise CheckpointError(f"damaged checkpoint: {prefix} cannot be read ({_first_line(error)}); "
                                  f"{RESTORE_ADVICE}") from None
    return len(variables)
