"""SpaceNet 6 (Shermeyer et al., CVPRW 2020, arXiv 2004.06500) as released, SAR tiles paired with
optical tiles into the project's one index (`utils.data.dataset.SplitIndex`).

Layout of an AOI folder (e.g. train/AOI_11_Rotterdam/), from the stored sources:
    SAR-Intensity/SN6_Train_AOI_11_Rotterdam_SAR-Intensity_<start>_<end>_tile_<n>.tif
    PS-RGB/SN6_Train_AOI_11_Rotterdam_PS-RGB_<start>_<end>_tile_<n>.tif
    (PAN/, RGBNIR/, PS-RGBNIR/, geojson_buildings/ and SummaryData/ are not read)
    SummaryData/SAR_orientations.txt   `<start>_<end> <0|1>` per strip: imaged from the north (0)
                                       or the south (1)
* Folders and the tile id: torchgeo's SpaceNet6 (torchgeo/datasets/spacenet/spacenet6.py:
  image folders PAN, RGBNIR, PS-RGB, PS-RGBNIR, SAR-Intensity, masks geojson_buildings, file
  regex `_tile_(\\d+)\\.`); file names as CosmiQ's baseline and other readers build them
  (`SN6_Train_AOI_11_Rotterdam_{mode}_{image_id}.tif`); the strip is the two timestamps before
  `_tile_`, and SAR_orientations.txt's meaning, from CosmiQ_SN6_Baseline/baseline.py
  (`readrotationfile`, `lookuprotation`).
* Tiles: 900 x 900 pixels at 0.5 m for PS-RGB and SAR-Intensity (torchgeo's table; RGBNIR is
  450 x 450 at 2 m); 3,401 training tiles over 120 km2 of Rotterdam.
* SAR-Intensity: four polarisations (HH, HV, VH, VV; the band order is the one used here, not
  stated in the stored primary sources) of Capella's airborne X-band sensor, as intensity in dB
  float32 (a survey of SAR datasets, citing the SpaceNet 6 paper: 2 x 2 multilook, negative
  values set to 0, 10 log10). The value range is not stated in the stored sources: a raster with
  a non-finite value or one outside [DB_LOW, DB_HIGH] (-100, 100) dB, a generous bound that an
  amplitude or 8-bit raster put there by mistake exceeds, is refused.

Pairing: one SAR tile and one PS-RGB tile per tile number, covering the same ground. In the
index the optical tiles are the references (sat_paths) and the SAR tiles the queries
(grd_paths), sorted by tile number; labels[:, 0] = the optical tile of the same number and,
with no semi-positives, labels[:, 1:] too; deltas zero (the tiles are co-registered); GPS the
tile centres (from each GeoTIFF's transform and CRS); meters_per_pixel the optical tiles' ground
resolution at 640 px (the index's convention: pixel size x width / 640); sat_city and grd_city the AOI folder's name. Every problem (a file name without a tile
number, a tile number twice, a tile without its pair, a wrong band count or type, values out of
range, tiles that do not cover the same ground) is a one-line DataError naming the file.
"""
import os
import re

import numpy as np

from utils.data.dataset import SplitIndex
from utils.errors import DataError

SAR_DIR = "SAR-Intensity"
OPTICAL_DIR = "PS-RGB"
ORIENTATIONS = os.path.join("SummaryData", "SAR_orientations.txt")
SAR_BANDS = ("HH", "HV", "VH", "VV")
OPTICAL_BANDS = 3
TILE_PX = 900
METERS_PER_PIXEL = 0.5
DB_LOW, DB_HIGH = -100.0, 100.0
TILE_CONVENTION_PX = 640          # SplitIndex.meters_per_pixel is the resolution at 640 px
TILE_NUMBER = re.compile(r"_tile_(\d+)\.tif$")
HELP = "see data/DATASET.md, section SpaceNet 6"


def tile_file_name(mode, strip, tile, split="Train", aoi="AOI_11_Rotterdam"):
    """SN6_<split>_<aoi>_<mode>_<strip>_tile_<n>.tif, mode 'SAR-Intensity' or 'PS-RGB'."""
    return f"SN6_{split}_{aoi}_{mode}_{strip}_tile_{tile}.tif"


def _tiles(folder):
    """{tile number: path} of the GeoTIFFs of one folder."""
    if not os.path.isdir(folder):
        raise DataError(f"{folder} is missing; restore the folder, {HELP}.")
    tiles = {}
    for name in sorted(os.listdir(folder)):
        if not name.lower().endswith((".tif", ".tiff")):
            continue
        path = os.path.join(folder, name)
        match = TILE_NUMBER.search(name)
        if match is None:
            raise DataError(f"{path}: the name has no '_tile_<n>.tif'; rename or remove it, {HELP}.")
        number = int(match.group(1))
        if number in tiles:
            raise DataError(f"{path}: tile {number} is also {tiles[number]}; remove one of them, {HELP}.")
        tiles[number] = path
    if not tiles:
        raise DataError(f"{folder} holds no GeoTIFF tile; restore it, {HELP}.")
    return tiles


def _pairs(sar, optical, aoi_dir):
    for number, path in sar.items():
        if number not in optical:
            raise DataError(f"{path}: tile {number} has no {OPTICAL_DIR} tile in {os.path.join(aoi_dir, OPTICAL_DIR)}; "
                            f"restore its pair or remove it, {HELP}.")
    for number, path in optical.items():
        if number not in sar:
            raise DataError(f"{path}: tile {number} has no {SAR_DIR} tile in {os.path.join(aoi_dir, SAR_DIR)}; "
                            f"restore its pair or remove it, {HELP}.")
    return sorted(sar)


