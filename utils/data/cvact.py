"""CVACT: its ACT_data.mat, its image folders, and SAMP's re-sampling into VIGOR-style tiles.

CVACT (Liu & Li, CVPR 2019; OriCNN) gives, per panorama id, a 1200 x 1200 north-up aerial image
centred on the camera (`satview_polish/<id>_satView_polish.jpg`), a panorama
(`streetview/<id>_grdView.jpg`) and, in ACT_data.mat, `panoIds`, `utm` (easting, northing; UTM
zone 55 south, Canberra) and the split `trainSet.trainInd` / `valSet.valInd` (1-based).

SAMP's Samples_on_CVACT.py cuts four 600 x 600 crops from every aerial image: the first with the
camera inside the crop's central quarter (a positive), three with it outside (semi-positives),
and writes each crop's camera position to centers.txt. `resample_cvact` does the same with the
same random scheme and also writes a VIGOR-format tree (tiles resized to 640, named by the crop
centre's GPS; panoramas named by the camera's GPS; splits/<city>/ label files with offsets in the
640-pixel convention; train/test from the .mat) that utils.data.dataset.load_index_from_root reads.
"""
import json
import os
import shutil

import cv2
import numpy as np

from utils.data.dataset import (
    DATASET_HELP,
    PANO_LABELS,
    RESOLUTION_FILE,
    SAME_AREA_TEST,
    SAME_AREA_TRAIN,
    SAT_LIST,
    pano_file_name,
    sat_file_name,
)
from utils.data.geo import tile_centre_for_offset, utm_to_latlon
from utils.errors import DataError

AERIAL_SIDE = 1200
DEFAULT_AERIAL_MPP = 0.12        # metres per pixel of the 1200-px aerial images (assumed; see DATASET.md)
CANBERRA_UTM_ZONE = 55
TILE = 640
ORIGINAL_OUTPUT = "sampled_CVACT_dataset"   # the original script's output folder (crops, centers.txt)
MANIFEST = "cvact_resample.json"


# ---------------------------------------------------------------- the .mat
def read_act_mat(path):
    """{'pano_ids': [str], 'utm': (N, 2) float64, 'train': (M,) int, 'val': (K,) int} (0-based)."""
    from scipy.io import loadmat
    try:
        data = loadmat(str(path))
    except FileNotFoundError:
        raise DataError(f"{path} not found: CVACT's ACT_data.mat is needed; {DATASET_HELP}.") from None
    except Exception as e:  # scipy raises ValueError / MatReadError on a damaged file
        raise DataError(f"{path} cannot be read as a MATLAB file ({e}); download ACT_data.mat again.") from None
    for key in ("panoIds", "utm", "trainSet", "valSet"):
        if key not in data:
            raise DataError(f"{path} has no '{key}' (keys: {sorted(k for k in data if not k.startswith('__'))}); "
                            f"it is not CVACT's ACT_data.mat.")
    ids = [_mat_string(x) for x in np.asarray(data["panoIds"]).ravel()]
    utm = np.asarray(data["utm"], dtype=np.float64).reshape(len(ids), 2)
    train = np.asarray(data["trainSet"]["trainInd"][0][0], dtype=np.int64).ravel() - 1
    val = np.asarray(data["valSet"]["valInd"][0][0], dtype=np.int64).ravel() - 1
    for name, rows in (("trainSet.trainInd", train), ("valSet.valInd", val)):
        if len(rows) and (rows.min() < 0 or rows.max() >= len(ids)):
            raise DataError(f"{path}: {name} has indices outside 1..{len(ids)}")
    return {"pano_ids": ids, "utm": utm, "train": train, "val": val}


def _mat_string(x):
    # a char matrix loads as str rows; a cell array as arrays holding one str
    while isinstance(x, np.ndarray):
        x = x.ravel()[0] if x.size else ""
    return str(x).strip()


def utm_to_gps(utm, zone=CANBERRA_UTM_ZONE, south=True):
    """(N, 2) lat, lng of CVACT's `utm` rows (easting, northing; swapped if given the other way)."""
    utm = np.asarray(utm, dtype=np.float64)
    easting, northing = utm[:, 0], utm[:, 1]
    if np.median(easting) > np.median(northing):      # northing (~6e6 in Canberra) is the larger one
        easting, northing = northing, easting
    lat, lng = utm_to_latlon(easting, northing, zone, south)
    return np.stack([lat, lng], axis=1)


