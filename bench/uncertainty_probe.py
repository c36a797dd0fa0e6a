"""What the fine localization uses, and how much of its error the Cholesky head's input can tell.

    python bench/uncertainty_probe.py --checkpoint runs/demo/E_2_2/30

For every training and test panorama with its positive tile: the bottleneck the Cholesky head
reads, the heatmap's spatial mean and the head's uncertainty.
- Within each tile (test split): how far the predicted points of its panoramas spread and how
  they correlate with the true points, and the error of a panorama-blind estimate (every
  panorama of a tile at the mean of their predictions). A heatmap that reads the panorama
  spreads with the truth; a satellite-only prior does not.
- A ridge regression from the (standardised) bottleneck onto log(error), fitted on the training
  split: its prediction's Spearman correlation with the test errors is the rank a regressor
  fitted to the error directly reaches from that input, next to the head's own.
- Per tile: the mean error of the training panoramas of a test panorama's positive tile, as its
  uncertainty (what a satellite-only uncertainty can reach when the heatmap is a satellite-only
  prior), and how much of the head's uncertainty varies between tiles rather than within them.
Not a test.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from utils.reproducible import pin_numerics  # noqa: E402

pin_numerics()

import argparse  # noqa: E402

import numpy as np  # noqa: E402
from scipy.stats import spearmanr  # noqa: E402

from utils.cli import graph_mode  # noqa: E402
from utils.config import load_config  # noqa: E402
from utils.data.splits import build_loader, load_splits  # noqa: E402
from utils.evaluation.inference import restore_network  # noqa: E402
from utils.evaluation.position import position_probe, positive_pairs, within_tile  # noqa: E402
from utils.session import checkpoints as ckpt  # noqa: E402

ALPHAS = (1.0, 10.0, 100.0, 1000.0)


def ridge_probe(train_x, train_error, test_x, test_error, alphas=ALPHAS):
    """{alpha: (train rho, test rho)} of ridge(bottleneck -> log error) fitted on the training split."""
    mean, std = train_x.mean(0), train_x.std(0) + 1e-8
    a, b = (train_x - mean) / std, (test_x - mean) / std
    target = np.log(train_error + 1e-3)
    rows = {}
    for alpha in alphas:
        w = np.linalg.solve(a.T @ a + alpha * np.eye(a.shape[1]), a.T @ (target - target.mean()))
        rows[alpha] = (spearmanr(a @ w, train_error)[0], spearmanr(b @ w, test_error)[0])
    return rows


def per_tile(train_tiles, train_error, test_tiles, test_error, test_u):
    """(Spearman of the training split's per-tile mean error with the test errors, the share of
    the head's test uncertainty variance that is between tiles, the number of test panoramas whose
    tile has training panoramas)."""
    mean_error = {tile: train_error[train_tiles == tile].mean() for tile in np.unique(train_tiles)}
    known = np.array([tile in mean_error for tile in test_tiles])
    estimate = np.array([mean_error[tile] for tile in test_tiles[known]])
    tile_mean_u = np.empty_like(test_u)
    for tile in np.unique(test_tiles):
        tile_mean_u[test_tiles == tile] = test_u[test_tiles == tile].mean()
    between = float(tile_mean_u.var() / test_u.var()) if test_u.var() > 0 else float("nan")
    return float(spearmanr(estimate, test_error[known])[0]), between, int(known.sum())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, help="an E_2_2 or E_3 epoch folder")
    parser.add_argument("--config", help="default: the config.yaml its run recorded")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    prefix = ckpt.checkpoint_prefix(args.checkpoint)
    config = args.config or os.path.join(os.path.dirname(os.path.dirname(prefix)), "config.yaml")
    cfg = load_config(config, args.overrides)
    graph_mode()
    train, test = load_splits(cfg)
    network = restore_network(cfg, prefix, "samp")
    loader, batch = build_loader(cfg), int(cfg.validation.scan_batch)
    try:
        train_x, _, train_error, train_u = positive_pairs(network, loader, train, batch)
        test_x, test_offsets, test_error, test_u = positive_pairs(network, loader, test, batch)
    finally:
        network.sess.close()
    print(f"median error (640-px units): training {np.median(train_error):.1f}, test {np.median(test_error):.1f}")
    spread, true_spread, correlation, blind = within_tile(test_offsets, test.deltas[:, 0, :], test.labels[:, 0])
    print(f"within a tile (test): predicted points spread {spread:.1f} px (true points {true_spread:.1f} px), "
          f"correlation with the true points {correlation[0]:.3f} (rows) / {correlation[1]:.3f} (columns); "
          f"panorama-blind median error {blind:.1f} px against the prediction's {np.median(test_error):.1f} px, "
          f"the tile centre's {np.median(np.linalg.norm(test.deltas[:, 0, :], axis=1)):.1f} px")
    rows, cols = position_probe(train_x, train.deltas[:, 0, :], test_x, test.deltas[:, 0, :])
    print(f"ridge(bottleneck -> true offset), fitted on the training split: correlation with the test "
          f"split's true offsets {rows:.3f} (rows) / {cols:.3f} (columns)")
    print("| predictor | Spearman with the error, training split | test split |\n|---|---|---|")
    print(f"| the Cholesky head's uncertainty | {spearmanr(train_u, train_error)[0]:.3f} | "
          f"{spearmanr(test_u, test_error)[0]:.3f} |")
    for alpha, (rho_train, rho_test) in ridge_probe(train_x, train_error, test_x, test_error).items():
        print(f"| ridge(bottleneck -> log error), alpha {alpha:g} | {rho_train:.3f} | {rho_test:.3f} |")
    rho, between, known = per_tile(train.labels[:, 0], train_error, test.labels[:, 0], test_error, test_u)
    print(f"| the training panoramas' mean error in the same tile ({known} test panoramas) | - | {rho:.3f} |")
    print(f"share of the head's test uncertainty variance between tiles: {between:.2f}")
    return 0


if __name__ == "__main__":
    from utils.cli import run
    sys.exit(run(main))
