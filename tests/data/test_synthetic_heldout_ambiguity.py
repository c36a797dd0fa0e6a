"""Held-out panoramas (validation, sequences) of a city generated without ambiguity are drawn in
that city: its map (no repeated lots) and its panoramas' settings, as the test split's."""
import glob
import os

import cv2
import numpy as np

from utils.data.dataset import sat_file_name
from utils.data.synthetic_sequences import city_folders, write_validation_panoramas
from utils.data.synthetic_vigor import TILE, Ambiguity, full_resolution, generate

EASY = Ambiguity(heading_error=False, camera_rise=False, foreground=False, repeated_lots=False, full_overlap=True)


def test_held_out_panoramas_are_drawn_in_the_generated_easy_city(tmp_path):
    root = generate(str(tmp_path / "easy"), seed=2, cities=1, tiles_per_side=2, pano_size=(64, 32),
                    panos_per_tile=1.0, ambiguity=EASY)
    p, name, city, centres, _, _, ambiguity, view_radius_m = next(city_folders(root, "validation", 1, 2))
    assert ambiguity == EASY and view_radius_m is not None
    aerial = full_resolution(city.color, p["detail"])
    for rc in centres:
        for cc in centres:
            tile = cv2.imread(os.path.join(root, name, "satellite", sat_file_name(*city.pixel_to_gps(rc, cc), "png")))
            d = p["detail"]
            np.testing.assert_array_equal(tile, aerial[rc * d - TILE // 2:rc * d + TILE // 2,
                                                       cc * d - TILE // 2:cc * d + TILE // 2])
    written = write_validation_panoramas(root, per_tile=1.0)
    assert written and sorted(written) == sorted(glob.glob(os.path.join(root, name, "validation", "*.jpg")))