# ---------------------------------------------------------------- the folders
def locate_cvact(cvact_dir):
    """(mat_path, aerial_dir, panorama_dir) under cvact_dir (flat or with ANU_data_small/)."""
    cvact_dir = str(cvact_dir)
    mats = [os.path.join(cvact_dir, "ACT_data.mat"),
            os.path.join(cvact_dir, "ANU_data_small", "ACT_data.mat"),
            os.path.join(cvact_dir, "CVACT_orientations", "ACT_data.mat")]
    homes = [cvact_dir, os.path.join(cvact_dir, "ANU_data_small")]
    mat = next((m for m in mats if os.path.isfile(m)), None)
    sat = next((os.path.join(h, "satview_polish") for h in homes if os.path.isdir(os.path.join(h, "satview_polish"))), None)
    grd = next((os.path.join(h, "streetview") for h in homes if os.path.isdir(os.path.join(h, "streetview"))), None)
    missing = [what for what, found in (("ACT_data.mat", mat), ("satview_polish/", sat), ("streetview/", grd))
               if found is None]
    if missing:
        raise DataError(f"{cvact_dir} lacks {', '.join(missing)}: expected ACT_data.mat and "
                        f"[ANU_data_small/]satview_polish/, streetview/ as CVACT ships them; {DATASET_HELP}.")
    return mat, sat, grd


def _find_image(folder, stem):
    for ext in (".jpg", ".png", ".jpeg"):
        path = os.path.join(folder, stem + ext)
        if os.path.exists(path):
            return path
    return None


