"""Is E_2_1 wired so that the panorama can move the point? Three checks on the synthetic city.

    python bench/position_wiring.py --checkpoint runs/demo/E_2_1/50 [--set data.root=...] [--batches 4]

1. Label geometry (no network): for every panorama, the ground under its camera (the mean colour
   of its bottom rows, which look straight down) against the tile's pixels at the point that
   heatmap_target makes of its delta, and at the points a sign or axis error would give.
2. Pairing: in E_2_1's own training batches (its sampler and prefetcher), each row's panorama,
   tile and delta are those of one label line.
3. Gradients: E_2_1's training graph with the checkpoint's weights, on real training batches:
   the gradient norm of each loss term (the positive heatmap loss, the semi-positive one, the
   triplet loss) with respect to the panorama's tensors and to each variable group, which
   variables receive no gradient, and whether any StopGradient lies in the graph.
Not a test.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from utils.reproducible import pin_numerics  # noqa: E402

pin_numerics()

import argparse  # noqa: E402
import tempfile  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402

from utils.cli import graph_mode  # noqa: E402
from utils.config import load_config  # noqa: E402
from utils.data.prefetch import Prefetcher  # noqa: E402
from utils.session import checkpoints as ckpt  # noqa: E402

NADIR_ROWS = 3        # bottom rows of a 128-row panorama: within ~0.25 m of the camera for a 2.5 m camera
WINDOW = 2            # tile pixels each side of the point (a 5 x 5 window, 0.57 m at 0.114 m / px)
GROUPS = ("vgg_grd/", "spatial_grd/", "vgg_sat/", "spatial_sat/", "L/", "L_semi/", "decoder/", "decoder_semi/")


def label_geometry(index, progress=True):
    """{candidate point: (median colour distance, share of panoramas where it is the closest)}."""
    candidates = {"heatmap_target (320 + d0, 319 - d1)": lambda d: (320 + d[0], 319 - d[1]),
                  "rows flipped (320 - d0, 319 - d1)": lambda d: (320 - d[0], 319 - d[1]),
                  "columns flipped (320 + d0, 319 + d1)": lambda d: (320 + d[0], 319 + d[1]),
                  "axes swapped (320 - d1, 319 + d0)": lambda d: (320 - d[1], 319 + d[0]),
                  "tile centre (320, 319)": lambda d: (320.0, 319.0)}
    distances = np.zeros((len(index.grd_paths), len(candidates)))
    tiles = {}
    for i in tqdm(range(len(index.grd_paths)), desc="label geometry", leave=False, disable=not progress):
        pano = cv2.imread(str(index.grd_paths[i])).astype(np.float64)
        ground = pano[-NADIR_ROWS:].reshape(-1, 3).mean(0)
        j = index.labels[i, 0]
        if j not in tiles:
            tiles[j] = cv2.imread(str(index.sat_paths[j])).astype(np.float64)
        tile = tiles[j]
        for k, point in enumerate(candidates.values()):
            r, c = (int(round(v)) for v in point(index.deltas[i, 0]))
            r, c = min(max(r, WINDOW), tile.shape[0] - WINDOW - 1), min(max(c, WINDOW), tile.shape[1] - WINDOW - 1)
            colour = tile[r - WINDOW:r + WINDOW + 1, c - WINDOW:c + WINDOW + 1].reshape(-1, 3).mean(0)
            distances[i, k] = np.linalg.norm(colour - ground)
    best = distances.argmin(1)
    return {name: (float(np.median(distances[:, k])), float((best == k).mean())) for k, name in enumerate(candidates)}


def pairing(trainer, batches):
    """(rows checked, rows whose panorama, tile, semi-tile or deltas differ from their label line)."""
    index, loader = trainer.train_index, trainer.loader
    prefetch = Prefetcher(loader, index, (trainer.sampler.next_batch() for _ in range(batches)), workers=1)
    checked, wrong = 0, 0
    try:
        for item in prefetch:
            batch = item["batch"]
            for b, g in enumerate(batch.grd):
                same = (np.array_equal(item["grd"][b], loader.load_grd(index.grd_paths[g]))
                        and np.array_equal(item["sat"][b], loader.load_sat(index.sat_paths[index.labels[g, 0]]))
                        and np.array_equal(item["delta"][b], index.deltas[g, 0])
                        and np.array_equal(item["sat_semi"][b], loader.load_sat(index.sat_paths[batch.semi[b]]))
                        and np.array_equal(item["delta_semi"][b], index.deltas[g, batch.semi_choice[b]])
                        and index.labels[g, batch.semi_choice[b]] == batch.semi[b])
                checked += 1
                wrong += not same
    finally:
        prefetch.close()
    return checked, wrong


def gradient_ops(parts):
    """{(loss term, what): gradient norm tensor} and the tensors' names."""
    import tensorflow.compat.v1 as tf
    graph = parts.graph
    with graph.as_default():
        tensors = {"panorama image": parts.inputs.grd,
                   "panorama VGG conv1_2": graph.get_tensor_by_name("vgg_grd/conv2d_1/Relu:0"),
                   "panorama VGG conv5_3": graph.get_tensor_by_name("vgg_grd/conv2d_12/Relu:0"),
                   "panorama global descriptor": graph.get_operation_by_name("L/concat").inputs[1],
                   "satellite global descriptor": graph.get_operation_by_name("L/concat").inputs[0],
                   "bottleneck": graph.get_tensor_by_name("L/mlp_bottleneck/xw_plus_b:0")}
        variables = tf.trainable_variables()
        norms = {}
        for term in ("loss_2_1_pos", "loss_2_1", "loss_0"):
            loss = parts.losses[term]
            for name, grad in zip(tensors, tf.gradients(loss, list(tensors.values()))):
                norms[(term, name)] = tf.norm(grad) if grad is not None else tf.constant(0.0)
            grads = tf.gradients(loss, variables)
            for group in GROUPS:
                chosen = [g for g, v in zip(grads, variables) if v.op.name.startswith(group) and g is not None]
                norms[(term, group)] = tf.sqrt(tf.add_n([tf.reduce_sum(tf.square(g)) for g in chosen])) \
                    if chosen else tf.constant(0.0)
    return norms, list(tensors), variables


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, help="an E_2_1 epoch folder")
    parser.add_argument("--config", help="default: the config.yaml its run recorded")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--batches", type=int, default=4, help="training batches for checks 2 and 3")
    args = parser.parse_args(argv)
    prefix = ckpt.checkpoint_prefix(args.checkpoint)
    config = args.config or os.path.join(os.path.dirname(os.path.dirname(prefix)), "config.yaml")
    scratch = tempfile.mkdtemp(prefix="position_wiring_")       # the trainer's run folder: nothing is saved
    cfg = load_config(config, args.overrides + [f"runs_dir={scratch}"])
    graph_mode()
    import tensorflow.compat.v1 as tf
    from train_second_E_2_1 import E_2_1
    from utils.training.graph import build_training_graph
    from utils.training.trainer import Trainer

    trainer = Trainer(cfg, E_2_1, show_progress=False)
    print("## 1. label geometry: the ground under the camera against the tile at the labelled point\n")
    print("| point on the tile | median colour distance (BGR) | share of panoramas where it is the closest |")
    print("|---|---|---|")
    for name, (median, share) in label_geometry(trainer.train_index).items():
        print(f"| {name} | {median:.1f} | {share:.3f} |")
    quarter = np.abs(trainer.train_index.deltas[:, 0]).max()
    print(f"\nlargest |delta| of a positive tile: {quarter:.1f} px (the central quarter is < 160)")

    trainer.parts = parts = build_training_graph(E_2_1, cfg, trainer.batch_size, float(cfg.stages.E_2_1.lr))
    norms, tensor_names, variables = gradient_ops(parts)
    trainer._make_sampler()
    checked, wrong = pairing(trainer, args.batches)
    print(f"\n## 2. pairing in E_2_1's training batches: {checked} rows checked, {wrong} differ from their label line")

    stops = [op.name for op in parts.graph.get_operations() if op.type in ("StopGradient", "PreventGradient")]
    trained = {v.op.name for _, v in parts.grads_and_vars}
    no_grad = [v.op.name for g, v in parts.grads_and_vars if g is None]
    untrained = [v.op.name for v in variables if v.op.name not in trained]
    print(f"\n## 3. gradients\n\nStopGradient ops in the training graph: {stops or 'none'}; trainable variables "
          f"{len(variables)}, in the optimizer's list {len(trained)}, without a gradient from the total loss: "
          f"{no_grad or 'none'}; trainable but not optimised: {untrained or 'none'}; Adam epsilon "
          f"{cfg.stages.E_2_1.adam_epsilon:g}")
    sess = tf.Session(graph=parts.graph)
    sess.run(parts.init_op)
    ckpt.restore_by_name(sess, parts.graph.get_collection("variables"), prefix)
    totals = {key: 0.0 for key in norms}
    losses = {term: 0.0 for term in ("loss_2_1_pos", "loss_2_1", "loss_0")}
    prefetch = Prefetcher(trainer.loader, trainer.train_index,
                          (trainer.sampler.next_batch() for _ in range(args.batches)), workers=1)
    try:
        for item in prefetch:
            values, terms = sess.run([norms, {t: parts.losses[t] for t in losses}], trainer._feed(item))
            for key in totals:
                totals[key] += values[key] / args.batches
            for term in losses:
                losses[term] += terms[term] / args.batches
    finally:
        prefetch.close()
        sess.close()
    print(f"\nmean over {args.batches} training batches of {trainer.batch_size} panoramas; loss terms: "
          + ", ".join(f"{t} {v:.4g}" for t, v in losses.items()))
    print("\n| gradient norm with respect to | positive heatmap loss (loss_2_1_pos) | semi-positive heatmap loss "
          "(loss_2_1) | triplet loss (loss_0) | heatmap / triplet |")
    print("|---|---|---|---|---|")
    for what in tensor_names + list(GROUPS):
        pos, semi, triplet = (totals[(t, what)] for t in ("loss_2_1_pos", "loss_2_1", "loss_0"))
        ratio = f"{(pos + semi) / triplet:.3g}" if triplet > 0 else "-"
        print(f"| {what} | {pos:.3g} | {semi:.3g} | {triplet:.3g} | {ratio} |")
    return 0


if __name__ == "__main__":
    from utils.cli import run
    sys.exit(run(main))
