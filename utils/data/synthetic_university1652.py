"""A synthetic stand-in for University-1652: drone, satellite and street views of places in one
synthetic city (utils/data/synthetic_vigor.py's height-field map), in University-1652's layout.

    python -m tools.synthetic_university1652 --out DIR --seed N [--places 20] [--views 6] [--size 256]

Each place is a building of the city. Per place:
* drone: `views` perspective images (utils/data/drone_render.py) from a camera on a descending
  spiral around the place (altitude 256 m -> 121.5 m, University-1652's; radius and field of
  view configurable), looking at the place; named image-01.jpeg, image-02.jpeg, ... as the real ones;
* satellite: one north-up crop of the aerial map centred on the place, <id>/<id>.jpg;
* street: `streets` panoramas (synthetic_vigor.render_panorama) from street points near the
  place, <id>/<id>_<k>.jpg; train/google: one panorama from farther away (the real google folder
  holds noisy web images).
Places are split as the real set is: about half train, the other half test; a quarter of the
test places are distractors, present only in the galleries. Test query and gallery share the drone
and satellite images of the query places; query_street and gallery_street hold different panoramas.
`synthetic_manifest.json` records the parameters and, per place, its id, split, map position, GPS
and camera poses. Deterministic: the same arguments give the same bytes (one random stream, no
threads, no timings written).
"""
import json
import math
import os

import cv2
import numpy as np
from tqdm import tqdm

from utils.data.drone_camera import heading_and_pitch, orbit_camera, spiral_poses
from utils.data.drone_render import raster_to_world, render_view
from utils.data.synthetic_vigor import (
    CITY_NAMES,
    KIND_BUILDING,
    MANIFEST,
    STYLES,
    build_city_map,
    city_origin,
    render_panorama,
    written_whole,
)

GENERATOR_VERSION = 1
JPEG = [cv2.IMWRITE_JPEG_QUALITY, 95]
DISTRACTOR_SHARE = 250 / 951            # University-1652: 951 gallery buildings, 701 of them queried


def default_parameters(seed=0, places=20, views=6, size=256, map_metres=800.0, meters_per_pixel=0.5,
                       radius=180.0, fov_deg=40.0, satellite_metres=160.0, streets=2, spacing=40.0):
    return {"version": GENERATOR_VERSION, "seed": int(seed), "places": int(places), "views": int(views),
            "size": int(size), "map_metres": float(map_metres), "meters_per_pixel": float(meters_per_pixel),
            "radius": float(radius), "fov_deg": float(fov_deg), "satellite_metres": float(satellite_metres),
            "streets": int(streets), "spacing": float(spacing)}


def city_for(params):
    """The city of a parameter set, and the random stream left after drawing it."""
    rng = np.random.default_rng([params["seed"], 1652])
    name = CITY_NAMES[params["seed"] % len(CITY_NAMES)]
    side = int(round(params["map_metres"] / params["meters_per_pixel"]))
    city = build_city_map(name, STYLES[name], side, params["meters_per_pixel"], rng, city_origin(name, 0))
    return city, rng


def choose_places(city, count, border_px, spacing_px, rng):
    """(count, 2) raster positions (row, col) of building pixels at least `border_px` from the map's
    edge and `spacing_px` apart, drawn at random."""
    h, w = city.shape
    inner = np.zeros(city.shape, bool)
    inner[border_px:h - border_px, border_px:w - border_px] = True
    candidates = np.argwhere(inner & (city.kind == KIND_BUILDING))
    chosen = []
    for r, c in candidates[rng.permutation(len(candidates))]:
        if all((r - a) ** 2 + (c - b) ** 2 >= spacing_px ** 2 for a, b in chosen):
            chosen.append((r, c))
            if len(chosen) == count:
                return np.array(chosen, np.float64) + 0.5
    raise ValueError(f"only {len(chosen)} places fit {spacing_px} map pixels apart inside the map's border; "
                     f"ask for fewer places or a larger map")


def split_places(count, rng):
    """'train', 'query' or 'distractor' per place: half train, a quarter of the rest distractors."""
    if count < 2:
        raise ValueError("need at least 2 places (one train, one test)")
    order = rng.permutation(count)
    n_train = count // 2
    n_distractor = min(int(round(DISTRACTOR_SHARE * (count - n_train))), count - n_train - 1)
    split = np.array(["query"] * count, dtype=object)
    split[order[:n_train]] = "train"
    split[order[n_train:n_train + n_distractor]] = "distractor"
    return split


