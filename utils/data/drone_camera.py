"""A pinhole camera circling a target place, as University-1652's synthetic drone does.

World frame: metres, x east, y north, z up (ground at z = 0). Camera frame (OpenCV's): x right,
y down, z forward. Pixel (u, v) are continuous image coordinates: pixel j spans [j, j + 1), so
the principal point of a W x H image is (W / 2, H / 2) and the target projects there.

University-1652's drone (arXiv 2002.12186): a virtual camera in Google Earth flies around each
building on a spiral, its altitude falling from about 256 m to 121.5 m, always looking at the
building; 54 frames are kept per building (confirmed by the baseline's gallery_name.txt; the
altitudes are the paper's, whose text was not among the sources searched here). `spiral_poses`
follows that path with any number of views; the circle's radius and the field of view are ours.
"""
import math
from dataclasses import dataclass

import numpy as np

HIGHEST_ALTITUDE = 256.0
LOWEST_ALTITUDE = 121.5
VIEWS_PER_PLACE = 54


@dataclass(frozen=True)
class PinholeCamera:
    width: int
    height: int
    focal: float              # pixels (square pixels)
    position: np.ndarray      # (3,) world metres
    rotation: np.ndarray      # (3, 3) world -> camera; rows are the camera's right, down, forward axes

    def intrinsics(self):
        return np.array([[self.focal, 0.0, self.width / 2.0], [0.0, self.focal, self.height / 2.0], [0.0, 0.0, 1.0]])


def focal_from_fov(width, fov_deg):
    """Focal length (pixels) of a horizontal field of view `fov_deg` over `width` pixels."""
    return width / 2.0 / math.tan(math.radians(fov_deg) / 2.0)


def look_at(position, target):
    """World -> camera rotation of a camera at `position` looking at `target`, with no roll
    (its right axis horizontal). The camera must not look straight up or down."""
    forward = np.asarray(target, np.float64) - np.asarray(position, np.float64)
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    norm = np.linalg.norm(right)
    if norm < 1e-9:
        raise ValueError("look_at: the camera looks straight up or down; its heading is undefined")
    right /= norm
    down = np.cross(forward, right)
    return np.stack([right, down, forward])


def orbit_position(target, radius, altitude, azimuth_deg):
    """Camera position on a circle of `radius` metres around target (x, y), at `altitude` metres
    above the ground; azimuth: the bearing from the target to the camera, clockwise from north."""
    a = math.radians(azimuth_deg)
    return np.array([target[0] + radius * math.sin(a), target[1] + radius * math.cos(a), float(altitude)])


def orbit_camera(target, radius, altitude, azimuth_deg, size, fov_deg):
    """A size x size camera on the circle around target (x, y, z), looking at it."""
    position = orbit_position(target, radius, altitude, azimuth_deg)
    return PinholeCamera(width=size, height=size, focal=focal_from_fov(size, fov_deg),
                         position=position, rotation=look_at(position, target))


def heading_and_pitch(camera):
    """(yaw clockwise from north, pitch below the horizon), degrees, of the camera's forward axis."""
    fx, fy, fz = camera.rotation[2]
    return (math.degrees(math.atan2(fx, fy)) % 360.0, math.degrees(math.atan2(-fz, math.hypot(fx, fy))))


def spiral_poses(views, highest=HIGHEST_ALTITUDE, lowest=LOWEST_ALTITUDE, turns=1.0, start_deg=0.0):
    """(altitude, azimuth_deg) of `views` cameras on a descending spiral: altitude falling
    linearly from `highest` to `lowest`, azimuth advancing evenly over `turns` turns."""
    if views < 1:
        raise ValueError("views must be at least 1")
    altitudes = np.linspace(highest, lowest, views) if views > 1 else np.array([highest])
    azimuths = (start_deg + 360.0 * turns * np.arange(views) / views) % 360.0
    return [(float(h), float(a)) for h, a in zip(altitudes, azimuths)]


def project(camera, points):
    """(u, v, depth) of world points (N, 3): continuous pixel coordinates and distance along the
    optical axis (depth <= 0: behind the camera)."""
    local = (np.asarray(points, np.float64) - camera.position) @ camera.rotation.T
    depth = local[:, 2]
    safe = np.where(np.abs(depth) < 1e-12, 1e-12, depth)
    u = camera.focal * local[:, 0] / safe + camera.width / 2.0
    v = camera.focal * local[:, 1] / safe + camera.height / 2.0
    return u, v, depth


def pixel_rays(camera, rows=None):
    """Unit world directions (R, W, 3) through the centres of image rows `rows` (default all)."""
    rows = np.arange(camera.height) if rows is None else np.asarray(rows)
    u = (np.arange(camera.width) + 0.5 - camera.width / 2.0) / camera.focal
    v = (rows + 0.5 - camera.height / 2.0) / camera.focal
    local = np.stack(np.broadcast_arrays(u[None, :], v[:, None], 1.0), axis=-1)
    world = local @ camera.rotation
    return world / np.linalg.norm(world, axis=-1, keepdims=True)
