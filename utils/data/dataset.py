"""In-memory index of a dataset in VIGOR's format (VIGOR, the re-sampled CVACT, the synthetic city).

Layout (see data/DATASET.md):
    root/<City>/satellite/satellite_<lat>_<lng>.png      aerial tiles, 640 x 640
    root/<City>/panorama/<prefix>,<lat>,<lng>,.jpg        ground panoramas
    root/splits/<City>/satellite_list.txt                 one tile file name per line
    root/splits/<City>/same_area_balanced_{train,test}.txt, pano_label_balanced.txt
        `pano sat_pos d0 d1 semi1 d0 d1 semi2 d0 d1 semi3 d0 d1` (13 fields separated by spaces)

Nothing here reads images, except `check_images`.
"""
import json
import math
import os
from dataclasses import dataclass, field

import numpy as np

from utils.data.geo import CORRECTED_MPP, ORIGINAL_MPP
from utils.errors import DataError

CITIES = ("NewYork", "Seattle", "SanFrancisco", "Chicago")
SAME_AREA_CITIES = ("Chicago", "NewYork", "Seattle", "SanFrancisco")  # SAMP's order (it fixes indices)
CROSS_AREA_TRAIN = ("NewYork", "Seattle")
CROSS_AREA_TEST = ("SanFrancisco", "Chicago")
LABEL_FIELDS = 13
SAT_LIST = "satellite_list.txt"
SAME_AREA_TRAIN = "same_area_balanced_train.txt"
SAME_AREA_TEST = "same_area_balanced_test.txt"
PANO_LABELS = "pano_label_balanced.txt"
LABEL_SETS = ("original", "corrected")
CORRECTED_DIR = "splits__corrected"    # SliceMatch's folder (VIGOR_corrected_labels/ in their repository)
CORRECTED_SUFFIX = "__corrected"       # ... and its label files: same_area_balanced_train__corrected.txt
CORRECTED_SOURCE = "https://github.com/tudelft-iv/SliceMatch/tree/main/VIGOR_corrected_labels"
RESOLUTION_FILE = "meters_per_pixel.json"   # optional: {city: metres per pixel at 640 px}
DATASET_HELP = "see data/DATASET.md for how to get the data and lay it out"


# ---------------------------------------------------------------- file names
def sat_file_name(lat, lng, ext="png"):
    return f"satellite_{float(lat)!r}_{float(lng)!r}.{ext}"


def pano_file_name(prefix, lat, lng, decimals=8):
    if "," in prefix:
        raise ValueError(f"panorama prefix '{prefix}' contains a comma")
    return f"{prefix},{lat:.{decimals}f},{lng:.{decimals}f},.jpg"


def parse_sat_name(name):
    """(lat, lng) from 'satellite_<lat>_<lng>.<ext>'; ValueError if it does not parse."""
    stem = os.path.splitext(os.path.basename(name))[0]
    parts = stem.split("_")
    if len(parts) < 3 or parts[0] != "satellite":
        raise ValueError(f"'{name}' is not named satellite_<lat>_<lng>.<ext>")
    return _finite(parts[-2], name), _finite(parts[-1], name)


def parse_pano_name(name):
    """(lat, lng) from '<prefix>,<lat>,<lng>,.jpg'; ValueError if it does not parse."""
    parts = os.path.basename(name).split(",")
    if len(parts) < 4:
        raise ValueError(f"'{name}' is not named <prefix>,<lat>,<lng>,.jpg")
    return _finite(parts[-3], name), _finite(parts[-2], name)


def _finite(text, name):
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"'{name}': {text} is not a finite coordinate")
    return value


# ---------------------------------------------------------------- the index
@dataclass
class SplitIndex:
    sat_paths: np.ndarray         # (S,) str absolute paths
    sat_gps: np.ndarray           # (S, 2) float64 lat, lng
    sat_city: np.ndarray          # (S,) str
    grd_paths: np.ndarray         # (N,) str
    grd_gps: np.ndarray           # (N, 2) float64
    grd_city: np.ndarray          # (N,) str
    labels: np.ndarray            # (N, 4) int64 indices into sat_paths; column 0 the positive
    deltas: np.ndarray            # (N, 4, 2) float64, 640-px convention
    meters_per_pixel: np.ndarray  # (S,) float64
    name: str
    # additions: where each entry came from, for error messages; what was skipped
    grd_source: np.ndarray = None       # (N,) str "label_file:line"
    sat_source: np.ndarray = None       # (S,) str "satellite_list.txt:line"
    skipped: list = field(default_factory=list)   # (file, line, reason)
    root: str = ""
    cities: tuple = ()
    # University-1652 (utils/data/university1652_splits.py): the building id (str) of every row
    sat_building: np.ndarray = None     # (S,)
    grd_building: np.ndarray = None     # (N,)

    def __len__(self):
        return len(self.grd_paths)

    @property
    def num_sat(self):
        return len(self.sat_paths)

    @property
    def num_grd(self):
        return len(self.grd_paths)


