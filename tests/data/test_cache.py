"""The resized image cache: the same batches bit for bit, refused when stale, resumable after a real
Ctrl-C, one line on a really full disk. Images at VIGOR's real sizes (2048 x 1024 JPEG panoramas,
640 x 640 PNG tiles), trained at the paper's 320 x 640 and 320 x 320. Every dataset (VIGOR and its
corrected labels, the re-sampled CVACT, the synthetic city) reaches the images through SplitIndex
and ImageLoader, which is what is tested here."""
import glob
import os
import shutil
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest
import yaml

from tests import paths
from utils.config import load_config
from utils.data import synthetic_vigor as sv
from utils.data.cache_builder import build_for_config
from utils.data.cache_config import cache_folder
from utils.data.prefetch import ImageLoader, Prefetcher, scan_grd, scan_sat
from utils.data.resized_cache import PARTIAL
from utils.data.sampler import TrainSampler
from utils.data.splits import build_loader, load_splits
from utils.errors import DataError

REPO = paths.REPO
BUILD_COMMAND = "python -m tools.build_cache --config"
INTERRUPTED = "interrupted; the images stored so far are kept: run the same command again to continue"


@pytest.fixture(scope="module")
def full_size_city(tmp_path_factory):
    """One synthetic city (16 tiles of 640 x 640, ~10 panoramas) whose panoramas are re-encoded at
    2048 x 1024 with fine noise, so that JPEG decoding and resizing cost what they cost on VIGOR."""
    root = sv.generate(str(tmp_path_factory.mktemp("cache") / "city"), seed=5, cities=1, tiles_per_side=4,
                       pano_size=(256, 128), panos_per_tile=0.6, margin=128)
    rng = np.random.default_rng(0)
    for path in glob.glob(os.path.join(root, "*", "panorama", "*.jpg")):
        big = cv2.resize(cv2.imread(path), (2048, 1024), interpolation=cv2.INTER_CUBIC)
        noisy = np.clip(big.astype(np.int16) + rng.integers(-12, 13, big.shape), 0, 255).astype(np.uint8)
        cv2.imwrite(path, noisy, [cv2.IMWRITE_JPEG_QUALITY, 90])
    return root


def write_config(folder, root, **data):
    path = os.path.join(str(folder), "cache.yaml")
    values = dict(dataset="vigor", root=str(root), resolution="auto", train_cities=["NewYork"],
                  test_cities=["NewYork"], cache_dir=os.path.join(str(folder), "cache"))
    values.update(data)
    with open(path, "w") as f:
        yaml.safe_dump({"data": values}, f)
    return path


def batches_of(loader, index, count=3):
    """Positives and semi-positives of a training epoch (what E_1 and later stages feed), as arrays."""
    batches = list(TrainSampler(index, 2, with_semi=True, seed=2).epoch(count))
    with Prefetcher(loader, index, iter(batches), workers=2, depth=2) as prefetch:
        return [(item["sat"], item["sat_semi"], item["grd"]) for item in prefetch]


@pytest.mark.parametrize("polar", [False, True])
def test_cached_batches_are_the_decoded_ones_bit_for_bit(full_size_city, tmp_path, polar):
    cfg = load_config(write_config(tmp_path, full_size_city, polar=polar, use_cache="require"))
    summary = build_for_config(cfg, progress=False)
    assert summary["images"] > 10 and summary["bad"] == 0
    train, test = load_splits(cfg, check_labels=False)
    cached = build_loader(cfg, (train, test))
    assert all(path in cached.resized for index in (train, test) for path in [*index.sat_paths, *index.grd_paths])
    decoded = ImageLoader(cfg.data.sat_size, cfg.data.grd_size, polar=polar)
    for with_cache, without in zip(batches_of(cached, train), batches_of(decoded, train)):
        for a, b in zip(with_cache, without):
            assert a.dtype == b.dtype == np.float32 and np.array_equal(a, b)
    for scan in (scan_sat, scan_grd):   # mining and evaluation read whole splits
        for a, b in zip(scan(cached, test, 4), scan(decoded, test, 4)):
            assert np.array_equal(a, b)
    # the exact uint16 fixed point at the paper's sizes: half the bytes of float32 (polar tiles stay float32)
    pixels = (320 * 320 * 3) * len(set(train.sat_paths) | set(test.sat_paths)) * (4 if polar else 2) \
        + (320 * 640 * 3) * len(set(train.grd_paths) | set(test.grd_paths)) * 2
    assert pixels <= summary["bytes"] < pixels + 64 * summary["images"]


