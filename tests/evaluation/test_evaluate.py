"""evaluate_outputs / evaluate.py / compare.py on a tiny hand-built index."""
import json
import os

import cv2
import numpy as np
import pytest

import compare
import evaluate
from utils.config import load_config
from utils.data.dataset import SplitIndex
from utils.evaluation.report import evaluate_outputs
from utils.evaluation.summaries import predicted_gps, true_offsets
from utils.metrics import gps2distance

RETRIEVED = np.array([0, 1, 2, 4, 3, 0])     # top-1 tile of each query
POSITIVE_DELTA = np.array([[0, 0], [100, 0], [0, -200], [50, 50], [-80, 20], [300, 400]], float)
LABELS = np.array([[0, 1, 2, 3], [1, 0, 2, 3], [2, 0, 1, 3], [3, 4, 0, 1], [4, 0, 1, 2], [0, 1, 2, 3]])


@pytest.fixture
def index(tmp_path):
    sat_gps = np.column_stack([40.0 + 0.0003 * np.arange(5), np.full(5, -74.0)])
    sat_paths = np.array([str(tmp_path / f"satellite_{lat}_{lng}.png") for lat, lng in sat_gps])
    positive = LABELS[:, 0]
    grd_gps = predicted_gps(sat_gps, positive, POSITIVE_DELTA)
    grd_paths = np.array([str(tmp_path / f"p{i},{lat},{lng},.jpg") for i, (lat, lng) in enumerate(grd_gps)])
    cv2.imwrite(sat_paths[0], np.full((64, 64, 3), 90, np.uint8))
    cv2.imwrite(grd_paths[0], np.full((32, 64, 3), 160, np.uint8))
    deltas = np.stack([true_offsets(grd_gps, sat_gps, LABELS[:, c]) for c in range(4)], axis=1)
    return SplitIndex(sat_paths, sat_gps, np.array(["A"] * 5), grd_paths, grd_gps,
                      np.array(["A"] * 6), LABELS, deltas, np.full(5, 0.114), "tiny test split")


def _descriptors():
    sat = np.eye(5, 8, dtype=np.float32)
    grd = sat[RETRIEVED].copy()
    return sat, grd


def test_evaluate_outputs_zero_offsets(index, tmp_path):
    sat, grd = _descriptors()
    out = tmp_path / "zero"
    results = evaluate_outputs(index, sat, grd, out_dir=str(out), name="zero offsets")
    r = results["retrieval"]
    # queries 3 and 4 retrieve a wrong tile; 3's is a semi-positive, 4's is not
    assert (r["top1"], r["top5"], r["top1_percent"], r["hit_rate"]) == pytest.approx((4 / 6, 1, 4 / 6, 5 / 6))
    wrong = [gps2distance(*index.grd_gps[q], *index.sat_gps[RETRIEVED[q]]) for q in (3, 4)]
    expected = np.array([0.0, 11.4, 22.8, wrong[0], wrong[1], 57.0])
    with open(out / "results.json") as handle:
        saved = json.load(handle)
    # VIGOR's arccos great circle resolves ~0.1 m near zero distance
    assert saved["localization"]["mean"] == pytest.approx(expected.mean(), abs=0.1)
    assert saved["localization"]["within"]["1"] == pytest.approx(1 / 6)
    assert saved["localization"]["offsets"] == "zero (tile centre)"
    assert len(saved["curves"]["localization"]["accuracy"]) == 499
    assert "fine_localization" not in saved and "calibration" not in saved
    for name in ("results.json", "results.md", "accuracy_curve.png", "per_query.npz"):
        assert (out / name).stat().st_size > 0
    per_query = np.load(out / "per_query.npz")
    np.testing.assert_array_equal(per_query["top1"], RETRIEVED)