class _Problems:
    """Raises at the first problem ('error'), or records it and goes on ('skip')."""

    def __init__(self, mode):
        if mode not in ("error", "skip"):
            raise ValueError(f"on_bad_sample must be 'error' or 'skip', not {mode!r}")
        self.mode = mode
        self.items = []

    def report(self, path, line, reason, advice):
        if self.mode == "error":
            where = f"{path}, line {line}" if line else path
            raise DataError(f"{where}: {reason}. {advice}")
        self.items.append((path, line, reason))


def _read_lines(path, what):
    try:
        with open(path, "r") as f:
            return f.read().splitlines()
    except FileNotFoundError:
        folder = os.path.dirname(os.path.dirname(path))
        raise DataError(f"{what} {path} not found. {folder} should contain "
                        f"<City>/{os.path.basename(path)} for every city used; {DATASET_HELP}.") from None
    except OSError as e:
        raise DataError(f"{what} {path} cannot be read ({e}); check its permissions.") from None


def _city_resolutions(root, cities, resolution):
    if isinstance(resolution, (int, float)) and not isinstance(resolution, bool):
        return {c: float(resolution) for c in cities}
    if resolution == "original":
        return {c: ORIGINAL_MPP for c in cities}
    if resolution == "corrected":
        missing = [c for c in cities if c not in CORRECTED_MPP]
        if missing:
            raise DataError(f"resolution='corrected' knows only {sorted(CORRECTED_MPP)} (SliceMatch), "
                            f"not {missing}: use resolution='original', 'dataset' or a number.")
        return {c: CORRECTED_MPP[c] for c in cities}
    if resolution == "auto":
        resolution = "dataset" if os.path.exists(os.path.join(root, RESOLUTION_FILE)) else "original"
    if resolution == "dataset":
        path = os.path.join(root, RESOLUTION_FILE)
        try:
            with open(path) as f:
                table = json.load(f)
        except FileNotFoundError:
            raise DataError(f"resolution='dataset' needs {path} ({{city: metres per pixel}}), which "
                             f"the synthetic generator and Samples_on_CVACT.py write; use "
                             f"'original' or 'corrected' for VIGOR.") from None
        except (OSError, ValueError) as e:
            raise DataError(f"{path} is not a readable JSON table of resolutions ({e}).") from None
        missing = [c for c in cities if c not in table]
        if missing:
            raise DataError(f"{path} has no resolution for {missing}; add them.")
        return {c: float(table[c]) for c in cities}
    raise ValueError(f"resolution must be 'original', 'corrected', 'dataset', 'auto' or a number, not {resolution!r}")


