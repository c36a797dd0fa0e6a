"""The three networks the stages train, built from the `model:` part of a config.

Each returns a dict of named tensors, so a stage's losses read like the paper.
"""
from model import models, models_two_dec


def _vgg(cfg):
    return {"vgg_path": cfg.model.vgg16_npy, "vgg_width": cfg.model.vgg_width}


def safa(inputs, cfg):
    """VIGOR's SAFA: two VGG16 branches with spatial-aware aggregation (E_1a)."""
    sat_global, grd_global, _, _ = models.SAFA(inputs.sat, inputs.grd, dimension=cfg.model.dimension,
                                               **_vgg(cfg))
    return {"sat_global": sat_global, "grd_global": grd_global}


def safa_offset(inputs, cfg):
    """VIGOR's SAFA with a semi-positive branch and the offset MLP (E_1b)."""
    sat_global, sat_global_semi, grd_global, _, _, delta = models.SAFA_delta(
        inputs.sat, inputs.sat_semi, inputs.grd, dimension=cfg.model.dimension, out_dim=2, **_vgg(cfg))
    return {"sat_global": sat_global, "sat_global_semi": sat_global_semi, "grd_global": grd_global,
            "delta": delta}


def samp(inputs, cfg):
    """SAMP: SAFA + two heatmap decoders and two Cholesky heads (E_2_1, E_2_2, E_3)."""
    m = cfg.model
    (sat_global, sat_global_semi, grd_global, _, _, heatmap, heatmap_semi, L, L_semi) = \
        models_two_dec.SAFA_delta(inputs.sat, inputs.sat_semi, inputs.grd, dimension=m.dimension,
                                  out_dim=m.out_dim, fc_dim=m.fc_dim,
                                  cholesky_hidden=m.cholesky_hidden, decoder_width=m.decoder_width,
                                  initial_sigma_px=m.cholesky_initial_sigma_px,
                                  **_vgg(cfg))
    return {"sat_global": sat_global, "sat_global_semi": sat_global_semi, "grd_global": grd_global,
            "heatmap": heatmap, "heatmap_semi": heatmap_semi, "L": L, "L_semi": L_semi}
