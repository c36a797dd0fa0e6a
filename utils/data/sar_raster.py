"""SpaceNet 6's GeoTIFF tiles as network input (utils/data/spacenet6.py says what the files hold).

SAR-Intensity (4 float32 bands HH, HV, VH, VV in dB) -> 3 channels in the optical images' range:
    channel 0 = HH, channel 1 = (HV + VH) / 2, channel 2 = VV   (HV and VH carry the same
                                                                  return, by reciprocity)
    each clipped to [low, high] dB (data.spacenet6.db_range) and mapped linearly onto [0, 255],
    as float32; the loader then resizes and subtracts the same channel means as from optical
    images (utils/data/prefetch.py), so both branches see inputs of one scale.
PS-RGB (3 uint8 bands R, G, B) -> B, G, R uint8 (OpenCV's order, as every optical image here).

A raster that is not what SpaceNet 6 ships (another band count or type, a non-finite value or a
value outside [DB_LOW, DB_HIGH] dB: an amplitude or 8-bit raster put there by mistake) is a one-line
DataError naming the file.
"""
import os

import numpy as np

from utils.data import spacenet6 as sn6
from utils.errors import ConfigError, DataError

SAR_KIND = "SAR tile"


def _open(path, kind, where):
    import rasterio
    listed = f" (listed in {where})" if where else ""
    if not os.path.isfile(str(path)):
        raise DataError(f"{kind} {path}{listed} does not exist: give a SpaceNet 6 GeoTIFF, {sn6.HELP}.")
    try:
        return rasterio.open(str(path))
    except rasterio.errors.RasterioIOError as error:
        raise DataError(f"{kind} {path}{listed} cannot be read as a GeoTIFF ({str(error).splitlines()[0]}); "
                        f"give a SpaceNet 6 {sn6.SAR_DIR if kind == SAR_KIND else sn6.OPTICAL_DIR} GeoTIFF, "
                        f"{sn6.HELP}.") from None


def read_sar_db(path, where=None):
    """(4, H, W) float32 dB of a SAR-Intensity tile, checked: 4 float32 bands, finite, within
    [DB_LOW, DB_HIGH]."""
    with _open(path, SAR_KIND, where) as raster:
        if raster.count != len(sn6.SAR_BANDS) or raster.dtypes[0] != "float32":
            raise DataError(f"{SAR_KIND} {path} has {raster.count} band(s) of {raster.dtypes[0]}; SpaceNet 6's "
                            f"{sn6.SAR_DIR} has {len(sn6.SAR_BANDS)} float32 bands ({', '.join(sn6.SAR_BANDS)} "
                            f"in dB): give such a raster, {sn6.HELP}.")
        data = raster.read()
    bad = ~np.isfinite(data) | (data < sn6.DB_LOW) | (data > sn6.DB_HIGH)
    if bad.any():
        band, row, col = (int(v[0]) for v in np.nonzero(bad))
        raise DataError(f"{SAR_KIND} {path}: band {band + 1} holds {float(data[band, row, col])!r} at row {row}, "
                        f"column {col}, outside [{sn6.DB_LOW:g}, {sn6.DB_HIGH:g}] dB ({int(bad.sum())} such "
                        f"values): SAR-Intensity must be intensity in dB, {sn6.HELP}.")
    return data


def sar_to_channels(db, db_range):
    """(H, W, 3) float32 in [0, 255] from (4, H, W) dB: HH, mean of HV and VH, VV, each clipped to
    db_range = (low, high) and scaled linearly."""
    low, high = float(db_range[0]), float(db_range[1])
    channels = np.stack([db[0], 0.5 * (db[1] + db[2]), db[3]], axis=-1)
    return ((np.clip(channels, low, high) - low) * (255.0 / (high - low))).astype(np.float32)


def read_sar_tile(path, db_range, where=None):
    """A SAR-Intensity tile as the 3-channel float32 image the loader resizes (sar_to_channels)."""
    return sar_to_channels(read_sar_db(path, where), db_range)


def read_optical_tile(path, where=None):
    """A PS-RGB GeoTIFF as BGR uint8 (H, W, 3), checked: 3 uint8 bands."""
    with _open(path, "optical tile", where) as raster:
        if raster.count != sn6.OPTICAL_BANDS or raster.dtypes[0] != "uint8":
            raise DataError(f"optical tile {path} has {raster.count} band(s) of {raster.dtypes[0]}; SpaceNet 6's "
                            f"{sn6.OPTICAL_DIR} as read here has {sn6.OPTICAL_BANDS} uint8 bands (R, G, B): "
                            f"give such a raster, {sn6.HELP}.")
        return np.ascontiguousarray(np.moveaxis(raster.read()[::-1], 0, -1))


def check_db_range(db_range, where="data.spacenet6.db_range"):
    """(low, high) as floats, low < high, inside [DB_LOW, DB_HIGH]; ConfigError otherwise."""
    try:
        low, high = (float(v) for v in db_range)
    except (TypeError, ValueError):
        raise ConfigError(f"{where} must be two numbers [low, high] in dB, not {db_range!r}") from None
    if not sn6.DB_LOW <= low < high <= sn6.DB_HIGH:
        raise ConfigError(f"{where} must be [low, high] with {sn6.DB_LOW:g} <= low < high <= {sn6.DB_HIGH:g} dB, "
                         f"not {db_range!r}")
    return low, high
