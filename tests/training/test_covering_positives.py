"""data.positives covering through the stages: E_1a and E_2_1 train on it (2 steps, tiny), fed the
chosen tile's image and offset; E_3 refuses it in one line."""
import os
from dataclasses import replace

import numpy as np
import pytest

import train_first_E_1
import train_second_E_2_1
import train_third_E_3
from tests.training.test_trainer import run_quiet, tiny_config
from utils.data.splits import load_splits
from utils.errors import ConfigError
from utils.training.stage import stage_dir

TWO_STEPS = {"data.positives": "covering", **{f"stages.{s}.{k}": v for s in ("E_1a", "E_2_1")
                                              for k, v in (("epochs", 1), ("steps_per_epoch", 2))}}


def recording(stage, seen):
    """The stage with an extra_feed hook keeping every step's batch and fed offsets."""
    def record(session, auxiliary, prepared, item, feed):
        seen.append((item["batch"], item["delta"], item.get("delta_semi")))
    return replace(stage, extra_feed=record)


def test_E_1a_then_E_2_1_train_on_covering_positives(city, tmp_path):
    cfg = tiny_config(city, str(tmp_path), **TWO_STEPS)
    seen = []
    for stage in (train_first_E_1.E_1a, train_second_E_2_1.E_2_1):
        records = run_quiet(recording(stage, seen), cfg)
        assert np.isfinite(records[-1]["loss"]) and os.path.isdir(os.path.join(stage_dir(cfg, stage.name), "1"))
    assert len(seen) == 4
    train, _ = load_splits(cfg)
    columns = set()
    for batch, delta, delta_semi in seen:
        assert batch.positive_choice is not None
        columns.update(batch.positive_choice.tolist())
        np.testing.assert_array_equal(batch.sat, train.labels[batch.grd, batch.positive_choice])
        np.testing.assert_allclose(delta, train.deltas[batch.grd, batch.positive_choice])
        if batch.semi is not None:   # E_2_1: the semi-positive is another tile holding the panorama
            assert (batch.semi_choice != batch.positive_choice).all()
            np.testing.assert_allclose(delta_semi, train.deltas[batch.grd, batch.semi_choice])
    assert columns - {0}, "no positive off the central column in 4 batches"


def test_E_3_refuses_covering_in_one_line(city, tmp_path):
    cfg = tiny_config(city, str(tmp_path), **{"data.positives": "covering"})
    with pytest.raises(ConfigError, match="E_3 cannot train with data.positives covering: .*column 0") as error:
        run_quiet(train_third_E_3.E_3, cfg)
    assert "\n" not in str(error.value)
