"""The staged training at a tiny size: hand-off between stages, resume, NaN stop, seeds."""
import json
import os

import numpy as np
import pytest
import tensorflow.compat.v1 as tf

import train_first_E_1
import train_second_E_2_1
import train_second_E_2_2
import train_third_E_3
from utils.config import load_config
from utils.errors import CheckpointError, TrainingStopped
from utils.session import checkpoints as ckpt
from utils.training.stage import Stage, stage_dir
from utils.training.trainer import Trainer, run_stage


def tiny_overrides(city, runs, **stage_overrides):
    """--set values of a tiny run on the `city` fixture (conftest.py), writing under `runs`."""
    # data.dataset=vigor: the fixture city read as it is; as `synthetic` the demo config's generator
    # parameters differ from the fixture's, and the city would be generated again at the demo's size
    overrides = [f"data.root={city}", "data.dataset=vigor", f"runs_dir={runs}", "data.sat_size=[64, 64]",
                 "data.grd_size=[32, 64]", "model.vgg_width=0.125", "model.fc_dim=32", "model.out_dim=32",
                 "model.cholesky_hidden=8", "model.decoder_width=32", "mining.pool_size=20", "mining.keep=4",
                 "validation.scan_batch=16", "data.workers=2"]
    for stage in ("E_1a", "E_1b", "E_2_1", "E_2_2", "E_3"):
        overrides += [f"stages.{stage}.batch_size=8", f"stages.{stage}.steps_per_epoch=3",
                      f"stages.{stage}.epochs=2", f"stages.{stage}.validate_every=1"]
    return overrides + [f"{k}={v}" for k, v in stage_overrides.items()]


def tiny_config(city, runs, **stage_overrides):
    return load_config("configs/demo.yaml", tiny_overrides(city, runs, **stage_overrides))


def checkpoint_values(path):
    prefix = ckpt.checkpoint_prefix(path)
    return {name: tf.train.load_variable(prefix, name) for name, _ in tf.train.list_variables(prefix)}


def run_quiet(stage, cfg, **kwargs):
    return run_stage(stage, cfg, show_progress=False, **kwargs)


@pytest.fixture(scope="module")
def all_stages(city, tmp_path_factory):
    runs = str(tmp_path_factory.mktemp("runs"))
    cfg = tiny_config(city, runs)
    metrics = {}
    for stage in (train_first_E_1.E_1a, train_first_E_1.E_1b, train_second_E_2_1.E_2_1,
                  train_second_E_2_2.E_2_2, train_third_E_3.E_3):
        metrics[stage.name] = run_quiet(stage, cfg)
    return cfg, metrics


def test_every_stage_trains_validates_and_saves(all_stages):
    cfg, metrics = all_stages
    for name, records in metrics.items():
        run = stage_dir(cfg, name)
        epochs = [e for e, _ in ckpt.epoch_dirs(run)]
        assert epochs == ([3, 4] if name == "E_1b" else [1, 2]), name  # E_1b continues E_1a's numbering
        assert [r["epoch"] for r in records] == epochs
        for r in records:
            assert 0.0 <= r["top1"] <= r["top5"] <= 1.0 and r["top1"] <= r["hit_rate"]
            assert all(np.isfinite(v) for v in r.values() if isinstance(v, float))
        assert os.listdir(os.path.join(run, "logs")), "TensorBoard events are written"
        assert os.path.exists(os.path.join(run, "sat_global_descriptor.npy"))


def test_E_1a_global_step_and_learning_rate_schedule(all_stages):
    cfg, metrics = all_stages
    first, second = metrics["E_1a"]
    assert (first["global_step"], second["global_step"]) == (3, 6)
    assert second["learning_rate"] == pytest.approx(cfg.stages.E_1a.lr * 0.1 ** (6 / 150000), rel=1e-6)
    # E_1b restores the global step from E_1a (everything but the offset head), E_2_2 does not.
    assert [r["global_step"] for r in metrics["E_1b"]] == [9, 12]
    assert [r["global_step"] for r in metrics["E_2_2"]] == [3, 6]
    lr = cfg.stages.E_2_2.lr * 0.9 ** (6 / 910)
    assert metrics["E_2_2"][-1]["learning_rate"] == pytest.approx(lr, rel=1e-6)
    assert metrics["E_3"][-1]["learning_rate"] == pytest.approx(cfg.stages.E_3.lr * 0.9 ** 2, rel=1e-6)


