"""The output cache runs the network once per (tile, panorama) pair and per panorama, across saves."""
import numpy as np
import pytest

from utils.errors import DataError
from utils.localization.output_cache import CachedModel


class CountingModel:
    checkpoint, network, ground_mpp = "/ckpt/model-1", "SAMP", 0.114

    def __init__(self):
        self.pairs, self.panoramas = 0, 0

    def panorama_descriptors(self, paths, progress=False):
        self.panoramas += len(paths)
        return np.array([[len(p), 1.0] for p in paths], np.float32)

    def tile_outputs(self, tile_paths, panorama_paths, keep_heatmaps=0, progress=False):
        self.pairs += len(tile_paths)
        deltas = np.array([[len(t), len(p)] for t, p in zip(tile_paths, panorama_paths)], np.float64)
        return deltas, np.repeat(np.eye(2)[None], len(tile_paths), axis=0) * deltas[:, :1, None], None

    def close(self):
        pass


@pytest.fixture
def files(tmp_path):
    paths = [tmp_path / name for name in ("t1.png", "tile2.png", "p.jpg", "pano2.jpg")]
    for path in paths:
        path.write_bytes(b"x")
    return [str(p) for p in paths]


def test_pairs_and_descriptors_are_computed_once_and_survive_a_reload(files, tmp_path):
    t1, t2, p1, p2 = files
    inner = CountingModel()
    cached = CachedModel(inner, str(tmp_path / "cache"))
    first = cached.tile_outputs([t1, t2, t1], [p1, p1, p2])
    again = cached.tile_outputs([t2, t1], [p1, p2])
    assert inner.pairs == 3 and np.allclose(again[0], first[0][1:]) and np.allclose(again[1], first[1][1:])
    cached.panorama_descriptors([p1, p2, p1])
    assert inner.panoramas == 2
    cached.close()
    reloaded = CachedModel(CountingModel(), str(tmp_path / "cache"))
    deltas, sigmas, _ = reloaded.tile_outputs([t1], [p2])
    assert reloaded.model.pairs == 0 and np.allclose(deltas, first[0][2:]) and np.allclose(sigmas, first[1][2:])
    assert np.allclose(reloaded.panorama_descriptors([p2]), [[len(p2), 1.0]]) and reloaded.model.panoramas == 0


def test_a_cache_of_another_checkpoint_is_an_error(files, tmp_path):
    cached = CachedModel(CountingModel(), str(tmp_path / "cache"))
    cached.tile_outputs(files[:1], files[2:3])
    cached.save()
    other = CountingModel()
    other.checkpoint = "/ckpt/model-2"
    with pytest.raises(DataError, match="holds checkpoint /ckpt/model-1"):
        CachedModel(other, str(tmp_path / "cache"))
