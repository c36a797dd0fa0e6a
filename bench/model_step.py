"""Time SAMP training steps at a chosen size (default: the paper's) on random inputs.

    python bench/model_step.py                              # sat 320, grd 320x640, batch 2
    python bench/model_step.py --sat 64 --grd 64 128 --vgg-width 0.125 --out-dim 64 \
        --fc-dim 64 --decoder-width 32 --cholesky-hidden 16 --batch 4

Builds SAMP's SAFA_delta with a random backbone, the loss of one training stage and Adam, then
prints graph-build, initialisation and per-step times and the peak resident memory.
"""
import argparse
import os
import resource
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow.compat.v1 as tf  # noqa: E402

tf.disable_v2_behavior()

from model import losses  # noqa: E402
from model.models_two_dec import SAFA_delta  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sat", type=int, default=320, help="satellite side (multiple of 64)")
    parser.add_argument("--grd", type=int, nargs=2, default=(320, 640), metavar=("H", "W"))
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3, help="timed steps after a warm-up step")
    parser.add_argument("--stage", choices=("2.1", "2.2", "3"), default="2.2")
    parser.add_argument("--vgg-width", type=float, default=1.0)
    parser.add_argument("--out-dim", type=int, default=2048)
    parser.add_argument("--fc-dim", type=int, default=4096)
    parser.add_argument("--decoder-width", type=int, default=2048)
    parser.add_argument("--cholesky-hidden", type=int, default=512)
    parser.add_argument("--threads", type=int, default=0, help="0: TensorFlow's default")
    return parser.parse_args(argv)


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def build(args):
    sat_x = tf.placeholder(tf.float32, [None, args.sat, args.sat, 3])
    semi_x = tf.placeholder(tf.float32, [None, args.sat, args.sat, 3])
    grd_x = tf.placeholder(tf.float32, [None, args.grd[0], args.grd[1], 3])
    delta = tf.placeholder(tf.float32, [None, 2])
    delta_semi = tf.placeholder(tf.float32, [None, 2])
    ratio = tf.placeholder(tf.float32, [None])
    weights = tf.placeholder(tf.float32, [None])
    global_step = tf.Variable(0, trainable=False)
    tf.set_random_seed(0)   # required under TF_DETERMINISTIC_OPS=1 (the pinned numerics)
    sat_g, semi_g, grd_g, _, _, heatmap, heatmap_semi, L, L_semi = SAFA_delta(
        sat_x, semi_x, grd_x, out_dim=args.out_dim, fc_dim=args.fc_dim,
        cholesky_hidden=args.cholesky_hidden, decoder_width=args.decoder_width,
        vgg_path="random", vgg_width=args.vgg_width)
    triplet = losses.compute_loss(sat_g, grd_g, batch_size=args.batch)
    if args.stage == "2.1":
        loss = (triplet + losses.E_loss_2_1(heatmap_semi, delta_semi)
                + losses.E_loss_2_1(heatmap, delta))
    elif args.stage == "2.2":
        loss = (triplet + losses.E_loss_2_2(heatmap_semi, L_semi, delta_semi) * 1e-4
                + losses.E_loss_2_2(heatmap, L, delta) * 1e-3)
    else:
        loss = losses.compute_loss_continuous_IOU_weighted(sat_g, semi_g, grd_g, ratio, weights,
                                                           batch_size=args.batch)[0]
    with tf.name_scope("train"):
        train_op = tf.train.AdamOptimizer(1e-5, 0.9, 0.999).minimize(loss,
                                                                     global_step=global_step)
    rng = np.random.default_rng(0)
    b = args.batch
    feed = {sat_x: rng.uniform(-120, 120, (b, args.sat, args.sat, 3)),
            semi_x: rng.uniform(-120, 120, (b, args.sat, args.sat, 3)),
            grd_x: rng.uniform(-120, 120, (b, args.grd[0], args.grd[1], 3)),
            delta: rng.uniform(-320, 320, (b, 2)), delta_semi: rng.uniform(-320, 320, (b, 2)),
            ratio: rng.uniform(0.1, 0.9, b), weights: np.ones(b)}
    return loss, train_op, feed


def main(argv=None):
    args = parse_args(argv)
    start = time.time()
    loss, train_op, feed = build(args)
    parameters = sum(int(np.prod(v.get_shape().as_list())) for v in tf.trainable_variables())
    print("graph built in %.1f s: %d trainable parameters" % (time.time() - start, parameters))
    config = tf.ConfigProto(intra_op_parallelism_threads=args.threads,
                            inter_op_parallelism_threads=args.threads)
    with tf.Session(config=config) as sess:
        start = time.time()
        sess.run(tf.global_variables_initializer())
        print("initialised in %.1f s" % (time.time() - start))
        start = time.time()
        sess.run(train_op, feed)
        print("first (warm-up) step %.2f s" % (time.time() - start))
        times = []
        for _ in range(args.steps):
            start = time.time()
            _, loss_value = sess.run([train_op, loss], feed)
            times.append(time.time() - start)
    print("stage %s, batch %d, sat %d, grd %dx%d: %.3f s/step (mean of %d), last loss %.4g"
          % (args.stage, args.batch, args.sat, args.grd[0], args.grd[1], float(np.mean(times)),
             len(times), loss_value))
    print("peak RSS %.0f MiB" % peak_rss_mib())


if __name__ == "__main__":
    main()
