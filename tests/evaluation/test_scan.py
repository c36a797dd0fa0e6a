"""The one scan (utils/evaluation/scan.py): same numbers as a plain image-by-image pass, and
skip mode with a broken test image in the trainer's validation."""
import json
import os
import re
import shutil
from types import SimpleNamespace

import numpy as np
import pytest
import tensorflow.compat.v1 as tf

import train_first_E_1
import train_third_E_3
from model import networks
from model.inputs import Inputs
from model.uncertainty import get_sigma, get_spatial_mean, get_uncertainty
from utils.config import load_config
from utils.data.prefetch import ImageLoader
from utils.data.splits import build_loader, load_splits
from utils.errors import DataError
from utils.evaluation.retrieval import validate_top_blocked
from utils.evaluation.scan import Scanner, ScanNetwork, descriptor_pass, readable_subset
from utils.metrics import validate_top
from utils.training.stage import stage_dir
from utils.training.trainer import Trainer, run_stage

TINY = ["data.sat_size=[64, 64]", "data.grd_size=[32, 64]", "model.vgg_width=0.125", "model.fc_dim=16",
        "model.out_dim=16", "model.cholesky_hidden=8", "model.decoder_width=16", "validation.scan_batch=5",
        "data.synthetic.seed=1", "data.synthetic.cities=2", "data.synthetic.tiles_per_side=3",
        "data.synthetic.pano_size=[64, 32]", "data.synthetic.panos_per_tile=1.0",
        "data.train_cities=[NewYork, Seattle]", "data.test_cities=[NewYork, Seattle]"]


def tiny_config(root, runs, *extra):
    return load_config("configs/demo.yaml", TINY + [f"data.root={root}", f"runs_dir={runs}", *extra])


@pytest.fixture(scope="module")
def city(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("scan") / "city")
    cfg = tiny_config(root, "unused")
    load_splits(cfg)  # generates the synthetic city
    return root


@pytest.fixture(scope="module")
def samp(city):
    """A randomly initialised tiny SAMP network, with the TF ops of the plain pass."""
    cfg = tiny_config(city, "unused")
    graph = tf.Graph()
    with graph.as_default():
        tf.set_random_seed(3)
        inputs = Inputs(cfg.data.sat_size, cfg.data.grd_size, 0, with_semi=True)
        net = networks.samp(inputs, cfg)
        plain = {}
        for branch, heatmap, L in (("positive", "heatmap", "L"), ("semi", "heatmap_semi", "L_semi")):
            row, col = get_spatial_mean(net[heatmap])
            plain[branch] = {"row": row, "col": col, "sigma": get_sigma(net[L]), "u": get_uncertainty(net[L])}
        init = tf.global_variables_initializer()
    sess = tf.Session(graph=graph)
    sess.run(init)
    yield cfg, ScanNetwork(sess, inputs, net), plain
    sess.close()


def test_scan_equals_a_plain_pass_image_by_image(samp):
    cfg, network, plain = samp
    _, test = load_splits(cfg)
    scanner = Scanner(network, build_loader(cfg), test, batch_size=4)
    loader = ImageLoader(cfg.data.sat_size, cfg.data.grd_size)
    sess, inputs, net = network.sess, network.inputs, network.net
    described = descriptor_pass(scanner)
    assert described.readable is test and not any(described.skips.values())
    for j in (0, test.num_sat - 1):
        sat = loader.load_sat(test.sat_paths[j])[None]
        expected = sess.run(net["sat_global"], {inputs.sat: sat, inputs.sat_semi: sat})[0]
        np.testing.assert_allclose(described.sat[j], expected, atol=1e-6)
    grd = loader.load_grd(test.grd_paths[2])[None]
    np.testing.assert_allclose(described.grd[2], sess.run(net["grd_global"], {inputs.grd: grd})[0], atol=1e-6)

    side = int(net["heatmap"].shape[1])
    for branch, column in (("positive", 0), ("semi", 2)):
        scan = scanner.pairs(test.labels[:, column], branch=branch, keep_heatmaps=3)
        for i in (0, test.num_grd - 1):
            sat = loader.load_sat(test.sat_paths[test.labels[i, column]])[None]
            grd = loader.load_grd(test.grd_paths[i])[None]
            out = sess.run(plain[branch], {inputs.sat: sat, inputs.sat_semi: sat, inputs.grd: grd})
            scale = 640.0 / side   # heatmap pixels -> 640-px delta: row = 320 + d0, column = 319 - d1
            np.testing.assert_allclose(scan.values["offsets"][i],
                                       [out["row"][0] * scale - 320, 319 - out["col"][0] * scale], atol=1e-3)
            s = out["sigma"][0] * scale ** 2
            np.testing.assert_allclose(scan.values["sigma"][i], [[s[0, 0], -s[0, 1]], [-s[1, 0], s[1, 1]]],
                                       rtol=1e-4)
            assert scan.values["uncertainty"][i] == pytest.approx(out["u"][0] * scale, rel=1e-5)
        assert scan.extra["heatmaps"].shape == (3, side, side) and not scan.bad.any()