def _load_split(root, cities, label_file, resolutions, name, problems, label_dir):
    sat_paths, sat_gps, sat_city, sat_source, sat_mpp = [], [], [], [], []
    sat_index = {}
    for city in cities:
        list_path = os.path.join(root, label_dir, city, SAT_LIST)
        for number, line in enumerate(_read_lines(list_path, "tile list"), start=1):
            tile = line.strip()
            if not tile:
                continue
            if tile in sat_index:
                problems.report(list_path, number, f"tile '{tile}' is listed twice",
                                "Remove the duplicate line")
                continue
            try:
                gps = parse_sat_name(tile)
            except ValueError as e:
                problems.report(list_path, number, f"cannot read the GPS from the tile name ({e})",
                                "Tiles must be named satellite_<lat>_<lng>.png")
                continue
            sat_index[tile] = len(sat_paths)
            sat_paths.append(os.path.join(root, city, "satellite", tile))
            sat_gps.append(gps)
            sat_city.append(city)
            sat_source.append(f"{list_path}:{number}")
            sat_mpp.append(resolutions[city])

    grd_paths, grd_gps, grd_city, grd_source, labels, deltas = [], [], [], [], [], []
    label_paths = []
    for city in cities:
        label_path = os.path.join(root, label_dir, city, label_file)
        label_paths.append(label_path)
        for number, line in enumerate(_read_lines(label_path, "label file"), start=1):
            if not line.strip():
                continue
            parsed = _parse_label_line(line, sat_index, label_path, number, problems)
            if parsed is None:
                continue
            pano, refs, offsets, gps = parsed
            grd_paths.append(os.path.join(root, city, "panorama", pano))
            grd_gps.append(gps)
            grd_city.append(city)
            grd_source.append(f"{label_path}:{number}")
            labels.append(refs)
            deltas.append(offsets)

    if not grd_paths:
        raise DataError(f"{name}: no usable panorama in {', '.join(label_paths)}"
                        + (f" ({len(problems.items)} bad lines skipped)" if problems.items else "")
                        + f". Check the label files; {DATASET_HELP}.")
    return SplitIndex(
        sat_paths=np.array([os.path.abspath(p) for p in sat_paths], dtype=str),
        sat_gps=np.array(sat_gps, dtype=np.float64).reshape(-1, 2),
        sat_city=np.array(sat_city, dtype=str),
        grd_paths=np.array([os.path.abspath(p) for p in grd_paths], dtype=str),
        grd_gps=np.array(grd_gps, dtype=np.float64).reshape(-1, 2),
        grd_city=np.array(grd_city, dtype=str),
        labels=np.array(labels, dtype=np.int64).reshape(-1, 4),
        deltas=np.array(deltas, dtype=np.float64).reshape(-1, 4, 2),
        meters_per_pixel=np.array(sat_mpp, dtype=np.float64),
        name=name,
        grd_source=np.array(grd_source, dtype=str),
        sat_source=np.array(sat_source, dtype=str),
        root=os.path.abspath(root),
        cities=tuple(cities),
    )


def _parse_label_line(line, sat_index, path, number, problems):
    fields = line.strip().split(" ")
    if len(fields) != LABEL_FIELDS:
        problems.report(path, number, f"expected {LABEL_FIELDS} space-separated fields "
                        f"(panorama, then tile d0 d1 four times), found {len(fields)}",
                        "Fix or remove the line")
        return None
    pano = fields[0]
    try:
        gps = parse_pano_name(pano)
    except ValueError as e:
        problems.report(path, number, f"cannot read the GPS from the panorama name ({e})",
                        "Panoramas must be named <prefix>,<lat>,<lng>,.jpg")
        return None
    refs, offsets = [], []
    for k, column in enumerate((1, 4, 7, 10)):
        tile = fields[column]
        if tile not in sat_index:
            problems.report(path, number, f"reference tile '{tile}' is not in the city's {SAT_LIST}",
                            f"Add it to {SAT_LIST} or remove the line")
            return None
        pair = []
        for text in fields[column + 1:column + 3]:
            try:
                value = float(text)
            except ValueError:
                problems.report(path, number, f"offset '{text}' of reference {k} is not a number",
                                "Offsets are floats in pixels of the 640-pixel tile")
                return None
            if not math.isfinite(value):
                problems.report(path, number, f"offset '{text}' of reference {k} is not finite",
                                "Recompute the offsets of this panorama or remove the line")
                return None
            pair.append(value)
        refs.append(sat_index[tile])
        offsets.append(pair)
    return pano, refs, offsets, gps


def _print_skipped(index_list):
    skipped = [item for index in index_list for item in index.skipped]
    if not skipped:
        return
    print(f"[dataset] skipped {len(skipped)} bad line(s) (on_bad_sample='skip'):")
    for path, line, reason in skipped[:10]:
        print(f"  {path}:{line}: {reason}")
    if len(skipped) > 10:
        print(f"  ... and {len(skipped) - 10} more (SplitIndex.skipped lists them all)")


def check_images(index, problems_mode="error", decode=False):
    """Check that every image of `index` exists (and decodes, if `decode`). Returns bad entries."""
    bad = []
    for paths, source, kind in ((index.sat_paths, index.sat_source, "tile"),
                                (index.grd_paths, index.grd_source, "panorama")):
        for i, path in enumerate(paths):
            reason = image_problem(path, decode)
            if reason is None:
                continue
            if problems_mode == "error":
                raise DataError(f"{kind} image {path} (listed in {source[i]}) {reason}; "
                                f"restore the file or remove the line, {DATASET_HELP}.")
            bad.append((str(path), str(source[i]), reason))
    return bad


