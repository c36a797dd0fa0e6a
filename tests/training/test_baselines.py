"""The legacy baselines (Siamese-VGG, SAFA without mining, SAFA + mining = E_1a, VIGOR = E_1b) each
train two steps at a tiny size and save under the original graphs' variable names; compare.py
--published prints only sourced numbers and refuses an unknown setting in one line."""
import os
import subprocess
import sys

import pytest
import tensorflow.compat.v1 as tf

import compare
import train_first_E_1
from model import models
from tests import paths
from tests.training.test_trainer import run_quiet, tiny_overrides
from utils.config import load_config
from utils.evaluation import published
from utils.evaluation.inference import network_of_checkpoint
from utils.session import checkpoints as ckpt
from utils.training.stage import stage_dir

BASELINES = (train_first_E_1.Siamese_VGG, train_first_E_1.SAFA, train_first_E_1.E_1a, train_first_E_1.E_1b)


def _legacy_names(name):
    with open(os.path.join(paths.LEGACY, name)) as f:
        return {line.split(":0")[0] for line in f if line.strip()}


def _saved_names(cfg, stage_name, epoch):
    prefix = ckpt.checkpoint_prefix(os.path.join(stage_dir(cfg, stage_name), str(epoch)))
    return prefix, {name for name, _ in tf.train.list_variables(prefix)}


@pytest.fixture(scope="module")
def trained(city, tmp_path_factory):
    runs = str(tmp_path_factory.mktemp("runs"))
    overrides = tiny_overrides(city, runs) + ["data.dataset=vigor"]  # the fixture city as it is (no regeneration)
    for stage in ("Siamese_VGG", "SAFA", "E_1a", "E_1b"):
        overrides += [f"stages.{stage}.batch_size=8", f"stages.{stage}.steps_per_epoch=2",
                      f"stages.{stage}.epochs=1", f"stages.{stage}.validate_every=1"]
    cfg = load_config("configs/demo.yaml", overrides)
    return cfg, {stage.name: run_quiet(stage, cfg) for stage in BASELINES}


def test_baseline_defaults_are_vigor_train_scripts():
    stages = load_config().stages
    for name in ("Siamese_VGG", "SAFA"):  # train_overall.py / train_SAFA.py: 30 epochs, 14, Adam 1e-5 x0.1 per 150k
        s = stages[name]
        assert (s.epochs, s.batch_size, s.lr, s.decay_steps, s.decay_rate, s.mining_start) == \
            (30, 14, 1e-5, 150000, 0.1, None), name
    assert load_config().model.siamese_keep_prob == 0.5


def test_each_baseline_trains_two_steps_and_is_evaluated(trained):
    cfg, metrics = trained
    for name, records in metrics.items():
        (record,) = records
        assert record["global_step"] == (4 if name == "E_1b" else 2), name  # E_1b continues E_1a's step
        assert 0.0 <= record["top1"] <= record["top5"] <= 1.0 and record["top1"] <= record["hit_rate"], name


def test_safa_checkpoints_keep_the_original_names(trained):
    cfg, _ = trained
    original = _legacy_names("varnames_vigor_safa_train.txt")  # VIGOR's train_SAFA.py graph with Adam
    for stage in ("SAFA", "E_1a"):
        prefix, saved = _saved_names(cfg, stage, 1)
        assert saved == original, stage
        assert network_of_checkpoint(prefix) == "safa"
    prefix, saved = _saved_names(cfg, "E_1b", 2)
    assert original <= saved and {"fc_delta_1/weights", "fc_delta_2/biases"} <= saved
    assert network_of_checkpoint(prefix) == "safa_offset"


def test_siamese_vgg_checkpoint_keeps_clean_siamese_names(trained, graph):
    cfg, _ = trained
    sat = tf.placeholder(tf.float32, [None, 64, 64, 3])
    grd = tf.placeholder(tf.float32, [None, 32, 64, 3])
    models.clean_siamese(sat, grd, 1.0, fc_dim=8, vgg_path="random", vgg_width=0.125)
    built = {v.op.name for v in tf.global_variables()}
    assert {"Gap_local/fc1/weights", "Gap_local/fc1/biases"} <= built
    # the VGG branches are named as in VIGOR's SAFA graph (tests/legacy/)
    assert {n for n in built if n.startswith("vgg_")} == {n for n in _legacy_names("varnames_vigor_safa.txt")
                                                          if n.startswith("vgg_")}
    prefix, saved = _saved_names(cfg, "Siamese_VGG", 1)
    slots = {f"{n}/{slot}" for n in built for slot in ("Adam", "Adam_1")}
    assert saved == built | slots | {"Variable", "train/beta1_power", "train/beta2_power"}
    assert network_of_checkpoint(prefix) == "siamese_vgg"


def test_published_prints_sourced_numbers_only(capsys, monkeypatch):
    row = published.PublishedRow("Siamese-VGG", source="a paper, Table 9", top1=12.34, hit_rate=56.78)
    registry = {"somewhere": published.PublishedSetting(title="Somewhere", rows=(row,), not_sourced=("SAFA: x",))}
    monkeypatch.setattr(published, "PUBLISHED", registry)
    assert compare.main(["--published", "somewhere"]) == 0
    out = capsys.readouterr().out
    assert "| Siamese-VGG | 12.34 | - | - | - | 56.78 | - | - | a paper, Table 9 |" in out and "- SAFA: x" in out
    monkeypatch.undo()
    for name, setting in published.PUBLISHED.items():   # the real registry: every row printed with its source
        assert compare.main(["--published", name]) == 0
        lines = capsys.readouterr().out.splitlines()
        assert setting.title in lines[0]
        for r in setting.rows:
            assert r.source and r.numbers()
            printed = [line for line in lines if line.startswith(f"| {r.method} |")]
            assert len(printed) == 1 and printed[0].endswith(f"| {r.source} |")
            assert all(f"{value:.2f}" in printed[0] for value in r.numbers().values())
        assert all(f"- {note}" in lines for note in setting.not_sourced)


def test_unknown_published_setting_is_refused_in_one_line():
    done = subprocess.run([sys.executable, "compare.py", "--published", "nowhere"], capture_output=True,
                          text=True, cwd=paths.REPO, timeout=60)
    assert done.returncode == 2 and done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert lines == ["error: no published numbers for setting 'nowhere'; known settings: "
                     "cvact, cvusa, vigor_cross_area, vigor_same_area"]
