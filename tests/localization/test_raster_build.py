"""localize.py build on GeoTIFFs as GIS users have them: any CRS and resolution resampled to the
checkpoint's ground size (checked with pyproj.Geod), coarse rasters refused, nodata, RGBA, RGBN,
16-bit and the pixel content at its place."""
import csv
import json

import cv2
import numpy as np
import pytest
import rasterio
from pyproj import CRS, Geod, Transformer
from rasterio.transform import from_origin

import localize
from tests import paths
from utils.cli import run
from utils.localization.database import build_database, load_database

REPO = paths.REPO
GEOD = Geod(ellps="WGS84")
GROUND_MPP = 0.114                     # VIGOR's, at 640 px
TILE_PX = 64                           # so the grid has 1.14 ground m/px and tiles of 72.96 m
TILE_M = 640 * GROUND_MPP
UTM_WEST, UTM_NORTH = 583960.0, 4507530.0                  # Manhattan, EPSG:32618
MERC_WEST, MERC_NORTH = Transformer.from_crs("EPSG:4326", "EPSG:3857", always_xy=True).transform(-74.0, 40.0)


def write_raster(path, bands, crs, transform, nodata=None, **profile):
    count, height, width = bands.shape
    with rasterio.open(path, "w", driver="GTiff", height=height, width=width, count=count, dtype=bands.dtype,
                       crs=crs, transform=transform, nodata=nodata, **profile) as dst:
        dst.write(bands)
    return str(path)


def random_rgb(size, seed=0):
    return np.random.default_rng(seed).integers(1, 255, (3, size, size), dtype=np.uint8)


