"""Faults as they happen: real signals to a real training process, a real full file system (tmpfs),
a second real process holding the stage folder, damaged checkpoints, a truncated JPEG, NaN.

The faults, one or more tests each (numbered in the tests below): 1 NaN, 2 SIGINT = SIGTERM,
3 damaged checkpoints, 4 full disk, 5 lock and fresh-run guard, 6 save before validation,
7 truncated JPEG.
"""
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest
import tensorflow.compat.v1 as tf

from tests import paths
from utils.data.prefetch import ImageLoader, Prefetcher
from utils.data.sampler import TrainSampler
from utils.errors import CheckpointError, DataError, FolderBusy
from utils.evaluation.retrieval import search, validate_top_blocked
from utils.session import checkpoints as ckpt
from utils.training import run_folder

REPO = paths.REPO


# ----------------------------------------------------------------------------- 1: NaN in retrieval
@pytest.mark.parametrize("backend", ["numpy", "faiss"])
def test_retrieval_never_ranks_a_nan_similarity_as_a_hit(backend):
    rng = np.random.default_rng(0)
    sat = rng.normal(size=(12, 8)).astype(np.float32)
    sat /= np.linalg.norm(sat, axis=1, keepdims=True)
    labels = np.stack([np.arange(6), (np.arange(6) + 6) % 12, (np.arange(6) + 7) % 12,
                       (np.arange(6) + 8) % 12], axis=1)
    grd = sat[:6].copy()  # every query is its positive tile: all perfect
    assert validate_top_blocked(grd, sat, labels) == (1.0, 1.0, 1.0, 1.0)
    broken = grd.copy()
    broken[[1, 4]] = np.nan  # two queries' descriptors are NaN
    found = search(broken, sat, labels, k=1, backend=backend)
    assert found.ranks[[1, 4]].tolist() == [[12] * 4, [12] * 4]
    assert found.hit_ranks[[1, 4]].tolist() == [12, 12]
    assert found.ranks[[0, 2, 3, 5], 0].tolist() == [0, 0, 0, 0]
    every = np.full_like(grd, np.nan)  # all-NaN descriptors used to score 100 %
    assert validate_top_blocked(every, sat, labels) == (0.0, 0.0, 0.0, 0.0)
    if backend == "numpy":
        assert not np.isnan(found.topk_scores[[0, 2, 3, 5]]).any()
        nan_tile = sat.copy()
        nan_tile[3] = np.nan  # a NaN reference is never anyone's top-1, not even its own query's
        top1 = search(grd, nan_tile, labels, k=1).topk[:, 0]
        assert top1[[0, 1, 2, 4, 5]].tolist() == [0, 1, 2, 4, 5] and top1[3] != 3


# ----------------------------------------------------------------------------- 7: truncated JPEG
def test_a_truncated_jpeg_stops_naming_file_and_line_or_is_skipped_and_counted(city, tmp_path, capsys):
    from utils.data.dataset import load_vigor
    root = shutil.copytree(city, str(tmp_path / "city"))
    train, _ = load_vigor(root, same_area=True)
    first = TrainSampler(train, 4, seed=3).next_batch()
    victim = str(train.grd_paths[first.grd[0]])
    data = open(victim, "rb").read()
    assert data[:2] == b"\xff\xd8" and len(data) > 3000
    with open(victim, "wb") as f:
        f.write(data[:3000])  # the first 3000 bytes of a real panorama
    assert cv2.imread(victim) is not None, "OpenCV alone decodes it (with a warning): the silent case"
    loader = ImageLoader((64, 64), (32, 64))

    def batches():
        sampler = TrainSampler(train, 4, seed=3)
        return sampler, (sampler.next_batch() for _ in range(2))

    sampler, stream = batches()
    with pytest.raises(DataError) as error:
        list(Prefetcher(loader, train, stream, workers=2, on_bad_sample="error", sampler=sampler))
    message = str(error.value)
    assert victim in message and "truncated" in message
    line = str(train.grd_source[first.grd[0]])
    assert line.rsplit(":", 1)[1].isdigit() and line in message  # the split file and its line

    sampler, stream = batches()
    prefetch = Prefetcher(loader, train, stream, workers=2, on_bad_sample="skip", sampler=sampler)
    items = list(prefetch)
    prefetch.close()
    assert len(items) == 2 and first.grd[0] not in items[0]["batch"].grd
    assert all(np.isfinite(item["grd"]).all() for item in items)
    assert sorted(prefetch.skips.bad_paths) == [victim]
    assert "skipped 1 unreadable image(s)" in capsys.readouterr().out