def raw_semi_cholesky(network, loader, index, tiles):
    """The semi head's raw L (N, 3) for panorama i in tile tiles[i], in one plain batch."""
    sat = np.stack([loader.load_sat(index.sat_paths[t]) for t in tiles])
    grd = np.stack([loader.load_grd(path) for path in index.grd_paths])
    inputs = network.inputs
    return network.sess.run(network.net["L_semi"], {inputs.sat: sat, inputs.sat_semi: sat, inputs.grd: grd})


def reference_uncertainty_640(L, side):
    """SAMP's get_uncertainty (closed form) in heatmap pixels, scaled to 640-px units."""
    l0, l1, l2 = (L[:, k].astype(np.float64) for k in range(3))
    return 2.0 * np.sqrt(l0 ** 2 + l1 ** 2 + l2 ** 2 + 2.0 * np.abs(l0 * l2)) * (640.0 / side)


def reference_sigma_640(L, side):
    """get_sigma (L L^T over row, column) in 640-px units over (d0, d1): d1 runs against columns."""
    l0, l1, l2 = (L[:, k].astype(np.float64) for k in range(3))
    cross = -l0 * l1
    sigma = np.stack([np.stack([l0 ** 2, cross], -1), np.stack([cross, l1 ** 2 + l2 ** 2], -1)], -2)
    return sigma * (640.0 / side) ** 2