def test_auto_without_a_cache_reads_the_sources_silently(full_size_city, tmp_path, capsys):
    cfg = load_config(write_config(tmp_path, full_size_city))
    train, test = load_splits(cfg, check_labels=False)
    loader = build_loader(cfg, (train, test))
    assert loader.resized is None and "[cache]" not in capsys.readouterr().out
    decoded = ImageLoader(cfg.data.sat_size, cfg.data.grd_size)
    for a, b in zip(batches_of(loader, train, 1), batches_of(decoded, train, 1)):
        assert all(np.array_equal(x, y) for x, y in zip(a, b))
    cfg.data.use_cache = "require"
    with pytest.raises(DataError, match=f"no resized image cache at .*: build it with `{BUILD_COMMAND}"):
        build_loader(cfg, (train, test))


def assert_refused(cfg, splits, capsys, why):
    cfg.data.use_cache = "require"
    with pytest.raises(DataError) as error:
        build_loader(cfg, splits)
    message = str(error.value)
    assert "\n" not in message and why in message and f"`{BUILD_COMMAND} {cfg.config_path}" in message
    cfg.data.use_cache = "auto"
    assert build_loader(cfg, splits).resized is None
    said = capsys.readouterr().out.strip().splitlines()
    assert len(said) == 1 and why in said[0] and BUILD_COMMAND in said[0], said


def test_a_stale_cache_is_refused_in_one_line_naming_the_rebuild_command(full_size_city, tmp_path, capsys):
    city = shutil.copytree(full_size_city, str(tmp_path / "city"))
    config = write_config(tmp_path, city)
    cfg = load_config(config)
    build_for_config(cfg, progress=False)
    splits = load_splits(cfg, check_labels=False)
    assert build_loader(cfg, splits).resized is not None
    # another size in the config: that cache does not exist; the command repeats the size
    other = load_config(config, ["data.sat_size=[256,256]"])
    assert_refused(other, splits, capsys, "is for other sizes")
    assert "--set 'data.sat_size=[256,256]'" in _require_message(other, splits)
    # a source image touched (its modification time), then rewritten (its size)
    tile = splits[0].sat_paths[0]
    stat = os.stat(tile)
    os.utime(tile, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10 ** 9))
    assert_refused(cfg, splits, capsys, "is out of date: 1 source image(s) changed since it was built, e.g. " + tile)
    os.utime(tile, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert build_loader(cfg, splits).resized is not None
    cv2.imwrite(tile, cv2.imread(tile), [cv2.IMWRITE_PNG_COMPRESSION, 9])
    assert_refused(cfg, splits, capsys, "is out of date")
    # rebuilt; then only the chunk of a changed image is decoded again
    summary = build_for_config(cfg, chunk_images=4, progress=False)
    assert summary["reused"] == 0 and build_loader(cfg, splits).resized is not None
    cv2.imwrite(tile, cv2.imread(tile), [cv2.IMWRITE_PNG_COMPRESSION, 1])
    summary = build_for_config(cfg, chunk_images=4, progress=False)
    assert summary["images"] - 4 <= summary["reused"] < summary["images"]


def _require_message(cfg, splits):
    cfg.data.use_cache = "require"
    try:
        build_loader(cfg, splits)
    except DataError as error:
        return str(error)
    return ""


def test_an_unreadable_source_gives_the_same_error_with_the_cache(full_size_city, tmp_path):
    city = shutil.copytree(full_size_city, str(tmp_path / "city"))
    cfg = load_config(write_config(tmp_path, city, use_cache="require"))
    train, test = load_splits(cfg, check_labels=False)
    pano = train.grd_paths[0]
    with open(pano, "r+b") as f:
        f.truncate(os.path.getsize(pano) // 2)
    assert build_for_config(cfg, progress=False)["bad"] == 1
    cached, decoded = build_loader(cfg, (train, test)), ImageLoader(cfg.data.sat_size, cfg.data.grd_size)
    errors = []
    for loader in (cached, decoded):
        with pytest.raises(DataError) as error:
            loader.load_grd(pano, "labels.txt:1")
        errors.append(str(error.value))
    assert errors[0] == errors[1] and "is truncated" in errors[0]


def _as_from_a_terminal():
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGINT])