def test_stage_hand_off_restores_what_the_original_restores(all_stages):
    cfg, _ = all_stages
    e1a = checkpoint_values(os.path.join(stage_dir(cfg, "E_1a"), "2"))
    e21_first = checkpoint_values(os.path.join(stage_dir(cfg, "E_2_1"), "1"))
    e22_first = checkpoint_values(os.path.join(stage_dir(cfg, "E_2_2"), "1"))
    e21_last = checkpoint_values(os.path.join(stage_dir(cfg, "E_2_1"), "2"))
    e22_last = checkpoint_values(os.path.join(stage_dir(cfg, "E_2_2"), "2"))
    # E_2_1 starts from E_1a's VGGs and spatial-aware layers and then trains them.
    name = "vgg_sat/conv2d/kernel"
    assert not np.array_equal(e21_first[name], e1a[name])
    assert np.abs(e21_first[name] - e1a[name]).max() < 0.05 * np.abs(e1a[name]).max()
    assert np.array_equal(e21_first["Variable"], 3)  # the step restarted at 0
    # E_2_2 restores the decoders from E_2_1 but starts its Cholesky heads fresh.
    decoder = "decoder/decode/conv7_2/weights"
    assert np.abs(e22_first[decoder] - e21_last[decoder]).max() < np.abs(e21_last[decoder]).max()
    head = "L/cholesky_block/dense_1/kernel"
    assert head in e22_first and head in e21_last
    # E_3 trains the retrieval branches only: the heads and decoders stay as E_2_2 left them.
    e3 = checkpoint_values(os.path.join(stage_dir(cfg, "E_3"), "2"))
    assert np.array_equal(e3[head], e22_last[head]) and np.array_equal(e3[decoder], e22_last[decoder])
    assert not np.array_equal(e3["vgg_grd/conv2d/kernel"], e22_last["vgg_grd/conv2d/kernel"])
    assert "vgg_grd/conv2d/kernel/Adam" in e3


def test_restore_rules_of_each_stage(city, tmp_path):
    cfg = tiny_config(city, str(tmp_path))

    def restored(stage):
        trainer = Trainer(cfg, stage, show_progress=False)
        parts = trainer.build_graph()
        return {v.op.name for v in parts.restored_variables}, {v.op.name for v in parts.graph.get_collection("variables")}

    chosen, every = restored(train_second_E_2_1.E_2_1)
    assert chosen == {n for n in every if n.split("/")[0] in ("vgg_sat", "vgg_grd", "spatial_grd", "spatial_sat", "train")}
    assert "train/beta1_power" in chosen and "vgg_sat/conv2d/kernel/Adam" in chosen and "Variable" not in chosen
    chosen, every = restored(train_second_E_2_2.E_2_2)
    assert chosen == {n for n in every if "cholesky_block" not in n and n != "Variable"}
    assert "decoder/decode/deconv0/weights/Adam_1" in chosen and "L/cholesky_block/dense/kernel" not in chosen
    chosen, every = restored(train_third_E_3.E_3)
    assert chosen == every - {"Variable"}
    chosen, every = restored(train_first_E_1.E_1b)
    assert chosen == {n for n in every if "delta" not in n} and "Variable" in chosen


def test_E_3_measures_the_semi_positive_uncertainties(all_stages, city):
    cfg, metrics = all_stages
    uncertainty = np.load(os.path.join(stage_dir(cfg, "E_3"), "semi_uncertainty.npy"))
    from utils.data.splits import load_splits
    train, _ = load_splits(cfg)
    assert uncertainty.shape == (len(train.grd_paths), 3)
    assert np.all(np.isfinite(uncertainty)) and np.all(uncertainty > 0)
    assert {"loss_tri", "loss_iou", "convince"} <= set(metrics["E_3"][0])