def tiles_and_grid(root):
    with open(f"{root}/tiles.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    info = json.load(open(f"{root}/database.json"))
    return rows, info


def grid_to_wgs84(info):
    """(rows, cols) of the tile grid -> (lon, lat), from database.json alone (not the code's frame)."""
    a, b, c, d, e, f = info["frame"]["transform"]
    to_wgs84 = Transformer.from_crs(CRS.from_wkt(info["frame"]["crs"]), "EPSG:4326", always_xy=True)
    return lambda rows, cols: to_wgs84.transform(a * np.asarray(cols) + c, e * np.asarray(rows) + f)


@pytest.mark.parametrize("crs, west, north, native, size, frame, resampling", [
    ("EPSG:32618", UTM_WEST, UTM_NORTH, 0.8, 300, "EPSG:32618", "average"),
    ("EPSG:3857", MERC_WEST, MERC_NORTH, 1.2, 300, "+proj=aeqd", "average"),     # 0.92 ground m/px
    ("EPSG:3857", MERC_WEST, MERC_NORTH, 2.0, 160, "+proj=aeqd", "bilinear"),    # 1.53 ground m/px
])
def test_every_tile_covers_the_checkpoints_ground(tmp_path, crs, west, north, native, size, frame, resampling):
    raster = write_raster(tmp_path / "map.tif", random_rgb(size), crs, from_origin(west, north, native, native))
    info = build_database(raster, str(tmp_path / "db"), GROUND_MPP, tile_px=TILE_PX, stride_px=TILE_PX, progress=False)
    rows, info = tiles_and_grid(tmp_path / "db")
    assert info["grid"]["crs"].startswith(frame) and info["grid"]["resampling"] == resampling
    assert len(rows) == info["tiles"] >= 4
    to_wgs84 = grid_to_wgs84(info)
    from_raster = Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
    to_raster = Transformer.from_crs("EPSG:4326", crs, always_xy=True)
    for row in rows:
        r, c, half = int(row["row_px"]), int(row["col_px"]), TILE_PX / 2
        lon, lat = to_wgs84([r + half, r + half, r, r + TILE_PX], [c, c + TILE_PX, c + half, c + half])
        width = GEOD.inv(lon[0], lat[0], lon[1], lat[1])[2]
        height = GEOD.inv(lon[2], lat[2], lon[3], lat[3])[2]
        assert width == pytest.approx(TILE_M, rel=0.01) and height == pytest.approx(TILE_M, rel=0.01)
        assert float(row["width_m"]) == pytest.approx(TILE_M, rel=0.01) and row["crs"] == crs
        assert float(row["m_per_px"]) == pytest.approx(TILE_M / TILE_PX, rel=0.01)
        x, y = float(row["centre_x"]), float(row["centre_y"])
        centre_lon, centre_lat = from_raster.transform(x, y)
        assert GEOD.inv(centre_lon, centre_lat, float(row["lng"]), float(row["lat"]))[2] < 0.1
        back = to_raster.transform(centre_lon, centre_lat)
        assert np.hypot(back[0] - x, back[1] - y) < 0.1


def test_a_bright_square_appears_at_its_place_and_size(tmp_path):
    """Web Mercator at 40 N, 0.5 Mercator m/px (0.38 ground m/px): a 20 m square, 3x downsampled."""
    scale = 1.0 / np.cos(np.radians(40.0))                     # Mercator metres per ground metre
    side_px = int(round(20.0 * scale / 0.5))
    image = np.full((3, 400, 400), 40, np.uint8)
    top, left = 120, 150
    image[:, top:top + side_px, left:left + side_px] = 250
    raster = write_raster(tmp_path / "map.tif", image, "EPSG:3857", from_origin(MERC_WEST, MERC_NORTH, 0.5, 0.5))
    build_database(raster, str(tmp_path / "db"), GROUND_MPP, tile_px=TILE_PX, stride_px=TILE_PX // 2, progress=False)
    db = load_database(str(tmp_path / "db"))
    square_lon, square_lat = Transformer.from_crs("EPSG:3857", "EPSG:4326", always_xy=True).transform(
        MERC_WEST + 0.5 * (left + side_px / 2), MERC_NORTH - 0.5 * (top + side_px / 2))
    _, info = tiles_and_grid(tmp_path / "db")
    a, _, c, _, e, f = info["frame"]["transform"]
    x, y = Transformer.from_crs("EPSG:4326", CRS.from_wkt(info["frame"]["crs"]), always_xy=True).transform(
        square_lon, square_lat)
    row, col = (y - f) / e, (x - c) / a                         # the square's centre on the tile grid
    inside = [t for t in range(len(db)) if db.row_px[t] + 12 < row < db.row_px[t] + TILE_PX - 12
              and db.col_px[t] + 12 < col < db.col_px[t] + TILE_PX - 12]
    assert inside
    tile = cv2.imread(db.tile_path(inside[0]))
    bright = np.argwhere(tile[:, :, 0] > 145)
    centre = bright.mean(axis=0) + 0.5                          # pixel i spans [i, i + 1)
    assert np.allclose(centre, [row - db.row_px[inside[0]], col - db.col_px[inside[0]]], atol=0.5)
    assert np.sqrt(len(bright)) == pytest.approx(20.0 / (TILE_M / TILE_PX), abs=1.0)     # 17.5 px


def test_a_raster_much_coarser_than_the_checkpoint_is_refused_in_one_line(tmp_path, capsys):
    raster = write_raster(tmp_path / "landsat.tif", random_rgb(40), "EPSG:32618",
                          from_origin(UTM_WEST, UTM_NORTH, 300.0, 300.0))
    code = run(localize.main, ["build", "--raster", raster, "--out", str(tmp_path / "db")], tensorflow=False)
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err
    assert f"raster {raster} has 300" in err and "m/px on the ground" in err
    assert "need 0.114 m/px (the checkpoint's 0.114 m/px at 640 px, 73.0 m tiles)" in err
    assert "use imagery of at most 0.228 m/px" in err
    assert not (tmp_path / "db").exists()


def test_nodata_is_black_and_mostly_nodata_tiles_are_skipped(tmp_path):
    """UTM at 0.8 m/px, its west 100 m nodata: tile column 0 is all nodata, column 1 is 37 % nodata."""
    image = np.full((3, 300, 300), 200, np.uint8)
    image[:, :, :125] = 0
    raster = write_raster(tmp_path / "map.tif", image, "EPSG:32618", from_origin(UTM_WEST, UTM_NORTH, 0.8, 0.8),
                          nodata=0)
    info = build_database(raster, str(tmp_path / "db"), GROUND_MPP, tile_px=TILE_PX, stride_px=TILE_PX, progress=False)
    assert (info["tiles"], info["skipped_nodata"]) == (6, 3)
    db = load_database(str(tmp_path / "db"))
    for t in range(len(db)):
        tile = cv2.imread(db.tile_path(t))
        black = (tile == 0).all(axis=2).mean(axis=0)           # share of black pixels per column
        if db.col_px[t] == TILE_PX:                             # 100 - 72.96 m = 27 m of nodata: 23.7 px
            assert black[:23].min() == 1.0 and black[25:].max() == 0.0
        else:
            assert black.max() == 0.0 and (tile == 200).all()


def test_rgba_takes_alpha_as_the_mask_and_rgbn_ignores_the_fourth_band(tmp_path):
    colours = np.array([10, 100, 200], np.uint8)[:, None, None]
    rgba = np.concatenate([np.broadcast_to(colours, (3, 300, 300)), np.full((1, 300, 300), 255, np.uint8)])
    rgba[3, :, :162] = 0                                        # transparent west 130 m
    raster = write_raster(tmp_path / "rgba.tif", rgba, "EPSG:32618", from_origin(UTM_WEST, UTM_NORTH, 0.8, 0.8),
                          photometric="RGB", alpha="YES")
    info = build_database(raster, str(tmp_path / "rgba"), GROUND_MPP, tile_px=TILE_PX, stride_px=TILE_PX, progress=False)
    assert (info["tiles"], info["skipped_nodata"]) == (3, 6)   # column 1 is 78 % transparent: skipped too
    rgbn = rgba.copy()
    rgbn[3] = 255 - rgbn[3]                                     # a near-infrared band, not a mask
    raster = write_raster(tmp_path / "rgbn.tif", rgbn, "EPSG:32618", from_origin(UTM_WEST, UTM_NORTH, 0.8, 0.8),
                          photometric="MINISBLACK", alpha="UNSPECIFIED")
    info = build_database(raster, str(tmp_path / "rgbn"), GROUND_MPP, tile_px=TILE_PX, stride_px=TILE_PX, progress=False)
    assert (info["tiles"], info["skipped_nodata"]) == (9, 0)
    for root in ("rgba", "rgbn"):
        db = load_database(str(tmp_path / root))
        for t in range(len(db)):
            assert (cv2.imread(db.tile_path(t)) == [200, 100, 10]).all()     # BGR, as VIGOR's PNGs


def test_16_bit_is_stretched_from_the_2nd_to_the_98th_percentile_and_grey_is_repeated(tmp_path):
    ramp = np.tile(np.linspace(0, 10000, 192), (192, 1)).astype(np.uint16)
    bands = np.stack([ramp, ramp // 2, 10000 - ramp])
    transform = from_origin(UTM_WEST, UTM_NORTH, 1.14, 1.14)      # the grid's pixels: cut as they are
    raster = write_raster(tmp_path / "u16.tif", bands, "EPSG:32618", transform)
    info = build_database(raster, str(tmp_path / "u16"), GROUND_MPP, tile_px=TILE_PX, stride_px=TILE_PX, progress=False)
    assert info["grid"]["resampling"] == "none" and info["pixels"]["dtype"] == "uint16"
    low, high = np.percentile(bands.reshape(3, -1).astype(np.float64), [2, 98], axis=1)
    assert np.allclose(info["pixels"]["stretch"]["low"], low) and np.allclose(info["pixels"]["stretch"]["high"], high)
    expected = np.clip(np.round((bands - low[:, None, None]) / (high - low)[:, None, None] * 255), 0, 255)
    db = load_database(str(tmp_path / "u16"))
    for t in range(len(db)):
        r, c = db.row_px[t], db.col_px[t]
        tile = cv2.imread(db.tile_path(t))
        assert np.array_equal(tile, np.moveaxis(expected[::-1, r:r + TILE_PX, c:c + TILE_PX], 0, -1))
    raster = write_raster(tmp_path / "grey.tif", (bands[:1] // 40).astype(np.uint8), "EPSG:32618", transform)
    build_database(raster, str(tmp_path / "grey"), GROUND_MPP, tile_px=TILE_PX, stride_px=TILE_PX, progress=False)
    db = load_database(str(tmp_path / "grey"))
    tile = cv2.imread(db.tile_path(0))
    assert np.array_equal(tile[:, :, 0], tile[:, :, 2]) and np.array_equal(tile[:, :, 0], (ramp[:64, :64] // 40))


def test_without_ground_mpp_the_checkpoints_run_config_gives_it(tmp_path, capsys):
    run_dir = tmp_path / "runs" / "exp"
    run_dir.mkdir(parents=True)
    default = open(f"{REPO}/configs/default.yaml").read()
    (run_dir / "config.yaml").write_text(default.replace("  resolution: original ", "  resolution: 0.2 ", 1))
    raster = write_raster(tmp_path / "map.tif", random_rgb(140), "EPSG:32618",
                          from_origin(UTM_WEST, UTM_NORTH, 2.0, 2.0))
    code = run(localize.main, ["build", "--raster", raster, "--out", str(tmp_path / "db"), "--tile-px", "64",
                               "--stride-px", "64", "--checkpoint", str(run_dir / "E_3" / "4")], tensorflow=False)
    assert code == 0, capsys.readouterr().err
    assert "tiles of 64 px = 128.0 m (2 m/px in EPSG:32618, resampling none)" in capsys.readouterr().out