def _open(path):
    import rasterio
    try:
        return rasterio.open(path)
    except rasterio.errors.RasterioIOError as error:
        raise DataError(f"{path} cannot be read as a GeoTIFF ({str(error).splitlines()[0]}); restore it, {HELP}.") from None


def _check_sar(raster, path, values):
    if raster.count != len(SAR_BANDS) or raster.dtypes[0] != "float32":
        raise DataError(f"{path} has {raster.count} band(s) of {raster.dtypes[0]}; SpaceNet 6's {SAR_DIR} "
                        f"has {len(SAR_BANDS)} float32 bands ({', '.join(SAR_BANDS)} in dB); replace it, {HELP}.")
    if values:
        data = raster.read()
        bad = ~np.isfinite(data) | (data < DB_LOW) | (data > DB_HIGH)
        if bad.any():
            band, row, col = (int(v[0]) for v in np.nonzero(bad))
            raise DataError(f"{path}: band {band + 1} holds {float(data[band, row, col])!r} at row {row}, column {col}, "
                            f"outside [{DB_LOW:g}, {DB_HIGH:g}] dB ({int(bad.sum())} such values); "
                            f"SAR-Intensity must be intensity in dB, {HELP}.")


def _centre_and_resolution(raster, path):
    from pyproj import Transformer
    if raster.crs is None:
        raise DataError(f"{path} has no CRS; SpaceNet 6's tiles are georeferenced, restore it, {HELP}.")
    x, y = raster.xy(raster.height / 2.0, raster.width / 2.0, offset="ul")
    lng, lat = Transformer.from_crs(raster.crs.to_wkt(), "EPSG:4326", always_xy=True).transform(x, y)
    return (lat, lng), abs(raster.transform.a) * raster.width / TILE_CONVENTION_PX


def _check_same_ground(sar, optical, sar_path, optical_path):
    sar_bounds, optical_bounds = np.array(sar.bounds), np.array(optical.bounds)
    if sar.crs != optical.crs or np.abs(sar_bounds - optical_bounds).max() > abs(optical.transform.a):
        raise DataError(f"{sar_path} covers {tuple(sar_bounds.round(2))} in {sar.crs}, its pair {optical_path} "
                        f"{tuple(optical_bounds.round(2))} in {optical.crs}; pair tiles of the same ground, {HELP}.")


def load_spacenet6(aoi_dir, images="header"):
    """SplitIndex of one SpaceNet 6 AOI folder (e.g. train/AOI_11_Rotterdam): SAR queries, optical references.

    images: "header" (band count, type, CRS and footprint of every tile, read from the GeoTIFF
    headers) or "values" (also every SAR value, slow: 13 MB per 900 x 900 tile)."""
    if images not in ("header", "values"):
        raise ValueError(f"images must be 'header' or 'values', not {images!r}")
    aoi_dir = os.path.abspath(str(aoi_dir))
    if not os.path.isdir(aoi_dir):
        raise DataError(f"{aoi_dir} is not a folder; unpack SpaceNet 6 there, {HELP}.")
    sar_tiles = _tiles(os.path.join(aoi_dir, SAR_DIR))
    optical_tiles = _tiles(os.path.join(aoi_dir, OPTICAL_DIR))
    numbers = _pairs(sar_tiles, optical_tiles, aoi_dir)
    sat_gps, grd_gps, resolution = [], [], []
    for number in numbers:
        sar_path, optical_path = sar_tiles[number], optical_tiles[number]
        with _open(sar_path) as sar, _open(optical_path) as optical:
            _check_sar(sar, sar_path, images == "values")
            if optical.count != OPTICAL_BANDS:
                raise DataError(f"{optical_path} has {optical.count} band(s); SpaceNet 6's {OPTICAL_DIR} has "
                                f"{OPTICAL_BANDS} (RGB); replace it, {HELP}.")
            _check_same_ground(sar, optical, sar_path, optical_path)
            centre, mpp = _centre_and_resolution(optical, optical_path)
            grd_gps.append(_centre_and_resolution(sar, sar_path)[0])
            sat_gps.append(centre)
            resolution.append(mpp)
    n = len(numbers)
    rows = np.arange(n, dtype=np.int64)
    aoi = os.path.basename(aoi_dir)
    return SplitIndex(
        sat_paths=np.array([optical_tiles[k] for k in numbers], dtype=str),
        sat_gps=np.array(sat_gps, np.float64).reshape(-1, 2),
        sat_city=np.array([aoi] * n, dtype=str),
        grd_paths=np.array([sar_tiles[k] for k in numbers], dtype=str),
        grd_gps=np.array(grd_gps, np.float64).reshape(-1, 2),
        grd_city=np.array([aoi] * n, dtype=str),
        labels=np.repeat(rows[:, None], 4, axis=1),
        deltas=np.zeros((n, 4, 2)),
        meters_per_pixel=np.array(resolution, np.float64),
        name=f"SpaceNet 6 {aoi} SAR -> optical",
        grd_source=np.array([sar_tiles[k] for k in numbers], dtype=str),
        sat_source=np.array([optical_tiles[k] for k in numbers], dtype=str),
        root=aoi_dir,
        cities=(aoi,),
    )