def test_e3_uncertainty_pass_is_the_reference_at_640_px(samp):
    """E_3's pass (semi head, no offsets) at a heatmap side other than 640 against SAMP's maths on
    the head's raw L, times 640 / side (Sigma: its square)."""
    cfg, network, _ = samp
    cfg = tiny_config(cfg.data.root, "unused", "stages.E_3.uncertainty_batch=4")
    train, _ = load_splits(cfg)
    side = int(network.net["heatmap_semi"].shape[1])
    assert side != 640 and train.num_grd > 4
    scanner = Scanner(network, build_loader(cfg), train, batch_size=4)
    trainer = SimpleNamespace(cfg=cfg, train_index=train, log=print,
                              scanner=lambda index, batch_size: scanner.over(index))
    uncertainty = train_third_E_3.semi_positive_uncertainties(trainer)
    loader = ImageLoader(cfg.data.sat_size, cfg.data.grd_size)
    for column in (1, 2, 3):
        L = raw_semi_cholesky(network, loader, train, train.labels[:, column])
        np.testing.assert_allclose(uncertainty[:, column - 1], reference_uncertainty_640(L, side), rtol=1e-5)
    scan = scanner.pairs(train.labels[:, 3], branch="semi", offsets=False)
    assert set(scan.values) == {"sigma", "uncertainty"}
    np.testing.assert_allclose(scan.values["sigma"], reference_sigma_640(L, side), rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(scan.values["uncertainty"], reference_uncertainty_640(L, side), rtol=1e-5)


def broken_copy(city, tmp_path):
    """The city with one test panorama truncated and one test-only positive tile emptied."""
    root = str(tmp_path / "broken")
    shutil.copytree(city, root)
    _, test = load_splits(tiny_config(root, "unused"))
    bad_grd = 1
    with open(test.grd_paths[bad_grd], "r+b") as f:
        f.truncate(20)
    bad_sat = int(test.labels[4, 0])
    open(test.sat_paths[bad_sat], "wb").close()
    return root, test, bad_grd, bad_sat


def test_skip_mode_training_validates_without_a_broken_test_image(city, tmp_path):
    root, test, bad_grd, bad_sat = broken_copy(city, tmp_path)
    one_step = ["stages.E_1a.batch_size=2", "stages.E_1a.steps_per_epoch=1", "stages.E_1a.epochs=1"]
    cfg = tiny_config(root, str(tmp_path / "runs"), "data.on_bad_sample=skip", *one_step)
    record = run_stage(train_first_E_1.E_1a, cfg, show_progress=False)[-1]
    run = stage_dir(cfg, "E_1a")
    sat, grd = np.load(os.path.join(run, "sat_global_descriptor.npy")), np.load(os.path.join(run, "grd_global_descriptor.npy"))
    assert np.flatnonzero(~np.any(grd, axis=1)).tolist() == [bad_grd]
    assert np.flatnonzero(~np.any(sat, axis=1)).tolist() == [bad_sat]
    left_out = {bad_grd} | set(np.flatnonzero(test.labels[:, 0] == bad_sat).tolist())
    assert record["unreadable_tiles"] == 1 and record["unreadable_panoramas"] == 1
    assert record["queries_left_out"] == len(left_out) >= 2

    # the same numbers by hand: drop the bad tile, its panoramas and the bad panorama; semi
    # labels on the bad tile become the positive
    keep_sat = np.delete(np.arange(test.num_sat), bad_sat)
    keep_grd = np.array([i for i in range(test.num_grd) if i not in left_out])
    renumber = {old: new for new, old in enumerate(keep_sat)}
    labels = np.array([[renumber.get(t, renumber[row[0]]) for t in row] for row in test.labels[keep_grd]])
    expected = validate_top(grd[keep_grd], sat[keep_sat], labels)
    assert (record["top1_percent"], record["top1"], record["top5"], record["hit_rate"]) == pytest.approx(expected)
    subset, sat_rows, grd_rows = readable_subset(test, ~np.any(sat, axis=1), ~np.any(grd, axis=1))
    np.testing.assert_array_equal(subset.labels, labels)
    assert validate_top_blocked(grd[grd_rows], sat[sat_rows], subset.labels) == pytest.approx(expected)

    # the run recorded what produced it
    assert load_config(os.path.join(run, "config.yaml")).data.on_bad_sample == "skip"
    with open(os.path.join(run, "environment.json")) as f:
        start = json.load(f)["starts"][-1]
    assert re.fullmatch(r"[0-9a-f]{40}", start["git"]["commit"]) and isinstance(start["git"]["dirty"], bool)
    assert start["packages"]["numpy"] == np.__version__ and start["command"]

    # error mode: the first unreadable image stops the scan, naming it
    trainer = Trainer(tiny_config(root, str(tmp_path / "runs2"), *one_step), train_first_E_1.E_1a, show_progress=False)
    parts = trainer.build_graph()
    with tf.Session(graph=parts.graph) as sess:
        trainer.sess = sess
        sess.run(parts.init_op)
        with pytest.raises(DataError, match=re.escape(os.path.basename(test.sat_paths[bad_sat]))):
            trainer.descriptors(trainer.test_index)


def test_evaluate_a_checkpoint_with_its_run_config_searches_once(samp, tmp_path, monkeypatch):
    import evaluate
    from utils.evaluation import report, retrieval
    from utils.training.records import write_record
    cfg, network, _ = samp
    run = tmp_path / "runs" / "E_2_2"
    write_record(str(run), cfg)
    with network.sess.graph.as_default():
        tf.train.Saver().save(network.sess, str(run / "1" / "model.ckpt"))
    calls, search = [], retrieval.search

    def counted(*args, **kwargs):
        calls.append(args[0].shape)
        return search(*args, **kwargs)

    monkeypatch.setattr(retrieval, "search", counted)   # what inference's evaluation_search calls
    monkeypatch.setattr(report, "search", counted)
    monkeypatch.setattr(report, "MAX_QUERY_FIGURES", 1)  # figures are not under test here
    evaluate.main(["--checkpoint", str(run / "1"), "--out", str(tmp_path / "eval")])  # config: the run's
    searched = list(calls)
    monkeypatch.undo()
    _, test = load_splits(cfg)
    with open(tmp_path / "eval" / "results.json") as f:
        results = json.load(f)
    described = descriptor_pass(Scanner(network, build_loader(cfg), test, batch_size=7))
    expected = validate_top(described.grd, described.sat, test.labels)
    assert searched == [described.grd.shape]
    assert (results["retrieval"]["top1_percent"], results["retrieval"]["top1"], results["retrieval"]["top5"],
            results["retrieval"]["hit_rate"]) == pytest.approx(expected)
    assert results["calibration"]["count"] == test.num_grd
    assert load_config(str(tmp_path / "eval" / "config.yaml")).model.fc_dim == 16
    assert (tmp_path / "eval" / "environment.json").exists()
