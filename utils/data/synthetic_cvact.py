"""A small dataset in CVACT's layout, drawn from the synthetic city so that the views correspond:
what the CVACT reader (utils/data/cvact.py) and Samples_on_CVACT.py are tested on."""
import os

import cv2
import numpy as np
from scipy.io import savemat

from utils.data import synthetic_vigor as sv
from utils.data.cvact import AERIAL_SIDE, CANBERRA_UTM_ZONE, DEFAULT_AERIAL_MPP
from utils.data.geo import latlon_to_utm


def make_tiny_cvact(directory, n=8, seed=0, pano_size=(128, 64), val_fraction=0.25, aerial_mpp=DEFAULT_AERIAL_MPP):
    """Write a small dataset in CVACT's layout: ACT_data.mat, ANU_data_small/satview_polish/*.jpg
    (1200 x 1200, north-up, centred on the camera) and streetview/*.jpg, drawn from one synthetic
    city so that the views correspond. Returns the list of panorama ids."""
    rng = np.random.default_rng([seed, 99])
    margin = AERIAL_SIDE // 2 + 8
    inner = max(400, int(np.ceil(np.sqrt(n))) * 160)
    side = 2 * margin + inner
    style = sv.STYLES["Seattle"]
    origin_lat, origin_lng = -35.2809, 149.1300          # Canberra
    city = sv.build_city_map("CVACT", style, side, aerial_mpp, rng, (origin_lat, origin_lng))
    streets = np.argwhere(city.road[margin:margin + inner, margin:margin + inner])   # cameras on the road
    if len(streets) < n:
        streets = np.argwhere(np.ones((inner, inner), bool))
    picks = streets[rng.choice(len(streets), size=n, replace=False)] + margin

    home = os.path.join(str(directory), "ANU_data_small")
    sat_dir = os.path.join(home, "satview_polish")
    grd_dir = os.path.join(home, "streetview")
    os.makedirs(sat_dir, exist_ok=True)
    os.makedirs(grd_dir, exist_ok=True)
    ids, utm = [], []
    alphabet = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"))
    half = AERIAL_SIDE // 2
    for r, c in picks:
        pano_id = "".join(rng.choice(alphabet, 22))
        ids.append(pano_id)
        aerial = city.color[r - half:r + half, c - half:c + half]
        cv2.imwrite(os.path.join(sat_dir, f"{pano_id}_satView_polish.jpg"), aerial, [cv2.IMWRITE_JPEG_QUALITY, 90])
        pano = sv.render_panorama(city, float(r), float(c), width=pano_size[0], height=pano_size[1])
        cv2.imwrite(os.path.join(grd_dir, f"{pano_id}_grdView.jpg"), pano, [cv2.IMWRITE_JPEG_QUALITY, 90])
        lat, lng = city.pixel_to_gps(float(r), float(c))
        easting, northing, _, _ = latlon_to_utm(lat, lng, CANBERRA_UTM_ZONE)
        utm.append([float(easting), float(northing)])
    order = rng.permutation(n)
    n_val = max(1, int(round(n * val_fraction)))
    val = np.sort(order[:n_val]) + 1
    train = np.sort(order[n_val:]) + 1
    savemat(os.path.join(str(directory), "ACT_data.mat"), {
        "panoIds": np.array(ids),
        "utm": np.array(utm, dtype=np.float64),
        "trainSet": {"trainInd": train.reshape(-1, 1).astype(np.float64)},
        "valSet": {"valInd": val.reshape(-1, 1).astype(np.float64)},
    })
    return ids
