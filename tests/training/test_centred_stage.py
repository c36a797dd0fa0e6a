"""E_1a with data.positives=centred on the fixture city: each panorama against its own window (one-to-one),
mining on, validated with the one-to-one recalls; stages that read semi-positives refuse it."""
import numpy as np
import pytest

import train_first_E_1
import train_second_E_2_1
from tests.data.test_centred_positives import one_city
from tests.training.test_trainer import tiny_overrides
from utils.config import load_config
from utils.errors import ConfigError
from utils.training.trainer import Trainer, run_stage


def test_e1a_trains_on_centred_windows_with_mining_and_validates_one_to_one(city, tmp_path):
    root, name = one_city(city, tmp_path)
    cfg = load_config("configs/demo.yaml", tiny_overrides(root, str(tmp_path / "runs")) + [
        f"data.train_cities=[{name}]", f"data.test_cities=[{name}]",
        "data.positives=centred", "data.resolution=dataset", "data.use_cache=never", "stages.E_1a.steps_per_epoch=1",
        "stages.E_1a.mining_start=2", "stages.E_1a.validate_every=2"])
    trainer = Trainer(cfg, train_first_E_1.E_1a, show_progress=False)
    assert trainer.train_index.num_sat == len(trainer.train_index)        # one window per panorama
    records = trainer.run()
    assert trainer.mining.ready and [r["global_step"] for r in records] == [1, 2]
    last = records[-1]
    assert np.isfinite(last["loss"]) and last["r@1"] == last["top1"] and 0.0 <= last["r@1"] <= last["r@10"] <= 1.0
    for stage in (train_first_E_1.E_1b, train_second_E_2_1.E_2_1):
        with pytest.raises(ConfigError, match=f"{stage.name} learns offsets from semi-positives.*central"):
            run_stage(stage, cfg, show_progress=False)
