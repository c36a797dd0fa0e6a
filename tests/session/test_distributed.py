"""Data-parallel training on tf.distribute gives the single-device numbers.

Logical CPU devices and a cluster must be set before TensorFlow starts, so every distributed run
is a subprocess (tests/session/distributed_cases.py): 2 logical CPU devices under MirroredStrategy, or
2 worker processes on 127.0.0.1 under MultiWorkerMirroredStrategy.
"""
import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow.compat.v1 as tf

from tests import paths
from utils.session import checkpoints as ckpt

REPO = paths.REPO
CASES = os.path.join(paths.TESTS, "session", "distributed_cases.py")
STAGES = ["E_1a", "E_1b", "E_2_1", "E_2_2", "E_3"]
# `city`: the session's fixture city (tests/conftest.py).
# data.dataset=vigor: the fixture city as it is (as `synthetic`, demo.yaml's parameters would generate it again)
TINY = ["data.dataset=vigor", "data.sat_size=[64, 64]", "data.grd_size=[32, 64]", "model.vgg_width=0.125",
        "model.fc_dim=32", "model.out_dim=32", "model.cholesky_hidden=8", "model.decoder_width=32",
        "mining.pool_size=20", "mining.keep=4", "validation.scan_batch=7", "data.workers=2", "stages.E_1a.batch_size=4",
        "stages.E_1a.steps_per_epoch=2", "stages.E_1a.epochs=2", "stages.E_1a.validate_every=1"]


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def start(tmp_path, name, overrides, env=None, stages=("E_1a",), **job):
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps({"config": os.path.join(REPO, "configs", "demo.yaml"), "overrides": overrides,
                                "stages": list(stages), **job}))
    log = open(tmp_path / f"{name}.log", "w")
    return subprocess.Popen([sys.executable, CASES, "train", str(path)], cwd=REPO, stdout=log,
                            stderr=subprocess.STDOUT, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})})


def finish(tmp_path, name, process, timeout=600):
    code = process.wait(timeout=timeout)
    return code, (tmp_path / f"{name}.log").read_text()


