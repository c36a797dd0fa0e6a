"""train_university1652.py at a tiny size: the instance loss trains, stops, resumes; the classifier
and the shared VGG16 are in the checkpoint; University-1652's protocol on it is what the scanned
descriptors give."""
import json
import os

import numpy as np
import pytest
import tensorflow.compat.v1 as tf

import train_university1652 as stage_script
from utils.config import load_config
from utils.data import synthetic_university1652 as su
from utils.errors import TrainingStopped
from utils.evaluation.instance_retrieval import evaluate_instance_retrieval, l2_normalize
from utils.evaluation.university1652_tasks import RESULTS_JSON, RESULTS_MD, scan_checkpoint
from utils.session import checkpoints as ckpt
from utils.training.stage import stage_dir
from utils.training.trainer import Trainer

TINY = dict(places=16, views=3, size=32, map_metres=400.0, meters_per_pixel=1.0, radius=60.0,
            satellite_metres=60.0, streets=1, spacing=20.0)
TRAIN_BUILDINGS = 8


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return su.generate(tmp_path_factory.mktemp("u1652") / "synthetic_university1652", seed=0, **TINY)


def tiny_config(tree, runs, *extra):
    return load_config("configs/demo_university1652.yaml", [
        f"data.root={tree}", f"runs_dir={runs}", "data.sat_size=[32, 32]", "data.grd_size=[32, 32]",
        "model.vgg_width=0.125", "model.bottleneck=16", "validation.scan_batch=16", "stages.U1652.batch_size=4",
        "stages.U1652.steps_per_epoch=2", "stages.U1652.epochs=1", "stages.U1652.validate_every=1", *extra])


def variables(checkpoint):
    prefix = ckpt.checkpoint_prefix(checkpoint)
    return dict(tf.train.list_variables(prefix))


@pytest.fixture(scope="module")
def trained(tree, tmp_path_factory):
    cfg = tiny_config(tree, str(tmp_path_factory.mktemp("runs")))
    with pytest.raises(TrainingStopped, match="interrupted at epoch 1, step 1"):
        stage_script.train_and_evaluate(cfg, stop_after_steps=1, show_progress=False)
    metrics, table = stage_script.train_and_evaluate(cfg, resume=True, show_progress=False)
    return cfg, metrics, table


def test_two_steps_with_a_stop_and_resume_train_the_shared_classifier(trained):
    cfg, metrics, _ = trained
    assert [r["epoch"] for r in metrics] == [1] and metrics[0]["global_step"] == 2
    assert np.isfinite(metrics[0]["loss_instance"]) and metrics[0]["loss_instance"] > 0
    assert np.isfinite(metrics[0]["loss_triplet"]) and 0.0 <= metrics[0]["top1"] <= 1.0
    stored = variables(os.path.join(stage_dir(cfg, "U1652"), "1"))
    assert stored["classifier/logits/weights"] == [16, TRAIN_BUILDINGS]
    assert stored["classifier/bottleneck/weights"][1] == 16
    assert "vgg_shared/conv2d/kernel" in stored
    assert not any(name.startswith(("vgg_grd", "vgg_sat")) for name in stored)


def test_weight_sharing_is_a_switch(tree, tmp_path):
    def vgg_variables(share, aggregation):
        cfg = tiny_config(tree, str(tmp_path), f"model.share_drone_satellite={share}", f"model.aggregation={aggregation}")
        parts = Trainer(cfg, stage_script.university1652_stage(TRAIN_BUILDINGS), show_progress=False).build_graph()
        return {v.op.name for v in parts.graph.get_collection("trainable_variables")}

    shared, apart = vgg_variables("true", "safa"), vgg_variables("false", "safa")
    convs = {n for n in shared if n.startswith("vgg_shared/")}
    assert len(convs) == 26 and not any(n.startswith(("vgg_grd", "vgg_sat")) for n in shared)
    assert "spatial_shared/weights1" in shared and {"spatial_grd/weights1", "spatial_sat/weights1"} <= apart
    assert {n.replace("vgg_shared/", "vgg_grd/") for n in convs} <= apart   # VIGOR's names when not shared
    assert {n.replace("vgg_shared/", "vgg_sat/") for n in convs} <= apart
    assert {n for n in apart if n.startswith("classifier/")} == {n for n in shared if n.startswith("classifier/")}


def test_the_protocol_on_the_checkpoint_is_the_scanned_descriptors_ranked(trained):
    cfg, _, table = trained
    out = os.path.join(stage_dir(cfg, "U1652"), "evaluation")
    with open(os.path.join(out, RESULTS_JSON)) as f:
        written = json.load(f)["tasks"]
    assert set(written) == {"drone -> satellite", "drone -> satellite (multi-query)", "satellite -> drone"}
    assert "| drone -> satellite |" in open(os.path.join(out, RESULTS_MD)).read()
    for row in written.values():
        assert all(0.0 <= row[k] <= 100.0 for k in ("R@1", "R@5", "R@10", "R@top1%", "AP"))
        assert row["R@1"] <= row["R@5"] <= row["R@10"]
    test, reverse, queries = scan_checkpoint(cfg, os.path.join(stage_dir(cfg, "U1652"), "1"))
    index = test.readable
    similarity = l2_normalize(test.grd) @ l2_normalize(test.sat).T
    top1 = index.sat_building[np.argmax(similarity, axis=1)]
    assert written["drone -> satellite"]["R@1"] == pytest.approx(100 * np.mean(top1 == index.grd_building))
    assert written["drone -> satellite"]["queries"] == index.num_grd
    buildings = np.unique(index.grd_building)
    pooled = np.stack([l2_normalize(test.grd[index.grd_building == b]).mean(0) for b in buildings])
    pooled_top1 = index.sat_building[np.argmax(l2_normalize(pooled) @ l2_normalize(test.sat).T, axis=1)]
    assert written["drone -> satellite (multi-query)"]["R@1"] == pytest.approx(100 * np.mean(pooled_top1 == buildings))
    direct = evaluate_instance_retrieval(reverse.sat[:queries], reverse.readable.sat_building[:queries],
                                         reverse.grd, reverse.readable.grd_building)
    assert written["satellite -> drone"]["AP"] == pytest.approx(100 * direct.mean_ap)
    assert written["satellite -> drone"]["R@1"] == pytest.approx(100 * direct.recall[1])
    assert table == written
