"""University-1652's three-view training: for each row of a batch, one training image of the
bridge view (train/drone) of the row's building.

The draw is uniform over the building's images and reproducible: it depends only on the seed and
the batch's query rows (which the resumable sampler fixes), so a resumed run draws what an
uninterrupted one would.
"""
import os

import numpy as np

from utils.data.university1652 import HELP, read_view
from utils.errors import DataError

BRIDGE_VIEWS = ("none", "drone")


class BridgeImages:
    """Paths of the bridge view's training images, by building."""

    def __init__(self, root, view, buildings, seed=0):
        folder = os.path.join(root, "train", view)
        images = read_view(folder)
        self.view = view
        self.seed = int(seed)
        self.paths_of = {b: images.paths[images.building_ids == b] for b in np.unique(buildings)}
        missing = [b for b, paths in self.paths_of.items() if len(paths) == 0]
        if missing:
            raise DataError(f"{os.path.join(folder, str(missing[0]))} is missing ({len(missing)} training buildings "
                            f"have no {view} image): the bridge view needs every training building, {HELP}.")

    def draw(self, buildings, rows):
        """(B,) path of one bridge image per batch row; buildings: each row's building id,
        rows: the batch's query rows (the draw's seed with self.seed)."""
        rng = np.random.default_rng([self.seed, *(int(r) for r in rows)])
        return np.array([self.paths_of[b][rng.integers(len(self.paths_of[b]))] for b in buildings])
