"""The position probes: a planted offset is recovered, a map without it reads zero, tile identity
alone reads high raw and zero within tiles, and the fit is the ridge formula."""
import numpy as np
import pytest

from utils.evaluation.probes import demean_by_group, fit_probe, pool_map, probe


def city(seed, tiles=30, per_tile=8):
    """Tiles, offsets (N, 2) in 640-px units, and each tile's own mean offset and texture."""
    rng = np.random.default_rng(seed)
    tile_of = np.repeat(np.arange(tiles), per_tile)
    tile_mean = rng.uniform(-60, 60, (tiles, 2))
    offsets = tile_mean[tile_of] + rng.uniform(-100, 100, (len(tile_of), 2))
    return tile_of, offsets, rng


def feature_map(tile_of, offsets, rng, planted, tile_texture):
    """(N, 8, 16, 12) maps: noise, each tile's own texture (the same for all its panoramas) and,
    when planted, the offset written linearly into channels 0-3 of the upper half."""
    n = len(tile_of)
    maps = rng.normal(0, 1.0, (n, 8, 16, 12))
    maps += tile_texture[tile_of]
    if planted:
        mix = rng.normal(0, 1, (2, 4))
        maps[:, :4, :, :4] += (offsets / 100.0 @ mix)[:, None, None, :]
    return maps


def split(seed, planted):
    tile_of, offsets, rng = city(seed)
    texture = rng.normal(0, 2.0, (tile_of.max() + 1, 8, 16, 12))
    maps = feature_map(tile_of, offsets, rng, planted, texture)
    half = np.arange(len(tile_of)) % 2 == 0
    return [(pool_map(maps[rows], (4, 8)), offsets[rows], tile_of[rows]) for rows in (half, ~half)]


def test_planted_offset_is_recovered_within_tiles():
    (train_x, train_y, train_t), (test_x, test_y, test_t) = split(0, planted=True)
    assert train_x.shape == (120, 4 * 8 * 12)
    result = probe(train_x, train_y, test_x, test_y, train_t, test_t, within_tile=True)
    assert min(result.correlation) > 0.9
    assert result.r2 > 0.8
    raw = probe(train_x, train_y, test_x, test_y)
    assert min(raw.correlation) > 0.8


def test_map_without_the_offset_reads_near_zero():
    (train_x, train_y, train_t), (test_x, test_y, test_t) = split(1, planted=False)
    result = probe(train_x, train_y, test_x, test_y, train_t, test_t, within_tile=True)
    assert max(abs(c) for c in result.correlation) < 0.25
    assert result.r2 < 0.1


def test_tile_identity_reads_high_raw_and_zero_within_tiles():
    tile_of, offsets, rng = city(2, tiles=40, per_tile=10)
    tile_mean = demean_by_group(offsets, tile_of) - offsets           # minus each tile's mean offset
    features = np.concatenate([-tile_mean * 0.01, rng.normal(0, 1, (len(tile_of), 30))], axis=1)
    half = np.arange(len(tile_of)) % 2 == 0
    args = (features[half], offsets[half], features[~half], offsets[~half], tile_of[half], tile_of[~half])
    raw, within = probe(*args), probe(*args, within_tile=True)
    assert min(raw.correlation) > 0.4
    assert max(abs(c) for c in within.correlation) < 0.2


def test_fit_is_the_ridge_formula_at_the_chosen_alpha():
    rng = np.random.default_rng(3)
    x = rng.normal(0, 1, (60, 12)) * rng.uniform(0.5, 3, 12) + rng.normal(0, 1, 12)
    y = x[:, :2] @ np.array([[1.0, -0.5], [0.3, 2.0]]) + rng.normal(0, 0.5, (60, 2))
    fitted = fit_probe(x, y)
    a = (x - x.mean(0)) / x.std(0)
    direct = np.linalg.solve(a.T @ a + fitted.alpha * np.eye(12), a.T @ (y - y.mean(0)))
    np.testing.assert_allclose(fitted.weights, direct, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(fitted.predict(x), a @ direct + y.mean(0), rtol=1e-8, atol=1e-8)


def test_pool_map_averages_blocks():
    x = np.arange(2 * 4 * 6 * 1, dtype=float).reshape(2, 4, 6, 1)
    pooled = pool_map(x, (2, 3))
    assert pooled.shape == (2, 6)
    assert pooled[0, 0] == pytest.approx(x[0, :2, :2, 0].mean())
    assert pooled[1, 5] == pytest.approx(x[1, 2:, 4:, 0].mean())
    assert pool_map(np.ones((3, 1, 1, 5)), (4, 4)).shape == (3, 5)