def test_evaluate_outputs_full(index, tmp_path):
    sat, grd = _descriptors()
    exact = true_offsets(index.grd_gps, index.sat_gps, RETRIEVED)
    positive = index.deltas[:, 0] + [10.0, 0.0]
    sigma = np.tile(400.0 * np.eye(2), (6, 1, 1))   # sigma 20 px: the 10-px error is 0.5 sigma
    heatmaps = np.random.default_rng(0).random((2, 16, 16))
    out = tmp_path / "full"
    results = evaluate_outputs(index, sat, grd, offsets=exact, offsets_positive=positive,
                                        sigma=sigma, heatmaps=heatmaps, out_dir=str(out), name="SAMP")
    assert results["localization"]["mean"] == pytest.approx(0.0, abs=0.1)
    fine = results["fine_localization"]
    assert fine["mean"] == pytest.approx(1.14, abs=0.1) and fine["mean_px"] == pytest.approx(10.0)
    calibration = results["calibration"]
    assert calibration["tile"] == "positive tile"
    assert calibration["observed"] == {"1": 1.0, "2": 1.0, "3": 1.0}
    assert calibration["expected"]["2"] == pytest.approx(0.8647, abs=1e-4)
    for name in ("calibration.png", "query_0.png", "query_1.png", "results.md"):
        assert (out / name).stat().st_size > 0
    assert results["files"]["queries"] == ["query_0.png", "query_1.png"]
    saved = json.loads((out / "results.json").read_text())  # strict JSON: the NaN is null
    assert saved["calibration"]["spearman_uncertainty_error"] is None
    text = (out / "results.md").read_text()
    assert "| 66.67 | 100.00 | 66.67 | 83.33 |" in text and "Calibration" in text


def test_shape_errors_name_the_array(index):
    sat, grd = _descriptors()
    with pytest.raises(ValueError, match="grd_desc"):
        evaluate_outputs(index, sat, grd[:4])
    with pytest.raises(ValueError, match="offsets_positive"):
        evaluate_outputs(index, sat, grd, offsets_positive=np.zeros((6, 3)))
    with pytest.raises(ValueError, match="sigma needs"):
        evaluate_outputs(index, sat, grd, sigma=np.tile(np.eye(2), (6, 1, 1)))


def test_cli_on_vigor_layout_and_compare(index, tmp_path, monkeypatch):
    sat, grd = _descriptors()
    layout = tmp_path / "Overall"
    layout.mkdir()
    np.save(layout / "sat_global_descriptor.npy", sat.astype(np.float64))  # VIGOR saved float64
    np.save(layout / "grd_global_descriptor.npy", grd.astype(np.float64))
    np.save(layout / "delta_same_regression.npy", true_offsets(index.grd_gps, index.sat_gps, RETRIEVED))
    monkeypatch.setattr(evaluate, "load_index", lambda *args, **kwargs: (load_config(), index))
    assert evaluate.main(["--descriptors", str(layout), "--dataset-config", "unused.yaml",
                          "--out", str(tmp_path / "eval_overall")]) == 0
    os.remove(layout / "delta_same_regression.npy")
    assert evaluate.main(["--descriptors", str(layout), "--dataset-config", "unused.yaml",
                          "--out", str(tmp_path / "eval_centre"), "--name", "centre"]) == 0
    overall = json.loads((tmp_path / "eval_overall" / "results.json").read_text())
    assert overall["name"] == "Overall" and overall["localization"]["offsets"] == "predicted"
    assert overall["localization"]["mean"] == pytest.approx(0.0, abs=0.1)

    table = compare.compare([str(tmp_path / "eval_centre" / "results.json"),
                             str(tmp_path / "eval_overall" / "results.json")],
                            labels=["SAFA", "VIGOR"], out_dir=str(tmp_path / "cmp"))
    assert "| SAFA |" in table and "| VIGOR |" in table
    assert (tmp_path / "cmp" / "comparison.md").stat().st_size > 0
    assert (tmp_path / "cmp" / "accuracy_curve.png").stat().st_size > 0
    with pytest.raises(ValueError, match="labels"):
        compare.compare([str(tmp_path / "eval_centre" / "results.json")], labels=["a", "b"])


def test_checkpoint_option_is_lazy(monkeypatch, index, tmp_path):
    monkeypatch.setattr(evaluate, "load_index", lambda *args, **kwargs: (load_config(), index))
    sat, grd = _descriptors()
    calls = {}

    def fake_outputs(cfg, checkpoint, split, network=None):
        calls["checkpoint"] = checkpoint
        return {"sat_desc": sat, "grd_desc": grd, "offsets": None}

    monkeypatch.setattr(evaluate, "outputs_from_checkpoint", fake_outputs)
    assert evaluate.main(["--checkpoint", "runs/x/E_3/1", "--config", "c.yaml",
                          "--out", str(tmp_path / "ck")]) == 0
    assert calls["checkpoint"] == "runs/x/E_3/1"
    recorded, used = load_config(str(tmp_path / "ck" / "config.yaml")), load_config()  # the evaluation's record
    assert {k: v for k, v in recorded.items() if k != "config_path"} == {k: v for k, v in used.items() if k != "config_path"}
