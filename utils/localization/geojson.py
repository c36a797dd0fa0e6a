"""Query results as a GeoJSON FeatureCollection in WGS84 (longitude, latitude).

Per panorama (properties.panorama names its file), features of kind:
  tile           the footprint Polygon of each of the top-k tiles (rank, similarity, weight)
  tile_estimate  a Point: where that tile puts the panorama (heatmap offset), with its Gaussian
  tile_ellipse   that Gaussian's 1-sigma ellipse (Polygon)
  fused          the fused position (Point), its covariance and a confidence in [0, 1]
  fused_ellipse  its 1- and 2-sigma ellipses (Polygons)
(with --joint, a second fused Point and its ellipses have method "joint"; its top1_tile is the first of
the tiles the panoramas share, utils/localization/query.py).
Covariances are in square metres over (east, north) of the database's metric frame.
"""
import json
import os

import numpy as np

from utils.localization.fusion import ellipse


def _point(frame, mean):
    return {"type": "Point", "coordinates": frame.metric_to_lonlat(mean).tolist()}


def _polygon(frame, ring):
    return {"type": "Polygon", "coordinates": [frame.metric_to_lonlat(ring).tolist()]}


def _gaussian_properties(cov):
    values = np.sqrt(np.maximum(np.linalg.eigvalsh(cov), 0.0))
    return {"covariance_m2": np.round(cov, 4).tolist(), "sigma_major_m": round(float(values[1]), 3),
            "sigma_minor_m": round(float(values[0]), 3)}


def _feature(geometry, **properties):
    return {"type": "Feature", "geometry": geometry, "properties": properties}


def tile_features(db, result, name):
    frame, features = db.frame, []
    for t in result.tiles:
        row, col, side = db.row_px[t.tile], db.col_px[t.tile], db.tile_px
        corners = frame.pixel_to_metric([row, row, row + side, row + side, row], [col, col + side, col + side, col, col])
        common = {"panorama": name, "rank": t.rank + 1, "tile_id": t.tile, "tile_file": str(db.files[t.tile])}
        features.append(_feature(_polygon(frame, corners), kind="tile", similarity=round(t.similarity, 6),
                                 weight=round(t.weight, 6), **common))
        offset_m = t.mean - db.centres[t.tile]
        features.append(_feature(_point(frame, t.mean), kind="tile_estimate",
                                 offset_px=np.round(t.delta, 3).tolist(), offset_m=np.round(offset_m, 3).tolist(),
                                 **_gaussian_properties(t.cov), **common))
        features.append(_feature(_polygon(frame, ellipse(t.mean, t.cov, 1)), kind="tile_ellipse", sigma=1,
                                 **common))
    return features


def fused_features(db, result, name):
    fused = result.fused
    features = [_feature(_point(db.frame, fused.mean), kind="fused", panorama=name, method=result.method,
                         confidence=round(fused.confidence, 4), top1_tile=str(db.files[result.tiles[0].tile]),
                         **_gaussian_properties(fused.cov))]
    for k in (1, 2):
        features.append(_feature(_polygon(db.frame, ellipse(fused.mean, fused.cov, k)), kind="fused_ellipse",
                                 sigma=k, panorama=name, method=result.method))
    return features


def write_geojson(path, db, results, joint=None):
    """results: one per panorama; joint: the same panoramas localized together (their fused
    features are added, method "joint")."""
    features = []
    for n, result in enumerate(results):
        name = os.path.basename(result.path)
        features += tile_features(db, result, name) + fused_features(db, result, name)
        if joint is not None:
            features += fused_features(db, joint[n], name)
    collection = {"type": "FeatureCollection", "features": features,
                  "metric_frame": db.frame.metric_label, "database": os.path.abspath(db.root)}
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(collection, f, indent=1)
    return collection
