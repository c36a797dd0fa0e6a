"""SAR and optical tiles of the synthetic city in SpaceNet 6's layout (utils/data/spacenet6.py):
the optical tiles are the city's aerial map (PS-RGB: 3 bands, uint8 RGB), the SAR tiles its
height map seen by utils/data/synthetic_sar.py (SAR-Intensity: 4 float32 bands, HH, HV, VH, VV,
in dB, speckled with `looks` looks), both cut from the whole map on the same grid and written
as GeoTIFFs with the same transform, so a tile pair covers the same ground pixel for pixel.

    out/train/AOI_11_Rotterdam/SAR-Intensity/SN6_Train_AOI_11_Rotterdam_SAR-Intensity_<strip>_tile_<n>.tif
    out/train/AOI_11_Rotterdam/PS-RGB/SN6_Train_AOI_11_Rotterdam_PS-RGB_<strip>_tile_<n>.tif
    out/train/AOI_11_Rotterdam/SummaryData/SAR_orientations.txt     `<strip> 0` (north) or `<strip> 1` (south)
    out/synthetic_manifest.json

One strip (one look direction) per dataset; the SAR is rendered over the whole map before the
tiles are cut, so layover and shadows cross tile borders as they do in a real strip. Tiles are
`tile_px` square at `meters_per_pixel` (SpaceNet 6: 900 px at 0.5 m), numbered with distinct
random tile numbers. The CRS is the city's local equidistant plane (utils/data/synthetic_raster.py),
not SpaceNet 6's UTM zone. No building footprints (geojson_buildings/) are written.
Deterministic: the same parameters give the same bytes.
"""
import json
import os

import numpy as np

from utils.data import spacenet6 as sn6
from utils.data.synthetic_raster import city_crs
from utils.data.synthetic_sar import BANDS, observe, render_sar, to_db
from utils.data.synthetic_vigor import MANIFEST, STYLES, build_city_map, read_manifest, written_whole

GENERATOR_VERSION = 1
ROTTERDAM = (51.9225, 4.4792)
ORIENTATION = {"north": 0, "south": 1}          # SAR_orientations.txt's codes


def default_parameters(seed=0, tiles_per_side=3, tile_px=128, meters_per_pixel=0.5, incidence_deg=35.0,
                       looks=4, sensor_side="north", margin=32):
    return {"version": GENERATOR_VERSION, "seed": int(seed), "tiles_per_side": int(tiles_per_side),
            "tile_px": int(tile_px), "meters_per_pixel": float(meters_per_pixel),
            "incidence_deg": float(incidence_deg), "looks": int(looks), "sensor_side": str(sensor_side),
            "margin": int(margin)}


def strip_name(seed):
    """Two SpaceNet 6-style timestamps, start and end of the strip's collect."""
    start = 20190822065725 + 100 * (seed % 60)
    return f"{start}_{start + 234}"


def _write_tile(path, bands, dtype, transform, crs):
    import rasterio
    profile = {"driver": "GTiff", "height": bands.shape[1], "width": bands.shape[2], "count": bands.shape[0],
               "dtype": dtype, "crs": crs, "transform": transform, "compress": "deflate"}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(np.ascontiguousarray(bands.astype(dtype)))
        if dtype == "float32":
            for k, name in enumerate(BANDS, start=1):
                dst.set_band_description(k, name)


def generate(out_dir, **parameters):
    """Write the synthetic SpaceNet 6 to out_dir (replaced if it was ours); returns its path."""
    from rasterio.transform import Affine
    params = default_parameters(**parameters)
    if params["sensor_side"] not in ORIENTATION:
        raise ValueError(f"sensor_side must be 'north' or 'south' (SpaceNet 6's strips), not {params['sensor_side']!r}")
    if params["tiles_per_side"] < 1 or params["tile_px"] < 16 or params["looks"] < 1:
        raise ValueError("need at least 1 tile per side, 16-pixel tiles and 1 look")
    out_dir = os.path.abspath(str(out_dir))
    with written_whole(out_dir) as work:
        rng = np.random.default_rng([params["seed"], 6])
        tile, margin, mpp = params["tile_px"], params["margin"], params["meters_per_pixel"]
        side = params["tiles_per_side"] * tile + 2 * margin
        city = build_city_map("Rotterdam", STYLES["Chicago"], side, mpp, rng, ROTTERDAM)
        sar = render_sar(city.height, city.kind, mpp, params["incidence_deg"], params["sensor_side"])
        sar_db = to_db(observe(sar.intensity, params["looks"], rng))
        rgb = np.moveaxis(city.color[:, :, ::-1], -1, 0)
        crs = city_crs(ROTTERDAM).to_wkt()
        strip = strip_name(params["seed"])
        count = params["tiles_per_side"] ** 2
        numbers = rng.choice(np.arange(1, 10000), size=count, replace=False)
        aoi = os.path.join(work, "train", "AOI_11_Rotterdam")
        for folder in (sn6.SAR_DIR, sn6.OPTICAL_DIR, "SummaryData"):
            os.makedirs(os.path.join(aoi, folder))
        tiles = []
        for k, number in enumerate(numbers):
            r0 = margin + (k // params["tiles_per_side"]) * tile
            c0 = margin + (k % params["tiles_per_side"]) * tile
            transform = Affine(mpp, 0.0, (c0 - side / 2.0) * mpp, 0.0, -mpp, (side / 2.0 - r0) * mpp)
            window = (slice(None), slice(r0, r0 + tile), slice(c0, c0 + tile))
            _write_tile(os.path.join(aoi, sn6.SAR_DIR, sn6.tile_file_name(sn6.SAR_DIR, strip, int(number))),
                        sar_db[window], "float32", transform, crs)
            _write_tile(os.path.join(aoi, sn6.OPTICAL_DIR, sn6.tile_file_name(sn6.OPTICAL_DIR, strip, int(number))),
                        rgb[window], "uint8", transform, crs)
            tiles.append({"tile": int(number), "row": r0, "col": c0})
        with open(os.path.join(aoi, sn6.ORIENTATIONS), "w") as f:
            f.write(f"{strip} {ORIENTATION[params['sensor_side']]}\n")
        with open(os.path.join(work, MANIFEST), "w") as f:
            json.dump({"dataset": "synthetic SpaceNet 6", "parameters": params, "strip": strip, "tiles": tiles},
                      f, indent=1)
    return out_dir


def ensure_generated(out_dir, **parameters):
    """Generate unless out_dir already holds a synthetic SpaceNet 6 made with the same parameters."""
    manifest = read_manifest(out_dir)
    if manifest is not None and manifest.get("parameters") == default_parameters(**parameters):
        return os.path.abspath(str(out_dir))
    return generate(out_dir, **parameters)
