"""Where the synthetic University-1652's places and drone cameras are, from its manifest
(utils/data/synthetic_university1652.py writes `synthetic_manifest.json`).

Metric frame: utils/data/drone_render.py's world, metres, x east and y north; raster position
(row, col) is x = col * mpp, y = -row * mpp. A place's position is its target: the point every
drone camera of the place looks at, the centre of its satellite image.

A drone image's camera stands on a circle of the manifest's `radius` around the target, at the
azimuth its pose records (bearing from the target, clockwise from north), so its ground offset
from the target is radius * (sin azimuth, cos azimuth). Drone images are image-01.jpeg, ...
in pose order.
"""
import json
import math
import os
import re
from dataclasses import dataclass

import numpy as np

from utils.data.synthetic_vigor import MANIFEST
from utils.errors import DataError

DRONE_NAME = re.compile(r"image-(\d+)\.jpe?g$", re.IGNORECASE)


@dataclass
class PlacePoses:
    root: str
    satellite_metres: float            # ground side of a satellite image
    positions: dict                    # building id -> (2,) target, metres east and north
    camera_offsets: dict               # building id -> (V, 2) drone camera minus target, metres east and north

    def position(self, building):
        return self.positions[str(building)]

    def camera_offset(self, drone_path):
        """(2,) metres east and north of a drone image's camera from its place's target."""
        building = os.path.basename(os.path.dirname(str(drone_path)))
        return self.camera_offsets[building][drone_view(drone_path)]


def drone_view(path):
    """0-based pose index of a drone image from its name (image-01.jpeg is 0)."""
    found = DRONE_NAME.search(os.path.basename(str(path)))
    if found is None:
        raise DataError(f"{path} is not named like a University-1652 drone image (image-01.jpeg, ...)")
    return int(found.group(1)) - 1


def ground_offset(radius, azimuth_deg):
    a = math.radians(azimuth_deg)
    return np.array([radius * math.sin(a), radius * math.cos(a)])


def read_manifest(root):
    path = os.path.join(str(root), MANIFEST)
    if not os.path.isfile(path):
        raise DataError(f"{path} is missing: place and camera poses exist only for the synthetic University-1652 "
                        f"(python -m tools.synthetic_university1652)")
    with open(path) as f:
        return json.load(f)


def load_place_poses(root):
    """PlacePoses of a synthetic University-1652 tree."""
    manifest = read_manifest(root)
    params, mpp = manifest["parameters"], float(manifest["meters_per_pixel"])
    positions, offsets = {}, {}
    for place in manifest["places"]:
        positions[place["id"]] = np.array([place["col"] * mpp, -place["row"] * mpp])
        offsets[place["id"]] = np.array([ground_offset(params["radius"], pose["azimuth"])
                                         for pose in place["drone_poses"]]).reshape(-1, 2)
    return PlacePoses(root=str(root), satellite_metres=float(params["satellite_metres"]), positions=positions,
                      camera_offsets=offsets)
