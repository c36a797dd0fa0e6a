"""Several drone images of one place localized together: the query scene graph.

The nodes are the drone images; what links them is known: every camera looks at the same target
(the ground point at the centre of its footprint), and each camera stands at a known ground
offset c_j from that target (metres east, north; the flight's poses). Each image alone gives a
mixture over the target's position: one Gaussian per retrieved reference tile, at the tile's
centre, with the fixed localize.fixed_sigma_m (University-1652's network predicts no offset or
Sigma), weighted by the softmax of its descriptor similarity (utils/localization/fusion.py).

Shifted by c_j, image j's mixture is over its camera's position; the cameras stand at
x + (c_j - c_0), x being the first camera, and utils/localization/joint.py's product of shifted
mixtures localizes them together. The target is then every camera's estimate minus its c_j:
one point, with the product's covariance.
"""
from dataclasses import dataclass, replace

import numpy as np

from utils.localization import fusion
from utils.localization.joint import localize_jointly


@dataclass
class SceneGraph:
    paths: list                   # the drone images (nodes)
    camera_offsets: np.ndarray    # (P, 2) each camera's ground position minus the target's, metres east, north


def target_mixture(tile_centres, similarities, fixed_sigma_m, temperature):
    """One image's mixture over the target: its retrieved tiles' centres (k, 2), fixed sigma."""
    covs = np.repeat((float(fixed_sigma_m) ** 2 * np.eye(2))[None], len(tile_centres), axis=0)
    return fusion.build_mixture(tile_centres, covs, similarities, temperature)


def shifted(mixture, offset):
    return replace(mixture, means=mixture.means + np.asarray(offset, np.float64))


def localize_scene(graph, mixtures, outlier_share=0.0, area_m2=None):
    """The target's Estimate from every node's target mixture, through the cameras' product."""
    offsets = np.asarray(graph.camera_offsets, np.float64)
    if offsets.shape != (len(mixtures), 2) or len(graph.paths) != len(mixtures):
        raise ValueError(f"{len(graph.paths)} images, {len(mixtures)} mixtures and offsets of shape "
                         f"{offsets.shape}: need one mixture and one (east, north) offset per image")
    cameras = [shifted(mix, offset) for mix, offset in zip(mixtures, offsets)]
    estimates = localize_jointly(cameras, offsets - offsets[0], outlier_share, area_m2)
    first = estimates[0]
    return fusion.Estimate(mean=first.mean - offsets[0], cov=first.cov, confidence=first.confidence)


@dataclass
class PlaceLocalization:
    place: str
    singles: np.ndarray           # (P, 2) each image's own fused target estimate, metres east, north
    joint: fusion.Estimate        # the scene graph's target estimate


def retrieve(queries, tiles, top_k):
    """(ids (Q, k), cosine similarities (Q, k)) of each query's top-k tiles (descriptors L2-normalised here)."""
    def unit(x):
        x = np.asarray(x, np.float64)
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    similarity = unit(queries) @ unit(tiles).T
    ids = np.argsort(-similarity, axis=1, kind="stable")[:, :top_k]
    return ids, np.take_along_axis(similarity, ids, axis=1)


def localize_places(query_descriptors, places, camera_offsets, tile_descriptors, tile_centres, settings, area_m2=None):
    """Every place's drone images localized alone and together (one PlaceLocalization per place,
    in sorted order). places: (Q,) the place of each query image; camera_offsets (Q, 2);
    tile_centres (T, 2) metres; settings: localize's Settings (top_k, fixed_sigma_m, temperature,
    joint_outlier_share)."""
    places = np.asarray(places)
    ids, similarities = retrieve(query_descriptors, tile_descriptors, settings.top_k)
    mixtures = [target_mixture(tile_centres[i], s, settings.fixed_sigma_m, settings.temperature)
                for i, s in zip(ids, similarities)]
    results = []
    for place in np.unique(places):
        rows = np.flatnonzero(places == place)
        graph = SceneGraph(paths=list(rows), camera_offsets=np.asarray(camera_offsets)[rows])
        mine = [mixtures[r] for r in rows]
        results.append(PlaceLocalization(place=str(place), singles=np.array([fusion.fuse(m).mean for m in mine]),
                                         joint=localize_scene(graph, mine, settings.joint_outlier_share, area_m2)))
    return results