def workers(tmp_path, name, overrides, count=2, per_worker=lambda index: {}, **job):
    """`count` worker processes on 127.0.0.1; per_worker(index) -> {"overrides": [...], job keys} of one."""
    ports = free_ports(count)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    processes = []
    for i in range(count):
        own = dict(per_worker(i))
        processes.append(start(
            tmp_path, f"{name}{i}", overrides + own.pop("overrides", []) +
            ["distribute.strategy=multi_worker", "distribute.replicas=1"],
            env={"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})},
            **{**job, **own}))
    return processes


def event_tags(folder):
    """The tags of every summary in the TensorBoard event files under `folder`."""
    tags = set()
    for root, _, files in os.walk(folder):
        for name in files:
            if name.startswith("events.out.tfevents"):
                for event in tf.train.summary_iterator(os.path.join(root, name)):
                    tags.update(value.tag for value in event.summary.value)
    return tags


def values(checkpoint_dir):
    prefix = ckpt.checkpoint_prefix(checkpoint_dir)
    return {name: tf.train.load_variable(prefix, name) for name, _ in tf.train.list_variables(prefix)}


def assert_same_checkpoint(a, b, atol):
    first, second = values(a), values(b)
    assert sorted(first) == sorted(second)
    worst = max(float(np.max(np.abs(np.asarray(first[k], np.float64) - second[k]))) for k in first)
    assert worst <= atol, worst


def test_each_stage_step_equals_the_single_device_step(tmp_path):
    """One global batch of 4 on 2 logical CPU devices: losses, gradients, weights after 3 Adam steps;
    the TensorBoard tags of the two graphs."""
    out = tmp_path / "steps.json"
    subprocess.run([sys.executable, CASES, "steps", str(out)], cwd=REPO, check=True, timeout=900,
                   env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    report = json.loads(out.read_text())
    assert sorted(report) == sorted(STAGES)
    for name, r in report.items():
        assert r["same_variables"] and r["same_gradients"], name  # names: checkpoints move both ways
        assert r["last_loss"] < r["first_loss"], name  # the steps did train
        assert r["loss_rel"] < 1e-5, (name, r["loss_rel"])
        assert r["grad_rel"] < 1e-5, (name, r["grad_rel"])  # the whole gradient vector
        assert r["grad_rel_per_variable"] < 1e-4, (name, r["grad_rel_per_variable"])
        for var, diff in r["weight_abs"].items():  # weights and Adam slots: float32 rounding
            assert diff <= 1e-6 + 1e-5 * r["weight_scale"][var], (name, var, diff)
        single, mirrored = (event_tags(tmp_path / "events" / name / label) for label in ("single", "mirrored"))
        assert mirrored == single, (name, sorted(single ^ mirrored))  # the same TensorBoard tags
        assert {"loss", "learning_rate"} <= single, (name, sorted(single))
    assert {"heatmap/image/0", "heatmap_semi/image/1"} <= event_tags(tmp_path / "events" / "E_2_1" / "single")


E_3_TINY = ["stages.E_3.init_from=null", "stages.E_3.batch_size=4", "stages.E_3.epochs=1",
            "stages.E_3.steps_per_epoch=1", "stages.E_3.uncertainty_batch=6", "stages.E_3.validate_every=1"]


def test_two_workers_write_the_checkpoint_of_one_process_and_only_the_chief_writes(city, tmp_path):
    """E_1a, then E_3 (its uncertainty pass), then evaluate.py under 2 worker processes; the second
    worker is given folders of its own, which must stay unmade: every file is the chief's."""
    base = TINY + E_3_TINY + [f"data.root={city}"]
    single = start(tmp_path, "single", base + [f"runs_dir={tmp_path / 'single'}"], stages=("E_1a", "E_3"))
    checkpoint = str(tmp_path / "pair" / "demo" / "E_1a" / "2")
    pair = workers(tmp_path, "worker", base, stages=("E_1a", "E_3"), per_worker=lambda i: {
        "overrides": [f"runs_dir={tmp_path / ('pair' if i == 0 else 'pair_of_worker1')}"],
        "evaluate": ["--checkpoint", checkpoint, "--config", os.path.join(REPO, "configs", "demo.yaml"),
                     "--out", str(tmp_path / f"evaluation{i}")] + [f"--set={o}" for o in base + [
                         "distribute.strategy=multi_worker", "distribute.replicas=1"]]})
    logs = {}
    for name, process in [("single", single), ("worker0", pair[0]), ("worker1", pair[1])]:
        code, logs[name] = finish(tmp_path, name, process)
        assert code == 0, logs[name][-3000:]
    for stage in ("E_1a", "E_3"):
        run_single, run_pair = tmp_path / "single" / "demo" / stage, tmp_path / "pair" / "demo" / stage
        last = "2" if stage == "E_1a" else "1"
        assert_same_checkpoint(run_single / last, run_pair / last, atol=1e-5)
        assert sorted(os.listdir(run_pair)) == sorted(os.listdir(run_single)), stage
        assert event_tags(run_pair / "logs") == event_tags(run_single / "logs"), stage  # TensorBoard: same tags
    a, b = (json.loads((tmp_path / run / "demo" / "E_1a" / "metrics.json").read_text()) for run in ("single", "pair"))
    assert [r["global_step"] for r in b] == [2, 4]
    assert b[-1]["loss"] == pytest.approx(a[-1]["loss"], rel=1e-5)
    uncertainty = np.load(run_pair / "semi_uncertainty.npy")  # each worker scanned half of every batch
    np.testing.assert_allclose(uncertainty, np.load(run_single / "semi_uncertainty.npy"), rtol=1e-5)
    assert uncertainty.shape[1] == 3 and np.all(uncertainty > 0)
    assert os.path.exists(tmp_path / "evaluation0" / "results.json")
    assert "worker 1 of 2: the chief writes the results" in logs["worker1"], logs["worker1"][-2000:]
    assert not os.path.exists(tmp_path / "pair_of_worker1") and not os.path.exists(tmp_path / "evaluation1")


def test_interrupted_and_resumed_equals_uninterrupted(city, tmp_path):
    """Under MirroredStrategy: an uninterrupted run, then a run stopped after 3 steps (as by Ctrl-C),
    in one process; the stopped one resumed by a second process."""
    base = TINY + [f"data.root={city}", "distribute.strategy=mirrored", "distribute.replicas=2"]
    first = start(tmp_path, "first", base, runs=[{"overrides": [f"runs_dir={tmp_path / 'whole'}"]}, {
        "overrides": [f"runs_dir={tmp_path / 'cut'}"], "stop_after_steps": 3}])
    code, log = finish(tmp_path, "first", first)
    assert code == 0 and "interrupted at epoch 2, step 1" in log, log[-3000:]
    second = start(tmp_path, "second", base + [f"runs_dir={tmp_path / 'cut'}"], resume=True)
    code, log = finish(tmp_path, "second", second)
    assert code == 0, log[-3000:]
    assert "resumed E_1a" in (tmp_path / "cut" / "demo" / "E_1a" / "train.log").read_text()
    assert_same_checkpoint(tmp_path / "whole" / "demo" / "E_1a" / "2", tmp_path / "cut" / "demo" / "E_1a" / "2",
                           atol=0.0)


def test_a_dead_worker_stops_the_other_with_a_message(city, tmp_path):
    base = TINY + [f"data.root={city}", f"runs_dir={tmp_path / 'runs'}", "stages.E_1a.epochs=1000",
                   "stages.E_1a.validate_every=1000", "distribute.timeout_s=60"]
    chief, other = workers(tmp_path, "worker", base)
    metrics = tmp_path / "runs" / "demo" / "E_1a" / "metrics.json"
    deadline = time.time() + 300
    while not metrics.exists() and time.time() < deadline and chief.poll() is None:
        time.sleep(0.5)
    other.send_signal(signal.SIGKILL)  # after the first epoch: in the training steps
    code, log = finish(tmp_path, "worker0", chief, timeout=200)
    assert code == 1, log[-3000:]
    assert "lost contact with another worker" in log and "--resume" in log, log[-3000:]
    assert "Traceback" not in log


def test_a_batch_that_does_not_split_is_a_clear_error(city, tmp_path):
    result = subprocess.run(
        [sys.executable, "train_first_E_1.py", "--part", "a", "--config", "configs/demo.yaml"] +
        [f"--set={o}" for o in TINY + [f"data.root={city}", f"runs_dir={tmp_path}", "distribute.strategy=mirrored",
                                       "distribute.replicas=3"]],
        cwd=REPO, capture_output=True, text=True, timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 2, result.stderr[-2000:]
    assert "global batch of 4 does not split evenly over 3 replicas" in result.stderr
    assert "Traceback" not in result.stderr