# ----------------------------------------------------------------------------- 3: damaged checkpoints
def _save_two_epochs(run):
    graph = tf.Graph()
    with graph.as_default():
        weights = tf.get_variable("w", initializer=np.arange(2000, dtype=np.float32))
        bump = tf.assign_add(weights, tf.ones_like(weights))
        saver = tf.train.Saver([weights])
        init = tf.global_variables_initializer()
    sess = tf.Session(graph=graph)
    sess.run(init)
    for epoch in (1, 2):
        sess.run(bump)
        ckpt.save_point(sess, saver, run, str(epoch), {"next_epoch": epoch + 1, "next_step": 0}, {"x": np.arange(3)})
    return graph, sess, weights


@pytest.mark.parametrize("damage", ["truncated data", "empty index"])
def test_a_damaged_checkpoint_falls_back_on_resume_and_is_one_line_for_init_from(tmp_path, damage):
    run = str(tmp_path)
    graph, sess, weights = _save_two_epochs(run)
    data_file = os.path.join(run, "2", "model.ckpt.data-00000-of-00001")
    index_file = os.path.join(run, "2", "model.ckpt.index")
    if damage == "truncated data":
        size = os.path.getsize(data_file)
        os.truncate(data_file, size // 2)
        named = data_file
    else:
        os.truncate(index_file, 0)
        named = index_file
    point, skipped = ckpt.choose_resume_point(run)
    assert point == os.path.join(run, "1")
    assert len(skipped) == 1 and named in skipped[0]
    with pytest.raises(CheckpointError) as error:  # init_from naming this epoch
        ckpt.restore_by_name(sess, [weights], os.path.join(run, "2"))
    message = str(error.value)
    assert named in message and "re-running the stage" in message and "\n" not in message
    ckpt.restore_by_name(sess, [weights], point)  # the good epoch restores
    assert sess.run(weights)[0] == 1.0
    os.truncate(os.path.join(run, "1", "model.ckpt.index"), 0)
    with pytest.raises(CheckpointError, match="no saved point .* can be resumed.*--overwrite"):
        ckpt.choose_resume_point(run)


def test_a_corrupt_checkpoint_of_full_size_is_caught_by_its_checksum(tmp_path):
    run = str(tmp_path)
    graph, sess, weights = _save_two_epochs(run)
    data_file = os.path.join(run, "2", "model.ckpt.data-00000-of-00001")
    with open(data_file, "r+b") as f:
        f.seek(4000)
        f.write(b"\x7f" * 16)  # same size, wrong bytes
    assert ckpt.damage(os.path.join(run, "2", "model.ckpt")) is None
    with pytest.raises(CheckpointError, match="damaged checkpoint: .*2/model.ckpt cannot be read"):
        ckpt.restore_by_name(sess, [weights], os.path.join(run, "2"))


# ----------------------------------------------------------------------------- 4: a real full disk
@contextlib.contextmanager
def small_filesystem(path, size_bytes):
    """A tmpfs of `size_bytes` mounted at `path` (we run as root); skipped where mounting is refused."""
    os.makedirs(path, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_bytes}", "tmpfs", path],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", path], check=False)


def fill(folder, leave_free):
    """A file that leaves `leave_free` bytes free on folder's file system."""
    filler = os.path.join(folder, "filler")
    free = shutil.disk_usage(folder).free
    with open(filler, "wb") as f:
        f.truncate(0)
        f.write(b"\0" * max(0, free - leave_free))
    return filler


def test_a_full_disk_is_one_clear_line_and_leaves_nothing_behind(tmp_path):
    with small_filesystem(str(tmp_path / "disk"), 4 << 20) as disk:
        run = os.path.join(disk, "E_1a")
        os.makedirs(run)
        filler = fill(disk, 200 << 10)
        with pytest.raises(CheckpointError) as error:
            _save_two_epochs(run)
        message = str(error.value)
        assert message.startswith(f"not enough free space in {run}: saving 1 needs ")
        needed = int(message.split("needs ")[1].split(" bytes")[0].replace(",", ""))
        assert needed > 2000 * 4 and "--resume" in message
        assert os.listdir(run) == []
        os.remove(filler)
        _save_two_epochs(run)
        assert [e for e, _ in ckpt.epoch_dirs(run)] == [1, 2]


