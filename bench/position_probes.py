"""Where SAMP's network loses the panorama's position inside its tile: a linear probe per stage.

    python bench/position_probes.py --checkpoint runs/demo/E_2_1/50 [--set data.root=...]

Every training and test panorama is run with its positive tile; at each stage of the network
(the panorama's VGG maps, its SAFA attention, local map and descriptor, the satellite
descriptor, the concatenation, fc_delta_1, the bottleneck, each decoder stage before and after
its satellite skip, the heatmap and its spatial mean) a ridge probe (utils/evaluation/probes.py)
is fitted on the training split to the true offset and read on the test split: correlation
(rows, columns) and R^2, raw and within tiles (features and offsets minus their positive tile's
mean: only where the panorama lies inside its tile counts). A probe on one branch alone cannot
read the position within the tile from appearance that differs per tile; the row "sat x grd"
(products of the two descriptors' principal components) can read a pairwise interaction. Conv maps are average-pooled first:
the panorama's to a 4 x 8 grid, the tile-side maps to 4 x 4, the heatmap to 8 x 8.

Second table: at each decoder concatenation, the mean |activation| of the upsampled bottleneck
path and of the satellite skip, and of what each contributes to the next convolution's
pre-activation (its kernel split along the input channels). Not a test.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from utils.reproducible import pin_numerics  # noqa: E402

pin_numerics()

import argparse  # noqa: E402

import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402

from model.uncertainty import spatial_mean_np  # noqa: E402
from utils.cli import graph_mode  # noqa: E402
from utils.config import load_config  # noqa: E402
from utils.data.prefetch import scan_pairs  # noqa: E402
from utils.data.splits import build_loader, load_splits  # noqa: E402
from utils.evaluation.inference import restore_network  # noqa: E402
from utils.evaluation.probes import correlation, demean_by_group, pool_map, probe  # noqa: E402
from utils.evaluation.scan import heatmap_to_delta  # noqa: E402
from utils.session import checkpoints as ckpt  # noqa: E402

PANORAMA_GRID, TILE_GRID, HEATMAP_GRID = (4, 8), (4, 4), (8, 8)
PAIR_COMPONENTS = 24
PANORAMA_VGG = (("conv1_2", 1), ("conv2_2", 3), ("conv3_3", 6), ("conv4_3", 9), ("conv5_3", 12))


def stage_tensors(network):
    """[(stage name, tensor, pooling grid, takes the first half of a doubled batch)] in data-flow order."""
    graph, net = network.sess.graph, network.net
    tensor = graph.get_tensor_by_name
    head_input = graph.get_operation_by_name("L/concat")
    sat_global, grd_global = head_input.inputs[0], head_input.inputs[1]
    grd_conv5_3 = tensor("vgg_grd/conv2d_12/Relu:0")
    grd_local = next(op for op in grd_conv5_3.consumers() if op.type == "MaxPool").outputs[0]
    stages = [(f"panorama VGG {name}", tensor(f"vgg_grd/{'conv2d' if k == 0 else f'conv2d_{k}'}/Relu:0"),
               PANORAMA_GRID, False) for name, k in PANORAMA_VGG]
    stages += [("panorama SAFA attention", tensor("spatial_grd/add_1:0"), None, False),
               ("panorama SAFA local map (max-pooled conv5_3)", grd_local, None, False),
               ("panorama global descriptor", grd_global, None, False),
               ("satellite VGG conv5_3 (control)", tensor("vgg_sat/conv2d_12/Relu:0"), TILE_GRID, True),
               ("satellite global descriptor (control)", sat_global, None, False),
               ("concat(sat, grd descriptors)", tensor("L/concat:0"), None, False),
               ("fc_delta_1", tensor("L/fc_delta_1/Relu:0"), None, False),
               ("bottleneck (mlp_bottleneck)", tensor("L/mlp_bottleneck/xw_plus_b:0"), None, False)]
    for op in graph.get_operations():
        name = op.name
        if not name.startswith("decoder/decode/"):
            continue
        short = name[len("decoder/decode/"):]
        if op.type == "Relu" and short.split("/")[0].startswith(("deconv", "conv")) and short.endswith("/Relu"):
            layer = short.split("/")[0]
            stages.append((f"decoder {layer}", op.outputs[0], TILE_GRID, False))
        elif op.type == "ConcatV2" and "/" not in short:
            stages.append((f"decoder {short} (after the skip)", op.outputs[0], TILE_GRID, False))
    stages.append(("heatmap", net["heatmap"], HEATMAP_GRID, False))
    return stages


def skip_contributions(network):
    """{concat name: (tensors [path, skip...], their contributions to the next conv)} of the positive decoder."""
    import tensorflow.compat.v1 as tf
    graph = network.sess.graph
    rows = {}
    with graph.as_default():
        for op in graph.get_operations():
            if op.type != "ConcatV2" or not op.name.startswith("decoder/decode/concat"):
                continue
            conv = next(c for c in op.outputs[0].consumers() if c.type == "Conv2D")
            kernel = conv.inputs[1]
            parts, start, contributions = list(op.inputs[:-1]), 0, []
            for part in parts:
                width = int(part.shape[-1])
                contributions.append(tf.nn.conv2d(part, kernel[:, :, start:start + width, :], [1, 1, 1, 1], "SAME"))
                start += width
            rows[op.name.split("/")[-1]] = (parts, contributions)
    return rows


def scan(network, stages, contributions, loader, index, batch, desc):
    """Pooled features per stage (N, D), the heatmap's spatial-mean offsets (N, 2), and the summed
    mean |x| of the skip table's tensors."""
    fetches = [t for _, t, _, _ in stages]
    scale_fetches = [t for parts, contribs in contributions.values() for t in parts + contribs]
    features = {name: [] for name, _, _, _ in stages}
    offsets, scale_sums, count = [], np.zeros(len(scale_fetches)), 0
    total = -(-len(index.grd_paths) // batch)
    for (sat, grd), _ in tqdm(scan_pairs(loader, index, index.labels[:, 0], batch, with_bad=True),
                              total=total, desc=desc, leave=False):
        feed = network.sat_feed(sat)
        feed[network.inputs.grd] = grd
        values = network.sess.run(fetches + scale_fetches, feed)
        n = len(grd)
        for (name, _, grid, halve), value in zip(stages, values[:len(fetches)]):
            value = value[:n] if halve else value
            features[name].append(pool_map(value, grid) if grid else value.reshape(n, -1))
        heatmap = values[len(stages) - 1]                       # the last stage
        offsets.append(heatmap_to_delta(*spatial_mean_np(heatmap), heatmap.shape[1]))
        scale_sums += [np.abs(v).mean() * n for v in values[len(fetches):]]
        count += n
    stacked = {name: np.concatenate(parts).astype(np.float32) for name, parts in features.items()}
    return stacked, np.concatenate(offsets), scale_sums / count


def principal_components(train, test, k):
    """train and test projected on the training split's first k principal components (unit variance)."""
    mean = train.mean(0)
    _, s, vt = np.linalg.svd(train - mean, full_matrices=False)
    scale = s[:k] / np.sqrt(len(train))
    return [(x - mean) @ vt[:k].T / np.maximum(scale, 1e-12) for x in (train, test)]


def pair_products(train_x, test_x, k=PAIR_COMPONENTS):
    """Products of every pair of the first k principal components of the satellite and the panorama
    descriptors (a linear probe on these can read an interaction of the two; one on either alone cannot)."""
    sat = principal_components(train_x["satellite global descriptor (control)"],
                               test_x["satellite global descriptor (control)"], k)
    grd = principal_components(train_x["panorama global descriptor"], test_x["panorama global descriptor"], k)
    return [np.einsum("ni,nj->nij", s, g).reshape(len(s), -1) for s, g in zip(sat, grd)]


def probe_table(train, test, train_x, test_x):
    """[(stage, D, raw ProbeResult, within-tile ProbeResult)] for every stage of the features dicts."""
    y_train, y_test = train.deltas[:, 0, :], test.deltas[:, 0, :]
    tiles = (train.labels[:, 0], test.labels[:, 0])
    rows = []
    for name in tqdm(list(train_x), desc="probes", leave=False):
        raw = probe(train_x[name], y_train, test_x[name], y_test)
        within = probe(train_x[name], y_train, test_x[name], y_test, *tiles, within_tile=True)
        rows.append((name, train_x[name].shape[1], raw, within))
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, help="a SAMP epoch folder (E_2_1, E_2_2 or E_3)")
    parser.add_argument("--config", help="default: the config.yaml its run recorded")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    prefix = ckpt.checkpoint_prefix(args.checkpoint)
    config = args.config or os.path.join(os.path.dirname(os.path.dirname(prefix)), "config.yaml")
    cfg = load_config(config, args.overrides)
    graph_mode()
    train, test = load_splits(cfg)
    network = restore_network(cfg, prefix, "samp")
    loader, batch = build_loader(cfg, (train, test)), int(cfg.validation.scan_batch)
    try:
        stages = stage_tensors(network)
        contributions = skip_contributions(network)
        train_x, train_pred, _ = scan(network, stages, contributions, loader, train, batch, "training split")
        test_x, test_pred, scales = scan(network, stages, contributions, loader, test, batch, "test split")
    finally:
        network.sess.close()
    print(f"{args.checkpoint}: {len(train.grd_paths)} training and {len(test.grd_paths)} test panoramas, "
          f"each with its positive tile")
    print("\n| stage | D (pooled) | raw: corr rows | corr cols | R^2 | within tile: corr rows | corr cols | R^2 |")
    print("|---|---|---|---|---|---|---|---|")
    name = f"sat x grd descriptors (products of {PAIR_COMPONENTS} principal components each)"
    train_x[name], test_x[name] = pair_products(train_x, test_x)
    train_x["heatmap spatial mean"], test_x["heatmap spatial mean"] = train_pred, test_pred
    for name, dims, raw, within in probe_table(train, test, train_x, test_x):
        print(f"| {name} | {dims} | {raw.correlation[0]:.3f} | {raw.correlation[1]:.3f} | {raw.r2:.3f} | "
              f"{within.correlation[0]:.3f} | {within.correlation[1]:.3f} | {within.r2:.3f} |")
    y = test.deltas[:, 0, :]
    centred_p, centred_y = demean_by_group(test_pred, test.labels[:, 0]), demean_by_group(y, test.labels[:, 0])
    print(f"\nthe network's own prediction (heatmap spatial mean), test split, no probe: correlation with the "
          f"true offset {correlation(test_pred[:, 0], y[:, 0]):.3f} / {correlation(test_pred[:, 1], y[:, 1]):.3f} "
          f"raw, {correlation(centred_p[:, 0], centred_y[:, 0]):.3f} / {correlation(centred_p[:, 1], centred_y[:, 1]):.3f} "
          f"within tiles (rows / columns)")
    within = [correlation(centred_p[:, k], centred_y[:, k]) for k in (0, 1)]
    print("\n| what | measured | goal | met |\n|---|---|---|---|")
    for axis, value in zip(("rows", "columns"), within):
        print(f"| within-tile correlation of the predicted with the true point, {axis} | {value:.3f} | >= 0.5 | "
              f"{'yes' if value >= 0.5 else 'no'} |")
    print("\n| decoder concatenation | side x channels (bottleneck path + skips) | mean abs: bottleneck path | "
          "skip(s) | contribution to the next conv: path | skip(s) | path share |")
    print("|---|---|---|---|---|---|---|")
    k = 0
    for name, (parts, contribs) in contributions.items():
        m = len(parts)
        values, contrib = scales[k:k + m], scales[k + m:k + 2 * m]
        k += 2 * m
        shape = f"{int(parts[0].shape[1])} x ({' + '.join(str(int(p.shape[-1])) for p in parts)})"
        print(f"| {name} | {shape} | {values[0]:.3g} | {' / '.join(f'{v:.3g}' for v in values[1:])} | "
              f"{contrib[0]:.3g} | {' / '.join(f'{v:.3g}' for v in contrib[1:])} | "
              f"{contrib[0] / contrib.sum():.2f} |")
    return 0


if __name__ == "__main__":
    from utils.cli import run
    sys.exit(run(main))
