"""Faults as they happen: real signals to a real training process, a real full file system (tmpfs),
a second real process holding the stage folder, damaged checkpoints, a truncated JPEG, NaN.

Issue 13's items, one or more tests each: 1 NaN, 2 SIGINT = SIGTERM, 3 damaged checkpoints,
4 full disk, 5 lock and fresh-run guard, 6 save before validation, 7 truncated JPEG.
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

from utils.data.dataset import DataError
from utils.data.prefetch import ImageLoader, Prefetcher
from utils.data.sampler import TrainSampler
from utils.evaluation.retrieval import search, validate_top_blocked
from utils.training import checkpoints as ckpt
from utils.training import run_folder

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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
@pytest.fixture(scope="module")
def city(tmp_path_factory):
    from utils.data.synthetic_vigor import generate
    root = tmp_path_factory.mktemp("city")
    return generate(str(root / "synthetic"), seed=1, cities=4, tiles_per_side=4, pano_size=(128, 64),
                    panos_per_tile=1.5)


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
    with pytest.raises(ckpt.CheckpointError) as error:  # init_from naming this epoch
        ckpt.restore_by_name(sess, [weights], os.path.join(run, "2"))
    message = str(error.value)
    assert named in message and "re-running the stage" in message and "\n" not in message
    ckpt.restore_by_name(sess, [weights], point)  # the good epoch restores
    assert sess.run(weights)[0] == 1.0
    os.truncate(os.path.join(run, "1", "model.ckpt.index"), 0)
    with pytest.raises(ckpt.CheckpointError, match="no saved point .* can be resumed.*--overwrite"):
        ckpt.choose_resume_point(run)


def test_a_corrupt_checkpoint_of_full_size_is_caught_by_its_checksum(tmp_path):
    run = str(tmp_path)
    graph, sess, weights = _save_two_epochs(run)
    data_file = os.path.join(run, "2", "model.ckpt.data-00000-of-00001")
    with open(data_file, "r+b") as f:
        f.seek(4000)
        f.write(b"\x7f" * 16)  # same size, wrong bytes
    assert ckpt.damage(os.path.join(run, "2", "model.ckpt")) is None
    with pytest.raises(ckpt.CheckpointError, match="damaged checkpoint: .*2/model.ckpt cannot be read"):
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
        with pytest.raises(ckpt.CheckpointError) as error:
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
        with pytest.raises(run_folder.FolderBusy) as error:
            run_folder.FolderLock(run)
        import socket
        message = str(error.value)
        assert f"process {holder.pid} on host {socket.gethostname()}" in message
        assert "--set experiment=" in message
    finally:
        holder.kill()  # SIGKILL: the kernel releases the lock with the process
        holder.wait()
    with run_folder.FolderLock(run):
        with pytest.raises(run_folder.FolderBusy, match=f"process {os.getpid()} "):
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
    assert ckpt.resume_point(run) == os.path.join(run, "2")


def test_a_fresh_run_into_a_folder_with_checkpoints_is_refused(tmp_path):
    run = str(tmp_path)
    _save_two_epochs(run)
    with pytest.raises(ckpt.CheckpointError) as error:
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
    from utils.evaluation.inference import heatmap_to_delta, sigma_to_delta
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
    from utils.evaluation.localization import true_offsets
    from utils.evaluation.report import evaluate_outputs
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
