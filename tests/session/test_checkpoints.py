import os

import numpy as np
import pytest
import tensorflow.compat.v1 as tf

from utils.errors import CheckpointError
from utils.session import checkpoints as ckpt


def _graph_with(values):
    graph = tf.Graph()
    with graph.as_default():
        variables = {name: tf.get_variable(name, initializer=np.asarray(v, np.float32)) for name, v in values.items()}
        saver = tf.train.Saver(list(variables.values()))
        init = tf.global_variables_initializer()
    sess = tf.Session(graph=graph)
    sess.run(init)
    return graph, sess, saver, variables


def test_save_point_is_atomic_and_resume_picks_the_newest(tmp_path):
    run = str(tmp_path)
    graph, sess, saver, _ = _graph_with({"a": [1.0, 2.0]})
    ckpt.save_point(sess, saver, run, "1", {"next_epoch": 2, "next_step": 0}, {"x": np.arange(3)})
    ckpt.save_point(sess, saver, run, "2", {"next_epoch": 3, "next_step": 0}, {"x": np.arange(3)})
    os.makedirs(os.path.join(run, "3.partial"))  # a save killed half-way never counts
    assert [e for e, _ in ckpt.epoch_dirs(run)] == [1, 2]
    assert ckpt.choose_resume_point(run)[0].endswith("2")
    ckpt.save_point(sess, saver, run, ckpt.INTERRUPTED, {"next_epoch": 3, "next_step": 4}, {"x": np.arange(3)})
    assert ckpt.choose_resume_point(run)[0].endswith(ckpt.INTERRUPTED)
    state, arrays = ckpt.load_point(ckpt.choose_resume_point(run)[0])
    assert state["next_step"] == 4 and arrays["x"].tolist() == [0, 1, 2]
    ckpt.prune_epochs(run, keep=1)
    assert [e for e, _ in ckpt.epoch_dirs(run)] == [2]


def test_restore_by_name_and_selection(tmp_path):
    graph, sess, saver, _ = _graph_with({"vgg_sat/w": [1.0, 2.0], "L/cholesky_block/dense/kernel": [3.0]})
    prefix = saver.save(sess, str(tmp_path / "model.ckpt"))
    graph2, sess2, _, variables = _graph_with({"vgg_sat/w": [0.0, 0.0], "L/cholesky_block/dense/kernel": [0.0],
                                               "decoder/x": [0.0]})
    with graph2.as_default():
        chosen = ckpt.select_variables(tf.global_variables(), exclude=["cholesky_block", "decoder"])
        assert [v.op.name for v in chosen] == ["vgg_sat/w"]
        assert [v.op.name for v in ckpt.select_variables(tf.global_variables(), include=["vgg"])] == ["vgg_sat/w"]
        ckpt.restore_by_name(sess2, chosen, str(tmp_path))
        assert sess2.run(variables["vgg_sat/w"]).tolist() == [1.0, 2.0]
        assert sess2.run(variables["L/cholesky_block/dense/kernel"]).tolist() == [0.0]
        with pytest.raises(CheckpointError, match="not in the checkpoint.*decoder/x"):
            ckpt.restore_by_name(sess2, tf.global_variables(), prefix)
    graph3, sess3, _, _ = _graph_with({"vgg_sat/w": [0.0, 0.0, 0.0]})
    with graph3.as_default():
        with pytest.raises(CheckpointError, match=r"vgg_sat/w: checkpoint shape \[2\], graph shape \[3\]"):
            ckpt.restore_by_name(sess3, tf.global_variables(), prefix)
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        ckpt.checkpoint_prefix(str(tmp_path / "nowhere"))
