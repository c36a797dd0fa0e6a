"""The demo's pinned numerics: a tiny stage gives the same weights bit for bit on one core and on
two, whatever thread settings the user's environment carries."""
import hashlib
import os
import shutil
import subprocess
import sys

import pytest

from tests import paths
from utils.reproducible import PINNED, pin_numerics

REPO = paths.REPO

# one E_1a epoch of two steps at the tiny test sizes, then an md5 of every saved variable
# (dataset "vigor": the generated city is read as it is, not regenerated to the demo's size)
TINY_STAGE = r"""
import sys
from utils.reproducible import pin_numerics
pin_numerics()
import hashlib
import numpy as np
import tensorflow.compat.v1 as tf
tf.disable_v2_behavior()
import train_first_E_1
from utils.config import load_config
from utils.session import checkpoints as ckpt
from utils.training.stage import stage_dir
from utils.training.trainer import run_stage
city, runs = sys.argv[1], sys.argv[2]
cfg = load_config("configs/demo.yaml", [
    f"data.root={city}", "data.dataset=vigor", f"runs_dir={runs}", "data.sat_size=[64, 64]", "data.grd_size=[32, 64]",
    "model.vgg_width=0.125", "model.fc_dim=32", "model.out_dim=32", "mining.pool_size=20", "mining.keep=4",
    "validation.scan_batch=16", "stages.E_1a.batch_size=4", "stages.E_1a.steps_per_epoch=2",
    "stages.E_1a.epochs=1", "stages.E_1a.validate_every=1"])
run_stage(train_first_E_1.E_1a, cfg, show_progress=False)
prefix = ckpt.checkpoint_prefix(ckpt.last_epoch_checkpoint(stage_dir(cfg, "E_1a"))[1])
digest = hashlib.md5()
for name, _ in sorted(tf.train.list_variables(prefix)):
    digest.update(np.ascontiguousarray(tf.train.load_variable(prefix, name)).tobytes())
print("WEIGHTS", digest.hexdigest())
"""


@pytest.fixture(scope="module")
def city(tmp_path_factory):
    from utils.data.synthetic_vigor import generate
    return generate(str(tmp_path_factory.mktemp("repro") / "synthetic"), seed=2, cities=4, tiles_per_side=4,
                    pano_size=(64, 32), panos_per_tile=2.0, margin=64)


def start_tiny_stage(city, runs, cores, user_threads):
    env = dict(os.environ, TF_NUM_INTRAOP_THREADS=user_threads, TF_NUM_INTEROP_THREADS=user_threads,
               OMP_NUM_THREADS=user_threads, OPENBLAS_NUM_THREADS=user_threads, TF_CPP_MIN_LOG_LEVEL="2")
    command = [sys.executable, "-c", TINY_STAGE, city, str(runs)]
    if cores == 1 and shutil.which("taskset"):
        command = ["taskset", "-c", "0"] + command
    return subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_tiny_stage_weights_identical_on_one_and_two_cores(city, tmp_path):
    runs = [start_tiny_stage(city, tmp_path / "a", cores=2, user_threads="2"),
            start_tiny_stage(city, tmp_path / "b", cores=1, user_threads="1")]
    digests = []
    for process in runs:
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0, err[-2000:]
        digests += [line.split()[1] for line in out.splitlines() if line.startswith("WEIGHTS")]
    assert len(digests) == 2 and digests[0] == digests[1]
    assert hashlib.md5(b"").hexdigest() not in digests


def test_pin_refuses_after_tensorflow_and_sets_every_variable(monkeypatch):
    import tensorflow  # noqa: F401  (already loaded by conftest: pinning now would be too late)
    with pytest.raises(RuntimeError, match="before TensorFlow"):
        pin_numerics()
    assert pin_numerics(enabled=False) == {}
    assert PINNED["TF_ENABLE_ONEDNN_OPTS"] == "1" and PINNED["ONEDNN_MAX_CPU_ISA"] == "AVX2"
