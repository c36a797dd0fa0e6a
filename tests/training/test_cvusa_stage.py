"""CVUSA through the config: data.dataset cvusa reads a tree in the released layout, synthetic_cvusa is
generated on first use (and again when its parameters change); SAFA trains two steps on it with polar
aerials, validates with SAFA's r@1, r@5, r@10, r@1%, and evaluate.py reports them without metres.
(SAFA's checkpoint names are checked by tests/training/test_baselines.py.)"""
import json
import os

import numpy as np
import pytest

import compare
import evaluate
import train_first_E_1
from tests.data.test_cvusa import write_tree
from utils.config import load_config
from utils.data import cvusa
from utils.data.splits import load_splits
from utils.errors import ConfigError, DataError
from utils.evaluation.summaries import is_one_to_one
from utils.training.stage import stage_dir
from utils.training.trainer import run_stage

TINY_SET = ["data.synthetic_cvusa.pairs=16", "data.synthetic_cvusa.aerial_size=32",
            "data.synthetic_cvusa.pano_width=64", "data.synthetic_cvusa.val_fraction=0.25"]


def tiny_config(root, runs, *extra):
    return load_config("configs/demo_cvusa.yaml", [
        f"data.root={root}", f"runs_dir={runs}", "data.sat_size=[16, 64]", "data.grd_size=[16, 64]",
        "model.vgg_width=0.125", "validation.scan_batch=8", "stages.SAFA.batch_size=4",
        "stages.SAFA.steps_per_epoch=2", "stages.SAFA.epochs=1", "stages.SAFA.validate_every=1", *TINY_SET, *extra])


def test_cvusa_tree_through_the_config(tmp_path):
    tree = write_tree(tmp_path / "CVUSA")
    cfg = load_config("configs/cvusa.yaml", [f"data.root={tree}"])
    assert (cfg.data.polar, cfg.data.sat_size, cfg.data.grd_size) == (True, [112, 616], [112, 616])
    assert (cfg.stages.SAFA.batch_size, cfg.stages.SAFA.lr, cfg.stages.SAFA.epochs) == (32, 1e-5, 10)
    train, test = load_splits(cfg)
    expected_train, expected_test = cvusa.load_cvusa(tree)
    assert list(train.grd_paths) == list(expected_train.grd_paths) and list(test.sat_paths) == list(expected_test.sat_paths)
    assert is_one_to_one(test.labels, test.num_sat)
    assert not is_one_to_one(np.zeros((2, 4), int), 2)                     # both queries on aerial 0
    with pytest.raises(ConfigError, match="data.dataset"):
        load_config("configs/cvusa.yaml", ["data.dataset=cvusaa"])
    os.remove(os.path.join(tree, "bingmap", "19", "0000004.jpg"))         # val-19zl.csv's second pair
    with pytest.raises(DataError, match=r"val-19zl.csv, line 2: .*bingmap/19/0000004.jpg is missing"):
        load_splits(cfg)


def test_synthetic_cvusa_is_generated_once_and_again_on_new_parameters(tmp_path):
    root = tmp_path / "synthetic_cvusa"
    cfg = tiny_config(root, tmp_path)
    train, test = load_splits(cfg)
    assert (len(train), len(test)) == (12, 4) and is_one_to_one(test.labels, test.num_sat)
    manifest = os.path.join(root, "synthetic_manifest.json")
    written = os.stat(manifest).st_mtime_ns
    load_splits(cfg)
    assert os.stat(manifest).st_mtime_ns == written                       # reused as it is
    train, test = load_splits(tiny_config(root, tmp_path, "data.synthetic_cvusa.pairs=20"))
    assert (len(train), len(test)) == (15, 5)                             # regenerated


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    base = tmp_path_factory.mktemp("cvusa")
    cfg = tiny_config(base / "synthetic_cvusa", base / "runs")
    return cfg, run_stage(train_first_E_1.SAFA, cfg, show_progress=False)


def test_safa_trains_two_steps_on_polar_aerials_and_validates_with_safas_recalls(trained):
    cfg, metrics = trained
    (record,) = metrics
    assert record["global_step"] == 2 and np.isfinite(record["loss"])
    # 4 test pairs: r@K counts queries with fewer than K closer aerials; r@1% (K = int(0.04) -> 0) none
    assert record["r@1"] == record["top1"] and record["r@1"] <= record["r@5"] == record["r@10"] == 1.0
    assert record["r@1%"] == 0.0
    with open(os.path.join(stage_dir(cfg, "SAFA"), "train.log")) as f:
        line = f.read()
    assert f"r@1 {100 * record['r@1']:.1f}%" in line and "r@10 100.0%  r@1% 0.0%" in line


def test_evaluate_py_reports_safas_recalls_and_no_metres(trained, tmp_path):
    cfg, metrics = trained
    out = tmp_path / "eval"
    assert evaluate.main(["--checkpoint", os.path.join(stage_dir(cfg, "SAFA"), "1"), "--out", str(out)]) == 0
    with open(out / "results.json") as f:
        results = json.load(f)
    recalls = results["retrieval"]["one_to_one"]
    assert recalls["r@1"] == pytest.approx(metrics[0]["r@1"]) and recalls["r@5"] == pytest.approx(metrics[0]["r@5"])
    assert "localization" not in results and results["curves"] == {}
    text = (out / "results.md").read_text()
    assert "| r@1 | r@5 | r@10 | r@1% |" in text and "no GPS" in text and "nan" not in text
    assert "| - | - |" in compare.comparison_table(compare.read_results([str(out / "results.json")]))


def test_published_cvusa_and_cvact_print_the_readme_numbers_with_their_source(capsys):
    assert compare.main(["--published", "cvusa"]) == 0
    out = capsys.readouterr().out
    assert "| r@1 | r@5 | r@10 | r@1% |" in out
    assert "| SAFA (polar) | 89.84 | 96.93 | 98.14 | 99.64 | SAFA's README.md" in out
    assert "YujiaoShi/cross_view_localization_SAFA" in out and "not in the stored material" in out
    assert compare.main(["--published", "cvact"]) == 0
    assert "| SAFA (polar) | 81.03 | 92.80 | 94.84 | 98.17 |" in capsys.readouterr().out
