"""University-1652's three-view training (model.bridge_view=drone) at a tiny size: off, the two-view
graph as before; on, a drone image per row of the row's building through the satellite's branch and
the one classifier, each view's instance loss in the total."""
import os

import numpy as np
import pytest

import train_university1652 as stage_script
from utils.data.bridge_views import BridgeImages
from utils.errors import ConfigError
from utils.training.trainer import Trainer, run_stage

from tests.training.test_university1652_stage import TRAIN_BUILDINGS, tiny_config, tree  # noqa: F401

STREET = ("data.query_view=street",)


def built(cfg):
    return Trainer(cfg, stage_script.university1652_stage(TRAIN_BUILDINGS), show_progress=False).build_graph()


def variables(parts):
    return [(v.op.name, tuple(v.shape.as_list())) for v in parts.graph.get_collection("variables")]


def test_off_is_the_two_view_graph_and_on_adds_views_but_no_variable(tree, tmp_path):  # noqa: F811
    off = built(tiny_config(tree, str(tmp_path), *STREET))
    on = built(tiny_config(tree, str(tmp_path), *STREET, "model.bridge_view=drone"))
    assert set(off.losses) == {"loss", "loss_instance", "loss_triplet"}
    assert "bridge_x" not in {op.name for op in off.graph.get_operations()} and "bridge_x" not in off.auxiliary
    assert set(on.losses) == {"loss", "loss_instance", "loss_triplet", "loss_instance_sat", "loss_instance_grd",
                              "loss_instance_bridge"}
    assert variables(on) == variables(off)          # the drone reuses the satellite's branch and the classifier
    trainable = on.graph.get_collection("trainable_variables")
    classifier = [v.op.name for v in trainable if v.op.name.startswith("classifier/")]
    assert sorted(classifier) == ["classifier/bottleneck/biases", "classifier/bottleneck/weights",
                                  "classifier/logits/biases", "classifier/logits/weights"]
    logits = on.graph.get_tensor_by_name("classifier/logits/weights/read:0")
    forward = {op.name.split("/")[0] for op in logits.consumers() if op.type == "MatMul"} - {"train"}  # - gradients
    assert forward == {"classifier", "classifier_1", "classifier_2"}   # three views read the one set


def test_two_steps_with_three_views_train_every_view_and_the_pull(tree, tmp_path):  # noqa: F811
    cfg = tiny_config(tree, str(tmp_path), *STREET, "model.bridge_view=drone", "stages.U1652.bridge_weight=0.5",
                      "stages.U1652.validate_every=100")
    metrics = run_stage(stage_script.university1652_stage(TRAIN_BUILDINGS), cfg, show_progress=False)
    row = metrics[-1]
    assert row["global_step"] == 2
    views = [row[f"loss_instance_{v}"] for v in ("sat", "grd", "bridge")]
    assert all(np.isfinite(v) and v > 0 for v in views)
    assert row["loss_instance"] == pytest.approx(sum(views), rel=1e-5)
    assert 0.0 <= row["loss_bridge"] <= 4.0
    assert row["loss"] == pytest.approx(row["loss_instance"] + row["loss_triplet"] + 0.5 * row["loss_bridge"], rel=1e-5)


def test_the_drone_of_a_row_is_of_its_building_and_drawn_reproducibly(tree):  # noqa: F811
    buildings = np.array(sorted(os.listdir(os.path.join(tree, "train", "satellite"))))
    images = BridgeImages(str(tree), "drone", buildings, seed=3)
    rows = np.arange(len(buildings))
    paths = images.draw(buildings, rows)
    assert [os.path.basename(os.path.dirname(p)) for p in paths] == list(buildings)
    assert list(images.draw(buildings, rows)) == list(paths)
    drawn = {tuple(BridgeImages(str(tree), "drone", buildings, seed=s).draw(buildings, rows)) for s in range(6)}
    assert len(drawn) > 1     # several drone images per building: the seed changes the draw


def test_bad_bridge_settings_are_one_line_config_errors(tree, tmp_path):  # noqa: F811
    with pytest.raises(ConfigError, match="data.query_view=street"):
        built(tiny_config(tree, str(tmp_path), "model.bridge_view=drone"))
    with pytest.raises(ConfigError, match="model.bridge_view is none"):
        built(tiny_config(tree, str(tmp_path), *STREET, "stages.U1652.bridge_weight=1.0"))
