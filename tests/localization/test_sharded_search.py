"""The compressed index written as shard files (utils/localization/sharded_search.py) against one index."""
import dataclasses
import os

import faiss
import numpy as np
import pytest

from utils.errors import DataError
from utils.localization.search import IndexSettings, build_search_index
from utils.localization.sharded_search import ShardedSearchIndex, build_sharded_index, shard_ranges

SETTINGS = IndexSettings(kind="ivfpq", pretransform_dim=32, pq_bytes=8, nlist=32, nprobe=32, rerank=50,
                         train_size=3000, shard_size=1000, shards=3)


@pytest.fixture(autouse=True)
def one_faiss_thread():
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(threads)


def _random_database(tiles=5000, dimension=64, queries=100, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((tiles, dimension)).astype(np.float32)
    q = rng.standard_normal((queries, dimension)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True), q / np.linalg.norm(q, axis=1, keepdims=True)


def test_shard_ranges_are_contiguous_and_cover_every_tile():
    ranges = shard_ranges(5000, 3)
    assert ranges == [(0, 1667), (1667, 1666), (3333, 1667)]
    assert shard_ranges(2, 5) == [(0, 1), (1, 1)]


def test_sharded_search_returns_the_single_index_top_k(tmp_path):
    x, q = _random_database()
    single = build_search_index(x, SETTINGS)
    sharded = build_sharded_index(x, SETTINGS, str(tmp_path))
    assert [r["tiles"] for r in sharded.shards] == [1667, 1666, 1667]
    assert sorted(os.listdir(tmp_path)) == [f"faiss.shard-00{n}.index" for n in range(3)]
    kept_open = ShardedSearchIndex(str(tmp_path), sharded.shards, sharded.parameters,
                                   dataclasses.replace(SETTINGS, keep_shards_open=True))
    for descriptors in (x, None):                  # with the exact re-ranking, and the compressed scores alone
        single.descriptors = sharded.descriptors = kept_open.descriptors = descriptors
        single_scores, single_ids = single.search(q, 10)
        for searcher in (sharded, kept_open):
            sharded_scores, sharded_ids = searcher.search(q, 10)
            assert np.array_equal(sharded_ids, single_ids)
            assert np.array_equal(sharded_scores, single_scores)
    assert {i // 1667 for i in sharded_ids.ravel()} == {0, 1, 2}   # every shard contributed


@pytest.mark.parametrize("damage", ["missing", "truncated"])
def test_a_damaged_shard_file_is_one_line_naming_it(tmp_path, damage):
    x, q = _random_database(tiles=2000)
    sharded = build_sharded_index(x, SETTINGS, str(tmp_path))
    path = os.path.join(tmp_path, sharded.shards[1]["file"])
    if damage == "missing":
        os.remove(path)
    else:
        with open(path, "r+b") as f:
            f.truncate(sharded.shards[1]["bytes"] // 2)
    for attempt in (lambda: sharded.search(q, 5),
                    lambda: ShardedSearchIndex(str(tmp_path), sharded.shards, sharded.parameters, SETTINGS, x)):
        with pytest.raises(DataError) as error:
            attempt()
        assert path in str(error.value) and "\n" not in str(error.value)