# ----------------------------------------------------------------------------- 5: the stage folder
HOLD_LOCK = """
import sys, time
sys.path.insert(0, {repo!r})
from utils.training.run_folder import FolderLock
lock = FolderLock({run!r})
print("locked", flush=True)
time.sleep(60)
"""


def test_a_second_process_cannot_use_a_locked_stage_folder(tmp_path):
    run = str(tmp_path / "E_1a")
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK.format(repo=REPO, run=run)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(FolderBusy) as error:
            run_folder.FolderLock(run)
        import socket
        message = str(error.value)
        assert f"process {holder.pid} on host {socket.gethostname()}" in message
        assert "--set experiment=" in message
    finally:
        holder.kill()  # SIGKILL: the kernel releases the lock with the process
        holder.wait()
    with run_folder.FolderLock(run):
        with pytest.raises(FolderBusy, match=f"process {os.getpid()} "):
            run_folder.FolderLock(run)  # another open of the folder in this very process


def test_leftovers_of_a_killed_save_are_removed_or_given_back(tmp_path):
    run = str(tmp_path)
    _save_two_epochs(run)
    os.makedirs(os.path.join(run, "3.partial"))
    with open(os.path.join(run, "metrics.json.tmp"), "w") as f:
        f.write("[")
    os.rename(os.path.join(run, "2"), os.path.join(run, "2.old"))  # killed between the two renames
    os.makedirs(os.path.join(run, "2.partial"))
    removed = run_folder.remove_leftovers(run)
    assert removed == ["2.partial", "3.partial", "metrics.json.tmp"]
    assert sorted(os.listdir(run)) == ["1", "2"]
    assert ckpt.choose_resume_point(run)[0] == os.path.join(run, "2")


def test_a_fresh_run_into_a_folder_with_checkpoints_is_refused(tmp_path):
    run = str(tmp_path)
    _save_two_epochs(run)
    with pytest.raises(CheckpointError) as error:
        run_folder.check_fresh_start(run, resume=False, overwrite=False)
    message = str(error.value)
    assert "epochs 1-2" in message and "--resume" in message and "--set experiment=" in message
    assert "--overwrite" in message
    assert run_folder.check_fresh_start(run, resume=True, overwrite=False) == []
    assert run_folder.check_fresh_start(run, resume=False, overwrite=True) == ["1", "2"]
    assert os.listdir(run) == []


# ----------------------------------------------------------------------------- where modules meet
def test_loss_target_convention_round_trips_through_inference():
    """The heatmap loss puts delta at (s (d0 + 320), s (319 - d1)); inference must invert exactly
    that, at a side other than 640, for offsets and for Sigma."""
    from model.losses import heatmap_target
    from utils.evaluation.scan import heatmap_to_delta, sigma_to_delta
    rng = np.random.default_rng(5)
    delta = rng.uniform(-300, 300, (50, 2))
    for side in (128, 640):
        row, col = heatmap_target(side, delta)
        np.testing.assert_allclose(heatmap_to_delta(np.asarray(row), np.asarray(col), side), delta, atol=1e-9)
    # a Gaussian cloud in delta coordinates, carried to heatmap pixels by the same convention
    points = rng.multivariate_normal([10.0, -20.0], [[90.0, 30.0], [30.0, 40.0]], 200000)
    row, col = heatmap_target(128, points)
    heatmap_sigma = np.cov(np.stack([row, col]))
    np.testing.assert_allclose(sigma_to_delta(heatmap_sigma[None], 128)[0], np.cov(points.T), rtol=1e-9)


