import os

import pytest

from utils.config import load_config
from utils.errors import ConfigError


def test_defaults_are_the_original_hyper_parameters():
    cfg = load_config()
    assert cfg.data.sat_size == [320, 320] and cfg.data.grd_size == [320, 640]
    assert (cfg.stages.E_1a.epochs, cfg.stages.E_1a.batch_size, cfg.stages.E_1a.lr) == (30, 14, 1e-5)
    assert (cfg.stages.E_1a.decay_steps, cfg.stages.E_1a.decay_rate) == (150000, 0.1)
    assert cfg.stages.E_1b.epochs == 15
    assert (cfg.stages.E_2_1.epochs, cfg.stages.E_2_1.lr, cfg.stages.E_2_1.decay_steps) == (180, 1e-5, None)
    assert (cfg.stages.E_2_2.epochs, cfg.stages.E_2_2.lr, cfg.stages.E_2_2.decay_steps) == (80, 5e-6, 910)
    assert (cfg.stages.E_2_2.nll_weight_semi, cfg.stages.E_2_2.nll_weight_pos) == (1e-4, 1e-3)
    assert (cfg.stages.E_3.epochs, cfg.stages.E_3.lr, cfg.stages.E_3.decay_steps) == (150, 1e-6, "epoch")
    assert (cfg.stages.E_3.weight_a, cfg.stages.E_3.weight_b, cfg.stages.E_3.weight_c) == (0.3, 75.0, 2.0)
    assert (cfg.mining.pool_size, cfg.mining.keep) == (10000, 100)
    assert cfg.model.fc_dim == 4096 and cfg.model.out_dim == 2048 and cfg.model.cholesky_hidden == 512


def test_cross_area_and_base_chain():
    cross = load_config("configs/vigor_cross_area.yaml")
    assert cross.data.same_area is False
    assert (cross.stages.E_1a.epochs, cross.stages.E_1b.epochs) == (11, 10)
    corrected = load_config("configs/vigor_same_area_corrected.yaml")
    assert corrected.data.resolution == "corrected" and corrected.data.same_area is True


def test_overrides_parse_yaml_values():
    cfg = load_config("configs/demo.yaml", ["stages.E_1a.epochs=7", "data.sat_size=[128, 128]", "seed=3",
                                            "model.vgg16_npy=null"])
    assert cfg.stages.E_1a.epochs == 7
    assert cfg.data.sat_size == [128, 128]
    assert cfg.seed == 3 and cfg.model.vgg16_npy is None
    assert cfg.stages.E_1a.batch_size == 14  # untouched default


def test_unknown_keys_are_named(tmp_path):
    with pytest.raises(ConfigError, match="stages.E_1a.epoch"):
        load_config("configs/demo.yaml", ["stages.E_1a.epoch=3"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("data:\n  sat_sise: [64, 64]\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: unknown key 'data.sat_sise'"):
        load_config(str(bad))
    broken = tmp_path / "broken.yaml"
    broken.write_text("data: [unclosed\n")
    with pytest.raises(ConfigError, match=r"broken.yaml line \d+: not valid YAML"):
        load_config(str(broken))
    with pytest.raises(ConfigError, match="not found"):
        load_config(os.path.join(str(tmp_path), "missing.yaml"))


def test_values_are_typed_once_at_load(tmp_path):
    cfg = load_config("configs/demo.yaml", ["stages.E_1a.lr=1e9", "stages.E_1a.decay_rate=1", "data.resolution=0.1"])
    assert cfg.stages.E_1a.lr == 1e9 and isinstance(cfg.stages.E_1a.lr, float)  # YAML 1.1 reads 1e9 as text
    assert isinstance(cfg.stages.E_1a.decay_rate, float) and cfg.data.resolution == 0.1
    with pytest.raises(ConfigError, match=r"--set stages.E_1a.epochs=abc: 'stages.E_1a.epochs' must be int"):
        load_config("configs/demo.yaml", ["stages.E_1a.epochs=abc"])
    with pytest.raises(ConfigError, match=r"'data.sat_size\[1\]' must be int"):
        load_config("configs/demo.yaml", ["data.sat_size=[64, big]"])
    with pytest.raises(ConfigError, match=r"'data.on_bad_sample' must be 'error' or 'skip'"):
        load_config("configs/demo.yaml", ["data.on_bad_sample=ignore"])
    with pytest.raises(ConfigError, match=r"'stages.E_3.decay_steps' must be int or null or 'epoch'"):
        load_config("configs/demo.yaml", ["stages.E_3.decay_steps=daily"])
    bad = tmp_path / "typed.yaml"
    bad.write_text("base: " + os.path.abspath("configs/demo.yaml") + "\nmodel:\n  fc_dim: wide\n")
    with pytest.raises(ConfigError, match=r"typed.yaml: 'model.fc_dim' must be int \(as in configs/default.yaml\), not 'wide'"):
        load_config(str(bad))


def test_init_from_path_can_be_set_as_the_docs_say():
    cfg = load_config("configs/demo.yaml", ["stages.E_1b.init_from.path=/x/7"])
    assert cfg.stages.E_1b.init_from == {"stage": "E_1a", "epoch": "last", "path": "/x/7"}
    cfg = load_config("configs/demo.yaml", ["stages.E_1b.init_from={path: /x/7}"])
    assert cfg.stages.E_1b.init_from.path == "/x/7"


def test_E_3_weight_midpoint_is_a_number_or_the_median(tmp_path):
    import numpy as np

    from model.losses import semi_positive_weight
    from train_third_E_3 import weight_midpoint

    assert load_config("configs/demo.yaml", ["stages.E_3.weight_b=median"]).stages.E_3.weight_b == "median"
    with pytest.raises(ConfigError, match="weight_b"):
        load_config("configs/demo.yaml", ["stages.E_3.weight_b=mean"])
    u = np.array([[700.0, 720.0, 760.0], [740.0, 790.0, 705.0]])
    assert weight_midpoint(u, 75.0) == 75.0
    assert weight_midpoint(u, "median") == 730.0
    w = semi_positive_weight(u, b=weight_midpoint(u, "median"))
    # half the semi-positives below the midpoint's weight 1/(1+c) = 1/3, half above
    assert (w < 1 / 3).sum() == 3 and (w > 1 / 3).sum() == 3 and w.min() < 0.01 and w.max() > 0.99