def street_points(city, row, col, count, near_m, far_m, rng):
    """`count` raster positions on roads or sidewalks between near_m and far_m metres of (row, col)."""
    reach = int(math.ceil(far_m / city.mpp)) + 1
    r0, c0 = max(0, int(row) - reach), max(0, int(col) - reach)
    window = (city.road | city.walk)[r0:int(row) + reach, c0:int(col) + reach]
    cells = np.argwhere(window) + [r0, c0] + 0.5
    distance = np.hypot(cells[:, 0] - row, cells[:, 1] - col) * city.mpp
    cells = cells[(distance >= near_m) & (distance <= far_m)]
    if len(cells) == 0:
        raise ValueError(f"no street within {far_m} m of map position ({row:.0f}, {col:.0f})")
    return cells[rng.choice(len(cells), count, replace=len(cells) < count)]


def satellite_tile(city, row, col, metres, size):
    half = int(round(metres / city.mpp / 2))
    r, c = int(row), int(col)
    crop = city.color[r - half:r + half, c - half:c + half]
    return cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)


def _write(path, image):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if not cv2.imwrite(path, image, JPEG):
        raise OSError(f"could not write {path}")


def _place_images(city, params, row, col, rng):
    """Drone views (with their poses), satellite tile, street panoramas (2 sets) and a google panorama."""
    size = params["size"]
    target = raster_to_world(city, row, col)
    drones, poses = [], []
    for altitude, azimuth in spiral_poses(params["views"]):
        camera = orbit_camera(target, params["radius"], altitude, azimuth, size, params["fov_deg"])
        drones.append(render_view(city, camera))
        heading, pitch = heading_and_pitch(camera)
        poses.append({"altitude": altitude, "azimuth": azimuth, "heading": round(heading, 6), "pitch": round(pitch, 6)})
    satellite = satellite_tile(city, row, col, params["satellite_metres"], size)
    pano = (size, max(1, size // 2))
    streets = [render_panorama(city, r, c, width=pano[0], height=pano[1])
               for r, c in street_points(city, row, col, 2 * params["streets"], 5.0, 40.0, rng)]
    google = [render_panorama(city, r, c, width=pano[0], height=pano[1])
              for r, c in street_points(city, row, col, 1, 40.0, 100.0, rng)]
    return drones, poses, satellite, streets, google


def _write_place(work, building, split, images, streets_per_set):
    drones, _, satellite, streets, google = images
    drone_names = [f"image-{k:02d}.jpeg" for k in range(1, len(drones) + 1)]
    if split == "train":
        folders = {"drone": ["train/drone"], "satellite": ["train/satellite"], "street": ["train/street"],
                   "gallery_street": [], "google": ["train/google"]}
    else:
        queried = split == "query"
        folders = {"drone": ["test/gallery_drone"] + (["test/query_drone"] if queried else []),
                   "satellite": ["test/gallery_satellite"] + (["test/query_satellite"] if queried else []),
                   "street": ["test/query_street"] if queried else [], "gallery_street": ["test/gallery_street"],
                   "google": []}
    for folder in folders["drone"]:
        for name, image in zip(drone_names, drones):
            _write(os.path.join(work, folder, building, name), image)
    for folder in folders["satellite"]:
        _write(os.path.join(work, folder, building, f"{building}.jpg"), satellite)
    for key, chosen in (("street", streets[:streets_per_set]), ("gallery_street", streets[streets_per_set:]),
                        ("google", google)):
        for folder in folders[key]:
            for k, image in enumerate(chosen):
                _write(os.path.join(work, folder, building, f"{building}_{k}.jpg"), image)


def generate(out_dir, progress=False, **parameters):
    """Write the synthetic University-1652 to out_dir (replaced if it was ours); returns its path.
    `parameters`: those of `default_parameters`."""
    params = default_parameters(**parameters)
    if params["views"] < 1 or params["streets"] < 1 or params["size"] < 8:
        raise ValueError("need at least 1 view, 1 street panorama and 8-pixel images")
    out_dir = os.path.abspath(str(out_dir))
    with written_whole(out_dir) as work:
        city, rng = city_for(params)
        border = int(math.ceil((max(params["radius"], params["satellite_metres"] / 2) + 20.0) / city.mpp))
        positions = choose_places(city, params["places"], border, params["spacing"] / city.mpp, rng)
        splits = split_places(params["places"], rng)
        ids = [f"{k:04d}" for k in rng.permutation(params["places"])]
        records = []
        for (row, col), split, building in tqdm(list(zip(positions, splits, ids)), desc="places", unit="place",
                                                disable=not progress):
            images = _place_images(city, params, row, col, rng)
            _write_place(work, building, split, images, params["streets"])
            lat, lng = city.pixel_to_gps(row, col)
            records.append({"id": building, "split": split, "row": float(row), "col": float(col),
                            "lat": float(lat), "lng": float(lng), "drone_poses": images[1]})
        manifest = {"generator": "utils.data.synthetic_university1652", "parameters": params, "city": city.name,
                    "meters_per_pixel": city.mpp, "places": sorted(records, key=lambda p: p["id"])}
        with open(os.path.join(work, MANIFEST), "w") as f:
            json.dump(manifest, f, indent=1)
    return out_dir
