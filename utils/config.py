"""One typed configuration: YAML files merged over configs/default.yaml, then --set overrides.

    cfg = load_config("configs/demo.yaml", ["stages.E_1a.epochs=2", "seed=3"])
    cfg.data.sat_size      # attribute access
    cfg["data"]["root"]    # or item access

A config file may name a parent with `base: other.yaml` (relative to itself). Every key must
already exist in the default config: a misspelt key is an error naming the key and the file.
Values are checked and converted once, here, to the type of the key in configs/default.yaml
(a float key takes 3 or "1e-5"; an int key refuses "abc"); keys whose default is null or that
take several types are listed in TYPES. A wrong type is an error naming the key and the file.
"""
import argparse
import copy
import os

import yaml

from utils.errors import ConfigError

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_CONFIG = os.path.join(REPO_ROOT, "configs", "default.yaml")


class OneOf:
    """A value of one of `types`, or one of the words in `choices`."""

    def __init__(self, *types, choices=()):
        self.types, self.choices = types, tuple(choices)

    def describe(self):
        names = [t.__name__ if t is not type(None) else "null" for t in self.types]
        return " or ".join(names + [repr(c) for c in self.choices])


# Keys whose default is null, that take several types, or that take one of a few words.
# `stages.*` stands for every stage.
TYPES = {
    "data.dataset": OneOf(choices=("vigor", "cvact", "synthetic", "university1652", "synthetic_university1652",
                                   "cvusa", "synthetic_cvusa", "spacenet6", "synthetic_spacenet6")),
    "data.synthetic_spacenet6.sensor_side": OneOf(choices=("north", "south")),
    "adversarial.schedule": OneOf(choices=("dann", "constant")),
    "adversarial.schedule_steps": OneOf(int, type(None)),
    "data.query_view": OneOf(choices=("drone", "street")),
    "data.resolution": OneOf(float, int, choices=("original", "corrected", "dataset", "auto")),
    "data.on_bad_sample": OneOf(choices=("error", "skip")),
    "data.positives": OneOf(choices=("central", "covering", "centred")),
    "data.labels": OneOf(choices=("original", "corrected")),
    "data.train_cities": OneOf(list, type(None)),
    "data.test_cities": OneOf(list, type(None)),
    "data.use_cache": OneOf(choices=("auto", "never", "require")),
    "data.cache_dir": OneOf(str, type(None)),
    "model.vgg16_npy": OneOf(str, type(None)),
    "model.cholesky_initial_sigma_px": OneOf(float, int, type(None)),
    "model.aggregation": OneOf(choices=("gap", "safa")),
    "model.decoder_query": OneOf(choices=("none", "broadcast", "match")),
    "model.bridge_view": OneOf(choices=("none", "drone")),
    "distribute.strategy": OneOf(choices=("none", "mirrored", "multi_worker")),
    "stages.*.decay_steps": OneOf(int, type(None), choices=("epoch",)),
    "stages.*.steps_per_epoch": OneOf(int, type(None)),
    "stages.*.mining_start": OneOf(int, type(None)),
    "stages.*.init_from.stage": OneOf(str, type(None)),
    "stages.*.init_from.epoch": OneOf(int, type(None), choices=("last",)),
    "stages.*.init_from.path": OneOf(str, type(None)),
    "stages.*.weight_b": OneOf(float, int, choices=("median",)),
    "localize.fine": OneOf(choices=("head", "windows", "product")),
    "localize.fine_uncertainty_temperature": OneOf(float, int),
    "localize.fine_uncertainty": OneOf(choices=("covariance", "entropy", "best_weight", "best_similarity", "margin")),
    "localize.index.kind": OneOf(choices=("auto", "flat", "ivfpq", "hnsw")),
    "localize.index.nlist": OneOf(int, type(None)),
    "localize.index.pretransform": OneOf(choices=("none", "pca", "opq")),
}


def _declared_type(name):
    parts = name.split(".")
    if parts[0] == "stages" and len(parts) > 2:
        return TYPES.get(".".join(["stages", "*"] + parts[2:]))
    return TYPES.get(name)


def _convert(name, value, default, source):
    """`value` as the type of `default` (or of TYPES[name]); a ConfigError naming key and file if it is not."""
    declared = _declared_type(name)
    if declared is not None:
        if value in declared.choices or (declared.types and isinstance(value, declared.types)
                                         and not (isinstance(value, bool) and bool not in declared.types)):
            return value
        raise ConfigError(f"{source}: '{name}' must be {declared.describe()}, not {value!r}")
    if default is None or isinstance(default, dict):
        return value
    return _convert_like(name, value, default, source)


