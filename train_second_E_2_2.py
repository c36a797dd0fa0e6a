"""Stage E_2_2 (train_second_E_2_2.py): the ambiguity of each prediction as a 2D Gaussian.

Starts from E_2_1's last epoch with fresh Cholesky heads (everything else restored, the global
step reset). Each head gives L = [[l0, 0], [l1, l2]], Sigma = L L^T around the heatmap's spatial
mean; the loss is the Gaussian negative log-likelihood of the true point (semi-positive x 1e-4,
positive x 1e-3) plus the triplet loss. Learning rate 5e-6 decayed by 0.9 every 910 steps.
"""
if __name__ == "__main__":  # a Ctrl-C while TensorFlow loads: one line, exit 130 (utils/startup.py)
    from utils.startup import begin
    begin()

import sys

import tensorflow.compat.v1 as tf

from model import networks
from model.losses import E_loss_2_2, compute_loss
from model.uncertainty import get_uncertainty
from utils.config import load_config, stage_argument_parser
from utils.training.stage import Stage
from utils.training.trainer import run_stage


def gaussian_losses(net, inputs, cfg):
    weights = cfg.stages.E_2_2
    triplet = compute_loss(net["sat_global"], net["grd_global"], batch_size=inputs.batch_size)
    semi = E_loss_2_2(net["heatmap_semi"], net["L_semi"], inputs.delta_semi) * weights.nll_weight_semi
    positive = E_loss_2_2(net["heatmap"], net["L"], inputs.delta) * weights.nll_weight_pos
    return {"loss": triplet + semi + positive, "loss_0": triplet, "loss_2_2": semi, "loss_2_2_pos": positive,
            "uncertainty": tf.reduce_mean(get_uncertainty(net["L"])),
            "uncertainty_semi": tf.reduce_mean(get_uncertainty(net["L_semi"]))}


E_2_2 = Stage(name="E_2_2", network=networks.samp, losses=gaussian_losses, with_semi=True, mining=True,
              restore_exclude=["cholesky_block", "Variable"],
              heatmaps=("heatmap", "heatmap_semi"))


def main(argv=None):
    args = stage_argument_parser(__doc__).parse_args(argv)
    run_stage(E_2_2, load_config(args.config, args.overrides), resume=args.resume, overwrite=args.overwrite)


if __name__ == "__main__":
    from utils.cli import run
    sys.exit(run(main))
