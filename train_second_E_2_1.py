"""Stage E_2_1 (train_second_E_2_1.py): SAMP's heatmap decoders learn where the panorama is.

Starts from E_1a's VGG16 branches and spatial-aware layers (with their Adam slots). The two
decoders turn the bottleneck of [sat, grd] descriptors into a heatmap over the tile; the loss
is the distance between the heatmap's spatial mean and the true point, on the positive and on
the semi-positive tile, plus the triplet loss. Constant learning rate, mining from epoch 2.
"""
if __name__ == "__main__":  # a Ctrl-C while TensorFlow loads: one line, exit 130 (utils/startup.py)
    from utils.startup import begin
    begin()

import sys

from model import networks
from model.losses import E_loss_2_1, compute_loss
from utils.config import load_config, stage_argument_parser
from utils.training.stage import Stage
from utils.training.trainer import run_stage


def heatmap_losses(net, inputs, cfg):
    triplet = compute_loss(net["sat_global"], net["grd_global"], batch_size=inputs.batch_size)
    semi = E_loss_2_1(net["heatmap_semi"], inputs.delta_semi)
    positive = E_loss_2_1(net["heatmap"], inputs.delta)
    return {"loss": triplet + semi + positive, "loss_0": triplet, "loss_2_1": semi, "loss_2_1_pos": positive}


E_2_1 = Stage(name="E_2_1", network=networks.samp, losses=heatmap_losses, with_semi=True, mining=True,
              # the original's selective branch, always (docs/FAITHFULNESS.md, T1)
              restore_include=["vgg_sat", "vgg_grd", "spatial_grd", "spatial_sat", "train"],
              heatmaps=("heatmap", "heatmap_semi"))


def main(argv=None):
    args = stage_argument_parser(__doc__).parse_args(argv)
    run_stage(E_2_1, load_config(args.config, args.overrides), resume=args.resume, overwrite=args.overwrite)


if __name__ == "__main__":
    from utils.cli import run
    sys.exit(run(main))