def _convert_like(name, value, default, source):
    wrong = ConfigError(f"{source}: '{name}' must be {type(default).__name__} (as in configs/default.yaml), "
                        f"not {value!r}")
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        raise wrong
    if isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise wrong
    if isinstance(default, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        try:  # YAML 1.1 reads 1e-5 (no dot) as a string
            return float(value) if isinstance(value, str) else _raise(wrong)
        except ValueError:
            raise wrong from None
    if isinstance(default, list):
        if not isinstance(value, list):
            raise wrong
        if default and not isinstance(default[0], (list, dict)):
            return [_convert_like(f"{name}[{i}]", v, default[0], source) for i, v in enumerate(value)]
        return value
    if isinstance(default, str) and not isinstance(value, str):
        raise wrong
    return value


def _raise(error):
    raise error


class Config(dict):
    """A dict whose keys are also attributes; nested dicts are Configs too."""

    def __init__(self, data=None):
        super().__init__()
        for key, value in (data or {}).items():
            self[key] = Config(value) if isinstance(value, dict) else value

    def __getattr__(self, key):
        try:
            return self[key]
        except KeyError:
            raise AttributeError(f"config has no key '{key}' (keys: {sorted(self)})") from None

    def __setattr__(self, key, value):
        self[key] = value

    def to_dict(self):
        return {k: v.to_dict() if isinstance(v, Config) else copy.deepcopy(v) for k, v in self.items()}


def _read_yaml(path):
    if not os.path.isfile(path):
        raise ConfigError(f"config file not found: {path}")
    with open(path) as f:
        try:
            data = yaml.safe_load(f) or {}
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            where = f" line {mark.line + 1}" if mark else ""
            raise ConfigError(f"{path}{where}: not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys to values")
    return data


def _merge(base, update, source, prefix=""):
    for key, value in update.items():
        name = f"{prefix}{key}"
        if key not in base:
            raise ConfigError(f"{source}: unknown key '{name}' (known here: {', '.join(sorted(base))})")
        if isinstance(base[key], dict) and isinstance(value, dict):
            _merge(base[key], value, source, name + ".")
        elif isinstance(base[key], dict) and value is not None:
            raise ConfigError(f"{source}: '{name}' is a section ({', '.join(sorted(base[key]))}), not {value!r}")
        else:
            base[key] = _convert(name, value, base[key], source)


def _load_chain(path, seen=()):
    path = os.path.abspath(path)
    if path in seen:
        raise ConfigError(f"{path}: 'base' chain loops back to itself")
    data = _read_yaml(path)
    parent = data.pop("base", None)
    if parent is None:
        return [(path, data)]
    parent_path = os.path.join(os.path.dirname(path), parent)
    return _load_chain(parent_path, seen + (path,)) + [(path, data)]


def parse_override(text):
    """'a.b=3' -> (['a', 'b'], 3); the value is parsed as YAML (numbers, lists, null...)."""
    if "=" not in text:
        raise ConfigError(f"override '{text}' must look like key.sub=value")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.strip().split("."), value


def load_config(path=None, overrides=()):
    merged = _read_yaml(DEFAULT_CONFIG)
    merged.pop("base", None)
    if path is not None:
        for source, data in _load_chain(path):
            if source != os.path.abspath(DEFAULT_CONFIG):
                _merge(merged, data, source)
    for text in overrides:
        keys, value = parse_override(text)
        node = merged
        for i, key in enumerate(keys[:-1]):
            if not isinstance(node, dict) or key not in node:
                raise ConfigError(f"--set {text}: unknown key '{'.'.join(keys[:i + 1])}'")
            node = node[key]
        if not isinstance(node, dict) or keys[-1] not in node:
            raise ConfigError(f"--set {text}: unknown key '{'.'.join(keys)}'")
        _merge(node, {keys[-1]: value}, f"--set {text}", ".".join(keys[:-1]) + "." if len(keys) > 1 else "")
    cfg = Config(merged)
    cfg.config_path = os.path.abspath(path) if path else DEFAULT_CONFIG
    return cfg


def resolve_path(path):
    """Relative paths in a config are relative to the repository root."""
    if path is None:
        return None
    return path if os.path.isabs(path) else os.path.join(REPO_ROOT, path)


def stage_argument_parser(description):
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--config", default=os.path.join(REPO_ROOT, "configs", "demo.yaml"),
                        help="YAML config (default: configs/demo.yaml, the synthetic city)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set stages.E_1a.epochs=2 (repeatable)")
    parser.add_argument("--resume", action="store_true",
                        help="continue from the last saved point of this stage")
    parser.add_argument("--overwrite", action="store_true",
                        help="start afresh in a stage folder that holds checkpoints, deleting them")
    return parser
