"""Localize panoramas against an indexed reference database: retrieve the top-k tiles (optionally
re-ranked on the reference graph), predict the panorama's offset and Gaussian in each, map them
to the metric frame and fuse them (alone, or jointly for panoramas with known relative offsets)."""
from dataclasses import dataclass
from typing import Optional

import numpy as np

from utils.config import ConfigError
from utils.localization import fusion
from utils.localization.joint import localize_jointly
from utils.localization.rerank import expanded_query, reference_graph, spatial_rerank

RERANKS = ("none", "spatial", "expansion")


@dataclass
class Settings:                    # the `localize:` section of the config (configs/default.yaml)
    top_k: int
    temperature: float
    sigma_scale: float
    min_sigma_m: float
    fixed_sigma_m: float
    rerank: str
    rerank_candidates: int
    rerank_weight: float
    expansion_tiles: int
    expansion_alpha: float
    size_tolerance: float

    @classmethod
    def from_config(cls, cfg):
        types = cls.__annotations__
        settings = cls(**{key: types[key](value) for key, value in dict(cfg.localize).items()})
        if settings.rerank not in RERANKS:
            raise ConfigError(f"localize.rerank is '{settings.rerank}': use one of {', '.join(RERANKS)}")
        if settings.top_k < 1 or settings.temperature <= 0:
            raise ConfigError("localize.top_k must be >= 1 and localize.temperature > 0")
        return settings


@dataclass
class TileEstimate:
    tile: int                      # row of tiles.csv
    rank: int
    similarity: float
    weight: float                  # in the mixture
    delta: np.ndarray              # (2,) 640-px convention
    sigma_delta: Optional[np.ndarray]
    mean: np.ndarray               # (2,) metric frame
    cov: np.ndarray                # (2, 2) metric frame, as fused (scaled, floored)
    heatmap: Optional[np.ndarray]


@dataclass
class PanoramaResult:
    path: str
    tiles: list
    mixture: fusion.Mixture
    fused: fusion.Estimate
    top1: fusion.Estimate
    method: str = "top-k fusion"


class Localizer:
    def __init__(self, model, db, index, settings):
        self.model, self.db, self.index, self.settings = model, db, index, settings
        self.neighbours = reference_graph(db.centres, db.width_m) if settings.rerank == "spatial" else None

    def retrieve(self, descriptor):
        """(tile ids, similarities) of the top-k tiles for one panorama descriptor."""
        s = self.settings
        if s.rerank == "expansion":
            _, ids = self.index.search(expanded_query(descriptor, self.index, s.expansion_tiles, s.expansion_alpha)[None],
                                       s.top_k)
            return ids[0], self.index.similarity(descriptor[None], ids[0])[0].astype(np.float64)
        wanted = s.rerank_candidates if self.neighbours is not None else s.top_k
        similarities, ids = self.index.search(descriptor[None], max(wanted, s.top_k))
        ids, similarities = ids[0], similarities[0]
        if self.neighbours is not None:
            ids, _ = spatial_rerank(ids, similarities, self.neighbours,
                                    lambda tiles: self.index.similarity(descriptor[None], tiles)[0],
                                    s.rerank_weight)
            similarities = self.index.similarity(descriptor[None], ids)[0].astype(np.float64)
        return ids[:s.top_k], similarities[:s.top_k]

    def localize_all(self, paths, progress=True, keep_heatmaps=False):
        """One PanoramaResult per panorama; the network runs in batches over all of them."""
        paths = [str(p) for p in paths]
        retrieved = [self.retrieve(d) for d in self.model.panorama_descriptors(paths, progress)]
        tiles = [self.db.tile_path(t) for ids, _ in retrieved for t in ids]
        panoramas = [p for p, (ids, _) in zip(paths, retrieved) for _ in ids]
        deltas, sigmas, heatmaps = self.model.tile_outputs(tiles, panoramas, len(tiles) if keep_heatmaps else 0,
                                                           progress)
        results, start = [], 0
        for path, (ids, similarities) in zip(paths, retrieved):
            rows = slice(start, start + len(ids))
            start += len(ids)
            results.append(self._result(path, ids, similarities, deltas[rows],
                                        None if sigmas is None else sigmas[rows],
                                        None if heatmaps is None else heatmaps[rows]))
        return results

    def _result(self, path, ids, similarities, deltas, sigmas, heatmaps):
        means = np.stack([self.db.delta_to_metric(t, d) for t, d in zip(ids, deltas)])
        if sigmas is None:
            covs = np.repeat((self.settings.fixed_sigma_m ** 2 * np.eye(2))[None], len(ids), axis=0)
            scale, floor = 1.0, 0.0
        else:
            covs = np.stack([self.db.sigma_to_metric(t, s) for t, s in zip(ids, sigmas)])
            scale, floor = self.settings.sigma_scale, self.settings.min_sigma_m
        mixture = fusion.build_mixture(means, covs, similarities, self.settings.temperature, scale, floor)
        tiles = [TileEstimate(tile=int(t), rank=r, similarity=float(similarities[r]),
                              weight=float(mixture.weights[r]), delta=deltas[r],
                              sigma_delta=None if sigmas is None else sigmas[r], mean=mixture.means[r],
                              cov=mixture.covs[r], heatmap=None if heatmaps is None else heatmaps[r])
                 for r, t in enumerate(ids)]
        return PanoramaResult(path=path, tiles=tiles, mixture=mixture, fused=fusion.fuse(mixture),
                              top1=fusion.top1(mixture))


def joint_results(results, offsets):
    """The same panoramas with their fused estimates replaced by the joint ones."""
    joint = localize_jointly([r.mixture for r in results], offsets)
    return [PanoramaResult(path=r.path, tiles=r.tiles, mixture=r.mixture, fused=estimate, top1=r.top1,
                           method="joint") for r, estimate in zip(results, joint)]
