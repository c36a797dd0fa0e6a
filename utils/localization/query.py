"""Localize panoramas against an indexed reference database: retrieve the top-k tiles (optionally
re-ranked on the reference graph), predict the panorama's offset and Gaussian in each, map them
to the metric frame and fuse them (alone, or jointly for panoramas with known relative offsets)."""
from dataclasses import dataclass, replace
from typing import Optional

import numpy as np

from utils.errors import ConfigError
from utils.localization import fusion
from utils.localization.fine_windows import FineWindows, gaussian_product
from utils.localization.graph_predictor import agreement, graph_weights
from utils.localization.index import TileIndex
from utils.localization.joint import localize_jointly
from utils.localization.neighbourhood import gnn_scores, joint_similarities, k_reciprocal_distances
from utils.localization.recut import WindowCutter
from utils.localization.rerank import (consensus_scores, consensus_tiles, expanded_query, footprint_rerank,
                                       reference_graph, spatial_rerank, window_rerank)

RERANKS = ("none", "spatial", "expansion", "k_reciprocal", "gnn", "footprint", "windows")
NEIGHBOURHOOD_RERANKS = ("k_reciprocal", "gnn", "footprint")
PREDICTORS = ("fusion", "graph")
FINE = ("head", "windows", "product")


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
    fine: str
    fine_stride_px: int
    fine_temperature: float
    fine_checkpoint: str
    fine_uncertainty: str
    fine_uncertainty_temperature: float
    expansion_tiles: int
    expansion_alpha: float
    rerank_k1: int
    rerank_k2: int
    rerank_lambda: float
    rerank_layers: int
    predictor: str
    graph_candidates: int
    graph_support: float
    recut_candidates: int
    joint_candidates: int
    joint_consensus: float
    joint_outlier_share: float
    size_tolerance: float

    @classmethod
    def from_config(cls, cfg):
        types = cls.__annotations__
        settings = cls(**{key: types[key](value) for key, value in dict(cfg.localize).items()
                          if key != "index"})  # the index's own section: utils/localization/search.py
        if settings.rerank not in RERANKS:
            raise ConfigError(f"localize.rerank is '{settings.rerank}': use one of {', '.join(RERANKS)}")
        if settings.predictor not in PREDICTORS:
            raise ConfigError(f"localize.predictor is '{settings.predictor}': use one of {', '.join(PREDICTORS)}")
        if settings.fine not in FINE:
            raise ConfigError(f"localize.fine is '{settings.fine}': use one of {', '.join(FINE)}")
        if settings.fine_uncertainty_temperature < 0:
            raise ConfigError("localize.fine_uncertainty_temperature must be >= 0 (0: localize.fine_temperature)")
        if settings.fine_stride_px < 1 or settings.fine_temperature <= 0:
            raise ConfigError("localize.fine_stride_px must be >= 1 and localize.fine_temperature > 0")
        if settings.top_k < 1 or settings.temperature <= 0:
            raise ConfigError("localize.top_k must be >= 1 and localize.temperature > 0")
        return settings

    @property
    def uses_windows(self):
        """Whether the window grid over the database's raster is needed (fine or rerank by windows)."""
        return self.fine in ("windows", "product") or self.rerank == "windows"


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
class SequencePrediction:          # several panoramas' network outputs in the same shared tiles
    paths: list
    offsets: np.ndarray            # (P, 2) metres east, north
    tiles: np.ndarray              # (k,) shared tile ids
    similarities: np.ndarray       # (P, k) each panorama's own similarity to them
    deltas: np.ndarray             # (P, k, 2)
    sigmas: Optional[np.ndarray]   # (P, k, 2, 2)
    heatmaps: Optional[np.ndarray]  # (P, k, h, w)


@dataclass
class PanoramaResult:
    path: str
    tiles: list
    mixture: fusion.Mixture
    fused: fusion.Estimate
    top1: fusion.Estimate
    method: str = "top-k fusion"


