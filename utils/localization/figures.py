"""Figures of one localized panorama: evaluate's query figure for its top-1 tile, and a small map
of the top-k tiles with each tile's estimate and the fused position's 1 and 2 sigma ellipses."""
import os
import re

import numpy as np
from matplotlib.patches import Polygon, Rectangle

from utils.evaluation import plots
from utils.localization.fusion import ellipse

RANK_COLOURS = ("c", "m", "g", "r", "b", "y", "tab:orange", "tab:brown", "tab:purple", "k")


def top1_figure(path, db, result):
    best = result.tiles[0]
    return plots.query_figure(path, sat_image=plots.read_rgb(db.tile_path(best.tile)),
                              grd_image=plots.read_rgb(result.path), heatmap=best.heatmap,
                              pred_delta=best.delta, sigma=best.sigma_delta,
                              title=f"{os.path.basename(result.path)}: top-1 tile {db.files[best.tile]}")


def map_figure(path, db, result, truth=None):
    """Top-k footprints (numbered by rank) around the fused estimate, in metres of the metric frame."""
    figure, axis = plots.subplots(figsize=(5.6, 5.6))
    origin = result.fused.mean
    for t in result.tiles:
        centre = db.centres[t.tile] - origin
        half = db.width_m[t.tile] / 2.0
        colour = RANK_COLOURS[t.rank % len(RANK_COLOURS)]
        axis.add_patch(Rectangle(tuple(centre - half), 2 * half, 2 * half, fill=False, color=colour,
                                 linewidth=1.0 + 2.0 * t.weight))
        axis.text(*(centre + [-half + 2, half - 6]), f"{t.rank + 1}: w={t.weight:.2f}", color=colour, fontsize=8)
        axis.plot(*(t.mean - origin), "x", color=colour, markersize=7)
    for k, style in ((1, "-"), (2, "--")):
        ring = ellipse(result.fused.mean, result.fused.cov, k) - origin
        axis.add_patch(Polygon(ring, closed=True, fill=False, color="red", linestyle=style, linewidth=1.5))
    axis.plot(0, 0, "X", color="red", markersize=10, markeredgecolor="k",
              label=f"fused ({result.method}), confidence {result.fused.confidence:.2f}")
    if truth is not None:
        axis.plot(*(np.asarray(truth) - origin), "o", color="lime", markeredgecolor="k", label="true")
    reach = max(float(np.max(np.abs(db.centres[[t.tile for t in result.tiles]] - origin))) + db.width_m.max() / 2,
                2.5 * float(np.sqrt(np.linalg.eigvalsh(result.fused.cov)[1]))) * 1.05
    axis.set_xlim(-reach, reach)
    axis.set_ylim(-reach, reach)
    axis.set_aspect("equal")
    axis.set_xlabel("east (m)")
    axis.set_ylabel("north (m)")
    axis.grid(linestyle="dotted")
    axis.legend(loc="lower left", fontsize=8)
    axis.set_title(f"{os.path.basename(result.path)}: top-{len(result.tiles)} tiles", fontsize=9)
    figure.tight_layout()
    return plots.save_figure(figure, path)


def write_figures(out_dir, db, results):
    written = []
    for n, result in enumerate(results):
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", os.path.splitext(os.path.basename(result.path))[0])
        stem = f"{n:03d}_{name[:40]}"
        written.append(top1_figure(os.path.join(out_dir, f"{stem}_top1.png"), db, result))
        written.append(map_figure(os.path.join(out_dir, f"{stem}_map.png"), db, result))
    return written
