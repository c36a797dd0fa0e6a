"""The decoder's query variants (off by default): they add only their own variables, and the
"match" maps are the cosine similarity of each skip position with the projected bottleneck."""
import numpy as np
import pytest
import tensorflow.compat.v1 as tf

from model.decoder import decoder

SKIPS = {"sat512": (64, 8), "sat256": (32, 8), "sat128": (16, 8), "sat64": (8, 8), "sat32": (4, 8)}


def _build(query):
    graph = tf.Graph()
    with graph.as_default():
        x = tf.placeholder(tf.float32, [None, 1, 1, 16])
        maps = {name: tf.placeholder(tf.float32, [None, side, side, c]) for name, (side, c) in SKIPS.items()}
        logits = decoder(32, query).decode(x, True, "decode", *(maps[k] for k in SKIPS))
        names = {v.op.name: v.shape.as_list() for v in tf.global_variables()}
    return graph, x, maps, logits, names


def test_variants_add_only_their_own_variables():
    _, _, _, logits, plain = _build("none")
    assert logits.shape.as_list() == [None, 128, 128, 1]
    assert not any("match" in name for name in plain)
    for query, extra_in in (("broadcast", 16), ("match", 1)):
        _, _, _, logits, names = _build(query)
        assert logits.shape.as_list() == [None, 128, 128, 1]
        own = sorted(set(names) - set(plain))
        assert own == ([] if query == "broadcast" else
                       sorted(f"decode/match_{s}/{w}" for s in SKIPS for w in ("weights", "biases")))
        changed = sorted(n for n in plain if names[n] != plain[n])
        assert changed == sorted(f"decode/conv{k}_1/weights" for k in range(2, 7))
        assert names["decode/conv2_1/weights"][2] == plain["decode/conv2_1/weights"][2] + extra_in


def test_match_map_is_the_cosine_with_the_projected_bottleneck():
    graph, x, maps, _, _ = _build("match")
    concat = graph.get_operation_by_name("decode/concat")       # beside sat32, the first skip
    match = concat.inputs[2]
    with tf.Session(graph=graph) as sess:
        sess.run(tf.global_variables_initializer())
        rng = np.random.default_rng(0)
        feed = {x: rng.normal(size=(2, 1, 1, 16)), maps["sat32"]: rng.normal(size=(2, 4, 4, 8))}
        got, kernel = sess.run([match, graph.get_tensor_by_name("decode/match_sat32/weights:0")], feed)
    query = feed[x][:, 0, 0] @ kernel[0, 0]
    skip = feed[maps["sat32"]]
    expected = np.einsum("bhwc,bc->bhw", skip, query) / (
        np.linalg.norm(skip, axis=3) * np.linalg.norm(query, axis=1)[:, None, None])
    np.testing.assert_allclose(got[..., 0], expected, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="query mode"):
        decoder(32, "attention")