def test_evaluation_uses_each_tiles_own_metres_per_pixel(tmp_path):
    from utils.data.dataset import SplitIndex
    from utils.data.geo import Lat_Lng
    from utils.evaluation.report import evaluate_outputs
    from utils.evaluation.summaries import true_offsets
    resolution = np.array([0.05, 0.114, 0.2, 0.3, 0.5])  # per tile, none the default alone
    sat_gps = np.column_stack([40.0 + 0.001 * np.arange(5), np.full(5, -74.0)])
    delta = np.array([[100.0, -50.0], [-200.0, 120.0], [60.0, 250.0], [-150.0, -150.0], [280.0, 10.0]])
    grd_gps = np.array([sat_gps[i] - Lat_Lng(sat_gps[i, 0], sat_gps[i, 1], [320 * r, 320 * r]) * delta[i] / 320.0
                        for i, r in enumerate(resolution)])  # VIGOR's own formula, tile by tile
    labels = np.stack([np.arange(5), (np.arange(5) + 1) % 5, (np.arange(5) + 2) % 5, (np.arange(5) + 3) % 5], 1)
    deltas = np.stack([true_offsets(grd_gps, sat_gps, labels[:, c], resolution) for c in range(4)], axis=1)
    index = SplitIndex(np.array([f"s{i}.png" for i in range(5)]), sat_gps, np.array(["A"] * 5),
                       np.array([f"g{i}.jpg" for i in range(5)]), grd_gps, np.array(["A"] * 5), labels, deltas,
                       resolution, "five tiles of five resolutions")
    descriptors = np.eye(5, 8, dtype=np.float32)
    results = evaluate_outputs(index, descriptors, descriptors, offsets=delta, offsets_positive=delta + [10.0, 0.0])
    assert results["retrieval"]["top1"] == 1.0
    assert results["localization"]["mean"] == pytest.approx(0.0, abs=0.15)
    # 10 px of the 640-px tile are 10 r metres: 0.5 m on the finest tile, 5 m on the coarsest
    assert results["fine_localization"]["mean"] == pytest.approx(10 * resolution.mean(), abs=0.1)
    assert results["positive_tile_centre"]["mean"] == pytest.approx(
        np.mean(np.linalg.norm(delta, axis=1) * resolution), rel=0.01)


# ----------------------------------------------------------------------------- the training loop
# A tiny E_1a (tests/training/test_trainer.py's sizes: 2 epochs of 3 steps) with a mining pool of every
# tile, so that the pool's hard tiles are exactly the most similar ones.
TINY = {"mining.pool_size": 1000}
STEP_MARKS = """
import os, sys, time
sys.path.insert(0, {repo!r})
marks = sys.argv[1]
from utils.data import sampler
from utils.evaluation import retrieval
steps = [0]
update = sampler.MiningPool.update

def update_then_mark(self, *args, **kwargs):
    # runs right after a training step's sess.run: the weights have moved, the step counter not yet
    update(self, *args, **kwargs)
    steps[0] += 1
    open(os.path.join(marks, "step-%d" % steps[0]), "w").close()
    time.sleep(0.5)

search = retrieval.search

def mark_then_search(*args, **kwargs):
    open(os.path.join(marks, "validating"), "w").close()
    time.sleep(1.0)
    return search(*args, **kwargs)

sampler.MiningPool.update = update_then_mark
retrieval.search = mark_then_search
import runpy
sys.argv = ["train_first_E_1.py"] + sys.argv[2:]
runpy.run_path("train_first_E_1.py", run_name="__main__")  # the real entry point
"""


def _run_quiet(stage, cfg, **kwargs):
    from utils.training.trainer import run_stage
    return run_stage(stage, cfg, show_progress=False, **kwargs)


@pytest.fixture(scope="module")
def reference(city, tmp_path_factory):
    """An uninterrupted tiny E_1a: what every interrupted and resumed run must equal."""
    import train_first_E_1
    from tests.training.test_trainer import tiny_config
    cfg = tiny_config(city, str(tmp_path_factory.mktemp("reference")), **TINY)
    _run_quiet(train_first_E_1.E_1a, cfg)
    return cfg


def assert_same_point(a, b):
    for kind, left, right in zip(("tensor", "array"), a[:2], b[:2]):
        assert sorted(left) == sorted(right)
        for name in left:
            np.testing.assert_array_equal(left[name], right[name], err_msg=f"{kind} {name}")
    assert a[2] == b[2]  # epoch, step, the trainer's random state, meters


class Child:
    """train_first_E_1.py --part a on the tiny config in a real subprocess that marks its steps."""

    def __init__(self, city, runs, marks, resume):
        from tests.training.test_trainer import tiny_overrides
        os.makedirs(marks, exist_ok=True)
        self.marks = marks
        sets = [arg for value in tiny_overrides(city, runs, **TINY) for arg in ("--set", value)]
        argv = ["--part", "a", "--config", "configs/demo.yaml"] + sets + (["--resume"] if resume else [])
        self.process = subprocess.Popen([sys.executable, "-c", STEP_MARKS.format(repo=REPO), marks] + argv,
                                        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))

    def wait_for(self, mark, timeout=240):
        deadline = time.time() + timeout
        while not os.path.exists(os.path.join(self.marks, mark)):
            if self.process.poll() is not None or time.time() > deadline:
                self.process.kill()
                raise AssertionError(f"no mark {mark}: {self.process.communicate()[1][-3000:]}")
            time.sleep(0.02)

    def signal_at(self, mark, signum):
        self.wait_for(mark)
        self.process.send_signal(signum)
        _, err = self.process.communicate(timeout=240)
        assert "Traceback" not in err, err
        return self.process.returncode, err.strip().splitlines()[-1]