class Localizer:
    def __init__(self, model, db, index, settings, fine=None, fine_model=None):
        """fine: the FineWindows to use (default: made over db when settings use windows); fine_model:
        the network describing the windows and the panoramas for them (localize.fine_checkpoint's;
        default: model, the retrieval's)."""
        self.model, self.db, self.index, self.settings = model, db, index, settings
        self.fine_model = model if fine_model is None else fine_model
        self.neighbours = reference_graph(db.centres, db.width_m) if settings.rerank == "spatial" else None
        self.cutter = WindowCutter(db) if settings.recut_candidates > 0 else None
        if fine is None and settings.uses_windows:
            fine = FineWindows(db, settings.fine_stride_px, getattr(model, "sat_px", None))
        self.fine = fine

    @property
    def candidates(self):
        """Tiles predicted in per panorama: the top-k, or the graph predictor's candidates."""
        s = self.settings
        return max(s.top_k, s.graph_candidates) if s.predictor == "graph" else s.top_k

    def retrieve(self, descriptor, fine_descriptor=None):
        """(tile ids, similarities) of the top tiles for one panorama descriptor (fine_descriptor: the
        panorama's by the fine model, for rerank=windows; needed when that is not the retrieval's)."""
        s = self.settings
        if s.rerank == "windows":
            similarities, ids = self.index.search(descriptor[None], max(s.rerank_candidates, self.candidates))
            ids, similarities = ids[0], similarities[0].astype(np.float64)
            if fine_descriptor is None:
                if self.fine_model is not self.model:
                    raise ValueError("rerank=windows with a fine checkpoint needs the panorama's descriptor by it")
                fine_descriptor = descriptor
            best = self.fine.best_similarities(self.db, ids, fine_descriptor, self.fine_model)
            order, scores = window_rerank(similarities, best, s.rerank_weight)
            return ids[order[:self.candidates]], scores[order[:self.candidates]]
        if s.rerank in NEIGHBOURHOOD_RERANKS:
            similarities, ids = self.index.search(descriptor[None], max(s.rerank_candidates, self.candidates))
            order = self.neighbourhood_order(ids[0], similarities[0])[:self.candidates]
            return ids[0][order], similarities[0][order]
        if s.rerank == "expansion":
            _, ids = self.index.search(expanded_query(descriptor, self.index, s.expansion_tiles, s.expansion_alpha)[None],
                                       s.top_k)
            return ids[0], self.index.similarity(descriptor[None], ids[0])[0].astype(np.float64)
        wanted = s.rerank_candidates if self.neighbours is not None else self.candidates
        similarities, ids = self.index.search(descriptor[None], max(wanted, self.candidates))
        ids, similarities = ids[0], similarities[0]
        if self.neighbours is not None:
            ids, _ = spatial_rerank(ids, similarities, self.neighbours,
                                    lambda tiles: self.index.similarity(descriptor[None], tiles)[0],
                                    s.rerank_weight)
            similarities = self.index.similarity(descriptor[None], ids)[0].astype(np.float64)
        return ids[:self.candidates], similarities[:self.candidates]

    def neighbourhood_order(self, ids, similarities):
        """Order of the candidates ids by k-reciprocal distance, graph score or footprint support."""
        s = self.settings
        if s.rerank == "footprint":
            return footprint_rerank(similarities, self.db.centres[ids], self.db.width_m[ids], s.rerank_weight)
        descriptors = self.index.descriptors[ids]
        joint = joint_similarities(similarities, descriptors @ descriptors.T)
        if s.rerank == "k_reciprocal":
            return np.argsort(k_reciprocal_distances(joint, s.rerank_k1, s.rerank_k2, s.rerank_lambda)[1:], kind="stable")
        return np.argsort(-gnn_scores(joint, s.rerank_k1, s.rerank_k2, s.rerank_layers)[1:], kind="stable")

    def localize_all(self, paths, progress=True, keep_heatmaps=False):
        """One PanoramaResult per panorama; the network runs in batches over all of them."""
        paths = [str(p) for p in paths]
        descriptors = self.model.panorama_descriptors(paths, progress)
        localizer = self.windows_localizer(paths, descriptors, progress) if self.settings.recut_candidates > 0 else self
        return localizer.localize_descriptors(paths, descriptors, progress, keep_heatmaps)

    def localize_descriptors(self, paths, descriptors, progress=True, keep_heatmaps=False):
        """localize_all, the panoramas' descriptors given."""
        fine = (self.fine_descriptors(paths, descriptors, progress) if self.settings.rerank == "windows"
                else [None] * len(paths))
        retrieved = [self.retrieve_for(path, d, f) for path, d, f in zip(paths, descriptors, fine)]
        outputs = self._outputs(paths, [ids for ids, _ in retrieved], progress, keep_heatmaps, descriptors)
        return [self.result(path, ids, similarities, *output)
                for path, (ids, similarities), output in zip(paths, retrieved, outputs)]

    def retrieve_for(self, path, descriptor, fine_descriptor=None):
        return self.retrieve(descriptor, fine_descriptor)

    def fine_descriptors(self, paths, descriptors=None, progress=False):
        """The panoramas' descriptors by the fine model (the retrieval's own when it is the same model)."""
        if self.fine_model is self.model and descriptors is not None:
            return descriptors
        return self.fine_model.panorama_descriptors(paths, progress)

    @property
    def results_db(self):
        """The database the results' tile ids refer to: the re-cut windows when they are on."""
        return self.cutter.windows if self.settings.recut_candidates > 0 else self.db

    def localize_sequence(self, paths, offsets, progress=True, keep_heatmaps=False):
        """(single results, joint results) of panoramas with known offsets (P, 2), metres east, north."""
        if self.settings.recut_candidates > 0:
            raise ConfigError("localize.recut_candidates re-cuts windows for single panoramas: set it to 0 "
                              "for --joint")
        singles = self.localize_all(paths, progress, keep_heatmaps)
        prediction = self.predict_sequence(paths, offsets, progress, keep_heatmaps)
        return singles, self.joint(prediction, singles)

    def predict_sequence(self, paths, offsets, progress=True, keep_heatmaps=False):
        """Every panorama predicted in the same tiles: the top-k of all their candidates
        (each one's top localize.joint_candidates) by the panoramas' mean similarity (rerank=windows:
        mean window re-rank score, which then weighs each panorama's mixture)."""
        s = self.settings
        paths = [str(p) for p in paths]
        descriptors = self.model.panorama_descriptors(paths, progress)
        candidates = [self.index.search(d[None], max(s.joint_candidates, s.top_k))[1][0] for d in descriptors]
        tiles, similarities = consensus_tiles(self._sequence_scores(paths, descriptors, progress), candidates, s.top_k)
        outputs = self._outputs(paths, [tiles] * len(paths), progress, keep_heatmaps, descriptors)
        stacked = [None if outputs[0][n] is None else np.stack([o[n] for o in outputs]) for n in range(3)]
        return SequencePrediction(paths, np.asarray(offsets, np.float64), tiles, similarities, *stacked)

    def _sequence_scores(self, paths, descriptors, progress):
        """ids -> (P, len(ids)) scores of the panoramas for tiles: their similarities, or with
        rerank=windows the window re-rank's scores."""
        if self.settings.rerank != "windows":
            return lambda ids: self.index.similarity(descriptors, ids)
        fine = self.fine_descriptors(paths, descriptors, progress)

        def scores(ids):
            best = np.stack([self.fine.best_similarities(self.db, ids, f, self.fine_model) for f in fine])
            return window_rerank(self.index.similarity(descriptors, ids), best, self.settings.rerank_weight)[1]
        return scores

    def joint(self, prediction, singles, settings=None):
        """Joint PanoramaResults: panorama j weighs the shared tiles by its own similarity mixed
        with the others' mean (joint_consensus); the robust product of the mixtures, each shifted
        by its offset, gives one position for all (utils/localization/joint.py)."""
        s = settings or self.settings
        scores = consensus_scores(prediction.similarities, s.joint_consensus)
        together = [self.result(path, prediction.tiles, scores[j], prediction.deltas[j],
                                None if prediction.sigmas is None else prediction.sigmas[j],
                                None if prediction.heatmaps is None else prediction.heatmaps[j], s)
                    for j, path in enumerate(prediction.paths)]
        estimates = localize_jointly([r.mixture for r in together], prediction.offsets, s.joint_outlier_share,
                                     self.area_m2)
        return [replace(r, fused=estimate, top1=single.top1, method="joint")
                for r, single, estimate in zip(together, singles, estimates)]

    def windows_localizer(self, paths, descriptors, progress):
        """A Localizer over the windows re-cut around every panorama's top recut_candidates stored
        tiles (utils/localization/recut.py), with those windows' descriptors computed now; each
        panorama is searched among its own windows only."""
        cutter = self.cutter
        top = [self.index.search(d[None], self.settings.recut_candidates)[1][0] for d in descriptors]
        allowed = {path: cutter.around(tiles) for path, tiles in zip(paths, top)}
        needed = np.unique(np.concatenate(list(allowed.values())))
        cutter.cut(needed)
        windows = np.zeros((len(cutter.windows), self.index.descriptors.shape[1]), np.float32)
        windows[needed] = self.model.tile_descriptors([cutter.windows.tile_path(w) for w in needed], progress)
        return WindowsLocalizer(self.model, cutter.windows, TileIndex(windows, self.index.info),
                                replace(self.settings, recut_candidates=0), allowed, self.fine, self.fine_model)

    @property
    def area_m2(self):
        """The database's extent (bounding box of its tile footprints), for the joint floor."""
        low = (self.db.centres - self.db.width_m[:, None] / 2).min(axis=0)
        high = (self.db.centres + self.db.width_m[:, None] / 2).max(axis=0)
        return float(np.prod(high - low))

    def _outputs(self, paths, tile_lists, progress, keep_heatmaps, descriptors=None):
        """[(deltas, sigmas or None, heatmaps or None)] of paths[i] in the tiles tile_lists[i]: the
        offset head's, or the window search's (localize.fine; no heatmaps, the windows and panoramas
        described by the fine model) given the panoramas' retrieval descriptors."""
        if self.settings.fine in ("windows", "product"):
            windows = self.fine.tile_outputs(self.db, tile_lists, self.fine_descriptors(paths, descriptors, progress),
                                             self.fine_model, self.settings.fine_temperature, progress)
            if self.settings.fine == "windows":
                return [(deltas, sigmas, None) for deltas, sigmas in windows]
            head = self._head_outputs(paths, tile_lists, progress, 0)
            if any(sigmas is None for _, sigmas, _ in head):
                raise ConfigError(f"localize.fine=product multiplies the offset head's Gaussian with the window "
                                  f"search's, but checkpoint {self.model.checkpoint} has no Sigma head: give an "
                                  f"E_2_2 or E_3 checkpoint, or set localize.fine=windows")
            return [gaussian_product(d_head, s_head, d_windows, s_windows) + (None,)
                    for (d_head, s_head, _), (d_windows, s_windows) in zip(head, windows)]
        return self._head_outputs(paths, tile_lists, progress, keep_heatmaps)

    def _head_outputs(self, paths, tile_lists, progress, keep_heatmaps):
        tiles = [self.db.tile_path(t) for ids in tile_lists for t in ids]
        panoramas = [p for p, ids in zip(paths, tile_lists) for _ in ids]
        deltas, sigmas, heatmaps = self.model.tile_outputs(tiles, panoramas, len(tiles) if keep_heatmaps else 0,
                                                           progress)
        outputs, start = [], 0
        for ids in tile_lists:
            rows = slice(start, start + len(ids))
            start += len(ids)
            outputs.append((deltas[rows], None if sigmas is None else sigmas[rows],
                            None if heatmaps is None else heatmaps[rows]))
        return outputs

    def result(self, path, ids, similarities, deltas, sigmas, heatmaps, settings=None):
        """A PanoramaResult from the network's outputs in tiles ids (settings: the mixture's)."""
        s = settings or self.settings
        means = np.stack([self.db.delta_to_metric(t, d) for t, d in zip(ids, deltas)])
        if sigmas is None:
            covs = np.repeat((s.fixed_sigma_m ** 2 * np.eye(2))[None], len(ids), axis=0)
            scale, floor = 1.0, 0.0
        else:
            covs = np.stack([self.db.sigma_to_metric(t, sigma) for t, sigma in zip(ids, sigmas)])
            scale, floor = s.sigma_scale, s.min_sigma_m
        mixture = fusion.build_mixture(means, covs, similarities, s.temperature, scale, floor)
        if s.predictor == "graph":
            votes = agreement(mixture.means, mixture.covs, self.db.centres[ids], self.db.width_m[ids])
            mixture = fusion.Mixture(mixture.means, mixture.covs, graph_weights(mixture.weights, votes, s.graph_support))
        tiles = [TileEstimate(tile=int(t), rank=r, similarity=float(similarities[r]),
                              weight=float(mixture.weights[r]), delta=deltas[r],
                              sigma_delta=None if sigmas is None else sigmas[r], mean=mixture.means[r],
                              cov=mixture.covs[r], heatmap=None if heatmaps is None else heatmaps[r])
                 for r, t in enumerate(ids)]
        return PanoramaResult(path=path, tiles=tiles, mixture=mixture, fused=fusion.fuse(mixture),
                              top1=fusion.top1(mixture),
                              method="graph predictor" if s.predictor == "graph" else "top-k fusion")

    def refit(self, result, settings):
        """The same panorama's network outputs fused again under other settings (no network run)."""
        tiles = result.tiles
        sigmas = None if tiles[0].sigma_delta is None else [t.sigma_delta for t in tiles]
        return self.result(result.path, [t.tile for t in tiles], np.array([t.similarity for t in tiles]),
                           np.array([t.delta for t in tiles]), sigmas, None, settings)


class WindowsLocalizer(Localizer):
    """A Localizer over re-cut windows in which each panorama only sees the windows it was given."""

    def __init__(self, model, db, index, settings, allowed, fine=None, fine_model=None):
        super().__init__(model, db, index, settings, fine, fine_model)
        self.allowed = allowed

    def retrieve_for(self, path, descriptor, fine_descriptor=None):
        windows = self.allowed[path]
        similarities = self.index.similarity(descriptor[None], windows)[0].astype(np.float64)
        order = np.argsort(-similarities, kind="stable")[:self.candidates]
        return windows[order], similarities[order]
