"""One metric frame per reference database: tile-grid pixels <-> metres <-> WGS84, through pyproj.

The frame's metres are ground metres: it is the raster's own CRS when that is projected in metres
true to the ground within 0.2 % at the raster's centre (a UTM zone, the synthetic city's plane),
otherwise an azimuthal equidistant projection centred on the raster (Web Mercator's metres are
1/cos(latitude) ground metres). Every tile's prediction is mapped into it, so that the predictions
of several tiles (and panoramas) can be combined as 2D Gaussians in metres, east and north.
"""
import warnings

import numpy as np
from pyproj import CRS, Geod, Proj, Transformer

WGS84 = "EPSG:4326"
SCALE_TOLERANCE = 0.002          # a CRS whose metres are ground metres within this is used as it is
GEOD = Geod(ellps="WGS84")


def is_metric(crs):
    return crs.is_projected and all(axis.unit_name in ("metre", "meter") for axis in crs.axis_info)


def scale_factor(crs, lon, lat):
    """CRS metres per ground metre at (lon, lat) (geometric mean of the two directions' scales)."""
    return float(np.sqrt(Proj(crs).get_factors(lon, lat).areal_scale))


def azimuthal_equidistant(lon, lat):
    return CRS.from_proj4(f"+proj=aeqd +lat_0={lat!r} +lon_0={lon!r} +datum=WGS84 +units=m +no_defs")


def local_metric_crs(crs, lon, lat):
    """crs itself where its metres are ground metres near (lon, lat), else a frame centred there."""
    if is_metric(crs) and abs(scale_factor(crs, lon, lat) - 1.0) <= SCALE_TOLERANCE:
        return crs
    return azimuthal_equidistant(lon, lat)


def to_wgs84(crs, x, y):
    lon, lat = Transformer.from_crs(crs, WGS84, always_xy=True).transform(x, y)
    return float(lon), float(lat)


def ground_metres_per_pixel(crs, transform, row, col):
    """Geodesic size (geometric mean of width and height) of the pixel at (row, col), in metres."""
    a, b, c, d, e, f = tuple(transform)[:6]
    rows, cols = np.array([row, row, row - 0.5, row + 0.5]), np.array([col - 0.5, col + 0.5, col, col])
    lon, lat = Transformer.from_crs(crs, WGS84, always_xy=True).transform(a * cols + b * rows + c,
                                                                          d * cols + e * rows + f)
    width = GEOD.inv(lon[0], lat[0], lon[1], lat[1])[2]
    height = GEOD.inv(lon[2], lat[2], lon[3], lat[3])[2]
    return float(np.sqrt(width * height))


def crs_label(crs):
    """EPSG:<code> where the CRS has one, else its PROJ string."""
    code = crs.to_epsg()
    if code:
        return f"EPSG:{code}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")     # "may lose projection information": it is a label
        return crs.to_proj4()


class MetricFrame:
    """crs: the tile grid's CRS (WKT); transform: its affine (a, b, c, d, e, f): x = a col + b row + c."""

    def __init__(self, crs_wkt, transform, metric_wkt=None, centre_px=(0.0, 0.0)):
        self.crs = CRS.from_wkt(crs_wkt)
        self.transform = tuple(float(v) for v in transform)
        if metric_wkt is None:
            lon, lat = to_wgs84(self.crs, *self.pixel_to_crs(*centre_px))
            metric_wkt = local_metric_crs(self.crs, lon, lat).to_wkt()
        self.metric = CRS.from_wkt(metric_wkt)
        self._crs_to_metric = Transformer.from_crs(self.crs, self.metric, always_xy=True)
        self._metric_to_wgs84 = Transformer.from_crs(self.metric, WGS84, always_xy=True)
        self._wgs84_to_metric = Transformer.from_crs(WGS84, self.metric, always_xy=True)

    @property
    def crs_label(self):
        return crs_label(self.crs)

    @property
    def metric_label(self):
        return crs_label(self.metric)

    def to_dict(self):
        return {"crs": self.crs.to_wkt(), "transform": list(self.transform), "metric_crs": self.metric.to_wkt()}

    @classmethod
    def from_dict(cls, data):
        return cls(data["crs"], data["transform"], metric_wkt=data["metric_crs"])

    def pixel_to_crs(self, rows, cols):
        """Raster CRS coordinates of continuous pixel positions (pixel i spans [i, i + 1))."""
        a, b, c, d, e, f = self.transform
        rows, cols = np.asarray(rows, np.float64), np.asarray(cols, np.float64)
        return a * cols + b * rows + c, d * cols + e * rows + f

    def pixel_to_metric(self, rows, cols):
        """(..., 2) metres (east, north) of continuous pixel positions."""
        x, y = self.pixel_to_crs(rows, cols)
        mx, my = self._crs_to_metric.transform(x, y)
        return np.stack([np.asarray(mx, np.float64), np.asarray(my, np.float64)], axis=-1)

    def pixel_jacobian(self, row, col):
        """2x2 derivative of the metric position by (column, row) at one pixel position."""
        step = 0.5
        columns = self.pixel_to_metric([row, row], [col - step, col + step])
        rows = self.pixel_to_metric([row - step, row + step], [col, col])
        return np.stack([(columns[1] - columns[0]) / (2 * step), (rows[1] - rows[0]) / (2 * step)], axis=1)

    def metres_per_pixel(self, row, col):
        return float(np.sqrt(abs(np.linalg.det(self.pixel_jacobian(row, col)))))

    def ground_metres_per_pixel(self, row, col):
        """metres_per_pixel corrected by the metric CRS's scale factor there: metres on the ground."""
        lon, lat = self.metric_to_lonlat(self.pixel_to_metric(row, col))
        return self.metres_per_pixel(row, col) / scale_factor(self.metric, lon, lat)

    def metric_to_lonlat(self, points):
        """(..., 2) WGS84 (longitude, latitude) of (..., 2) metric points."""
        points = np.asarray(points, np.float64)
        lon, lat = self._metric_to_wgs84.transform(points[..., 0], points[..., 1])
        return np.stack([np.asarray(lon, np.float64), np.asarray(lat, np.float64)], axis=-1)

    def lonlat_to_metric(self, lon, lat):
        x, y = self._wgs84_to_metric.transform(np.asarray(lon, np.float64), np.asarray(lat, np.float64))
        return np.stack([np.asarray(x, np.float64), np.asarray(y, np.float64)], axis=-1)