def test_nan_loss_stops_naming_the_term_and_keeps_the_last_checkpoint(city, tmp_path):
    cfg = tiny_config(city, str(tmp_path))

    def losses_that_break_in_epoch_2(net, inputs, cfg):
        out = train_first_E_1.triplet_losses(net, inputs, cfg)
        step = tf.cast(tf.train.get_global_step() or tf.get_default_graph().get_tensor_by_name("Variable:0"),
                       tf.float32)
        out["exploding"] = tf.where(step >= 4.0, np.nan, 0.0) * tf.ones([])
        out["loss"] = out["loss"] + out["exploding"]
        return out

    stage = Stage(name="E_1a", network=train_first_E_1.E_1a.network, losses=losses_that_break_in_epoch_2,
                  with_semi=False, mining=True)
    with pytest.raises(TrainingStopped, match=r"'exploding' is nan at epoch 2, step 1"):
        run_quiet(stage, cfg)
    assert [e for e, _ in ckpt.epoch_dirs(stage_dir(cfg, "E_1a"))] == [1]


def test_missing_previous_stage_is_a_clear_error(city, tmp_path):
    cfg = tiny_config(city, str(tmp_path))
    with pytest.raises(CheckpointError, match="stage E_2_1 has no checkpoint.*run it first"):
        Trainer(cfg, train_second_E_2_2.E_2_2, show_progress=False).run()


def test_evaluate_a_checkpoint_of_each_network(all_stages, tmp_path):
    import evaluate
    cfg, metrics = all_stages
    sets = []
    for key in ("data.root", "data.dataset", "runs_dir", "data.sat_size", "data.grd_size", "model.vgg_width",
                "model.fc_dim", "model.out_dim", "model.cholesky_hidden", "model.decoder_width"):
        node = cfg
        for part in key.split("."):
            node = node[part]
        sets += ["--set", f"{key}={json.dumps(node) if isinstance(node, list) else node}"]
    for stage, has_offsets in (("E_1a", False), ("E_1b", True), ("E_3", True)):
        checkpoint = os.path.join(stage_dir(cfg, stage), str(metrics[stage][-1]["epoch"]))
        out = tmp_path / stage
        evaluate.main(["--checkpoint", checkpoint, "--config", "configs/demo.yaml", "--out", str(out)] + sets)
        with open(out / "results.json") as f:
            results = json.load(f)
        # the same weights and images give the trainer's last validation numbers
        assert results["retrieval"]["top1"] == pytest.approx(metrics[stage][-1]["top1"])
        assert results["retrieval"]["hit_rate"] == pytest.approx(metrics[stage][-1]["hit_rate"])
        assert ("fine_localization" in results) == has_offsets
        assert (out / "accuracy_curve.png").stat().st_size > 0
    assert results["calibration"]["count"] == results["num_queries"]  # SAMP gives Sigma
    assert (tmp_path / "E_3" / "calibration.png").exists()


def test_a_seed_makes_runs_repeatable(city, tmp_path):
    def run(seed, name):
        cfg = tiny_config(city, str(tmp_path / name), seed=seed, **{"stages.E_1a.epochs": 1})
        records = run_quiet(train_first_E_1.E_1a, cfg)
        return records, checkpoint_values(os.path.join(stage_dir(cfg, "E_1a"), "1"))

    first, weights_first = run(5, "a")
    again, weights_again = run(5, "b")
    other, weights_other = run(6, "c")
    assert first == again
    assert all(np.array_equal(weights_first[k], weights_again[k]) for k in weights_first)
    assert first[0]["loss"] != other[0]["loss"]
    assert not np.array_equal(weights_first["vgg_grd/conv2d/kernel"], weights_other["vgg_grd/conv2d/kernel"])
