"""The size-chosen faiss index (utils/localization/search.py) and bench/search_scale.py's measures."""
import importlib.util
import os

import faiss
import numpy as np
import pytest

from tests.paths import REPO
from utils.config import load_config
from utils.errors import ConfigError
from utils.localization.search import (IndexSettings, SearchIndex, add_shards, build_parameters, build_search_index,
                                       choose_kind, recall_against_exact, shards_of, train_index)



@pytest.fixture(autouse=True)
def one_faiss_thread():
    """A shared 2-vCPU machine: spinning threads only slow these small indexes down."""
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(threads)


def _bench():
    spec = importlib.util.spec_from_file_location("search_scale", os.path.join(REPO, "bench", "search_scale.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _clustered(tiles=6000, dimension=64, seed=0):
    """Unit descriptors of a low intrinsic dimension in clusters, and queries near 200 of them."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((40, 12))
    latent = centres[rng.integers(0, 40, tiles)] + 0.5 * rng.standard_normal((tiles, 12))
    x = latent @ rng.standard_normal((12, dimension)) + 0.3 * rng.standard_normal((tiles, dimension))
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    q = x[rng.choice(tiles, 200, replace=False)] + 0.05 * rng.standard_normal((200, dimension)).astype(np.float32)
    return x, (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)


def _exact_top(x, q, k):
    return np.argsort(-(q @ x.T), axis=1, kind="stable")[:, :k]


SMALL_IVFPQ = IndexSettings(kind="ivfpq", pretransform_dim=32, pq_bytes=8, nlist=32, nprobe=8, rerank=50,
                            train_size=3000, shard_size=1000)


def test_recall_by_hand_an_index_wrong_on_known_queries():
    exact = np.array([[0, 1], [1, 2], [2, 3], [3, 4]])
    found = np.array([[0, 9], [9, 1], [9, 8], [3, 0]])   # top-1 right for queries 0 and 3; 1's at rank 2
    assert recall_against_exact(found, exact, 1) == 0.5
    assert recall_against_exact(found, exact, 2) == 0.75


def test_bench_ground_truth_is_exact_search_merged_over_shards():
    x, q = _clustered(tiles=1500, dimension=32)
    truth = _bench().ExactTopK(q, 10)
    for shard in shards_of(x, 400):
        truth.add(shard)
    assert np.array_equal(truth.ids, _exact_top(x, q, 10))
    wrong = truth.ids.copy()
    wrong[:50, 0] = (wrong[:50, 0] + 1) % len(x)           # a quarter of the top-1s replaced
    assert recall_against_exact(wrong, truth.ids, 1) == pytest.approx(0.75)


def test_bench_generator_rows_depend_on_their_id_alone():
    data = _bench().SyntheticDescriptors(5000, 64, seed=3)
    whole = np.concatenate(list(data.shards(1200)))
    assert np.allclose(data[[4321, 7]], whole[[4321, 7]], atol=1e-6)
    assert np.allclose(np.linalg.norm(whole, axis=1), 1, atol=1e-5)


def test_the_kind_is_chosen_by_database_size():
    settings = IndexSettings(threshold=1000)
    assert choose_kind(999, settings) == "flat" and choose_kind(1000, settings) == "ivfpq"
    assert choose_kind(10, IndexSettings(kind="hnsw")) == "hnsw"
    assert build_parameters(10 ** 7, 4096, IndexSettings())["nlist"] == 4096
    assert build_parameters(50, 8, IndexSettings())["kind"] == "flat"


def test_a_small_database_keeps_the_exact_index():
    x, q = _clustered(tiles=500, dimension=16)
    searcher = build_search_index(x, IndexSettings())
    assert searcher.parameters["kind"] == "flat"
    assert np.array_equal(searcher.search(q, 5)[1], _exact_top(x, q, 5))


def test_approximate_index_with_exact_reranking_finds_the_exact_top_1():
    x, q = _clustered()
    searcher = build_search_index(x, SMALL_IVFPQ)
    assert searcher.parameters["kind"] == "ivfpq"
    similarities, ids = searcher.search(q, 10)
    exact = _exact_top(x, q, 10)
    assert recall_against_exact(ids, exact, 1) >= 0.9
    assert np.allclose(similarities[:, 0], np.einsum("nd,nd->n", q, x[ids[:, 0]]), atol=1e-5)


def test_sharded_add_equals_one_shot_add():
    x, q = _clustered(tiles=3000)
    parameters = build_parameters(len(x), x.shape[1], SMALL_IVFPQ)
    sample = x[:2000]
    one_shot = add_shards(train_index(parameters, sample), [x])
    sharded = add_shards(train_index(parameters, sample), shards_of(x, 700))
    searches = [SearchIndex(index, parameters, SMALL_IVFPQ, descriptors=x).search(q, 10) for index in (one_shot, sharded)]
    assert np.array_equal(searches[0][1], searches[1][1])
    assert np.allclose(searches[0][0], searches[1][0])


def test_index_keys_are_typed_in_the_config():
    cfg = load_config(None, ["localize.index.nlist=512", "localize.index.kind=hnsw"])
    settings = IndexSettings.from_config(cfg)
    assert settings.nlist == 512 and settings.kind == "hnsw" and settings.rerank == 100
    assert IndexSettings.from_config(load_config(None)) == IndexSettings()


@pytest.mark.parametrize("override, message", [
    ("localize.index.kind=ivf", "'localize.index.kind' must be"),
    ("localize.index.nlist=many", "'localize.index.nlist' must be int or null"),
    ("localize.index.nprobe=0", "localize.index.nprobe must be >= 1"),
    ("localize.index.pq_bytes=48", "must divide localize.index.pretransform_dim"),
    ("localize.index.rerank=-1", "localize.index.rerank must be >= 0"),
])
def test_a_wrong_index_value_is_a_one_line_config_error(override, message):
    with pytest.raises(ConfigError) as error:
        IndexSettings.from_config(load_config(None, [override]))
    assert message in str(error.value) and "\n" not in str(error.value)