def truncation(head, tail):
    """'is truncated (...)' when an encoded image's first bytes say JPEG or PNG and its last 32
    bytes lack that format's end marker, else None. (libjpeg decodes a cut-off JPEG with only a
    warning, the missing rows grey, so the marker is what tells.)"""
    if head.startswith(b"\xff\xd8") and b"\xff\xd9" not in tail:
        return "is truncated (no JPEG end marker)"
    if head.startswith(b"\x89PNG") and b"IEND" not in tail:
        return "is truncated (no PNG IEND chunk)"
    return None


def image_problem(path, decode=True):
    """None for a readable image, else what is wrong with it: missing, empty, truncated (a JPEG
    without its end marker, a PNG without IEND: the last bytes are read), or, with `decode`,
    undecodable by OpenCV."""
    try:
        size = os.path.getsize(path)
    except OSError:
        return "is missing"
    if size == 0:
        return "is empty"
    with open(path, "rb") as handle:
        head = handle.read(8)
        handle.seek(max(0, size - 32))
        problem = truncation(head, handle.read())
    if problem:
        return problem
    if decode:
        import cv2
        if cv2.imread(str(path)) is None:
            return "cannot be decoded"
    return None


def _drop_panoramas(index, bad_rows):
    keep = np.setdiff1d(np.arange(index.num_grd), np.asarray(bad_rows, dtype=np.int64))
    for name in ("grd_paths", "grd_gps", "grd_city", "labels", "deltas", "grd_source"):
        setattr(index, name, getattr(index, name)[keep])


def _apply_image_check(index, mode, check):
    decode = check == "decode"
    bad = check_images(index, mode, decode)
    if not bad:
        return
    bad_paths = {path for path, _, _ in bad}
    bad_tiles = {j for j, p in enumerate(index.sat_paths) if p in bad_paths}
    rows = [i for i in range(index.num_grd)
            if index.grd_paths[i] in bad_paths or bad_tiles.intersection(index.labels[i].tolist())]
    for path, source, reason in bad:
        file, _, line = source.rpartition(":")
        index.skipped.append((file, int(line), f"image {path} {reason}"))
    _drop_panoramas(index, rows)
    if index.num_grd == 0:
        raise DataError(f"{index.name}: every panorama references a missing image; {DATASET_HELP}.")


@dataclass(frozen=True)
class LabelFiles:
    """Where a dataset's split files are and what they are called."""
    labels: str                 # 'original' (VIGOR) or 'corrected' (SliceMatch)
    label_dir: str              # folder under the root that holds <City>/
    same_area_train: str
    same_area_test: str
    cross_area: str             # every panorama of a city (cross-area train and test)
    sat_list: str = SAT_LIST


def _corrected_names(label_dir):
    return LabelFiles("corrected", label_dir, *(f"{os.path.splitext(name)[0]}{CORRECTED_SUFFIX}.txt"
                                                for name in (SAME_AREA_TRAIN, SAME_AREA_TEST, PANO_LABELS)))


def label_files(root, labels="original", label_dir=None):
    """The split files of `labels` as shipped.

    original: VIGOR's splits/<City>/same_area_balanced_train.txt, ... corrected: SliceMatch's
    splits__corrected/<City>/same_area_balanced_train__corrected.txt, ... (satellite_list.txt
    keeps its name), either next to VIGOR's splits/ or renamed to splits/ (their README's way).
    label_dir forces the folder.
    """
    if labels not in LABEL_SETS:
        raise DataError(f"labels must be one of {LABEL_SETS}, not {labels!r}")
    if labels == "original":
        return LabelFiles("original", label_dir or "splits", SAME_AREA_TRAIN, SAME_AREA_TEST, PANO_LABELS)
    if label_dir is not None:
        return _corrected_names(label_dir)
    if os.path.isdir(os.path.join(root, CORRECTED_DIR)):
        return _corrected_names(CORRECTED_DIR)
    splits = os.path.join(root, "splits")
    if os.path.isdir(splits) and any(name.endswith(CORRECTED_SUFFIX + ".txt")
                                     for city in os.listdir(splits) if os.path.isdir(os.path.join(splits, city))
                                     for name in os.listdir(os.path.join(splits, city))):
        return _corrected_names("splits")
    raise DataError(f"data.labels=corrected, but {root} has neither {CORRECTED_DIR}/<City>/ (SliceMatch's folder "
                    f"next to splits/) nor splits/<City>/*{CORRECTED_SUFFIX}.txt (their folder renamed to "
                    f"splits, as their README says): copy VIGOR_corrected_labels/{CORRECTED_DIR} from "
                    f"{CORRECTED_SOURCE} into {root}, or set data.labels=original; {DATASET_HELP}.")


