"""What produced a run: the resolved config and the environment, written into its folder.

Every stage folder (runs/<experiment>/<stage>/) and every evaluation folder gets
    config.yaml        the resolved configuration (every key), loadable by utils.config.load_config
    environment.json   one record per start: command line, time, Python, platform, TensorFlow and
                       the other packages' versions, the git commit and whether the tree was dirty
A resumed run appends a record, so a folder trained in several sittings lists each of them.
"""
import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from importlib import metadata

import yaml

from utils.config import REPO_ROOT, load_config
from utils.errors import ConfigError

CONFIG_FILE = "config.yaml"
ENVIRONMENT_FILE = "environment.json"
PACKAGES = ("tensorflow", "tensorflow-cpu", "numpy", "opencv-python-headless", "opencv-python", "scipy",
            "h5py", "matplotlib", "tqdm", "PyYAML", "pyproj", "rasterio", "faiss-cpu", "pytest")


def package_versions():
    """Installed versions of the packages the project uses (those not installed are left out)."""
    found = {}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def git_state(repo=REPO_ROOT):
    """{'commit', 'dirty'} of the repository, or {'commit': None, 'reason'} outside a git checkout."""
    def git(*args):
        return subprocess.run(["git", "-C", repo, *args], capture_output=True, text=True, timeout=30)
    try:
        head = git("rev-parse", "HEAD")
        status = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.TimeoutExpired) as error:
        return {"commit": None, "reason": f"git not available: {error}"}
    if head.returncode != 0:
        return {"commit": None, "reason": head.stderr.strip() or "not a git checkout"}
    return {"commit": head.stdout.strip(), "dirty": bool(status.stdout.strip())}


def environment(argv=None):
    return {"command": list(sys.argv if argv is None else argv), "cwd": os.getcwd(),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "python": sys.version.split()[0],
            "platform": platform.platform(), "host": platform.node(),
            "packages": package_versions(), "git": git_state()}


def config_text(cfg):
    """The resolved keys as YAML (without load_config's note of the file it read: that goes to
    environment.json)."""
    values = cfg.to_dict()
    values.pop("config_path", None)
    return yaml.safe_dump(values, sort_keys=False, default_flow_style=None)


def write_record(folder, cfg, argv=None):
    """Write config.yaml and append this start to environment.json in `folder`; returns the record."""
    os.makedirs(folder, exist_ok=True)
    text = config_text(cfg)
    _write_atomic(os.path.join(folder, CONFIG_FILE), text)
    record = dict(environment(argv), config_file=cfg.get("config_path"),
                  config_sha256=hashlib.sha256(text.encode()).hexdigest())
    path = os.path.join(folder, ENVIRONMENT_FILE)
    starts = []
    if os.path.exists(path):
        with open(path) as handle:
            try:
                starts = json.load(handle).get("starts", [])
            except (ValueError, AttributeError):
                starts = []   # an unreadable record is replaced, not fatal to the run
    _write_atomic(path, json.dumps({"starts": starts + [record]}, indent=1))
    return record


def _write_atomic(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as handle:
        handle.write(text)
    os.replace(tmp, path)


def run_config_path(checkpoint):
    """config.yaml of the run that wrote a checkpoint (runs/<exp>/<stage>/<epoch>[/model.ckpt])."""
    folder = os.path.abspath(checkpoint)
    for _ in range(3):
        candidate = os.path.join(folder, CONFIG_FILE)
        if os.path.isfile(candidate):
            return candidate
        folder = os.path.dirname(folder)
    raise ConfigError(f"no {CONFIG_FILE} in the run folder of {checkpoint} (nor in the two folders above it): "
                      f"pass --config with the config it was trained with")


def load_run_config(checkpoint, overrides=()):
    return load_config(run_config_path(checkpoint), overrides)