def test_signals_stop_after_the_step_and_resume_bit_for_bit(reference, city, tmp_path):
    """Items 2, 3, 5, 6: SIGINT mid-step, SIGINT during validation, SIGTERM mid-step, each sent to
    a real training process; then a damaged newest save and a killed save's leftovers. The result
    equals the uninterrupted run in every saved tensor, array and state."""
    import socket

    import train_first_E_1
    from tests.training.test_trainer import tiny_config
    from utils.training.stage import stage_dir
    runs = str(tmp_path / "runs")
    cfg = tiny_config(city, runs, **TINY)
    run = stage_dir(cfg, "E_1a")

    child = Child(city, runs, str(tmp_path / "marks-1"), resume=False)
    child.wait_for("step-1")
    with pytest.raises(FolderBusy, match=f"process {child.process.pid} on host {socket.gethostname()}"):
        _run_quiet(train_first_E_1.E_1a, cfg, resume=True)  # item 5: a second run into the same folder
    status, last_line = child.signal_at("step-2", signal.SIGINT)
    assert status == 130 and "interrupted at epoch 1, step 2" in last_line and "--resume" in last_line
    tensors, _, state = ckpt.point_contents(os.path.join(run, ckpt.INTERRUPTED))
    assert (state["next_epoch"], state["next_step"]) == (1, 2)
    assert tensors["Variable"] == 2  # the weights are those of exactly two steps (item 2)

    with pytest.raises(CheckpointError, match=r"already holds checkpoints \(an interrupted run\).*--resume"):
        _run_quiet(train_first_E_1.E_1a, cfg)  # item 5: a fresh run would mix with them

    child = Child(city, runs, str(tmp_path / "marks-2"), resume=True)
    status, last_line = child.signal_at("validating", signal.SIGINT)  # item 6
    assert status == 130 and "epoch 1" in last_line and "--resume" in last_line
    assert [e for e, _ in ckpt.epoch_dirs(run)] == [1]  # saved before validation
    with open(os.path.join(run, "metrics.json")) as f:
        assert [r["epoch"] for r in json.load(f)] == [1]

    child = Child(city, runs, str(tmp_path / "marks-3"), resume=True)
    status, last_line = child.signal_at("step-2", signal.SIGTERM)
    assert status == 130 and "interrupted at epoch 2, step 2" in last_line

    # item 3: the newest save is damaged; item 4: a killed save left its pieces
    data_file = os.path.join(run, ckpt.INTERRUPTED, "model.ckpt.data-00000-of-00001")
    os.truncate(data_file, os.path.getsize(data_file) // 3)
    os.makedirs(os.path.join(run, "2.partial"))
    with open(os.path.join(run, "metrics.json.tmp"), "w") as f:
        f.write("[{")
    _run_quiet(train_first_E_1.E_1a, cfg, resume=True)
    with open(os.path.join(run, "train.log")) as f:
        log = f.read()
    assert f"{data_file} is truncated" in log and f"resumed E_1a from {os.path.join(run, '1')}" in log
    assert sorted(n for n in os.listdir(run) if n.endswith((".partial", ".tmp", ".old"))) == []

    ours, theirs = stage_dir(cfg, "E_1a"), stage_dir(reference, "E_1a")
    assert [e for e, _ in ckpt.epoch_dirs(ours)] == [1, 2]
    for epoch in ("1", "2"):
        assert_same_point(ckpt.point_contents(os.path.join(ours, epoch)),
                          ckpt.point_contents(os.path.join(theirs, epoch)))
    with open(os.path.join(ours, "metrics.json")) as f:
        mine = json.load(f)
    with open(os.path.join(theirs, "metrics.json")) as f:
        uninterrupted = json.load(f)
    assert [r["loss"] for r in mine] == [r["loss"] for r in uninterrupted]
    assert mine[-1]["top1"] == uninterrupted[-1]["top1"] and mine[-1]["hit_rate"] == uninterrupted[-1]["hit_rate"]


def test_mining_pool_holds_each_panoramas_most_similar_tiles_after_an_epoch(reference):
    """The pool refreshed at the epoch's end: with a pool of every tile, kept[i] are the `keep`
    tiles most similar to panorama i by the descriptors the pool stored during the epoch."""
    from utils.training.stage import stage_dir
    _, arrays, _ = ckpt.point_contents(os.path.join(stage_dir(reference, "E_1a"), "1"))
    sat, grd, kept = arrays["mining/sat_desc"], arrays["mining/grd_desc"], arrays["mining/kept"]
    assert np.count_nonzero(np.abs(grd).sum(axis=1)) >= 20  # the panoramas of the epoch's 3 batches
    similarity = grd.astype(np.float64) @ sat.T.astype(np.float64)
    best = np.sort(similarity, axis=1)[:, -kept.shape[1]:]
    np.testing.assert_allclose(np.take_along_axis(similarity, kept, axis=1), best, rtol=1e-5, atol=1e-6)
    assert len(np.unique(kept)) > kept.shape[1]  # not one constant row


def test_a_diverged_update_is_never_saved_or_scored(city, tmp_path):
    """Item 1: the issue's reproduction, lr 1e9 and one step per epoch. The loss fetched before
    the update is finite; the weights after it are not: no checkpoint, no metrics."""
    import train_first_E_1
    from tests.training.test_trainer import tiny_config
    from utils.errors import TrainingStopped
    from utils.training.stage import stage_dir
    cfg = tiny_config(city, str(tmp_path), **{"stages.E_1a.lr": 1e9, "stages.E_1a.steps_per_epoch": 1,
                                              "stages.E_1a.epochs": 3})
    with pytest.raises(TrainingStopped) as stop:
        _run_quiet(train_first_E_1.E_1a, cfg)
    assert stop.value.reason == "non_finite"
    message = str(stop.value)
    assert message.startswith("E_1a: the weights after epoch 1 (global step 1) are diverged: ")
    assert "nothing was saved" in message and "lower stages.E_1a.lr" in message
    run = stage_dir(cfg, "E_1a")
    assert ckpt.epoch_dirs(run) == [] and not os.path.exists(os.path.join(run, "metrics.json"))


def test_non_finite_descriptors_in_validation_are_an_error_naming_the_stage_and_count(city, tmp_path):
    """Item 1: finite weights, but NaN tile descriptors in the validation scans (batches of 16; the
    training batches of 8 stay finite, so the checks before saving pass)."""
    import train_first_E_1
    from tests.training.test_trainer import tiny_config
    from utils.errors import NonFiniteError
    from utils.training.stage import Stage, stage_dir

    def breaks_in_validation(inputs, cfg):
        net = train_first_E_1.E_1a.network(inputs, cfg)
        poison = tf.where(tf.shape(net["sat_global"])[0] > 8, np.float32(np.nan), np.float32(1.0))
        return dict(net, sat_global=net["sat_global"] * poison)

    stage = Stage(name="E_1a", network=breaks_in_validation, losses=train_first_E_1.E_1a.losses,
                  with_semi=False, mining=True)
    cfg = tiny_config(city, str(tmp_path), **{"stages.E_1a.steps_per_epoch": 1, "stages.E_1a.epochs": 1})
    with pytest.raises(NonFiniteError) as error:
        _run_quiet(stage, cfg)
    from utils.data.splits import load_splits
    tiles = len(load_splits(cfg)[1].sat_paths)
    assert str(error.value).startswith("E_1a, tiles: ")
    assert f"{tiles} of {tiles} tile descriptors are not finite" in str(error.value)
    assert [e for e, _ in ckpt.epoch_dirs(stage_dir(cfg, "E_1a"))] == [1]  # the weights were fine


def test_a_full_disk_stops_the_trainer_cleanly_and_records_no_epoch_without_checkpoint(city, tmp_path):
    """Item 4 on a real 12 MB tmpfs, filled so that the first checkpoint does not fit."""
    import train_first_E_1
    from tests.training.test_trainer import tiny_config
    from utils.training.stage import stage_dir
    with small_filesystem(str(tmp_path / "disk"), 12 << 20) as disk:
        cfg = tiny_config(city, disk, **{"stages.E_1a.epochs": 1})
        run = stage_dir(cfg, "E_1a")
        fill(disk, 3 << 20)
        for resume in (False, True):  # the same clean line again on --resume with the disk still full
            with pytest.raises(CheckpointError, match=f"not enough free space in {run}: saving 1 needs"):
                _run_quiet(train_first_E_1.E_1a, cfg, resume=resume)
            assert not os.path.exists(os.path.join(run, "metrics.json"))
            assert sorted(n for n in os.listdir(run) if n.endswith((".partial", ".tmp"))) == []
            assert ckpt.epoch_dirs(run) == []


EVALUATE_MARKS = """
import os, runpy, sys, time
sys.path.insert(0, {repo!r})
from utils.data.prefetch import ImageLoader
load, mark = ImageLoader.load_sat_into, sys.argv[1]

def mark_then_load(*args, **kwargs):  # the evaluation's first tile: it has started to scan
    if not os.path.exists(mark):
        open(mark, "w").close()
        time.sleep(5.0)
    return load(*args, **kwargs)

ImageLoader.load_sat_into = mark_then_load
sys.argv = ["evaluate.py"] + sys.argv[2:]
runpy.run_path("evaluate.py", run_name="__main__")  # the real entry point
"""


def _evaluate_args(cfg, checkpoint, out):
    from tests.training.test_trainer import tiny_overrides
    sets = [a for v in tiny_overrides(cfg.data.root, cfg.runs_dir, **TINY) for a in ("--set", v)]
    return ["--checkpoint", checkpoint, "--config", "configs/demo.yaml", "--out", out] + sets


def _as_from_a_terminal():
    """The child starts as from a shell: SIGINT neither ignored nor blocked. In the full suite the
    pytest process had stopped passing SIGINT on (every child exited 0 after it), a state a child
    inherits across exec; a user's terminal does not do that."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGINT])


def _interrupt_evaluate(script, mark, args):
    process = subprocess.Popen([sys.executable, "-c", script, mark] + args, cwd=REPO, stderr=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
                               preexec_fn=_as_from_a_terminal)
    deadline = time.time() + 240
    while not os.path.exists(mark):
        assert process.poll() is None and time.time() < deadline, process.communicate()[1][-3000:]
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    return process.returncode, err


def test_ctrl_c_in_evaluate_does_not_talk_of_resume(reference, tmp_path):
    """Item 10, with a real SIGINT to a real evaluate.py process."""
    from utils.training.stage import stage_dir
    script = EVALUATE_MARKS.format(repo=REPO)
    args = _evaluate_args(reference, os.path.join(stage_dir(reference, "E_1a"), "2"), str(tmp_path / "out"))
    returncode, err = _interrupt_evaluate(script, str(tmp_path / "scanning"), args)
    assert returncode == 130 and "Traceback" not in err, (returncode, err[-3000:])
    last = err.strip().splitlines()[-1]
    assert "evaluate.py" in last and "--resume" not in last


def test_evaluating_a_diverged_checkpoint_is_an_error_not_a_score(reference, tmp_path):
    """Item 1: evaluate.py on weights with a NaN used to exit 0 with 100 / 100 / 100 / 100."""
    import evaluate
    from utils.errors import NonFiniteError
    from utils.training.stage import stage_dir
    source = os.path.join(stage_dir(reference, "E_1a"), "2")
    tensors, _, _ = ckpt.point_contents(source)
    broken = str(tmp_path / "E_1a" / "2")
    os.makedirs(broken)
    graph = tf.Graph()
    with graph.as_default():  # NaN in the layer that makes the descriptor (ReLU can hide a NaN conv kernel)
        variables = [tf.Variable(np.where(name == "spatial_grd/weights2", np.nan, value), name=name)
                     for name, value in tensors.items()]
        saver = tf.train.Saver(variables)
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            saver.save(sess, os.path.join(broken, "model.ckpt"), write_meta_graph=False, write_state=False)
    with pytest.raises(NonFiniteError) as error:
        evaluate.main(_evaluate_args(reference, broken, str(tmp_path / "out")))
    grd = len(np.load(os.path.join(stage_dir(reference, "E_1a"), "grd_global_descriptor.npy")))
    assert "E_1a" in str(error.value) and f"{grd} of {grd} panorama descriptors" in str(error.value)
    assert not os.path.exists(tmp_path / "out" / "results.json")