def load_vigor(root, same_area=True, train_cities=None, test_cities=None, resolution="original",
               on_bad_sample="error", check_images=False, label_dir=None, labels="original"):
    """(train, test) SplitIndex of a dataset in VIGOR's format.

    same_area: both splits from the same cities (same_area_balanced_train/test.txt); otherwise
    cross-area (pano_label_balanced.txt of the train cities, resp. of the test cities).
    resolution: 'original' (0.114 m/px), 'corrected' (SliceMatch), 'dataset' (root/meters_per_pixel.json),
    'auto' ('dataset' if that file exists, else 'original') or a number. Same-area cities default to
    VIGOR's four, or to every folder of root/splits when none of VIGOR's is there (CVACT). on_bad_sample: 'error' raises DataError at the first bad line; 'skip' skips bad
    lines, lists them in `index.skipped` and prints a summary once. check_images: False (images
    are checked when loaded), True (every file exists and is not empty) or 'decode'.
    labels: 'original' (VIGOR's split files) or 'corrected' (SliceMatch's, as shipped: see
    `label_files`); label_dir forces the folder of the split files (default: splits, or where
    SliceMatch's are).
    """
    root = str(root)
    if not os.path.isdir(root):
        raise DataError(f"dataset root {root} does not exist; {DATASET_HELP}.")
    files = label_files(root, labels, label_dir)
    label_dir = files.label_dir
    if not os.path.isdir(os.path.join(root, label_dir)):
        raise DataError(f"{os.path.join(root, label_dir)} not found: the dataset root {root} should "
                        f"contain {label_dir}/<City>/ with the split files; {DATASET_HELP}.")
    if same_area:
        default = SAME_AREA_CITIES
        if not train_cities and not test_cities:
            present = discover_cities(root, label_dir)
            if not set(SAME_AREA_CITIES) & set(present):     # not VIGOR: e.g. the re-sampled CVACT
                default = tuple(present)
        train_cities = tuple(train_cities or default)
        test_cities = tuple(test_cities or default)
        train_file, test_file, kind = files.same_area_train, files.same_area_test, "same-area"
    else:
        train_cities = tuple(train_cities or CROSS_AREA_TRAIN)
        test_cities = tuple(test_cities or CROSS_AREA_TEST)
        train_file, test_file, kind = files.cross_area, files.cross_area, "cross-area"
    resolutions = _city_resolutions(root, sorted(set(train_cities) | set(test_cities)), resolution)
    dataset = os.path.basename(os.path.normpath(root))
    splits = []
    for cities, label_file, part in ((train_cities, train_file, "train"), (test_cities, test_file, "test")):
        problems = _Problems(on_bad_sample)
        name = f"{dataset} {kind} {part}" + (" (corrected labels)" if files.labels == "corrected" else "")
        index = _load_split(root, cities, label_file, resolutions, name, problems, label_dir)
        index.skipped = problems.items
        if check_images:
            _apply_image_check(index, on_bad_sample, check_images)
        splits.append(index)
    _print_skipped(splits)
    return splits[0], splits[1]


def discover_cities(root, label_dir="splits"):
    folder = os.path.join(str(root), label_dir)
    if not os.path.isdir(folder):
        raise DataError(f"{folder} not found; {DATASET_HELP}.")
    cities = sorted(d for d in os.listdir(folder) if os.path.isdir(os.path.join(folder, d)))
    if not cities:
        raise DataError(f"{folder} has no city folder; {DATASET_HELP}.")
    return cities


def load_index_from_root(root, resolution=None, on_bad_sample="error", check_images=False,
                         label_dir="splits"):
    """(train, test) of a same-area dataset whose cities are the folders of root/splits.

    Made for the re-sampled CVACT (one 'city', train/val from ACT_data.mat) and the synthetic
    city. resolution None: root/meters_per_pixel.json if present, else 'original'.
    """
    cities = discover_cities(root, label_dir)
    if resolution is None:
        resolution = "auto"
    return load_vigor(root, same_area=True, train_cities=cities, test_cities=cities, resolution=resolution,
                      on_bad_sample=on_bad_sample, check_images=check_images, label_dir=label_dir)