def _all_files(folder):
    files = {}
    for path in sorted(glob.glob(os.path.join(folder, "**", "*"), recursive=True)):
        if os.path.isfile(path):
            with open(path, "rb") as f:
                files[os.path.relpath(path, folder)] = f.read()
    return files


def test_ctrl_c_keeps_the_work_done_and_a_second_run_finishes_the_same_cache(full_size_city, tmp_path):
    config = write_config(tmp_path, full_size_city, polar=True)
    reference_cfg = load_config(config, [f"data.cache_dir={tmp_path / 'reference'}"])
    build_for_config(reference_cfg, workers=1, chunk_images=1, progress=False)
    cfg = load_config(config)
    folder = cache_folder(cfg)
    command = [sys.executable, "-m", "tools.build_cache", "--config", config, "--workers", "1", "--chunk-images", "1"]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=_as_from_a_terminal)
    deadline = time.time() + 120
    while len(glob.glob(os.path.join(folder + PARTIAL, "chunks", "*.json"))) < 2:
        assert process.poll() is None and time.time() < deadline, process.communicate()
        time.sleep(0.01)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    lines = [line for line in err.replace("\r", "\n").splitlines() if line.strip() and "resized cache:" not in line]
    assert process.returncode == 130 and lines == [INTERRUPTED], (process.returncode, err)
    assert not os.path.exists(folder) and glob.glob(os.path.join(folder + PARTIAL, "chunks", "*.bin"))
    assert not glob.glob(os.path.join(folder + PARTIAL, "chunks", "*.tmp"))
    with pytest.raises(DataError, match="is half-built"):
        build_loader(load_config(config, ["data.use_cache=require"]))

    resumed = subprocess.run(command + ["--quiet"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    kept = int(resumed.stdout.split("(")[1].split(" kept")[0])
    assert kept >= 2
    assert _all_files(folder) == _all_files(cache_folder(reference_cfg))


def test_a_full_disk_is_one_line_and_the_partial_cache_is_never_used(full_size_city, tmp_path, monkeypatch):
    from tests.training.test_reliability import small_filesystem
    from utils.data import cache_builder
    with small_filesystem(str(tmp_path / "disk"), 2 << 20) as disk:
        cfg = load_config(write_config(tmp_path, full_size_city, cache_dir=disk, use_cache="require"))
        splits = load_splits(cfg, check_labels=False)
        with pytest.raises(DataError) as up_front:
            build_for_config(cfg, progress=False)
        monkeypatch.setattr(cache_builder._ChunkWriter, "check_space", lambda *args: None)
        with pytest.raises(DataError) as while_writing:   # the space check passed: the disk fills up
            build_for_config(cfg, progress=False)
        for error in (up_front, while_writing):
            message = str(error.value)
            assert "\n" not in message and message.startswith(f"not enough free space in {cache_folder(cfg)}"
                                                              f"{PARTIAL}: the resized image cache needs about ")
            assert int(message.split("needs about ")[1].split(" bytes")[0].replace(",", "")) > 2 << 20
            assert f"`{BUILD_COMMAND}" in message
        assert not glob.glob(os.path.join(disk, "**", "*.tmp"), recursive=True)
        with pytest.raises(DataError, match="is half-built"):
            build_loader(cfg, splits)
        cfg.data.use_cache = "auto"
        assert build_loader(cfg, splits).resized is None
        assert os.path.isdir(cache_folder(cfg) + PARTIAL)   # kept for a resume