# ---------------------------------------------------------------- SAMP's crops
def sample_crops(rng, side=AERIAL_SIDE):
    """The original's four crop origins: [(x_start, y_start)] and camera positions [(x, y)] in each
    side/2 crop. `rng` is a numpy RandomState (the original draws from the global one)."""
    crop = side // 2
    lo, hi = crop // 4, 3 * crop // 4
    starts = [(int(rng.randint(lo, hi)), int(rng.randint(lo, hi)))]
    while len(starts) < 4:
        x, y = int(rng.randint(0, crop)), int(rng.randint(0, crop))
        if x < lo or x > hi or y < lo or y > hi:
            starts.append((x, y))
    centers = [(float(side // 2 - x), float(side // 2 - y)) for x, y in starts]
    return starts, centers


def crop_offset_640(center, crop=AERIAL_SIDE // 2):
    """VIGOR offset (delta) of a camera at (x, y) in a crop of side `crop`, once resized to 640."""
    x, y = center
    scale = TILE / crop
    return np.array([(y - crop / 2) * scale, (crop / 2 - x) * scale])


def centers_line(base, k, center):
    """A centers.txt line exactly as the original writes it: '<base>_sampled_<k>.jpg: (x, y)'."""
    return f"{base}_sampled_{k}.jpg: ({float(center[0])!r}, {float(center[1])!r})\n"


# ---------------------------------------------------------------- the re-sampling
def resample_cvact(cvact_dir, out_dir, seed=0, city="CVACT", aerial_mpp=DEFAULT_AERIAL_MPP,
                   utm_zone=CANBERRA_UTM_ZONE, south=True, panoramas="symlink", write_crops=False,
                   tile_size=TILE, sat_ext="png", on_bad_sample="error", limit=None, progress=False):
    """Run SAMP's CVACT re-sampling and write the VIGOR-format tree to out_dir. Returns a summary dict.

    panoramas: 'symlink', 'copy' or 'hardlink' (how the panoramas enter out_dir/<city>/panorama).
    write_crops: also write the original's 600-px crops next to centers.txt.
    tile_size: side of the written tiles (640, VIGOR's; offsets stay in the 640 convention).
    """
    if on_bad_sample not in ("error", "skip"):
        raise ValueError(f"on_bad_sample must be 'error' or 'skip', not {on_bad_sample!r}")
    if panoramas not in ("symlink", "copy", "hardlink"):
        raise ValueError(f"panoramas must be symlink, copy or hardlink, not {panoramas!r}")
    mat_path, sat_dir, grd_dir = locate_cvact(cvact_dir)
    act = read_act_mat(mat_path)
    gps = utm_to_gps(act["utm"], utm_zone, south)
    crop = AERIAL_SIDE // 2
    tile_mpp = aerial_mpp * crop / TILE             # metres per pixel once a crop is resized to 640

    out_dir = os.path.abspath(str(out_dir))
    original_dir = os.path.join(out_dir, ORIGINAL_OUTPUT)
    tile_dir = os.path.join(out_dir, city, "satellite")
    pano_dir = os.path.join(out_dir, city, "panorama")
    split_dir = os.path.join(out_dir, "splits", city)
    for d in (original_dir, tile_dir, pano_dir, split_dir):
        os.makedirs(d, exist_ok=True)

    rng = np.random.RandomState(seed)
    tiles, lines, skipped = [], {}, []
    seen_tiles = set()
    count = len(act["pano_ids"]) if limit is None else min(int(limit), len(act["pano_ids"]))
    with open(os.path.join(original_dir, "centers.txt"), "w") as centers_file:
        for i in range(count):
            pano_id = act["pano_ids"][i]
            aerial = _find_image(sat_dir, f"{pano_id}_satView_polish")
            ground = _find_image(grd_dir, f"{pano_id}_grdView")
            problem, fatal, image = None, True, None
            if aerial is None:
                problem = f"aerial image {os.path.join(sat_dir, pano_id + '_satView_polish.jpg')} is missing"
            elif ground is None:
                problem = f"panorama {os.path.join(grd_dir, pano_id + '_grdView.jpg')} is missing"
            elif "," in pano_id:
                problem = f"panorama id '{pano_id}' contains a comma"
            else:
                image = cv2.imread(aerial)
                if image is None:
                    problem = f"aerial image {aerial} cannot be decoded"
                elif image.shape != (AERIAL_SIDE, AERIAL_SIDE, 3):
                    # the original prints and skips such images, without drawing random numbers
                    problem = f"aerial image {aerial} is {image.shape}, not {AERIAL_SIDE}x{AERIAL_SIDE}x3"
                    fatal = False
            if problem is not None:
                if on_bad_sample == "error" and fatal:
                    raise DataError(f"{mat_path}, panoIds[{i + 1}]: {problem}; restore it or pass "
                                    f"--on-bad-sample skip; {DATASET_HELP}.")
                print(f"[cvact] skipping panoIds[{i + 1}] ({pano_id}): {problem}")
                skipped.append((i, problem))
                continue

            starts, centers = sample_crops(rng)
            base = os.path.splitext(os.path.basename(aerial))[0]
            lat, lng = gps[i]
            fields = [pano_file_name(pano_id, lat, lng)]
            for k, ((x0, y0), center) in enumerate(zip(starts, centers)):
                patch = image[y0:y0 + crop, x0:x0 + crop]
                centers_file.write(centers_line(base, k, center))
                if write_crops:
                    cv2.imwrite(os.path.join(original_dir, f"{base}_sampled_{k}.jpg"), patch)
                delta = crop_offset_640(center, crop)
                t_lat, t_lng = tile_centre_for_offset(lat, lng, delta, tile_mpp)
                name = sat_file_name(t_lat, t_lng, sat_ext)
                if name in seen_tiles:
                    raise DataError(f"two crops share the tile name {name} (panoIds[{i + 1}]); "
                                    f"the GPS of {mat_path} looks duplicated")
                seen_tiles.add(name)
                if tile_size != crop:
                    patch = cv2.resize(patch, (tile_size, tile_size), interpolation=cv2.INTER_LINEAR)
                cv2.imwrite(os.path.join(tile_dir, name), patch)
                tiles.append(name)
                fields += [name, repr(float(delta[0])), repr(float(delta[1]))]
            _place_panorama(ground, os.path.join(pano_dir, fields[0]), panoramas)
            lines[i] = " ".join(fields) + "\n"
            if progress and (i + 1) % 1000 == 0:
                print(f"[cvact] {i + 1}/{count}", flush=True)

    train = [lines[i] for i in act["train"] if i in lines]
    val = [lines[i] for i in act["val"] if i in lines]
    _write(os.path.join(split_dir, SAT_LIST), [t + "\n" for t in tiles])
    _write(os.path.join(split_dir, PANO_LABELS), [lines[i] for i in sorted(lines)])
    _write(os.path.join(split_dir, SAME_AREA_TRAIN), train)
    _write(os.path.join(split_dir, SAME_AREA_TEST), val)
    with open(os.path.join(out_dir, RESOLUTION_FILE), "w") as f:
        json.dump({city: tile_mpp}, f, indent=1)
    summary = {"source": os.path.abspath(str(cvact_dir)), "seed": int(seed), "city": city,
               "aerial_mpp": aerial_mpp, "tile_mpp": tile_mpp, "utm_zone": utm_zone, "south": south,
               "panoramas": len(lines), "tiles": len(tiles), "train": len(train), "test": len(val),
               "skipped": [[int(i), p] for i, p in skipped]}
    with open(os.path.join(out_dir, MANIFEST), "w") as f:
        json.dump(summary, f, indent=1)
    return summary


def _write(path, lines):
    with open(path, "w") as f:
        f.writelines(lines)


def _place_panorama(source, target, how):
    if os.path.lexists(target):
        os.remove(target)
    if how == "symlink":
        os.symlink(os.path.abspath(source), target)
    elif how == "hardlink":
        os.link(source, target)
    else:
        shutil.copyfile(source, target)
